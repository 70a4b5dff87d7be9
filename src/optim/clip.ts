/**
 * clipGradNorm: torch.nn.utils.clip_grad_norm_ (norm_type 2, error_if_nonfinite=False) without a host
 * round-trip: the global L2 norm over every gradient is reduced on the GPU, and each gradient is scaled in
 * place by min(1, maxNorm / (norm + 1e-6)), read from GPU memory. Launcher: src/kernels/optim.ts
 * `clipGradNorm` (kernels/optim.wgsl; its passes and the device's `policy.clip` are described there).
 * Returns the total norm as a new scalar tensor (shape [], the caller's to release); reading it is optional.
 */
import { clipGradNorm as clipLaunch } from "../kernels/optim.ts";
import { TensorError } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";

/**
 * Scale the gradients of `params` (those whose `.grad` is not null) so their global L2 norm is at most
 * `maxNorm`; returns the norm before clipping as a scalar tensor. `maxNorm = Infinity` only measures.
 */
export function clipGradNorm(params: Tensor | Iterable<Tensor>, maxNorm: number): Tensor {
  const list = params instanceof Tensor ? [params] : [...params];
  if (list.length === 0) throw new TensorError("clipGradNorm: got no parameters (the norm needs a device to live on)");
  if (Number.isNaN(maxNorm) || maxNorm < 0) throw new TensorError(`clipGradNorm: maxNorm must be >= 0, got ${maxNorm}`);
  const gpu = list[0]!.gpu;
  const grads: Tensor[] = [];
  for (const p of list) {
    if (!(p instanceof Tensor)) throw new TensorError(`clipGradNorm: expected tensors, got ${String(p)}`);
    if (p.gpu !== gpu) throw new TensorError("clipGradNorm: parameters live on different GPU devices");
    const g = p.grad;
    if (!g) continue;
    g.assertLive();
    if (g.dtype !== "f32") throw new TensorError(`clipGradNorm: the gradient of ${p} is ${g.dtype}; f32 only so far`);
    if (g.size) grads.push(g);
  }
  if (grads.length === 0) return Tensor.zeros(gpu, []);

  const norm = Tensor.empty(gpu, []);
  clipLaunch(gpu, { grads: grads.map((g) => g.buffer), total: norm.buffer }, { sizes: grads.map((g) => g.size), maxNorm });
  return norm;
}

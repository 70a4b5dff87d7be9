/**
 * clipGradNorm: torch.nn.utils.clip_grad_norm_ (norm_type 2, error_if_nonfinite=False) without a host
 * round-trip: the global L2 norm over every gradient is reduced on the GPU, and each gradient is scaled in
 * place by min(1, maxNorm / (norm + 1e-6)), read from GPU memory. Launcher: src/kernels/optim.ts
 * `clipGradNorm` (multi-tensor passes, a few dispatches for any number of gradients: kernels/optim_multi.wgsl and
 * kernels/optim.wgsl; its passes and the device's `policy.clip` are described there).
 * Returns the total norm as a new scalar tensor (shape [], the caller's to release); reading it is optional.
 *
 * `{ fuseInto: opt }` (an AdamW about to step): the gradients of the parameters `opt` updates are not scaled
 * here; the optimizer applies the same coefficient as it reads them in its next step() (AdamW.fuseClip), which
 * saves a read and a write of every gradient. Those gradients then stay unclipped (torch would have clipped them
 * in place): use it when nothing but the step reads them. Gradients of other parameters are scaled as usual.
 */
import { clipGradNorm as clipLaunch, clipScale } from "../kernels/optim.ts";
import { TensorError } from "../tensor/shape.ts";
import { Tensor } from "../tensor/tensor.ts";
import type { AdamW } from "./adamw.ts";

/**
 * Scale the gradients of `params` (those whose `.grad` is not null) so their global L2 norm is at most
 * `maxNorm`; returns the norm before clipping as a scalar tensor. `maxNorm = Infinity` only measures.
 */
export function clipGradNorm(params: Tensor | Iterable<Tensor>, maxNorm: number, opts: { fuseInto?: AdamW } = {}): Tensor {
  const list = params instanceof Tensor ? [params] : [...params];
  if (list.length === 0) throw new TensorError("clipGradNorm: got no parameters (the norm needs a device to live on)");
  if (Number.isNaN(maxNorm) || maxNorm < 0) throw new TensorError(`clipGradNorm: maxNorm must be >= 0, got ${maxNorm}`);
  const gpu = list[0]!.gpu;
  const grads: Tensor[] = [];
  const fused: boolean[] = [];
  const stepped = new Set(opts.fuseInto?.groups.flatMap((g) => g.params));
  for (const p of list) {
    if (!(p instanceof Tensor)) throw new TensorError(`clipGradNorm: expected tensors, got ${String(p)}`);
    if (p.gpu !== gpu) throw new TensorError("clipGradNorm: parameters live on different GPU devices");
    const g = p.grad;
    if (!g) continue;
    g.assertLive();
    if (g.dtype !== "f32") throw new TensorError(`clipGradNorm: the gradient of ${p} is ${g.dtype}; f32 only so far`);
    if (g.size) grads.push(g), fused.push(stepped.has(p));
  }
  if (grads.length === 0) return Tensor.zeros(gpu, []);

  const norm = Tensor.empty(gpu, []);
  const fuse = opts.fuseInto !== undefined && maxNorm !== Infinity;
  clipLaunch(gpu, { grads: grads.map((g) => g.buffer), total: norm.buffer }, { sizes: grads.map((g) => g.size), maxNorm: fuse ? Infinity : maxNorm });
  if (fuse) {
    const rest = grads.filter((_, i) => !fused[i]);
    if (rest.length) clipScale(gpu, { grads: rest.map((g) => g.buffer), total: norm.buffer }, { sizes: rest.map((g) => g.size), maxNorm });
    opts.fuseInto!.fuseClip(norm, maxNorm);
  }
  return norm;
}

/**
 * clipGradNorm: torch.nn.utils.clip_grad_norm_ (norm_type 2, error_if_nonfinite=False) without a host
 * round-trip. The global L2 norm over every gradient is reduced on the GPU in two passes (kernels/optim.wgsl
 * `sumsq` per gradient into its own slots of one partials buffer, then `norm_finish`), and each gradient is
 * scaled in place by min(1, maxNorm / (norm + 1e-6)) by `clip_scale`, which reads the norm from GPU memory.
 * Returns the total norm as a new scalar tensor (shape [], the caller's to release); reading it is optional.
 * The `sumsq` pass's workgroups per gradient follow the device's `policy.clip` (src/gpu/policy.ts).
 */
import { TensorError } from "../tensor/shape.ts";
import { Tensor, untracked } from "../tensor/tensor.ts";
import { dispatchElementwise, dispatchReduce } from "./optimizer.ts";

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

  const lim = gpu.policy.clip;
  const groups = grads.map((g) => Math.min(lim.maxGroups, Math.ceil(g.size / lim.perGroup)));
  const count = groups.reduce((a, b) => a + b, 0);
  const partial = untracked(() => Tensor.empty(gpu, [count]));
  const norm = Tensor.empty(gpu, []);
  let base = 0;
  grads.forEach((g, i) => {
    dispatchReduce(gpu, "sumsq", "clip_grad_norm.sumsq", groups[i]!, { gs: g.buffer, partial: partial.buffer }, { base, groups: groups[i]! }, g.size);
    base += groups[i]!;
  });
  dispatchReduce(gpu, "norm_finish", "clip_grad_norm.norm", 1, { partial: partial.buffer, total: norm.buffer }, { groups: count });
  partial.release();
  if (maxNorm !== Infinity)
    for (const g of grads) dispatchElementwise(gpu, "clip_scale", "clip_grad_norm.scale", g.size, { gs: g.buffer, total: norm.buffer }, { max_norm: maxNorm });
  return norm;
}

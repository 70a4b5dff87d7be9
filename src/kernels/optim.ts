/**
 * Launchers of kernels/optim.wgsl: fused optimizer updates and gradient-norm clipping (src/optim). Every buffer
 * is a flat, contiguous f32 array of one parameter tensor (or its gradient / state) of n elements; the
 * elementwise entries move it in vec4 units when n % 4 == 0 (src/gpu/grid.ts `elementwise`). `label` names
 * the parameter in the dispatch's name (profiles, error attribution).
 *
 *   adamw(gpu, { p, g, m, v }, { n, lr, beta1, beta2, eps, weightDecay, step, label })
 *       torch.optim.AdamW at the parameter's own step count t = step (>= 1), in place:
 *         p ← p · (1 − lr · weightDecay)
 *         m ← β1 · m + (1 − β1) · g,   v ← β2 · v + (1 − β2) · g²
 *         p ← p − lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + eps)
 *       The bias corrections are computed in float64 here and travel as params (no upload per step).
 *   sgd(gpu, { p, g }, { n, lr, weightDecay, label })
 *       p ← p − lr · (g + weightDecay · p)
 *   sgdMomentum(gpu, { p, g, buf }, { n, lr, weightDecay, momentum, dampening, nesterov, first, label })
 *       d = g + weightDecay · p;  buf ← d on the first step (buf is not read), else momentum · buf + (1 − dampening) · d;
 *       p ← p − lr · (nesterov ? d + momentum · buf : buf)
 *   clipGradNorm(gpu, { grads, total }, { sizes, maxNorm })
 *       total[0] = ‖(g_1, …, g_k)‖₂ over every gradient g_j (sizes[j] elements each, none empty); then, unless
 *       maxNorm is Infinity, g_j ← g_j · min(1, maxNorm / (total + 1e-6)) in place, reading the norm on the GPU.
 *       Two reduction passes: `sumsq` per gradient into its own slots of a scratch partials buffer (workgroups
 *       per gradient from the device's `policy.clip`), then one `norm_finish` workgroup; the row kernels'
 *       workgroup width and reduction come from `rowLaunch` (src/gpu/row_reduce.ts).
 */
import kernelSrc from "../../kernels/optim.wgsl" with { type: "text" };
import { defineKernel, elementwise, ROW_REDUCE, rowLaunch, vec4Units, type Binding, type Gpu } from "../gpu/index.ts";

export const OPTIM = defineKernel("kernels/optim.wgsl", kernelSrc, [ROW_REDUCE]);

/** One AdamW step of one parameter (in place on p, m, v). */
export function adamw(
  gpu: Gpu,
  io: { p: Binding; g: Binding; m: Binding; v: Binding },
  o: { n: number; lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number; label: string },
): void {
  const { lr, beta1, beta2, step: t } = o;
  dispatchElementwise(gpu, "adamw", `AdamW(${o.label})`, o.n, { p: io.p, g: io.g, m: io.m, v: io.v }, {
    decay: 1 - lr * o.weightDecay,
    beta1,
    beta2,
    one_minus_beta1: 1 - beta1,
    one_minus_beta2: 1 - beta2,
    step_size: lr / (1 - beta1 ** t),
    bc2_sqrt: Math.sqrt(1 - beta2 ** t),
    eps: o.eps,
  });
}

/** One SGD step without momentum (in place on p). */
export function sgd(gpu: Gpu, io: { p: Binding; g: Binding }, o: { n: number; lr: number; weightDecay: number; label: string }): void {
  dispatchElementwise(gpu, "sgd", `SGD(${o.label})`, o.n, { p: io.p, g: io.g }, { lr: o.lr, weight_decay: o.weightDecay });
}

/** One SGD step with momentum (in place on p and buf; `first`: buf is written, not read). */
export function sgdMomentum(
  gpu: Gpu,
  io: { p: Binding; g: Binding; buf: Binding },
  o: { n: number; lr: number; weightDecay: number; momentum: number; dampening: number; nesterov: boolean; first: boolean; label: string },
): void {
  dispatchElementwise(gpu, "sgd_momentum", `SGD(${o.label})`, o.n, { p: io.p, g: io.g, buf: io.buf }, {
    lr: o.lr,
    weight_decay: o.weightDecay,
    momentum: o.momentum,
    one_minus_dampening: 1 - o.dampening,
    nesterov: o.nesterov ? 1 : 0,
    first: o.first ? 1 : 0,
  });
}

/** total = the global L2 norm of `grads`; each gradient scaled in place so the norm is at most maxNorm. */
export function clipGradNorm(gpu: Gpu, io: { grads: readonly Binding[]; total: Binding }, o: { sizes: readonly number[]; maxNorm: number }): void {
  const lim = gpu.policy.clip;
  const groups = o.sizes.map((n) => Math.min(lim.maxGroups, Math.ceil(n / lim.perGroup)));
  const count = groups.reduce((a, b) => a + b, 0);
  const partial = gpu.alloc(count * 4, "clip_grad_norm.partial");
  let base = 0;
  io.grads.forEach((g, i) => {
    dispatchReduce(gpu, "sumsq", "clip_grad_norm.sumsq", groups[i]!, { gs: g, partial }, { base, groups: groups[i]! }, o.sizes[i]!);
    base += groups[i]!;
  });
  dispatchReduce(gpu, "norm_finish", "clip_grad_norm.norm", 1, { partial, total: io.total }, { groups: count });
  // Back to the pool after the batch that uses it (the pool hands a buffer out again only after its last batch).
  gpu.release(partial);
  if (o.maxNorm !== Infinity)
    io.grads.forEach((g, i) => dispatchElementwise(gpu, "clip_scale", "clip_grad_norm.scale", o.sizes[i]!, { gs: g, total: io.total }, { max_norm: o.maxNorm }));
}

/** Record one elementwise optim-kernel dispatch over `n` elements (in vec4s when n allows). */
function dispatchElementwise(gpu: Gpu, entry: string, name: string, n: number, bindings: Record<string, Binding>, params: Record<string, number>): void {
  if (n === 0) return;
  const e = elementwise(gpu, n);
  gpu.dispatch(OPTIM, entry, bindings, e.workgroups, { params: { ...OPTIM.zeroParams, ...params, n: e.units, row: e.row }, defines: e.defines, name });
}

/**
 * Record one dispatch of a reducing entry (sumsq, norm_finish) with an explicit workgroup count; `n` (elements
 * of the bound gradient, when it has one) is passed in the kernel's units.
 */
function dispatchReduce(gpu: Gpu, entry: string, name: string, workgroups: number, bindings: Record<string, Binding>, params: Record<string, number>, n = 0): void {
  const u = vec4Units(n);
  gpu.dispatch(OPTIM, entry, bindings, workgroups, { params: { ...OPTIM.zeroParams, ...params, n: u.units }, ...rowLaunch(gpu, { defines: u.defines }), name });
}

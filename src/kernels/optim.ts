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
 *   clipScale(gpu, { grads, total }, { sizes, maxNorm }): the scaling pass alone (a norm measured before).
 *       Multi-tensor (kernels/optim_multi.wgsl): `sumsq_multi` over up to `clipSlots(gpu)` gradients per dispatch
 *       (8 on lavapipe), each gradient's workgroups (from the device's `policy.clip`) into their own slots of a
 *       scratch partials buffer, then one `norm_finish` workgroup (kernels/optim.wgsl), then `clip_scale_multi`
 *       over as many gradients per dispatch; the row kernels' workgroup width and reduction come from
 *       `rowLaunch` (src/gpu/row_reduce.ts).
 *   adamwMulti(gpu, { ps, gs, m, v, total? }, { slots, beta1, beta2, eps, maxNorm?, label })
 *       the AdamW update of `adamw` for up to `adamwSlots(gpu, clip)` parameters in one dispatch: slot j updates
 *       ps[j] (slots[j].n elements, none empty) from gs[j], with its exp_avg at m[slots[j].offset ..) and its
 *       exp_avg_sq at v[slots[j].offset ..) (the state arenas of src/optim/adamw.ts), at its own lr, weight decay
 *       and step count. With `total` and `maxNorm`, the gradient is first multiplied by clip_grad_norm_'s
 *       coefficient min(1, maxNorm / (total[0] + 1e-6)) on the fly (the gradients are read, not written).
 *       vec4 units when every length and offset is a multiple of 4 (callers group tensors so), else f32.
 *
 * Multi-tensor dispatches bind their tensors one binding each (WGSL cannot index a list of buffers): how many
 * fit beside the fixed bindings comes from the device's maxStorageBuffersPerShaderStage (10 on lavapipe: 4
 * AdamW parameters, 3 with the fused clip, 8 gradients for the clip passes), capped at the 8 slots that
 * kernels/optim_multi.wgsl has. The slot bookkeeping (params, defines, bindings, the limit) is src/kernels/slots.ts,
 * shared with src/kernels/grad_scaler.ts.
 */
import kernelSrc from "../../kernels/optim.wgsl" with { type: "text" };
import multiSrc from "../../kernels/optim_multi.wgsl" with { type: "text" };
import { defineKernel, elementwise, grid1d, GpuError, ROW_REDUCE, rowLaunch, vec4Units, type Binding, type Gpu } from "../gpu/index.ts";
import { SLOTS, slotBindings, slotDefines, slotParams, slotsFor } from "./slots.ts";

export const OPTIM = defineKernel("kernels/optim.wgsl", kernelSrc, [ROW_REDUCE]);
export const OPTIM_MULTI = defineKernel("kernels/optim_multi.wgsl", multiSrc, [ROW_REDUCE, SLOTS]);

/** Workgroups of one sumsq_multi dispatch (one grid dimension). */
const MAX_GROUPS = 65535;

/** Parameters per adamwMulti dispatch on this device (p and g each, beside m, v and, with the fused clip, the norm). */
export function adamwSlots(gpu: Gpu, clip: boolean): number {
  return slotsFor(gpu, clip ? 3 : 2, 2, "AdamW");
}

/** Gradients per clip pass dispatch on this device (beside the partials or the norm). */
export function clipSlots(gpu: Gpu): number {
  return slotsFor(gpu, 1, 1, "clipGradNorm");
}

/** One AdamW parameter of an adamwMulti dispatch: its length, its state's element offset in the arenas, its hyperparameters. */
export interface AdamWSlot {
  n: number;
  offset: number;
  lr: number;
  weightDecay: number;
  /** Its own step count t >= 1. */
  step: number;
}

/** The defines of a dispatch over `count` slots in `vec4`s or f32s. */
function multiDefines(count: number, vec: boolean, extra: Record<string, number> = {}): Record<string, string | number> {
  return slotDefines(count, { VT: vec ? "vec4<f32>" : "f32", VEC: vec ? 1 : 0, ...extra });
}

/**
 * AdamW over up to adamwSlots(gpu, clip) parameters in one dispatch (in place on each p and on the arenas m, v);
 * `total` + `maxNorm`: clip_grad_norm_'s coefficient applied to the gradients on the fly.
 */
export function adamwMulti(
  gpu: Gpu,
  io: { ps: readonly Binding[]; gs: readonly Binding[]; m: Binding; v: Binding; total?: Binding },
  o: { slots: readonly AdamWSlot[]; beta1: number; beta2: number; eps: number; maxNorm?: number; label: string },
): void {
  const clip = io.total !== undefined;
  const what = `AdamW(${o.label})`;
  if (clip !== (o.maxNorm !== undefined)) throw new GpuError(`${what}: the fused clip needs both the norm (total) and maxNorm`);
  const k = o.slots.length;
  if (k < 1 || k > adamwSlots(gpu, clip)) throw new GpuError(`${what}: ${k} parameters in one dispatch; this device takes 1..${adamwSlots(gpu, clip)}`);
  if (io.ps.length !== k || io.gs.length !== k) throw new GpuError(`${what}: ${k} slots but ${io.ps.length} parameters and ${io.gs.length} gradients`);
  for (const s of o.slots) {
    if (!(Number.isInteger(s.n) && s.n > 0 && Number.isInteger(s.offset) && s.offset >= 0)) throw new GpuError(`${what}: a slot needs n >= 1 and an offset >= 0, got n=${s.n} offset=${s.offset}`);
    if (!(Number.isInteger(s.step) && s.step >= 1)) throw new GpuError(`${what}: step counts start at 1, got ${s.step}`);
  }
  const vec = o.slots.every((s) => s.n % 4 === 0 && s.offset % 4 === 0);
  const w = vec ? 4 : 1;
  const units = o.slots.map((s) => s.n / w);
  const { params, total } = slotParams(
    OPTIM_MULTI.zeroParams,
    units,
    units.map((u) => Math.ceil(u / 256)),
    {
      off: o.slots.map((s) => s.offset / w),
      step_size: o.slots.map((s) => s.lr / (1 - o.beta1 ** s.step)),
      bc2_sqrt: o.slots.map((s) => Math.sqrt(1 - o.beta2 ** s.step)),
      decay: o.slots.map((s) => 1 - s.lr * s.weightDecay),
    },
  );
  const g = grid1d(gpu, total, 1);
  const bindings: Record<string, Binding> = { ...slotBindings("p", io.ps), ...slotBindings("g", io.gs), m: io.m, v: io.v };
  if (clip) bindings.total = io.total!;
  gpu.dispatch(OPTIM_MULTI, "adamw_multi", bindings, g.workgroups, {
    params: {
      ...params,
      gx: g.workgroups[0],
      beta1: o.beta1,
      beta2: o.beta2,
      one_minus_beta1: 1 - o.beta1,
      one_minus_beta2: 1 - o.beta2,
      eps: o.eps,
      max_norm: o.maxNorm ?? 0,
    },
    defines: multiDefines(k, vec, { CLIP: clip ? 1 : 0 }),
    name: what,
  });
}

/**
 * Split tensors of `sizes` elements into multi-tensor dispatches of at most `k` each: those of a length that is
 * a multiple of 4 (vec4 units) and the others apart, each in order; returns index lists.
 */
export function slotChunks(sizes: readonly number[], k: number): number[][] {
  const out: number[][] = [];
  for (const want of [true, false]) {
    let cur: number[] = [];
    sizes.forEach((_, i) => {
      if ((sizes[i]! % 4 === 0) !== want) return;
      cur.push(i);
      if (cur.length === k) {
        out.push(cur);
        cur = [];
      }
    });
    if (cur.length) out.push(cur);
  }
  return out;
}

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
  if (io.grads.length !== o.sizes.length) throw new GpuError(`clipGradNorm: ${io.grads.length} gradients but ${o.sizes.length} sizes`);
  if (o.sizes.some((n) => !(Number.isInteger(n) && n > 0))) throw new GpuError(`clipGradNorm: every gradient needs n >= 1, got [${o.sizes}]`);
  const lim = gpu.policy.clip;
  const groups = o.sizes.map((n) => Math.min(lim.maxGroups, Math.ceil(n / lim.perGroup)));
  // Dispatches of at most clipSlots gradients and MAX_GROUPS workgroups.
  const chunks = slotChunks(o.sizes, clipSlots(gpu)).flatMap((c) => {
    const out: number[][] = [[]];
    let wgs = 0;
    for (const i of c) {
      if (wgs + groups[i]! > MAX_GROUPS && out[out.length - 1]!.length) out.push([]), (wgs = 0);
      out[out.length - 1]!.push(i);
      wgs += groups[i]!;
    }
    return out;
  });
  const count = groups.reduce((a, b) => a + b, 0);
  const partial = gpu.alloc(count * 4, "clip_grad_norm.partial");
  let base = 0;
  for (const c of chunks) {
    const vec = c.every((i) => o.sizes[i]! % 4 === 0);
    const units = c.map((i) => (vec ? o.sizes[i]! / 4 : o.sizes[i]!));
    const wg = c.map((i) => groups[i]!);
    const { params, total } = slotParams(OPTIM_MULTI.zeroParams, units, wg, { off: wg });
    gpu.dispatch(OPTIM_MULTI, "sumsq_multi", { ...slotBindings("g", c.map((i) => io.grads[i]!)), partial }, total, {
      params: { ...params, base },
      ...rowLaunch(gpu, { defines: multiDefines(c.length, vec) }),
      name: "clip_grad_norm.sumsq",
    });
    base += total;
  }
  dispatchReduce(gpu, "norm_finish", "clip_grad_norm.norm", 1, { partial, total: io.total }, { groups: count });
  // Back to the pool after the batch that uses it (the pool hands a buffer out again only after its last batch).
  gpu.release(partial);
  if (o.maxNorm !== Infinity) clipScale(gpu, io, o);
}

/** Pass 3 alone: g_j ← g_j · min(1, maxNorm / (total[0] + 1e-6)) in place, the norm read on the GPU. */
export function clipScale(gpu: Gpu, io: { grads: readonly Binding[]; total: Binding }, o: { sizes: readonly number[]; maxNorm: number }): void {
  if (io.grads.length !== o.sizes.length) throw new GpuError(`clipGradNorm: ${io.grads.length} gradients but ${o.sizes.length} sizes`);
  for (const c of slotChunks(o.sizes, clipSlots(gpu))) {
    const vec = c.every((i) => o.sizes[i]! % 4 === 0);
    const units = c.map((i) => (vec ? o.sizes[i]! / 4 : o.sizes[i]!));
    const { params, total } = slotParams(OPTIM_MULTI.zeroParams, units, units.map((u) => Math.ceil(u / 256)));
    const g = grid1d(gpu, total, 1);
    gpu.dispatch(OPTIM_MULTI, "clip_scale_multi", { ...slotBindings("g", c.map((i) => io.grads[i]!)), total: io.total }, g.workgroups, {
      params: { ...params, gx: g.workgroups[0], max_norm: o.maxNorm },
      defines: multiDefines(c.length, vec),
      name: "clip_grad_norm.scale",
    });
  }
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

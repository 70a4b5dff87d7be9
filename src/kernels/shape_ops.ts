/**
 * Launchers of kernels/shape_ops.wgsl: one general strided copy that every copying shape op reduces to,
 * plus where, clamp and index_select. One invocation per element, 256-wide workgroups on a 2-D grid;
 * iteration shapes are coalesced first (src/gpu/strided.ts: at most MAX_RANK = 6 dimensions may remain,
 * else a TensorError naming the op). Limits: n and every element offset below 2^32.
 *
 *   stridedCopy          for every coordinate c of `shape` (row-major):
 *                          dst[dst.offset + Σ c_d dst.strides[d]] = src[src.offset + Σ c_d src.strides[d]]
 *                        element strides and offsets, >= 0 (a 0 source stride broadcasts); any 32-bit dtype;
 *                        destination elements must not overlap (no accumulation).
 *   whereForward         out = cond != 0 ? a : b over `shape`, cond/a/b read through their (broadcast) strides.
 *   whereBackward        ga = cond != 0 ? gout : 0, gb = cond != 0 ? 0 : gout, both in `shape` (a select: NaN
 *                        gradients do not leak into the unselected branch).
 *   clampForward         out = min(max(x, lo), hi) as selects (NaN stays NaN).
 *   clampBackward        dx = lo <= x <= hi ? gout : 0 (bounds included, as torch).
 *   indexSelectForward   dst[o, j, k] = src[o, ids[j], k], src [outer, rows, inner], dst [outer, m, inner];
 *                        an id outside [0, rows) gives the NaN bit pattern.
 *   indexSelectBackward  acc[o, ids[j], k] += gout[o, j, k] into a zeroed f32 acc [outer, rows, inner]:
 *                        atomic compare-and-swap adds, so repeated ids sum in a run-dependent order (last
 *                        bits); distinct ids are exact; invalid ids are skipped.
 */
import shapeSrc from "../../kernels/shape_ops.wgsl" with { type: "text" };
import { defineKernel, grid1d, NAN, TensorError, type Binding, type Gpu } from "../gpu/index.ts";
import { stridedParams } from "../gpu/strided.ts";

export const SHAPE_OPS = defineKernel("kernels/shape_ops.wgsl", shapeSrc, [NAN]);

/** The element types the copying entries take (any 32-bit type; the bits are moved, not converted). */
export type CopyDType = "f32" | "i32" | "u32";
const WGSL_TYPE: Record<CopyDType, string> = { f32: "f32", i32: "i32", u32: "u32" };
export const isCopyDType = (dtype: string): dtype is CopyDType => Object.hasOwn(WGSL_TYPE, dtype);

/** A strided view of a buffer, in elements: element c of the iteration shape is at offset + Σ c_d strides[d]. */
export interface StridedView {
  strides: readonly number[];
  offset?: number;
}

/**
 * Params of an entry that walks `shape` with up to three strided operands (a, b, c): coalesced sizes and
 * strides, offsets. Throws naming `op` when more than MAX_RANK dimensions survive coalescing.
 */
function walkParams(op: string, shape: readonly number[], strides: (readonly number[])[], offsets: number[] = []): Record<string, number> {
  const p: Record<string, number> = { ...SHAPE_OPS.zeroParams, ...stridedParams(op, shape, strides, "abc") };
  "abc".split("").forEach((k, j) => (p[`${k}_off`] = offsets[j] ?? 0));
  return p;
}

/** One invocation per element of params.n (nothing when 0). */
function dispatch(gpu: Gpu, entry: string, name: string, bindings: Record<string, Binding>, params: Record<string, number>, T = "f32"): void {
  if (params.n === 0) return;
  if (params.n! > 0xffffffff) throw new TensorError(`${name}: ${params.n} elements exceed the kernel's 2^32 limit`);
  const g = grid1d(gpu, params.n!);
  params.row = g.row;
  gpu.dispatch(SHAPE_OPS, entry, bindings, g.workgroups, { params, defines: { T }, name });
}

/** dst view ← src view over `shape` (both of `dtype`); `name` names the dispatch (the op). */
export function stridedCopy(
  gpu: Gpu,
  io: { src: Binding; dst: Binding },
  o: { shape: readonly number[]; src: StridedView; dst: StridedView; dtype: CopyDType; name: string },
): void {
  const params = walkParams(o.name, o.shape, [o.src.strides, o.dst.strides], [o.src.offset ?? 0, o.dst.offset ?? 0]);
  dispatch(gpu, "copy_strided", o.name, { src: io.src, dst: io.dst }, params, WGSL_TYPE[o.dtype]);
}

/** out [shape] = where(cond, a, b), f32; `strides` are cond's, a's and b's element strides over `shape`. */
export function whereForward(
  gpu: Gpu,
  io: { cond: Binding; a: Binding; b: Binding; out: Binding },
  o: { shape: readonly number[]; strides: readonly [readonly number[], readonly number[], readonly number[]] },
): void {
  const params = walkParams("where", o.shape, [...o.strides]);
  dispatch(gpu, "where_select", "where", { cond: io.cond, x: io.a, y: io.b, out: io.out }, params);
}

/** ga, gb [shape] from gout [shape] and cond read through `condStrides` (each summed to its input's shape by the caller). */
export function whereBackward(
  gpu: Gpu,
  io: { cond: Binding; gout: Binding; ga: Binding; gb: Binding },
  o: { shape: readonly number[]; condStrides: readonly number[] },
): void {
  const params = walkParams("where.backward", o.shape, [o.condStrides]);
  dispatch(gpu, "where_grad", "where.backward", { cond: io.cond, gout: io.gout, out: io.ga, out2: io.gb }, params);
}

const clampParams = (o: { n: number; lo: number; hi: number }) => ({ ...SHAPE_OPS.zeroParams, n: o.n, lo: o.lo, hi: o.hi });

/** out [n] = clamp(x, lo, hi), f32 (lo/hi may be -Infinity/Infinity). */
export function clampForward(gpu: Gpu, io: { x: Binding; out: Binding }, o: { n: number; lo: number; hi: number }): void {
  dispatch(gpu, "clamp_fwd", "clamp", { x: io.x, out: io.out }, clampParams(o));
}

/** dx [n] = gout where lo <= x <= hi, else 0. */
export function clampBackward(gpu: Gpu, io: { x: Binding; gout: Binding; dx: Binding }, o: { n: number; lo: number; hi: number }): void {
  dispatch(gpu, "clamp_grad", "clamp.backward", { x: io.x, gout: io.gout, out: io.dx }, clampParams(o));
}

export interface IndexSelectDims {
  outer: number;
  /** The indexed dimension's size in src, and the number of ids. */
  rows: number;
  m: number;
  inner: number;
}

const indexParams = (o: IndexSelectDims) => ({ ...SHAPE_OPS.zeroParams, n: o.outer * o.m * o.inner, inner: o.inner, m: o.m, rows: o.rows, bad: 0x7fc00000 });

/** dst [outer, m, inner] = src [outer, rows, inner] at ids [m] (int32) along the middle dimension. */
export function indexSelectForward(gpu: Gpu, io: { src: Binding; ids: Binding; dst: Binding }, o: IndexSelectDims & { dtype: CopyDType }): void {
  dispatch(gpu, "index_select", "indexSelect", { src: io.src, ids: io.ids, dst: io.dst }, indexParams(o), WGSL_TYPE[o.dtype]);
}

/** acc [outer, rows, inner] (f32, zeroed by the caller) += gout [outer, m, inner] at ids [m]. */
export function indexSelectBackward(gpu: Gpu, io: { gout: Binding; ids: Binding; acc: Binding }, o: IndexSelectDims): void {
  dispatch(gpu, "index_add", "indexSelect.backward", { gout: io.gout, ids: io.ids, acc: io.acc }, indexParams(o));
}

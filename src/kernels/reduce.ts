/**
 * Launchers of kernels/reduce.wgsl (with the row-reduction library kernels/row_reduce.wgsl appended). Every
 * reduction is one or more passes of "[outer, n, inner] → [outer, inner]", all f32:
 *
 *   reduceAxis     dst[o, j] = scale * combine_k src[o, k, j] over k < n, combine = sum (from 0) or a max that
 *                  propagates NaN (from -inf, as torch.amax). inner == 1: one workgroup per row (`rowLaunch`,
 *                  src/gpu/row_reduce.ts); a single row longer than 65536 runs as two passes (chunks of 4096,
 *                  then the partial results). inner > 1: one invocation per output walking its column.
 *   reduceExpand   dst[o, k, j] = scale * src[o, j]: the backward of sum (scale 1) and mean (scale 1/n).
 *   maxBackward    dx[o, k, j] = gout[o, j] / count[o, j] where x[o, k, j] equals the max m[o, j], else 0, with
 *                  count = the number of such k: ties share the gradient evenly, as torch.amax.
 *
 * Outputs are contiguous f32 buffers the caller allocates; the launchers allocate and release their own
 * scratch (the two-pass partial sums, max's mask and counts).
 */
import reduceSrc from "../../kernels/reduce.wgsl" with { type: "text" };
import { defineKernel, grid1d, ROW_REDUCE, rowGrid, rowLaunch, type Binding, type Gpu } from "../gpu/index.ts";

export const REDUCE = defineKernel("kernels/reduce.wgsl", reduceSrc, [ROW_REDUCE]);

/** A total sum longer than this runs as two passes (chunks of CHUNK, then the partial sums). */
const TWO_PASS_ABOVE = 65536;
const CHUNK = 4096;

export type ReduceCombine = "sum" | "max";

/** How a reduction combines: its WGSL combine expression (of a and b) and its identity. */
interface Combiner {
  expr: string;
  init: number;
  /** The same operation for the workgroup step (kernels/row_reduce.wgsl). */
  red: "RED_SUM" | "RED_MAX";
}
const COMBINERS: Record<ReduceCombine, Combiner> = {
  sum: { expr: "a + b", init: 0, red: "RED_SUM" },
  /**
   * max that propagates NaN, as torch.max/amax do: nan_max (kernels/nan.wgsl, appended with ROW_REDUCE) tests the
   * bits; `a != a` does not work as a NaN test on lavapipe (folded away).
   */
  max: { expr: "nan_max(a, b)", init: -Infinity, red: "RED_MAX" },
};

export interface ReduceOptions {
  outer: number;
  n: number;
  inner: number;
  /** The result's factor: 1, or 1/n for a mean. */
  scale: number;
  /** Default "sum". */
  combine?: ReduceCombine;
  /** The dispatches' name (the op: "sum", "mean", "max", "sum_to", ...). */
  name: string;
}

/** dst [outer * inner] = scale * the combination of src [outer, n, inner] over n. */
export function reduceAxis(gpu: Gpu, io: { src: Binding; dst: Binding }, o: ReduceOptions): void {
  const { outer, n, inner, scale, name } = o;
  const c = COMBINERS[o.combine ?? "sum"];
  if (outer * inner === 0) return;
  if (inner === 1) {
    if (outer === 1 && n > TWO_PASS_ABOVE) {
      const parts = Math.ceil(n / CHUNK);
      const partial = gpu.alloc(parts * 4, "reduce.partial");
      sumRows(gpu, io.src, partial, parts, CHUNK, n, 1, name, c);
      sumRows(gpu, partial, io.dst, 1, parts, parts, scale, name, c);
      gpu.release(partial);
    } else sumRows(gpu, io.src, io.dst, outer, n, outer * n, scale, name, c);
  } else {
    const g = grid1d(gpu, outer * inner);
    gpu.dispatch(REDUCE, "sum_cols", { src: io.src, dst: io.dst }, g.workgroups, {
      params: { outer, n, inner, len: outer * n * inner, row: g.row, gx: 0, scale, init: c.init },
      defines: { COMBINE: c.expr },
      name,
    });
  }
}

function sumRows(gpu: Gpu, src: Binding, dst: Binding, outer: number, n: number, len: number, scale: number, name: string, c: Combiner): void {
  const g = rowGrid(gpu, outer);
  const gx = g.gx;
  gpu.dispatch(REDUCE, "sum_rows", { src, dst }, g.workgroups, {
    params: { outer, n, inner: 1, len, row: 0, gx, scale, init: c.init },
    ...rowLaunch(gpu, { defines: { COMBINE: c.expr, RED_OP: c.red } }),
    name,
  });
}

/** dst [outer, n, inner] = scale * src [outer, inner] repeated over n (the backward of sum and mean). */
export function reduceExpand(gpu: Gpu, io: { src: Binding; dst: Binding }, o: { outer: number; n: number; inner: number; scale: number; name: string }): void {
  const { outer, n, inner, scale } = o;
  const len = outer * n * inner;
  if (len === 0) return;
  const grid = grid1d(gpu, len);
  gpu.dispatch(REDUCE, "expand", { src: io.src, dst: io.dst }, grid.workgroups, {
    params: { outer, n, inner, len, row: grid.row, gx: 0, scale, init: 0 },
    name: o.name,
  });
}

/**
 * dx [outer, n, inner] of a max over n: gout [outer, inner] shared evenly by the elements of x [outer, n, inner]
 * equal to their max m [outer, inner]. Three passes: the 0/1 mask, its counts (a sum over n), the shares.
 */
export function maxBackward(gpu: Gpu, io: { x: Binding; m: Binding; gout: Binding; dx: Binding }, o: { outer: number; n: number; inner: number }): void {
  const { outer, n, inner } = o;
  const len = outer * n * inner;
  if (len === 0) return;
  const mask = gpu.alloc(len * 4, "max.mask");
  const count = gpu.alloc(outer * inner * 4, "max.count");
  const grid = grid1d(gpu, len);
  const params = { outer, n, inner, len, row: grid.row, gx: 0, scale: 1, init: 0 };
  gpu.dispatch(REDUCE, "max_mask", { src: io.x, dst: mask, aux0: io.m }, grid.workgroups, { params, name: "max.backward" });
  reduceAxis(gpu, { src: mask, dst: count }, { outer, n, inner, scale: 1, name: "max.backward" });
  gpu.dispatch(REDUCE, "max_grad", { src: mask, dst: io.dx, aux0: io.gout, aux1: count }, grid.workgroups, { params, name: "max.backward" });
  gpu.release(mask);
  gpu.release(count);
}

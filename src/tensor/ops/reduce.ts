/**
 * Reductions: sum, mean and max, over one axis (optionally keeping it as size 1) or over everything; and
 * `sumTo`, which sums a broadcast gradient back down to an input's shape (binary ops' backward).
 * Kernels: kernels/reduce.wgsl. Every reduction is one or more passes of "[outer, n, inner] → [outer, inner]".
 */
import reduceSrc from "../../../kernels/reduce.wgsl" with { type: "text" };
import { defineKernel, ROW_REDUCE, rowLaunch } from "../../gpu/index.ts";
import { attach } from "../autograd.ts";
import { fmtShape, normalizeAxis, numel, sameShape, TensorError, type Shape } from "../shape.ts";
import { rowGrid } from "../../gpu/grid.ts";
import { checkOperands, grid1d, Tensor } from "../tensor.ts";

export const REDUCE = defineKernel("kernels/reduce.wgsl", reduceSrc, [ROW_REDUCE]);

/** A total sum longer than this runs as two passes (chunks of CHUNK, then the partial sums). */
const TWO_PASS_ABOVE = 65536;
const CHUNK = 4096;

/** How a reduction combines: its WGSL combine expression (of a and b) and its identity. */
interface Combiner {
  expr: string;
  init: number;
  /** The same operation for the workgroup step (kernels/row_reduce.wgsl). */
  red: "RED_SUM" | "RED_MAX";
}
const SUM: Combiner = { expr: "a + b", init: 0, red: "RED_SUM" };
/**
 * max that propagates NaN, as torch.max/amax do (a + b is NaN when either is). `a != a` does not work as a
 * NaN test on lavapipe (folded away); is_nan (kernels/row_reduce.wgsl) tests the bits.
 */
const MAX: Combiner = { expr: "select(max(a, b), a + b, is_nan(a) || is_nan(b))", init: -Infinity, red: "RED_MAX" };

/** [outer, n, inner] → a new [outer * inner] tensor holding scale * the combination over n. */
function reduceAxis(x: Tensor, outer: number, n: number, inner: number, scale: number, name: string, c: Combiner = SUM): Tensor {
  const gpu = x.gpu;
  const out = Tensor.empty(gpu, [outer * inner]);
  if (outer * inner === 0) return out;
  if (inner === 1) {
    if (outer === 1 && n > TWO_PASS_ABOVE) {
      const parts = Math.ceil(n / CHUNK);
      const partial = Tensor.empty(gpu, [parts]);
      sumRows(x, partial, parts, CHUNK, n, 1, name, c);
      sumRows(partial, out, 1, parts, parts, scale, name, c);
      partial.release();
    } else sumRows(x, out, outer, n, outer * n, scale, name, c);
  } else {
    const g = grid1d(gpu, outer * inner);
    gpu.dispatch(REDUCE, "sum_cols", { src: x.buffer, dst: out.buffer }, g.workgroups, {
      params: { outer, n, inner, len: outer * n * inner, row: g.row, gx: 0, scale, init: c.init },
      defines: { COMBINE: c.expr },
      name,
    });
  }
  return out;
}

function sumRows(x: Tensor, out: Tensor, outer: number, n: number, len: number, scale: number, name: string, c: Combiner): void {
  const g = rowGrid(x.gpu, outer);
  const gx = g.gx;
  x.gpu.dispatch(REDUCE, "sum_rows", { src: x.buffer, dst: out.buffer }, g.workgroups, {
    params: { outer, n, inner: 1, len, row: 0, gx, scale, init: c.init },
    ...rowLaunch(x.gpu, { defines: { COMBINE: c.expr, RED_OP: c.red } }),
    name,
  });
}

/** Backward of a reduction: g [outer, inner] → [outer, n, inner], each value times `scale`. */
function expand(g: Tensor, shape: Shape, outer: number, n: number, inner: number, scale: number, name: string): Tensor {
  const out = Tensor.empty(g.gpu, shape);
  const len = outer * n * inner;
  if (len === 0) return out;
  const grid = grid1d(g.gpu, len);
  g.gpu.dispatch(REDUCE, "expand", { src: g.buffer, dst: out.buffer }, grid.workgroups, {
    params: { outer, n, inner, len, row: grid.row, gx: 0, scale, init: 0 },
    name,
  });
  return out;
}

/** Backward of max: the gradient shared evenly by the elements equal to their row's max (torch.amax). */
function maxBackward(g: Tensor, x: Tensor, m: Tensor, outer: number, n: number, inner: number): Tensor {
  const gpu = g.gpu;
  const len = outer * n * inner;
  const mask = Tensor.empty(gpu, x.shape);
  const out = Tensor.empty(gpu, x.shape);
  if (len === 0) {
    mask.release();
    return out;
  }
  const grid = grid1d(gpu, len);
  const params = { outer, n, inner, len, row: grid.row, gx: 0, scale: 1, init: 0 };
  gpu.dispatch(REDUCE, "max_mask", { src: x.buffer, dst: mask.buffer, aux0: m.buffer }, grid.workgroups, { params, name: "max.backward" });
  const count = reduceAxis(mask, outer, n, inner, 1, "max.backward");
  gpu.dispatch(REDUCE, "max_grad", { src: mask.buffer, dst: out.buffer, aux0: g.buffer, aux1: count.buffer }, grid.workgroups, { params, name: "max.backward" });
  mask.release();
  count.release();
  return out;
}

function reduce(op: "sum" | "mean" | "max", x: Tensor, axis: number | undefined, keepdim: boolean): Tensor {
  checkOperands(op, x);
  const shape = x.shape;
  let outer: number, n: number, inner: number, outShape: number[];
  if (axis === undefined) {
    [outer, n, inner] = [1, x.size, 1];
    outShape = keepdim ? shape.map(() => 1) : [];
  } else {
    const ax = normalizeAxis(op, axis, shape);
    [outer, n, inner] = [numel(shape.slice(0, ax)), shape[ax]!, numel(shape.slice(ax + 1))];
    outShape = keepdim ? shape.map((d, i) => (i === ax ? 1 : d)) : shape.filter((_, i) => i !== ax);
  }
  const scale = op === "mean" ? 1 / n : 1;
  if (op !== "sum" && n === 0) throw new TensorError(`${op}: cannot ${op === "mean" ? "average" : "take the max"} over an empty axis of ${fmtShape(shape)}`);
  const flat = reduceAxis(x, outer, n, inner, scale, op, op === "max" ? MAX : SUM);
  const out = flat.reshape(outShape);
  flat.release();
  if (op === "max")
    return attach(out, {
      op,
      inputs: [x],
      save: () => [x, out],
      backward: (g, [sx, sm]) => [maxBackward(g, sx!, sm!, outer, n, inner)],
    });
  return attach(out, {
    op,
    inputs: [x],
    backward: (g) => [expand(g, shape, outer, n, inner, scale, `${op}.backward`)],
  });
}

/** Sum over `axis` (negative counts from the end), or over all elements when `axis` is omitted. */
export function sum(x: Tensor, axis?: number, keepdim = false): Tensor {
  return reduce("sum", x, axis, keepdim);
}

/** Mean over `axis`, or over all elements when `axis` is omitted. */
export function mean(x: Tensor, axis?: number, keepdim = false): Tensor {
  return reduce("mean", x, axis, keepdim);
}

/**
 * Max over `axis`, or over all elements when `axis` is omitted: the values (torch.amax). NaN propagates.
 * Backward shares the gradient evenly among elements tied for the max, as torch.amax does.
 */
export function max(x: Tensor, axis?: number, keepdim = false): Tensor {
  return reduce("max", x, axis, keepdim);
}

/**
 * Sum `x` down to `target`, a shape that broadcasts to x's (binary ops' backward: the gradient of a
 * broadcast input). Runs one pass per run of consecutive reduced dimensions; returns a new tensor.
 * Not differentiable itself (it runs inside backward, under noGrad).
 */
export function sumTo(x: Tensor, target: Shape): Tensor {
  if (sameShape(x.shape, target)) return x.detach();
  const pad = x.shape.length - target.length;
  if (pad < 0 || target.some((d, i) => d !== 1 && d !== x.shape[pad + i]))
    throw new TensorError(`sumTo: ${fmtShape(target)} does not broadcast to ${fmtShape(x.shape)}`);
  // Runs of dimensions, outermost first: [size, reduced?], size-1 dimensions dropped, equal kinds merged.
  const runs: [number, boolean][] = [];
  x.shape.forEach((d, i) => {
    if (d === 1) return;
    const red = i < pad || target[i - pad] === 1;
    const last = runs[runs.length - 1];
    if (last && last[1] === red) last[0] *= d;
    else runs.push([d, red]);
  });
  let cur = x.detach();
  for (let r = runs.length - 1; r >= 0; r--) {
    const [n, red] = runs[r]!;
    if (!red) continue;
    const outer = numel(runs.slice(0, r).map((q) => q[0]));
    const inner = numel(runs.slice(r + 1).map((q) => q[0]));
    const next = reduceAxis(cur, outer, n, inner, 1, "sum_to");
    cur.release();
    cur = next;
    runs.splice(r, 1);
  }
  const out = cur.reshape(target);
  cur.release();
  return out;
}

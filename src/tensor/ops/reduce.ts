/**
 * Reductions: sum and mean, over one axis (optionally keeping it as size 1) or over everything; and
 * `sumTo`, which sums a broadcast gradient back down to an input's shape (binary ops' backward).
 * Kernels: kernels/reduce.wgsl. Every reduction is one or more passes of "[outer, n, inner] → [outer, inner]".
 */
import reduceSrc from "../../../kernels/reduce.wgsl" with { type: "text" };
import { defineKernel } from "../../gpu/index.ts";
import { attach } from "../autograd.ts";
import { fmtShape, normalizeAxis, numel, sameShape, TensorError, type Shape } from "../shape.ts";
import { checkOperands, grid1d, Tensor } from "../tensor.ts";

export const REDUCE = defineKernel("kernels/reduce.wgsl", reduceSrc);

const WG = 256;
/** A total sum longer than this runs as two passes (chunks of CHUNK, then the partial sums). */
const TWO_PASS_ABOVE = 65536;
const CHUNK = 4096;

/** [outer, n, inner] → a new [outer * inner] tensor holding scale * the sum over n. */
function reduceAxis(x: Tensor, outer: number, n: number, inner: number, scale: number, name: string): Tensor {
  const gpu = x.gpu;
  const out = Tensor.empty(gpu, [outer * inner]);
  if (outer * inner === 0) return out;
  if (inner === 1) {
    if (outer === 1 && n > TWO_PASS_ABOVE) {
      const parts = Math.ceil(n / CHUNK);
      const partial = Tensor.empty(gpu, [parts]);
      sumRows(x, partial, parts, CHUNK, n, 1, name);
      sumRows(partial, out, 1, parts, parts, scale, name);
      partial.release();
    } else sumRows(x, out, outer, n, outer * n, scale, name);
  } else {
    const g = grid1d(outer * inner);
    gpu.dispatch(REDUCE, "sum_cols", { src: x.buffer, dst: out.buffer }, g.workgroups, {
      params: { outer, n, inner, len: outer * n * inner, row: g.row, gx: 0, scale },
      name,
    });
  }
  return out;
}

function sumRows(x: Tensor, out: Tensor, outer: number, n: number, len: number, scale: number, name: string): void {
  const g = grid1d(outer * WG);
  const gx = g.workgroups[0];
  x.gpu.dispatch(REDUCE, "sum_rows", { src: x.buffer, dst: out.buffer }, g.workgroups, {
    params: { outer, n, inner: 1, len, row: 0, gx, scale },
    name,
  });
}

/** Backward of a reduction: g [outer, inner] → [outer, n, inner], each value times `scale`. */
function expand(g: Tensor, shape: Shape, outer: number, n: number, inner: number, scale: number, name: string): Tensor {
  const out = Tensor.empty(g.gpu, shape);
  const len = outer * n * inner;
  if (len === 0) return out;
  const grid = grid1d(len);
  g.gpu.dispatch(REDUCE, "expand", { src: g.buffer, dst: out.buffer }, grid.workgroups, {
    params: { outer, n, inner, len, row: grid.row, gx: 0, scale },
    name,
  });
  return out;
}

function reduce(op: "sum" | "mean", x: Tensor, axis: number | undefined, keepdim: boolean): Tensor {
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
  if (op === "mean" && n === 0) throw new TensorError(`mean: cannot average over an empty axis of ${fmtShape(shape)}`);
  const flat = reduceAxis(x, outer, n, inner, scale, op);
  const out = flat.reshape(outShape);
  flat.release();
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

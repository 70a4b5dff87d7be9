/**
 * Reductions: sum, mean and max, over one axis (optionally keeping it as size 1) or over everything; and
 * `sumTo`, which sums a broadcast gradient back down to an input's shape (binary ops' backward).
 * Launchers: src/kernels/reduce.ts. Every reduction is one or more passes of "[outer, n, inner] → [outer, inner]".
 */
import { maxBackward, reduceAxis as launchReduceAxis, reduceExpand, type ReduceCombine } from "../../kernels/reduce.ts";
import { attach } from "../autograd.ts";
import { fmtShape, normalizeAxis, numel, sameShape, TensorError, type Shape } from "../shape.ts";
import { checkOperands, Tensor } from "../tensor.ts";

/** [outer, n, inner] → a new [outer * inner] tensor holding scale * the combination over n. */
function reduceAxis(x: Tensor, outer: number, n: number, inner: number, scale: number, name: string, combine: ReduceCombine = "sum"): Tensor {
  const out = Tensor.empty(x.gpu, [outer * inner]);
  launchReduceAxis(x.gpu, { src: x.buffer, dst: out.buffer }, { outer, n, inner, scale, combine, name });
  return out;
}

/** Backward of a reduction: g [outer, inner] → [outer, n, inner], each value times `scale`. */
function expand(g: Tensor, shape: Shape, outer: number, n: number, inner: number, scale: number, name: string): Tensor {
  const out = Tensor.empty(g.gpu, shape);
  reduceExpand(g.gpu, { src: g.buffer, dst: out.buffer }, { outer, n, inner, scale, name });
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
  const flat = reduceAxis(x, outer, n, inner, scale, op, op === "max" ? "max" : "sum");
  const out = flat.reshape(outShape);
  flat.release();
  if (op === "max")
    return attach(out, {
      op,
      inputs: [x],
      save: () => [x, out],
      backward: (g, [sx, sm]) => {
        const dx = Tensor.empty(g.gpu, sx!.shape);
        maxBackward(g.gpu, { x: sx!.buffer, m: sm!.buffer, gout: g.buffer, dx: dx.buffer }, { outer, n, inner });
        return [dx];
      },
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

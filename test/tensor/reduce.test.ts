// sum and mean as ops: over one axis (keepdim or not, negative axes) and over everything (including a 0-d
// tensor), the result's shape, its values against the float64 reference of test/reference/reduce.ts on the op's
// [outer, n, inner] view (tolerance relative to the sum of |terms|, what f32 summation can promise) and its
// gradient through autograd (the upstream gradient broadcast back, divided by n for mean); sumTo; call-site
// errors. Every fresh tensor is NaN. The launchers on every view, the two-pass total, every row-reduction
// variant and a 2-D workgroup grid are rows of test/kernels/rows/reduce.ts.
import { describe, expect, test } from "bun:test";
import { mean, sum, sumTo, Tensor } from "../../src/tensor/index.ts";
import * as ref from "../reference/reduce.ts";
import { expectClose, getGpu, numel, rng, seedOf, sourceIndex, uniform, upload, type Shape } from "./helpers.ts";

type Op = "sum" | "mean";

/** The reduction of `shape` over `axis` (all when undefined) as [outer, n, inner], and its keepdim shape. */
function view(shape: Shape, axis?: number) {
  const ax = axis === undefined ? undefined : axis < 0 ? axis + shape.length : axis;
  const kept = shape.map((d, i) => (ax === undefined || i === ax ? 1 : d));
  if (ax === undefined) return { outer: 1, n: numel(shape), inner: 1, kept };
  return { outer: numel(shape.slice(0, ax)), n: shape[ax]!, inner: numel(shape.slice(ax + 1)), kept };
}

async function check(op: Op, shape: Shape, axis?: number, keepdim = false): Promise<void> {
  const gpu = await getGpu();
  const what = `${op}(${JSON.stringify(shape)}, axis ${axis}, keepdim ${keepdim})`;
  const r = rng(seedOf(what));
  const X = uniform(r, numel(shape));
  const { kept, ...dims } = view(shape, axis);
  const o = { ...dims, scale: op === "mean" ? 1 / dims.n : 1, name: op };
  const want = ref.reduceAxis({ src: X }, o);
  const x = upload(gpu, X, shape, true);
  const y = (op === "sum" ? sum : mean)(x, axis, keepdim);
  const expShape = keepdim ? kept : axis === undefined ? [] : shape.filter((_, i) => i !== (axis < 0 ? axis + shape.length : axis));
  expect(y.shape).toEqual(expShape);
  expectClose(`${what} forward`, await y.toArray(), want.dst, { mag: want.dstMag });
  const R = uniform(r, y.size);
  const Rt = upload(gpu, R, y.shape);
  y.backward(Rt);
  expectClose(`${what} grad`, await x.grad!.toArray(), ref.reduceExpand({ src: R }, o).dst);
  for (const t of [x, y, Rt]) t.release();
}

const AXIS_CASES: [Shape, number][] = [
  [[37], 0],
  [[5, 300], 1],
  [[5, 300], -1],
  [[300, 7], 0], // columns
  [[3, 50, 7], 1], // middle axis
  [[2, 1, 3], 1], // an axis of size 1
];

describe("reductions", () => {
  for (const op of ["sum", "mean"] as const) {
    test(`${op} over one axis, keepdim and not`, async () => {
      for (const [shape, axis] of AXIS_CASES) {
        await check(op, shape, axis, false);
        await check(op, shape, axis, true);
      }
    });

    test(`${op} over everything`, async () => {
      for (const shape of [[1], [3, 5, 7], [257, 3]] as Shape[]) {
        await check(op, shape);
        await check(op, shape, undefined, true);
      }
      await check(op, [70001]); // two passes
      await check(op, []); // a 0-d tensor
    });
  }

  test("sumTo sums a broadcast gradient back to an input's shape", async () => {
    const gpu = await getGpu();
    const r = rng(3);
    const from: Shape = [2, 3, 4, 5];
    for (const to of [[4, 1], [2, 1, 1, 5], [1, 3, 1, 1], [5], [], [2, 3, 4, 5], [1, 1, 1, 1]] as Shape[]) {
      const X = uniform(r, numel(from));
      const map = sourceIndex(to, from);
      const ref = new Float64Array(numel(to));
      const mag = new Float64Array(numel(to));
      X.forEach((v, i) => ((ref[map[i]!] += v), (mag[map[i]!] += Math.abs(v))));
      using x = upload(gpu, X, from);
      using y = sumTo(x, to);
      expect(y.shape).toEqual([...to]);
      expectClose(`sumTo ${JSON.stringify(to)}`, await y.toArray(), ref, { mag });
    }
    using x = Tensor.zeros(gpu, [2, 3]);
    expect(() => sumTo(x, [2])).toThrow("sumTo: [2] does not broadcast to [2, 3]");
  });

  test("bad axes fail at the call site, naming the op and the shape", async () => {
    const gpu = await getGpu();
    using x = Tensor.zeros(gpu, [2, 3]);
    expect(() => x.sum(2)).toThrow("sum: axis 2 is out of range for shape [2, 3] (rank 2; valid: -2..1)");
    expect(() => x.mean(-3)).toThrow("mean: axis -3 is out of range");
    expect(() => x.sum(0.5)).toThrow("sum: axis 0.5 is out of range");
  });
});

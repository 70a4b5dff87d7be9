// sum and mean over one axis (keepdim or not) and over everything: forward against float64 sums (with a
// tolerance relative to the sum of |terms|, what f32 summation can promise), gradient against the float64
// analytic one (the upstream gradient broadcast back, divided by n for mean). Every fresh tensor is NaN.
import { describe, expect, test } from "bun:test";
import { mean, sum, sumTo, Tensor } from "../../src/tensor/index.ts";
import { expectClose, getGpu, numel, rng, seedOf, sourceIndex, uniform, upload, type Shape } from "./helpers.ts";

type Op = "sum" | "mean";

/** float64 reduction of X (shape) over `axis` (all when undefined), with the sum of |terms| per output. */
function refReduce(op: Op, X: Float64Array, shape: Shape, axis?: number): { out: Float64Array; mag: Float64Array; outShape: number[]; map: Int32Array; n: number } {
  const ax = axis === undefined ? undefined : axis < 0 ? axis + shape.length : axis;
  const kept = shape.map((d, i) => (ax === undefined || i === ax ? 1 : d)); // keepdim shape
  const map = sourceIndex(kept, shape); // input element → output element
  const n = ax === undefined ? numel(shape) : shape[ax]!;
  const out = new Float64Array(numel(kept));
  const mag = new Float64Array(numel(kept));
  for (let i = 0; i < X.length; i++) {
    out[map[i]!] += X[i]!;
    mag[map[i]!] += Math.abs(X[i]!);
  }
  if (op === "mean") for (let j = 0; j < out.length; j++) (out[j] /= n), (mag[j] /= n);
  return { out, mag, outShape: kept, map, n };
}

async function check(op: Op, shape: Shape, axis?: number, keepdim = false): Promise<void> {
  const gpu = await getGpu();
  const what = `${op}(${JSON.stringify(shape)}, axis ${axis}, keepdim ${keepdim})`;
  const r = rng(seedOf(what));
  const X = uniform(r, numel(shape));
  const ref = refReduce(op, X, shape, axis);
  const x = upload(gpu, X, shape, true);
  const y = (op === "sum" ? sum : mean)(x, axis, keepdim);
  const expShape = keepdim ? ref.outShape : axis === undefined ? [] : shape.filter((_, i) => i !== (axis < 0 ? axis + shape.length : axis));
  expect(y.shape).toEqual(expShape);
  expectClose(`${what} forward`, await y.toArray(), ref.out, { mag: ref.mag });
  const R = uniform(r, y.size);
  const Rt = upload(gpu, R, y.shape);
  y.backward(Rt);
  const gref = X.map((_, i) => R[ref.map[i]!]! / (op === "mean" ? ref.n : 1));
  expectClose(`${what} grad`, await x.grad!.toArray(), gref);
  for (const t of [x, y, Rt]) t.release();
}

const AXIS_CASES: [Shape, number][] = [
  [[37], 0],
  [[5, 300], 1], // rows longer than a workgroup (sum_rows)
  [[5, 300], -1],
  [[300, 7], 0], // columns (sum_cols), 7 outputs
  [[3, 50, 7], 1], // middle axis
  [[3, 50, 7], 0],
  [[3, 50, 7], 2],
  [[2, 1, 3], 1], // an axis of size 1
  [[1000, 3], 1], // 1000 rows of 3
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
      for (const shape of [[1], [37], [3, 5, 7], [1000], [257, 3]] as Shape[]) {
        await check(op, shape);
        await check(op, shape, undefined, true);
      }
      await check(op, [70001]); // two passes: ragged chunks of 4096, then 18 partial sums
      await check(op, []); // a 0-d tensor
    });
  }

  test("a 2-D grid of workgroups (x capped at 2) covers every output", async () => {
    const gpu = await getGpu();
    await gpu.withPolicy({ grid: { maxX: 2 } }, async () => {
      await check("sum", [5, 40], 1); // 5 row-workgroups on a 2x3 grid, one idle
      await check("mean", [40, 700], 0); // 700 columns: 3 workgroups
      await check("sum", [70001]);
    });
  });

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

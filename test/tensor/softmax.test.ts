// softmax and log_softmax over the last axis: forward and input gradient through the ops against the float64
// references of test/reference/softmax.ts (their gradients checked here by central differences), on rows of 1,
// 7, 300 and 5000 elements (shorter and longer than the 256-wide workgroup), large logits (+-80, +-500) where an
// unshifted exp would overflow, a 2-D grid of row workgroups, the PyTorch goldens, and a memory-flat training
// loop. Every fresh tensor is poisoned with NaN. The launchers on their own (every row-reduction variant, the
// attention softmax, rowSumMap) are rows of test/kernels/rows/softmax.ts.
import { describe, expect, test } from "bun:test";
import { scope, Tensor } from "../../src/tensor/index.ts";
import { logSoftmax, softmax } from "../../src/tensor/ops/softmax.ts";
import { attentionSoftmaxBackward, attentionSoftmaxForward, softmaxBackward, softmaxForward } from "../reference/softmax.ts";
import { loadGoldens } from "./goldens.ts";
import { expectFlatMemory } from "../helpers.ts";
import { centralDiff, expectClose, getGpu, numel, rng, seedOf, uniform, upload, type Shape } from "./helpers.ts";

type Op = "softmax" | "log_softmax";
const FN = { softmax, log_softmax: logSoftmax };

/** The float64 reference (test/reference/softmax.ts) over rows of n: the forward, and dx for upstream G with its |terms| scale. */
const rowsOf = (X: Float64Array, n: number) => ({ rows: n ? X.length / n : 0, n });
const refForward = (op: Op, X: Float64Array, n: number) => softmaxForward({ x: X }, { ...rowsOf(X, n), kind: op }).y;
const refBackward = (op: Op, X: Float64Array, G: Float64Array, n: number) => {
  const o = { ...rowsOf(X, n), kind: op };
  const { dx, dxMag } = softmaxBackward({ y: softmaxForward({ x: X }, o).y, dy: G }, o);
  return { grad: dx, mag: dxMag };
};

async function check(op: Op, shape: Shape, lo = -3, hi = 3): Promise<void> {
  const gpu = await getGpu();
  const what = `${op}(${JSON.stringify(shape)}, values in [${lo}, ${hi}])`;
  const r = rng(seedOf(what));
  const n = shape.length ? shape[shape.length - 1]! : 1;
  const X = uniform(r, numel(shape), lo, hi);
  const x = upload(gpu, X, shape, true);
  const y = FN[op](x);
  expect(y.shape).toEqual([...shape]);
  expectClose(`${what} forward`, await y.toArray(), refForward(op, X, n));
  const G = uniform(r, X.length);
  const g = upload(gpu, G, shape);
  y.backward(g);
  const ref = refBackward(op, X, G, n);
  expectClose(`${what} grad`, await x.grad!.toArray(), ref.grad, { mag: ref.mag });
  for (const t of [x, y, g]) t.release();
}

const SHAPES: Shape[] = [[1], [5, 1], [3, 7], [4, 300], [2, 5000], [2, 3, 33], []];

describe("softmax and log_softmax", () => {
  for (const op of ["softmax", "log_softmax"] as const) {
    test(`${op}: forward and gradient, rows of 1 to 5000`, async () => {
      for (const shape of SHAPES) await check(op, shape);
    });

    test(`${op}: stable for large logits (+-80, +-500)`, async () => {
      for (const shape of [[3, 7], [2, 300], [1, 5000]]) await check(op, shape, -80, 80);
      await check(op, [4, 300], -500, 500); // exp(500) is inf in f32 (and in float64 beyond ~709)
    });

    test(`${op}: matches the PyTorch goldens`, async () => {
      const gpu = await getGpu();
      for (const c of loadGoldens("softmax").filter((c) => c.params.op === op)) {
        const x = Tensor.fromArray(gpu, c.inputs.x!.data, c.inputs.x!.shape, { requiresGrad: true });
        const y = FN[op](x);
        expectClose(`${c.name} forward`, await y.toArray(), c.outputs.out!.data);
        const g = Tensor.fromArray(gpu, c.upstream.out!.data, c.upstream.out!.shape);
        y.backward(g);
        const n = x.shape[x.rank - 1]!;
        const { mag } = refBackward(op, Float64Array.from(c.inputs.x!.data), Float64Array.from(c.upstream.out!.data), n);
        expectClose(`${c.name} grad`, await x.grad!.toArray(), c.grads.x!.data, { mag });
        for (const t of [x, y, g]) t.release();
      }
    });
  }

  test("the float64 reference gradients match central differences (softmax, log_softmax, the attention softmax)", () => {
    const r = rng(11);
    for (const op of ["softmax", "log_softmax"] as const) {
      const n = 6;
      const X = uniform(r, 2 * n, -3, 3);
      const G = uniform(r, 2 * n);
      const f = (x: Float64Array) => refForward(op, x, n).reduce((acc, y, i) => acc + y * G[i]!, 0);
      expectClose(`${op} reference gradient`, refBackward(op, X, G, n).grad, centralDiff(f, X), { rtol: 1e-6, atol: 1e-8 });
    }
    // Two batch elements x 2 heads x 4 queries, causal, batch 1 padding key 0 (its query 0 sees nothing).
    const o = { rows: 16, n: 4, scale: 0.7, causal: true, batchRows: 8 };
    const S = uniform(r, 64, -3, 3);
    const G = uniform(r, 64);
    const mask = Float64Array.of(1, 1, 1, 1, 0, 1, 1, 1);
    const probs = (s: Float64Array) => attentionSoftmaxForward({ scores: s, mask }, o).probs;
    const f = (s: Float64Array) => probs(s).reduce((acc, p, i) => acc + p * G[i]!, 0);
    const grad = attentionSoftmaxBackward({ probs: probs(S), dprobs: G }, o).dscores;
    expectClose("attention softmax reference gradient", grad, centralDiff(f, S), { rtol: 1e-6, atol: 1e-8 });
  });

  test("a 2-D grid of row workgroups (x capped at 2) covers every row", async () => {
    const gpu = await getGpu();
    await gpu.withPolicy({ grid: { maxX: 2 } }, async () => {
      await check("softmax", [5, 9]); // 5 rows on a 2x3 grid: one workgroup past the last row
      await check("log_softmax", [7, 300]);
    });
  });

  test("empty tensors, and non-f32 input fails at the call site", async () => {
    const gpu = await getGpu();
    for (const shape of [[0, 5], [3, 0]]) {
      using x = Tensor.zeros(gpu, shape);
      using y = softmax(x);
      expect(y.shape).toEqual(shape);
    }
    using i = Tensor.fromArray(gpu, [1, 2, 3], [3], { dtype: "i32" });
    expect(() => softmax(i)).toThrow("softmax: Tensor([3], i32) has dtype i32; ops support f32 only so far");
    expect(() => logSoftmax(i)).toThrow("log_softmax: Tensor([3], i32) has dtype i32");
  });

  test("50 forward + backward steps keep live buffers and bytes flat", async () => {
    const gpu = await getGpu();
    const r = rng(3);
    const x = upload(gpu, uniform(r, 3 * 300, -5, 5), [3, 300], true);
    const w = upload(gpu, uniform(r, 3 * 300), [3, 300]);
    const { start, end } = await expectFlatMemory(gpu, 50, () => {
      const loss = scope(() => softmax(x).mul(w).add(logSoftmax(x).mul(w)).sum());
      loss.backward();
      loss.release();
      x.zeroGrad();
    });
    expect(end.liveBuffers).toBe(start.liveBuffers);
    expect(end.liveBytes).toBe(start.liveBytes);
    x.release();
    w.release();
  });
});

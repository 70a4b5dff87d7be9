// Unary ops through the ops: forward against the float64 reference (test/reference/unary.ts), the gradient
// through autograd (for neg, mul_scalar and add_scalar an op on g, for the others the backward kernel) against its
// analytic derivative (checked here against central differences), every fresh tensor poisoned with NaN; pow's
// negative bases as PyTorch; methods and free functions. The kernels on every size class (one element, partial
// workgroups, vec4 units), pow of negative bases, the activations' tails and a 2-D workgroup grid are launcher
// rows: test/kernels/rows/unary.ts.
import { describe, expect, test } from "bun:test";
import { Tensor, unary, type UnaryOp } from "../../src/tensor/index.ts";
import { unaryAlphas, UNARY_OPS as OPS, UNARY_REF as REF, unaryBackward, unaryForward } from "../reference/unary.ts";
import { centralDiff, expectClose, getGpu, rng, seedOf, uniform, upload } from "./helpers.ts";

async function check(op: UnaryOp, shape: number[], alpha = 0, X?: Float64Array, atol = 1e-6): Promise<void> {
  const gpu = await getGpu();
  const what = `${op}(${alpha}) ${JSON.stringify(shape)}`;
  const r = rng(seedOf(what));
  const n = shape.reduce((a, b) => a * b, 1);
  X ??= uniform(r, n, REF[op].lo, REF[op].hi);
  const x = upload(gpu, X, shape, true);
  const y = unary(op, x, alpha);
  expect(y.shape).toEqual(shape);
  expectClose(`${what} forward`, await y.toArray(), unaryForward({ x: X }, { op, n, alpha }).out, { atol });
  const R = uniform(r, n);
  const Rt = upload(gpu, R, shape);
  y.backward(Rt);
  expectClose(`${what} grad`, await x.grad!.toArray(), unaryBackward({ x: X, gout: R }, { op, n, alpha }).dx, { atol });
  for (const t of [x, y, Rt]) t.release();
}

describe("unary ops", () => {
  for (const op of OPS)
    test(`${op}: forward and gradient through the op`, async () => {
      for (const a of unaryAlphas(op)) await check(op, [7, 13, 3], a);
    });

  test("pow of a negative base: integer exponents by parity, NaN otherwise (as PyTorch)", async () => {
    const gpu = await getGpu();
    const X = Float64Array.of(-2, -0.5, -3, 1.5, -1.25);
    await check("pow", [5], 3, X);
    using x = upload(gpu, X, [5]);
    using y = x.pow(0.5);
    const v = await y.toArray();
    expect([...v].map(Number.isNaN)).toEqual([true, true, true, false, true]);
  });

  test("methods and free functions agree; ops without saved inputs save nothing", async () => {
    const gpu = await getGpu();
    using x = Tensor.fromArray(gpu, [0.5, 1, 2], [3], { requiresGrad: true });
    using a = x.gelu("tanh");
    using b = unary("gelu_tanh", x);
    expect([...(await a.toArray())]).toEqual([...(await b.toArray())]);
    using n = x.neg();
    expect(n.gradFn!.savedCount).toBe(0);
    using e = x.exp();
    expect(e.gradFn!.savedCount).toBe(1);
    expect(() => x.mulScalar(Number.NaN)).toThrow("mul_scalar: the scalar must be finite, got NaN");
  });

  test("the float64 reference derivatives match central differences", () => {
    const r = rng(11);
    for (const op of OPS)
      for (const a of op === "pow" ? [2, 3, 0.5, -1.5, 2.5] : [0.75])
        for (let k = 0; k < 10; k++) {
          const { lo, hi } = REF[op];
          const v = Float64Array.of(lo + (hi - lo) * r());
          const o = { op, n: 1, alpha: a };
          const fd = centralDiff((p) => unaryForward({ x: p }, o).out[0]!, v);
          const d = unaryBackward({ x: v, gout: Float64Array.of(1) }, o).dx;
          expectClose(`${op}(${a}) d/dx at ${v[0]}`, d, [fd[0]!], { rtol: 1e-6, atol: 1e-9 });
        }
  });
});

// Unary ops through the ops: forward against the float64 reference (test/reference/unary.ts), the gradient
// through autograd (for neg, mul_scalar and add_scalar an op on g, for the others the backward kernel) against its
// analytic derivative (checked here against central differences), every fresh tensor poisoned with NaN; pow's
// negative bases as PyTorch; methods and free functions. The kernels on every size class (one element, partial
// workgroups, vec4 units), pow of negative bases, the activations' tails and a 2-D workgroup grid are launcher
// rows: test/kernels/rows/unary.ts.
// glu (the fused gated unit act(gate) ⊙ up): forward, dgate and dup through autograd against the float64 reference for
// every activation on sizes that are and are not vec4 units and span several workgroups; only one input needing
// a gradient; the same values as the unfused mul(act(gate), up); call-site errors.
import { describe, expect, test } from "bun:test";
import { gelu, glu, GLU_ACTS, mul, silu, Tensor, unary, type GluAct, type UnaryOp } from "../../src/tensor/index.ts";
import { gluBackward, gluForward, unaryAlphas, UNARY_OPS as OPS, UNARY_REF as REF, unaryBackward, unaryForward } from "../reference/unary.ts";
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

async function checkGlu(act: GluAct, shape: number[], needs: [boolean, boolean] = [true, true]): Promise<void> {
  const gpu = await getGpu();
  const what = `glu ${act} ${JSON.stringify(shape)} needs ${needs}`;
  const r = rng(seedOf(what));
  const n = shape.reduce((a, b) => a * b, 1);
  const G = uniform(r, n, REF[act].lo, REF[act].hi);
  const U = uniform(r, n, -2, 2);
  const gate = upload(gpu, G, shape, needs[0]);
  const up = upload(gpu, U, shape, needs[1]);
  const y = glu(gate, up, act);
  expect(y.shape).toEqual(shape);
  expectClose(`${what} forward`, await y.toArray(), gluForward({ gate: G, up: U }, { act, n }).out);
  const R = uniform(r, n);
  const Rt = upload(gpu, R, shape);
  y.backward(Rt);
  const ref = gluBackward({ gate: G, up: U, gout: R }, { act, n });
  if (needs[0]) expectClose(`${what} dgate`, await gate.grad!.toArray(), ref.dgate);
  else expect(gate.grad).toBeNull();
  if (needs[1]) expectClose(`${what} dup`, await up.grad!.toArray(), ref.dup);
  else expect(up.grad).toBeNull();
  for (const t of [gate, up, y, Rt]) t.release();
}

describe("glu", () => {
  for (const act of GLU_ACTS)
    test(`${act}: forward, dgate and dup through the op (f32 and vec4 units, several workgroups)`, async () => {
      for (const shape of [[7, 13, 3], [4, 75], [3, 701], [8, 256], [1]]) await checkGlu(act, shape);
    });

  test("only one input needing a gradient", async () => {
    await checkGlu("silu", [5, 17], [true, false]);
    await checkGlu("gelu", [5, 16], [false, true]);
  });

  test("the same values as mul(act(gate), up), forward and both gradients", async () => {
    const gpu = await getGpu();
    const r = rng(7);
    const acts: [GluAct, (t: Tensor) => Tensor][] = [["silu", silu], ["gelu", (t) => gelu(t)], ["gelu_tanh", (t) => gelu(t, "tanh")]];
    for (const [act, f] of acts) {
      const G = uniform(r, 300, -5, 5);
      const U = uniform(r, 300, -2, 2);
      const R = uniform(r, 300);
      const run = async (fused: boolean) => {
        using gate = upload(gpu, G, [300], true);
        using up = upload(gpu, U, [300], true);
        using gy = upload(gpu, R, [300]);
        using y = fused ? glu(gate, up, act) : mul(f(gate), up);
        y.backward(gy);
        return [await y.toArray(), await gate.grad!.toArray(), await up.grad!.toArray()];
      };
      const [a, b] = [await run(true), await run(false)];
      for (let k = 0; k < 3; k++) expectClose(`${act} fused vs unfused ${["out", "dgate", "dup"][k]}`, a[k]!, b[k]!, { rtol: 1e-6, atol: 1e-7 });
    }
  });

  test("the float64 reference gradients match central differences", () => {
    const r = rng(12);
    for (const act of GLU_ACTS) {
      const [G, U, R] = [uniform(r, 6, REF[act].lo, REF[act].hi), uniform(r, 6, -2, 2), uniform(r, 6)];
      const loss = (g: Float64Array, u: Float64Array) => gluForward({ gate: g, up: u }, { act, n: 6 }).out.reduce((s, v, i) => s + v * R[i]!, 0);
      const ref = gluBackward({ gate: G, up: U, gout: R }, { act, n: 6 });
      expectClose(`${act} dgate`, ref.dgate, centralDiff((g) => loss(g, U), G), { rtol: 1e-6, atol: 1e-8 });
      expectClose(`${act} dup`, ref.dup, centralDiff((u) => loss(G, u), U), { rtol: 1e-6, atol: 1e-8 });
    }
  });

  test("call-site errors", async () => {
    const gpu = await getGpu();
    using a = Tensor.zeros(gpu, [2, 3]);
    using b = Tensor.zeros(gpu, [3, 2]);
    expect(() => glu(a, b, "silu")).toThrow("glu: gate [2, 3] and up [3, 2] must have the same shape");
    expect(() => glu(a, a, "relu" as GluAct)).toThrow("glu: the activation must be one of silu, gelu, gelu_tanh, got relu");
  });
});

// Unary ops: forward against float64 references, gradient against float64 analytic derivatives (which are
// themselves checked against central differences), on odd sizes with every fresh tensor poisoned with NaN.
import { describe, expect, test } from "bun:test";
import { Tensor, unary, type UnaryOp } from "../../src/tensor/index.ts";
import { centralDiff, expectClose, getGpu, rng, seedOf, uniform, upload } from "./helpers.ts";

type F1 = (x: number, a: number) => number;

// float64 references. erf: its Taylor series for |z| < 2; erfc: a continued fraction beyond, which keeps
// full relative precision in the tails (where 1 - erf(z) would cancel).
function erf(z: number): number {
  let term = z;
  let sum = z;
  for (let n = 1; n < 200 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
    term *= (-z * z) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
function erfc(z: number): number {
  if (z < 0) return 2 - erfc(-z);
  if (z < 2) return 1 - erf(z);
  let t = z; // erfc(z) = exp(-z^2) / sqrt(pi) / (z + (1/2) / (z + 1 / (z + (3/2) / (z + ...))))
  for (let n = 300; n >= 1; n--) t = z + n / 2 / t;
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / t;
}
const sig = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));
const Phi = (x: number) => 0.5 * erfc(-x / Math.SQRT2);
const phi = (x: number) => Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
const K = Math.sqrt(2 / Math.PI);
const u = (x: number) => K * (x + 0.044715 * x ** 3);

/** Per op: float64 forward, derivative, and the input range tested. */
const REF: Record<UnaryOp, { f: F1; d: F1; lo: number; hi: number }> = {
  neg: { f: (x) => -x, d: () => -1, lo: -3, hi: 3 },
  exp: { f: (x) => Math.exp(x), d: (x) => Math.exp(x), lo: -5, hi: 5 },
  log: { f: (x) => Math.log(x), d: (x) => 1 / x, lo: 0.05, hi: 5 },
  sqrt: { f: (x) => Math.sqrt(x), d: (x) => 0.5 / Math.sqrt(x), lo: 0.05, hi: 5 },
  rsqrt: { f: (x) => 1 / Math.sqrt(x), d: (x) => -0.5 * x ** -1.5, lo: 0.05, hi: 5 },
  tanh: { f: (x) => Math.tanh(x), d: (x) => 1 / Math.cosh(x) ** 2, lo: -6, hi: 6 },
  sigmoid: { f: sig, d: (x) => sig(x) * sig(-x), lo: -12, hi: 12 },
  silu: { f: (x) => x * sig(x), d: (x) => sig(x) * (1 + x * sig(-x)), lo: -12, hi: 12 },
  gelu: { f: (x) => x * Phi(x), d: (x) => Phi(x) + x * phi(x), lo: -5, hi: 5 },
  gelu_tanh: {
    // 0.5 * (1 + tanh(u)) written as sigmoid(2u), exact in the tails
    f: (x) => x * sig(2 * u(x)),
    d: (x) => sig(2 * u(x)) + (0.5 * x * K * (1 + 3 * 0.044715 * x * x)) / Math.cosh(u(x)) ** 2,
    lo: -5,
    hi: 5,
  },
  pow: { f: (x, e) => x ** e, d: (x, e) => e * x ** (e - 1), lo: 0.1, hi: 3 },
  mul_scalar: { f: (x, s) => x * s, d: (_, s) => s, lo: -3, hi: 3 },
  add_scalar: { f: (x, s) => x + s, d: () => 1, lo: -3, hi: 3 },
};
const OPS = Object.keys(REF) as UnaryOp[];

async function check(op: UnaryOp, shape: number[], alpha = 0, X?: Float64Array, atol = 1e-6): Promise<void> {
  const gpu = await getGpu();
  const what = `${op}(${alpha}) ${JSON.stringify(shape)}`;
  const r = rng(seedOf(what));
  const n = shape.reduce((a, b) => a * b, 1);
  const { f, d, lo, hi } = REF[op];
  X ??= uniform(r, n, lo, hi);
  const x = upload(gpu, X, shape, true);
  const y = unary(op, x, alpha);
  expect(y.shape).toEqual(shape);
  const ref = X.map((v) => f(v, alpha));
  expectClose(`${what} forward`, await y.toArray(), ref, { atol });
  const R = uniform(r, n);
  const Rt = upload(gpu, R, shape);
  y.backward(Rt);
  const gref = X.map((v, i) => R[i]! * d(v, alpha));
  expectClose(`${what} grad`, await x.grad!.toArray(), gref, { atol });
  for (const t of [x, y, Rt]) t.release();
}

describe("unary ops", () => {
  for (const op of OPS) {
    const alphas = op === "pow" ? [2, 3, 0.5, -1.5, 2.5, 1, 0] : op === "mul_scalar" ? [-2.5, 0.125] : op === "add_scalar" ? [3.25] : [0];
    test(`${op}: forward and gradient on odd and vec4-sized shapes`, async () => {
      for (const a of alphas) {
        await check(op, [1], a);
        await check(op, [301], a); // two workgroups, the last partial
        await check(op, [7, 13, 3], a);
        await check(op, [4, 75], a); // 300 elements: the vec4 kernels, 75 vec4s
      }
    });
  }

  test("pow of a negative base: integer exponents by parity, NaN otherwise (as PyTorch)", async () => {
    const gpu = await getGpu();
    const X = Float64Array.of(-2, -0.5, -3, 1.5, -1.25);
    await check("pow", [5], 3, X);
    await check("pow", [5], 2, X);
    await check("pow", [5], -2, X);
    using x = upload(gpu, X, [5]);
    using y = x.pow(0.5);
    const v = await y.toArray();
    expect([...v].map(Number.isNaN)).toEqual([true, true, true, false, true]);
  });

  test("activations stay finite and relatively accurate in the tails (no exp overflow, no 1 - 1 cancellation)", async () => {
    // atol 1e-30: relative 1e-4 only, down to values like sigmoid(-60) = 8.7e-27
    const X = Float64Array.of(-60, -30, -9, -0.3, -1e-3, 1e-5, 0, 2e-3, 0.2, 9, 30, 60);
    for (const op of ["tanh", "sigmoid", "silu", "exp"] as const) await check(op, [X.length], 0, X, 1e-30);
    const G = Float64Array.of(-9, -5, -4.5, -3, -1e-3, 0, 1e-4, 3, 4.5, 5, 9);
    await check("gelu", [G.length], 0, G, 1e-30);
    await check("gelu_tanh", [G.length], 0, G, 1e-30);
  });

  test("a 2-D grid of workgroups (x capped at 2) covers every element", async () => {
    const gpu = await getGpu();
    await gpu.withPolicy({ grid: { maxX: 2 } }, async () => {
      await check("silu", [1000]);
    });
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
          const { f, d, lo, hi } = REF[op];
          const v = Float64Array.of(lo + (hi - lo) * r());
          const fd = centralDiff((p) => f(p[0]!, a), v);
          expectClose(`${op}(${a}) d/dx at ${v[0]}`, [d(v[0]!, a)], [fd[0]!], { rtol: 1e-6, atol: 1e-9 });
        }
  });
});

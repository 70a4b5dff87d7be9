/**
 * float64 reference of src/kernels/unary.ts: elementwise unary ops over n elements.
 *
 *   unaryForward({ x }, { op, n, alpha })        → { out }   out[i] = f(x[i]; alpha)
 *   unaryBackward({ x, gout }, { op, n, alpha }) → { dx }    dx[i] = g[i] · f'(x[i]; alpha)
 *
 * The math (α = alpha; σ the logistic sigmoid; Φ, φ the standard normal CDF and density; u(x) = √(2/π)(x + 0.044715x³)):
 *   neg −x (−1) · exp eˣ (eˣ) · log ln x (1/x) · sqrt √x (1/(2√x)) · rsqrt 1/√x (−x^−1.5/2) · tanh (1 − tanh²)
 *   sigmoid σ(x) (σ(x)σ(−x)) · silu xσ(x) (σ(x)(1 + xσ(−x))) · gelu xΦ(x) (Φ(x) + xφ(x))
 *   gelu_tanh x·σ(2u) = x(1 + tanh u)/2 (σ(2u) + x·u'(x)/(2cosh²u)) · pow x^α (αx^(α−1); a negative base gives
 *   NaN unless α is an integer; α = 0: 1 and derivative 0 for every x, NaN included, as torch) · mul_scalar αx (α)
 *   · add_scalar x + α (1). Otherwise a NaN x gives NaN (plain float64 arithmetic), as in torch.
 * Written to keep relative precision in the tails: σ without overflow, erfc by a continued fraction beyond 2
 * (where 1 − erf would cancel), gelu_tanh's 0.5(1 + tanh u) as σ(2u). unaryBackward also answers for neg,
 * mul_scalar and add_scalar, whose gradient the op computes from g alone (the launcher has no kernel for them).
 * UNARY_REF's derivatives are checked against central differences in test/tensor/unary.test.ts.
 *
 *   gluForward({ gate, up }, { act, n })        → { out }         out = f(gate)·up
 *   gluBackward({ gate, up, gout }, { act, n }) → { dgate, dup }  dgate = g·up·f'(gate), dup = g·f(gate)
 * (act silu, gelu or gelu_tanh: UNARY_REF's f and d), for the fused gated unit of src/kernels/unary.ts.
 */
import type { GluAct, UnaryOp } from "../../src/kernels/unary.ts";

type F1 = (x: number, alpha: number) => number;

/** erf(z): its Taylor series (|z| < 2 is all it is used for). */
export function erf(z: number): number {
  let term = z;
  let sum = z;
  for (let n = 1; n < 200 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
    term *= (-z * z) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

/** erfc(z) = 1 − erf(z), with full relative precision in the tails (a continued fraction for z >= 2). */
export function erfc(z: number): number {
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

/** Per op: forward f(x; alpha), derivative d(x; alpha), and the input range [lo, hi) where tests draw x. */
export const UNARY_REF: Record<UnaryOp, { f: F1; d: F1; lo: number; hi: number }> = {
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
    f: (x) => x * sig(2 * u(x)),
    d: (x) => sig(2 * u(x)) + (0.5 * x * K * (1 + 3 * 0.044715 * x * x)) / Math.cosh(u(x)) ** 2,
    lo: -5,
    hi: 5,
  },
  pow: { f: (x, e) => x ** e, d: (x, e) => (e === 0 ? 0 : e * x ** (e - 1)), lo: 0.1, hi: 3 }, // exponent 0: 0 even for NaN x (torch's pow_backward)
  mul_scalar: { f: (x, s) => x * s, d: (_, s) => s, lo: -3, hi: 3 },
  add_scalar: { f: (x, s) => x + s, d: () => 1, lo: -3, hi: 3 },
};

export const UNARY_OPS = Object.keys(UNARY_REF) as UnaryOp[];

/** The alphas each op is tested with (pow: integer, fractional, negative, 1 and 0 exponents; 0 where there is none). */
export function unaryAlphas(op: UnaryOp): readonly number[] {
  return op === "pow" ? [2, 3, 0.5, -1.5, 2.5, 1, 0] : op === "mul_scalar" ? [-2.5, 0.125] : op === "add_scalar" ? [3.25] : [0];
}

/** out = f(x) over n elements. */
export function unaryForward(io: { x: Float64Array }, o: { op: UnaryOp; n: number; alpha: number }): { out: Float64Array } {
  const f = UNARY_REF[o.op].f;
  const out = new Float64Array(o.n);
  for (let i = 0; i < o.n; i++) out[i] = f(io.x[i]!, o.alpha);
  return { out };
}

/** dx = g · f'(x) over n elements. */
export function unaryBackward(io: { x: Float64Array; gout: Float64Array }, o: { op: UnaryOp; n: number; alpha: number }): { dx: Float64Array } {
  const d = UNARY_REF[o.op].d;
  const dx = new Float64Array(o.n);
  for (let i = 0; i < o.n; i++) dx[i] = io.gout[i]! * d(io.x[i]!, o.alpha);
  return { dx };
}

/** out = f(gate) · up over n elements. */
export function gluForward(io: { gate: Float64Array; up: Float64Array }, o: { act: GluAct; n: number }): { out: Float64Array } {
  const f = UNARY_REF[o.act].f;
  const out = new Float64Array(o.n);
  for (let i = 0; i < o.n; i++) out[i] = f(io.gate[i]!, 0) * io.up[i]!;
  return { out };
}

/** dgate = g · up · f'(gate), dup = g · f(gate) over n elements. */
export function gluBackward(io: { gate: Float64Array; up: Float64Array; gout: Float64Array }, o: { act: GluAct; n: number }): { dgate: Float64Array; dup: Float64Array } {
  const { f, d } = UNARY_REF[o.act];
  const dgate = new Float64Array(o.n);
  const dup = new Float64Array(o.n);
  for (let i = 0; i < o.n; i++) {
    dgate[i] = io.gout[i]! * io.up[i]! * d(io.gate[i]!, 0);
    dup[i] = io.gout[i]! * f(io.gate[i]!, 0);
  }
  return { dgate, dup };
}

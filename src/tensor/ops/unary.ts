/**
 * Elementwise unary ops. Kernels: kernels/unary.wgsl (expressions use its accurate helpers).
 *
 * Each op is one row of UNARY_OPS: the forward expression in x (and the scalar `p.alpha`), and either the
 * gradient expression in g and x (the node saves x) or, for ops whose gradient is itself an op on g alone
 * (neg, mul_scalar, add_scalar), a rule that needs nothing saved.
 *
 * Activations: `silu` is HF LLaMA's `hidden_act: "silu"`; `gelu` is PyTorch's default exact, erf-based GELU
 * (nn.GELU(), F.gelu(x)); `gelu(x, "tanh")` is the tanh approximation (F.gelu(x, approximate="tanh")).
 */
import unarySrc from "../../../kernels/unary.wgsl" with { type: "text" };
import { defineKernel, elementwise, type PooledBuffer } from "../../gpu/index.ts";
import { attach } from "../autograd.ts";
import { TensorError } from "../shape.ts";
import { checkOperands, Tensor } from "../tensor.ts";

export const UNARY = defineKernel("kernels/unary.wgsl", unarySrc);

interface UnaryDef {
  f: string;
  /** Gradient in g and x; absent when the op's gradient is computed by `rule` from g alone. */
  d?: string;
  rule?: (g: Tensor, alpha: number) => Tensor;
}

export const UNARY_OPS = {
  neg: { f: "-x", rule: (g) => neg(g) },
  exp: { f: "exp(x)", d: "g * exp(x)" },
  log: { f: "log(x)", d: "g / x" },
  sqrt: { f: "sqrt(x)", d: "g * 0.5 / sqrt(x)" },
  rsqrt: { f: "inverseSqrt(x)", d: "-0.5 * g * inverseSqrt(x) / x" },
  tanh: { f: "tanh_stable(x)", d: "g * d_tanh(x)" },
  sigmoid: { f: "sigmoid(x)", d: "g * d_sigmoid(x)" },
  silu: { f: "silu(x)", d: "g * d_silu(x)" },
  gelu: { f: "gelu(x)", d: "g * d_gelu(x)" },
  gelu_tanh: { f: "gelu_tanh(x)", d: "g * d_gelu_tanh(x)" },
  pow: { f: "powf(x, p.alpha)", d: "g * d_pow(x, p.alpha)" },
  mul_scalar: { f: "x * p.alpha", rule: (g, s) => mulScalar(g, s) },
  add_scalar: { f: "x + p.alpha", rule: (g) => g.detach() },
} satisfies Record<string, UnaryDef>;

export type UnaryOp = keyof typeof UNARY_OPS;

function launch(entry: "unary" | "unary_grad", name: string, expr: string, alpha: number, x: Tensor, out: Tensor, g?: Tensor): void {
  if (out.size === 0) return;
  const e = elementwise(x.gpu, out.size);
  const bindings: Record<string, PooledBuffer> = { x_in: x.buffer, out: out.buffer };
  if (g) bindings.gout = g.buffer;
  x.gpu.dispatch(UNARY, entry, bindings, e.workgroups, {
    params: { n: e.units, row: e.row, alpha },
    defines: { ...(entry === "unary" ? { F: expr, D: "0.0" } : { F: "0.0", D: expr }), ...e.defines },
    name,
  });
}

export function unary(op: UnaryOp, x: Tensor, alpha = 0): Tensor {
  const gpu = checkOperands(op, x);
  if (!Number.isFinite(alpha)) throw new TensorError(`${op}: the scalar must be finite, got ${alpha}`);
  const def: UnaryDef = UNARY_OPS[op];
  const out = Tensor.empty(gpu, x.shape);
  launch("unary", op, def.f, alpha, x, out);
  return attach(out, {
    op,
    inputs: [x],
    save: () => [def.d ? x : null],
    backward: (g, [sx]) => {
      if (def.rule) return [def.rule(g, alpha)];
      const dx = Tensor.empty(g.gpu, g.shape);
      launch("unary_grad", `${op}.backward`, def.d!, alpha, sx!, dx, g);
      return [dx];
    },
  });
}

export const neg = (x: Tensor): Tensor => unary("neg", x);
export const exp = (x: Tensor): Tensor => unary("exp", x);
export const log = (x: Tensor): Tensor => unary("log", x);
export const sqrt = (x: Tensor): Tensor => unary("sqrt", x);
/** 1 / sqrt(x). */
export const rsqrt = (x: Tensor): Tensor => unary("rsqrt", x);
export const tanh = (x: Tensor): Tensor => unary("tanh", x);
export const sigmoid = (x: Tensor): Tensor => unary("sigmoid", x);
/** x * sigmoid(x) (HF LLaMA's MLP activation). */
export const silu = (x: Tensor): Tensor => unary("silu", x);
/** GELU: exact erf form by default (PyTorch's default); "tanh" for the tanh approximation. */
export const gelu = (x: Tensor, approximate: "none" | "tanh" = "none"): Tensor => unary(approximate === "tanh" ? "gelu_tanh" : "gelu", x);
/** x ** e for a scalar e (a negative x gives NaN unless e is an integer, as in PyTorch). */
export const pow = (x: Tensor, e: number): Tensor => unary("pow", x, e);
/** x * s for a scalar s. */
export const mulScalar = (x: Tensor, s: number): Tensor => unary("mul_scalar", x, s);
/** x + s for a scalar s. */
export const addScalar = (x: Tensor, s: number): Tensor => unary("add_scalar", x, s);

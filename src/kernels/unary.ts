/**
 * Launchers of kernels/unary.wgsl: elementwise unary ops over n contiguous f32 elements, in vec4 units when
 * n % 4 == 0 (src/gpu/grid.ts `elementwise`). Each op is one row of UNARY_OPS: its forward expression f in x
 * (and the scalar alpha, `p.alpha`), and, for ops whose gradient needs x, the gradient expression d in g and x
 * (the expressions use unary.wgsl's accurate helpers).
 *
 *   unaryForward(gpu, { x, out }, { op, n, alpha })        out[i] = f(x[i]; alpha)
 *   unaryBackward(gpu, { x, gout, dx }, { op, n, alpha })  dx[i] = g[i] · ∂f/∂x (x[i]; alpha) = d(g = gout[i], x[i])
 *
 * neg, mul_scalar and add_scalar have no d: their gradient is an op on g alone (src/tensor/ops/unary.ts).
 * Activations: `silu` is HF LLaMA's `hidden_act: "silu"`; `gelu` is PyTorch's exact erf-based GELU;
 * `gelu_tanh` is F.gelu(x, approximate="tanh").
 *
 * The gated unit of the LLaMA MLP, act(gate) ⊙ up, for act one of GLU_ACTS (its f and d rows above, so the math
 * is written once): one dispatch forward, one backward writing both gradients.
 *   gluForward(gpu, { gate, up, out }, { act, n })                 out[i] = f(gate[i]) · up[i]
 *   gluBackward(gpu, { gate, up, gout, dgate, dup }, { act, n })   dgate[i] = d(g = gout[i] · up[i], gate[i]),
 *                                                                  dup[i] = gout[i] · f(gate[i])
 */
import unarySrc from "../../kernels/unary.wgsl" with { type: "text" };
import { defineKernel, elementwise, GpuError, type Binding, type Gpu } from "../gpu/index.ts";

export const UNARY = defineKernel("kernels/unary.wgsl", unarySrc);

interface UnaryExpr {
  /** Forward, in x and p.alpha. */
  f: string;
  /** Gradient in g and x (and p.alpha); absent when the op's gradient is an op on g alone. */
  d?: string;
}

export const UNARY_OPS = {
  neg: { f: "-x" },
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
  mul_scalar: { f: "x * p.alpha" },
  add_scalar: { f: "x + p.alpha" },
} satisfies Record<string, UnaryExpr>;

export type UnaryOp = keyof typeof UNARY_OPS;

/** Whether `unaryBackward` computes this op's gradient (it reads x); false for neg, mul_scalar, add_scalar. */
export const unaryHasGradKernel = (op: UnaryOp): boolean => (UNARY_OPS[op] as UnaryExpr).d !== undefined;

/** out = f(x) over n elements. */
export function unaryForward(gpu: Gpu, io: { x: Binding; out: Binding }, o: { op: UnaryOp; n: number; alpha: number }): void {
  launch(gpu, "unary", o.op, { F: UNARY_OPS[o.op].f, D: "0.0" }, o, { x_in: io.x, out: io.out });
}

/** dx = g · f'(x) over n elements (ops with a gradient expression only). */
export function unaryBackward(gpu: Gpu, io: { x: Binding; gout: Binding; dx: Binding }, o: { op: UnaryOp; n: number; alpha: number }): void {
  const d = (UNARY_OPS[o.op] as UnaryExpr).d;
  if (d === undefined) throw new GpuError(`unaryBackward: '${o.op}' has no gradient kernel (its gradient is an op on g)`);
  launch(gpu, "unary_grad", `${o.op}.backward`, { F: "0.0", D: d }, o, { x_in: io.x, out: io.dx, gout: io.gout });
}

/** The activations glu gates with: the unary ops whose f and d glu's kernels reuse. */
export const GLU_ACTS = ["silu", "gelu", "gelu_tanh"] as const;
export type GluAct = (typeof GLU_ACTS)[number];

/** out = act(gate) · up over n elements. */
export function gluForward(gpu: Gpu, io: { gate: Binding; up: Binding; out: Binding }, o: { act: GluAct; n: number }): void {
  launch(gpu, "glu", `glu.${o.act}`, { F: UNARY_OPS[o.act].f, D: "0.0" }, { n: o.n, alpha: 0 }, { x_in: io.gate, up_in: io.up, out: io.out });
}

/** dgate = gout · up · act'(gate) and dup = gout · act(gate) over n elements, in one dispatch. */
export function gluBackward(
  gpu: Gpu,
  io: { gate: Binding; up: Binding; gout: Binding; dgate: Binding; dup: Binding },
  o: { act: GluAct; n: number },
): void {
  const a = UNARY_OPS[o.act];
  launch(gpu, "glu_grad", `glu.${o.act}.backward`, { F: a.f, D: a.d }, { n: o.n, alpha: 0 }, {
    x_in: io.gate,
    up_in: io.up,
    gout: io.gout,
    out: io.dgate,
    dup: io.dup,
  });
}

function launch(gpu: Gpu, entry: "unary" | "unary_grad" | "glu" | "glu_grad", name: string, expr: { F: string; D: string }, o: { n: number; alpha: number }, bindings: Record<string, Binding>): void {
  if (o.n === 0) return;
  const e = elementwise(gpu, o.n);
  gpu.dispatch(UNARY, entry, bindings, e.workgroups, {
    params: { n: e.units, row: e.row, alpha: o.alpha },
    defines: { ...expr, ...e.defines },
    name,
  });
}

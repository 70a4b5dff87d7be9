/**
 * Elementwise unary ops: the call-site checks and the autograd rules. Launchers: src/kernels/unary.ts (the
 * forward and gradient expressions of every op, kernels/unary.wgsl).
 *
 * Ops whose gradient is itself an op on g alone (neg, mul_scalar, add_scalar) have a rule in GRAD_RULES and
 * save nothing; every other op saves x and runs the launcher's gradient kernel.
 *
 * Activations: `silu` is HF LLaMA's `hidden_act: "silu"`; `gelu` is PyTorch's default exact, erf-based GELU
 * (nn.GELU(), F.gelu(x)); `gelu(x, "tanh")` is the tanh approximation (F.gelu(x, approximate="tanh")).
 *
 * glu(gate, up, act) = act(gate) ⊙ up, the LLaMA-family MLP's gated unit (src/nn/llama.ts decoderLayer), fused:
 * one dispatch forward and one backward writing dgate and dup (gluForward / gluBackward), the same values as
 * mul(act(gate), up) through autograd, which takes two and three. It saves gate and up (not act(gate)).
 */
import { gluBackward, gluForward, unaryBackward, unaryForward, GLU_ACTS, type GluAct, type UnaryOp } from "../../kernels/unary.ts";
import { attach } from "../autograd.ts";
import { fmtShape, sameShape, TensorError } from "../shape.ts";
import { checkOperands, Tensor } from "../tensor.ts";

export { GLU_ACTS, UNARY_OPS, type GluAct, type UnaryOp } from "../../kernels/unary.ts";

/** Gradients that are an op on g alone (the launcher has no gradient kernel for these). */
const GRAD_RULES: { [K in UnaryOp]?: (g: Tensor, alpha: number) => Tensor } = {
  neg: (g) => neg(g),
  mul_scalar: (g, s) => mulScalar(g, s),
  add_scalar: (g) => g.detach(),
};

export function unary(op: UnaryOp, x: Tensor, alpha = 0): Tensor {
  const gpu = checkOperands(op, x);
  if (!Number.isFinite(alpha)) throw new TensorError(`${op}: the scalar must be finite, got ${alpha}`);
  const out = Tensor.empty(gpu, x.shape);
  unaryForward(gpu, { x: x.buffer, out: out.buffer }, { op, n: out.size, alpha });
  const rule = GRAD_RULES[op];
  return attach(out, {
    op,
    inputs: [x],
    save: () => [rule ? null : x],
    backward: (g, [sx]) => {
      if (rule) return [rule(g, alpha)];
      const dx = Tensor.empty(g.gpu, g.shape);
      unaryBackward(g.gpu, { x: sx!.buffer, gout: g.buffer, dx: dx.buffer }, { op, n: dx.size, alpha });
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

/** act(gate) ⊙ up (same shapes, no broadcasting) for act silu, gelu (erf) or gelu_tanh (HF's gelu_pytorch_tanh). */
export function glu(gate: Tensor, up: Tensor, act: GluAct): Tensor {
  const gpu = checkOperands("glu", gate, up);
  if (!GLU_ACTS.includes(act)) throw new TensorError(`glu: the activation must be one of ${GLU_ACTS.join(", ")}, got ${String(act)}`);
  if (!sameShape(gate.shape, up.shape)) throw new TensorError(`glu: gate ${fmtShape(gate.shape)} and up ${fmtShape(up.shape)} must have the same shape`);
  const out = Tensor.empty(gpu, gate.shape);
  gluForward(gpu, { gate: gate.buffer, up: up.buffer, out: out.buffer }, { act, n: out.size });
  return attach(out, {
    op: `glu.${act}`,
    inputs: [gate, up],
    save: () => [gate, up],
    backward: (g, [sg, su], needs) => {
      // One kernel writes both gradients; an unneeded one is computed into a temporary and dropped.
      const dgate = Tensor.empty(g.gpu, g.shape);
      const dup = Tensor.empty(g.gpu, g.shape);
      gluBackward(g.gpu, { gate: sg!.buffer, up: su!.buffer, gout: g.buffer, dgate: dgate.buffer, dup: dup.buffer }, { act, n: g.size });
      if (!needs[0]) dgate.release();
      if (!needs[1]) dup.release();
      return [needs[0] ? dgate : null, needs[1] ? dup : null];
    },
  });
}

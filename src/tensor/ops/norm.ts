/**
 * Normalization over the last dimension, fused. Launchers: src/kernels/norm.ts.
 *
 *   rmsnorm(x, w, { eps })                      HF LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * w, in f32
 *   rmsnorm(x, w, { eps, addUnitOffset: true })  Gemma's RMSNorm: the weight applied as (1 + w)
 *   layernorm(x, w, b, eps)                     torch.nn.LayerNorm over the last dimension (b may be null)
 *
 *   addRmsnorm(x, r, w, opts) → { sum, out }      sum = x + r, out = rmsnorm(sum, w, opts): a residual add feeding
 *                                               a RMSNorm (src/nn/llama.ts decoderLayer), one forward dispatch
 *
 * Forward computes each row's statistic in-kernel and keeps (mean, rstd) per row for backward (mean = 0 for
 * RMSNorm), so backward never recomputes a reduction over x. Backward: dx in one pass; dweight (and dbias) as
 * deterministic per-column sums over rows (normParamGrads).
 *
 * addRmsnorm's backward: the autograd engine (src/tensor/autograd.ts) gives each Node one output and one incoming
 * gradient, the sum of what every consumer sent it. sum and out each need their own incoming gradient (d sum_total =
 * g_sum + rmsnorm_dx(g_out)), and two outputs cannot share a Node without the engine adding their gradients, which
 * is wrong math. So the fused forward records the two Nodes the unfused ops would: sum's ("add_rmsnorm.sum": the
 * add's rule, g passed on to x and r as views, no kernel) and out's (the rmsnorm rule, reading sum). The gradients
 * are exactly the unfused ones. Where sum's gradients meet, no separate pass is needed when g_sum arrives first: the
 * engine offers the norm's rule the gradient its input already has (`acc`, src/tensor/autograd.ts) and the dx kernel
 * adds into it (normDx `accumulate`). In the LLaMA layer (src/nn/llama.ts) it does arrive first: the next add's
 * rule runs before the MLP/attention branch that leads back to this norm, and once that branch's first Node (the
 * down/o projection, which got the other view of g) has run, the view the engine holds is its own.
 *
 * Every norm's dx accumulates that way when offered (rmsnorm and layernorm, any input); dweight and dbias do not.
 */
import { addRmsnormForward, normDx, normForward, normParamGrads, type NormKind, type NormOptions } from "../../kernels/norm.ts";
import { attach } from "../autograd.ts";
import { fmtShape, sameShape, TensorError } from "../shape.ts";
import { checkOperands, Tensor } from "../tensor.ts";

export interface RmsNormOptions {
  /** Added to mean(x^2) before the rsqrt; LLaMA's rms_norm_eps. Default 1e-6. */
  eps?: number;
  /** Gemma: apply the weight as (1 + w). Default false (LLaMA). */
  addUnitOffset?: boolean;
}

/** RMSNorm over the last dimension of x; weight is [D]. */
export function rmsnorm(x: Tensor, weight: Tensor, opts: RmsNormOptions = {}): Tensor {
  return norm("rmsnorm", opts.addUnitOffset ?? false, x, weight, null, opts.eps ?? 1e-6);
}

/** LayerNorm over the last dimension of x (torch.nn.LayerNorm(D)); weight and bias are [D], bias may be null. */
export function layernorm(x: Tensor, weight: Tensor, bias: Tensor | null = null, eps = 1e-5): Tensor {
  return norm("layernorm", false, x, weight, bias, eps);
}

/**
 * sum = x + r (same shapes) and out = rmsnorm(sum, weight, opts), the forward in one dispatch; the gradients are
 * those of add then rmsnorm (see the module comment for why backward is not fused too).
 */
export function addRmsnorm(x: Tensor, r: Tensor, weight: Tensor, opts: RmsNormOptions = {}): { sum: Tensor; out: Tensor } {
  const op = "addRmsnorm";
  const gpu = checkOperands(op, x, r, weight);
  if (!sameShape(x.shape, r.shape)) throw new TensorError(`${op}: x ${fmtShape(x.shape)} and r ${fmtShape(r.shape)} must have the same shape`);
  const o = normOptions(op, "rmsnorm", opts.addUnitOffset ?? false, x, weight, null, opts.eps ?? 1e-6);
  const sum = Tensor.empty(gpu, x.shape);
  const y = Tensor.empty(gpu, x.shape);
  const stats = Tensor.empty(gpu, [o.rows, 2]);
  addRmsnormForward(gpu, { x: x.buffer, res: r.buffer, w: weight.buffer, sum: sum.buffer, y: y.buffer, stats: stats.buffer }, o);
  attach(sum, { op: "add_rmsnorm.sum", inputs: [x, r], backward: (g, _, needs) => needs.map((n) => (n ? g.detach() : null)) });
  return { sum, out: recordNorm("rmsnorm", y, sum, weight, null, stats, o) };
}

/** The shape and option checks of every norm op, and the launchers' options. */
function normOptions(op: string, kind: NormKind, unitOffset: boolean, x: Tensor, w: Tensor, b: Tensor | null, eps: number): NormOptions {
  if (x.rank === 0) throw new TensorError(`${op}: x must have at least one dimension, got ${x}`);
  const d = x.shape[x.rank - 1]!;
  if (d === 0) throw new TensorError(`${op}: cannot normalize over an empty last dimension (x ${fmtShape(x.shape)})`);
  for (const [name, t] of [["weight", w], ["bias", b]] as const)
    if (t && (t.rank !== 1 || t.shape[0] !== d))
      throw new TensorError(`${op}: ${name} ${fmtShape(t.shape)} does not match the last dimension of x ${fmtShape(x.shape)} (expected [${d}])`);
  if (!(Number.isFinite(eps) && eps >= 0)) throw new TensorError(`${op}: eps must be finite and >= 0, got ${eps}`);
  const rows = x.size / d;
  if (x.size >= 2 ** 32) throw new TensorError(`${op}: x ${fmtShape(x.shape)} exceeds the kernels' 2^32-element indexing`);
  return { rows, d, eps, kind, unitOffset, bias: b !== null };
}

function norm(op: NormKind, unitOffset: boolean, x: Tensor, w: Tensor, b: Tensor | null, eps: number): Tensor {
  const gpu = checkOperands(op, ...(b ? [x, w, b] : [x, w]));
  const o = normOptions(op, op, unitOffset, x, w, b, eps);
  const y = Tensor.empty(gpu, x.shape);
  const stats = Tensor.empty(gpu, [o.rows, 2]);
  normForward(gpu, { x: x.buffer, w: w.buffer, b: b?.buffer, y: y.buffer, stats: stats.buffer }, o);
  return recordNorm(op, y, x, w, b, stats, o);
}

/** Record y = norm(x) with the forward's stats (consumed: the node keeps its own view when backward needs it). */
function recordNorm(op: NormKind, y: Tensor, x: Tensor, w: Tensor, b: Tensor | null, stats: Tensor, o: NormOptions): Tensor {
  const { gpu, shape: xShape } = x;
  const { rows, d } = o;
  const out = attach(y, {
    op,
    inputs: b ? [x, w, b] : [x, w],
    // dx reads x, w and stats; the parameter pass reads x and stats (for dweight's xhat).
    save: (needs) => [x, needs[0] ? w : null, stats],
    backward: (g, [sx, sw, sstats], needs, acc) => {
      const grads: (Tensor | null)[] = [null, null, null];
      if (rows === 0) return needs.map((n, i) => (n ? Tensor.zeros(gpu, i === 0 ? xShape : [d]) : null));
      if (needs[0]) {
        const into = acc[0]?.dtype === "f32" ? acc[0] : undefined; // dx += ..., in the gradient x already has
        const dx = into ?? Tensor.empty(gpu, xShape);
        normDx(gpu, { x: sx!.buffer, w: sw!.buffer, gout: g.buffer, stats: sstats!.buffer, dx: dx.buffer }, o, into !== undefined);
        grads[0] = dx;
      }
      if (needs[1] || needs[2]) {
        const dw = needs[1] ? Tensor.empty(gpu, [d]) : null;
        const db = needs[2] ? Tensor.empty(gpu, [d]) : null;
        normParamGrads(gpu, { x: sx!.buffer, gout: g.buffer, stats: sstats!.buffer, dw: dw?.buffer, db: db?.buffer }, o);
        grads[1] = dw;
        grads[2] = db;
      }
      return grads.slice(0, needs.length);
    },
  });
  stats.release(); // the node holds its own view when backward needs it
  return out;
}

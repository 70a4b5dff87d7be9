/**
 * Normalization over the last dimension, fused. Launchers: src/kernels/norm.ts.
 *
 *   rmsnorm(x, w, { eps })                      HF LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * w, in f32
 *   rmsnorm(x, w, { eps, addUnitOffset: true })  Gemma's RMSNorm: the weight applied as (1 + w)
 *   layernorm(x, w, b, eps)                     torch.nn.LayerNorm over the last dimension (b may be null)
 *
 * Forward computes each row's statistic in-kernel and keeps (mean, rstd) per row for backward (mean = 0 for
 * RMSNorm), so backward never recomputes a reduction over x. Backward: dx in one pass; dweight (and dbias) as
 * deterministic per-column sums over rows (normParamGrads).
 */
import { normDx, normForward, normParamGrads, type NormKind, type NormOptions } from "../../kernels/norm.ts";
import { attach } from "../autograd.ts";
import { fmtShape, TensorError } from "../shape.ts";
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

function norm(op: NormKind, unitOffset: boolean, x: Tensor, w: Tensor, b: Tensor | null, eps: number): Tensor {
  const gpu = checkOperands(op, ...(b ? [x, w, b] : [x, w]));
  if (x.rank === 0) throw new TensorError(`${op}: x must have at least one dimension, got ${x}`);
  const d = x.shape[x.rank - 1]!;
  if (d === 0) throw new TensorError(`${op}: cannot normalize over an empty last dimension (x ${fmtShape(x.shape)})`);
  for (const [name, t] of [["weight", w], ["bias", b]] as const)
    if (t && (t.rank !== 1 || t.shape[0] !== d))
      throw new TensorError(`${op}: ${name} ${fmtShape(t.shape)} does not match the last dimension of x ${fmtShape(x.shape)} (expected [${d}])`);
  if (!(Number.isFinite(eps) && eps >= 0)) throw new TensorError(`${op}: eps must be finite and >= 0, got ${eps}`);
  const rows = x.size / d;
  if (x.size >= 2 ** 32) throw new TensorError(`${op}: x ${fmtShape(x.shape)} exceeds the kernels' 2^32-element indexing`);
  const o: NormOptions = { rows, d, eps, kind: op, unitOffset, bias: b !== null };

  const y = Tensor.empty(gpu, x.shape);
  const stats = Tensor.empty(gpu, [rows, 2]);
  normForward(gpu, { x: x.buffer, w: w.buffer, b: b?.buffer, y: y.buffer, stats: stats.buffer }, o);
  const xShape = x.shape;
  const out = attach(y, {
    op,
    inputs: b ? [x, w, b] : [x, w],
    // dx reads x, w and stats; the parameter pass reads x and stats (for dweight's xhat).
    save: (needs) => [x, needs[0] ? w : null, stats],
    backward: (g, [sx, sw, sstats], needs) => {
      const grads: (Tensor | null)[] = [null, null, null];
      if (rows === 0) return needs.map((n, i) => (n ? Tensor.zeros(gpu, i === 0 ? xShape : [d]) : null));
      if (needs[0]) {
        const dx = Tensor.empty(gpu, xShape);
        normDx(gpu, { x: sx!.buffer, w: sw!.buffer, gout: g.buffer, stats: sstats!.buffer, dx: dx.buffer }, o);
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

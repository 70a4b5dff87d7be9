/**
 * Normalization over the last dimension, fused. Kernels: kernels/norm.wgsl.
 *
 *   rmsnorm(x, w, { eps })                      HF LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * w, in f32
 *   rmsnorm(x, w, { eps, addUnitOffset: true })  Gemma's RMSNorm: the weight applied as (1 + w)
 *   layernorm(x, w, b, eps)                     torch.nn.LayerNorm over the last dimension (b may be null)
 *
 * Forward: one workgroup per row computes the row's statistic in-kernel and keeps (mean, rstd) per row for
 * backward (mean = 0 for RMSNorm), so backward never recomputes a reduction over x. Backward: dx in one
 * kernel per row; dweight (and dbias) as per-column sums over rows in two deterministic passes (partial sums
 * over chunks of rows, then the chunks in a fixed order; no atomics), chunked as the device's `policy.norm` says
 * (src/gpu/policy.ts).
 */
import normSrc from "../../../kernels/norm.wgsl" with { type: "text" };
import { defineKernel, ROW_REDUCE, rowLaunch, type Binding } from "../../gpu/index.ts";
import { attach } from "../autograd.ts";
import { fmtShape, TensorError } from "../shape.ts";
import { rowGrid } from "../../gpu/grid.ts";
import { checkOperands, grid1d, Tensor } from "../tensor.ts";

export const NORM = defineKernel("kernels/norm.wgsl", normSrc, [ROW_REDUCE]);

export interface RmsNormOptions {
  /** Added to mean(x^2) before the rsqrt; LLaMA's rms_norm_eps. Default 1e-6. */
  eps?: number;
  /** Gemma: apply the weight as (1 + w). Default false (LLaMA). */
  addUnitOffset?: boolean;
}

interface NormKind {
  op: string;
  center: boolean;
  unit: boolean;
}

type Params = { rows: number; d: number; eps: number; gx: number; row: number; chunk: number; chunks: number; np: number; base: number };

/** RMSNorm over the last dimension of x; weight is [D]. */
export function rmsnorm(x: Tensor, weight: Tensor, opts: RmsNormOptions = {}): Tensor {
  return norm({ op: "rmsnorm", center: false, unit: opts.addUnitOffset ?? false }, x, weight, null, opts.eps ?? 1e-6);
}

/** LayerNorm over the last dimension of x (torch.nn.LayerNorm(D)); weight and bias are [D], bias may be null. */
export function layernorm(x: Tensor, weight: Tensor, bias: Tensor | null = null, eps = 1e-5): Tensor {
  return norm({ op: "layernorm", center: true, unit: false }, x, weight, bias, eps);
}

function norm(k: NormKind, x: Tensor, w: Tensor, b: Tensor | null, eps: number): Tensor {
  const gpu = checkOperands(k.op, ...(b ? [x, w, b] : [x, w]));
  if (x.rank === 0) throw new TensorError(`${k.op}: x must have at least one dimension, got ${x}`);
  const d = x.shape[x.rank - 1]!;
  if (d === 0) throw new TensorError(`${k.op}: cannot normalize over an empty last dimension (x ${fmtShape(x.shape)})`);
  for (const [name, t] of [["weight", w], ["bias", b]] as const)
    if (t && (t.rank !== 1 || t.shape[0] !== d))
      throw new TensorError(`${k.op}: ${name} ${fmtShape(t.shape)} does not match the last dimension of x ${fmtShape(x.shape)} (expected [${d}])`);
  if (!(Number.isFinite(eps) && eps >= 0)) throw new TensorError(`${k.op}: eps must be finite and >= 0, got ${eps}`);
  const rows = x.size / d;
  const { defines, constants } = rowLaunch(gpu, { defines: { W: k.unit ? "(1.0 + w[j])" : "w[j]", B: b ? "b[j]" : "0.0" }, constants: { CENTER: k.center ? 1 : 0 } });
  if (x.size >= 2 ** 32) throw new TensorError(`${k.op}: x ${fmtShape(x.shape)} exceeds the kernels' 2^32-element indexing`);
  const prm: Params = { rows, d, eps, gx: 0, row: 0, chunk: 0, chunks: 0, np: b ? 2 : 1, base: 0 };

  const y = Tensor.empty(gpu, x.shape);
  const stats = Tensor.empty(gpu, [rows, 2]);
  if (rows > 0) {
    const bind: Record<string, Binding> = { x: x.buffer, w: w.buffer, y: y.buffer, stats_out: stats.buffer };
    if (b) bind.b = b.buffer;
    const grid = rowGrid(gpu, rows);
    gpu.dispatch(NORM, "norm_forward", bind, grid.workgroups, { params: { ...prm, gx: grid.gx }, defines, constants, name: k.op });
  }
  const xShape = x.shape;
  const out = attach(y, {
    op: k.op,
    inputs: b ? [x, w, b] : [x, w],
    // dx reads x, w and stats; the parameter pass reads x and stats (for dweight's xhat).
    save: (needs) => [x, needs[0] ? w : null, stats],
    backward: (g, [sx, sw, sstats], needs) => {
      const grads: (Tensor | null)[] = [null, null, null];
      if (rows === 0) return needs.map((n, i) => (n ? Tensor.zeros(gpu, i === 0 ? xShape : [d]) : null));
      if (needs[0]) {
        const dx = Tensor.empty(gpu, xShape);
        const grid = rowGrid(gpu, rows);
        gpu.dispatch(NORM, "norm_dx", { x: sx!.buffer, w: sw!.buffer, gout: g.buffer, stats: sstats!.buffer, dx: dx.buffer }, grid.workgroups, {
          params: { ...prm, gx: grid.gx },
          defines,
          constants,
          name: `${k.op}.dx`,
        });
        grads[0] = dx;
      }
      if (needs[1] || needs[2]) {
        const [dw, db] = paramGrads(k.op, g, sx!, sstats!, prm, [needs[1]!, needs[2] ?? false], defines, constants);
        grads[1] = dw;
        grads[2] = db;
      }
      return grads.slice(0, needs.length);
    },
  });
  stats.release(); // the node holds its own view when backward needs it
  return out;
}

/**
 * dweight = sum over rows of g * xhat, and dbias = sum over rows of g when there is a bias (np = 2): partial
 * sums over chunks of rows in one pass, then each parameter's chunks summed in order.
 */
function paramGrads(
  op: string,
  g: Tensor,
  sx: Tensor,
  sstats: Tensor,
  prm: Params,
  want: [boolean, boolean],
  defines: Record<string, string | number>,
  constants: Record<string, number>,
): [Tensor | null, Tensor | null] {
  const gpu = g.gpu;
  const { rows, d, np } = prm;
  const lim = gpu.policy.norm;
  const chunk = rows <= lim.singlePassRows ? rows : Math.max(lim.minChunk, Math.ceil(rows / lim.maxChunks));
  const chunks = Math.ceil(rows / chunk);
  const part = Tensor.empty(gpu, [chunks, np, d]);
  const p1 = grid1d(gpu, chunks * d);
  gpu.dispatch(NORM, "norm_dparams_partial", { x: sx.buffer, gout: g.buffer, stats: sstats.buffer, part_out: part.buffer }, p1.workgroups, {
    params: { ...prm, row: p1.row, chunk, chunks },
    defines,
    constants,
    name: `${op}.dparams`,
  });
  if (chunks === 1 && np === 1) {
    // The one chunk's partial sums are dweight (part is [1, 1, d]).
    const dw = part.reshape([d]);
    part.release();
    return [want[0] ? dw : (dw.release(), null), null];
  }
  const p2 = grid1d(gpu, d);
  const sumInto = (which: number): Tensor => {
    const t = Tensor.empty(gpu, [d]);
    gpu.dispatch(NORM, "norm_dparams_sum", { part: part.buffer, dst: t.buffer }, p2.workgroups, {
      params: { ...prm, row: p2.row, chunks, base: which * d },
      defines,
      constants,
      name: `${op}.dparams_sum`,
    });
    return t;
  };
  const out: [Tensor | null, Tensor | null] = [want[0] ? sumInto(0) : null, want[1] ? sumInto(1) : null];
  part.release();
  return out;
}

/**
 * float64 reference of the loss launchers (src/kernels/loss.ts), same names and io/option shapes; inputs are
 * Float64Array (targets: Int32Array or numbers), outputs are returned, with per-element magnitudes (the sum of
 * |terms|) where a relative tolerance needs a scale.
 *
 *   crossEntropyForward   logits [rows, classes], targets [rows]. Per row r with target t, m = max, s = sum(exp(x - m)):
 *                         l_r = (m - x[t]) + log(s), 0 for t == ignoreIndex, NaN for t outside [0, classes);
 *                         loss [1] = sum of l_r over kept rows (t != ignoreIndex) / kept, NaN when none is kept;
 *                         stats [2 rows + 1] = (m, s) per row, then kept.
 *   crossEntropyBackward  from the forward's stats: dlogits[r, i] = dloss[0] / kept (exp(x - m) / s - [i == t]);
 *                         0 in ignored rows (0 · exp(x - m) / s: NaN where that is, as torch's log_softmax
 *                         backward 0 - exp(y) · 0), NaN in rows with an invalid target.
 *                         NaN and +inf as torch, by float64 arithmetic: a row holding either has s = NaN
 *                         (exp(NaN - m), exp(inf - inf)), so its loss and gradient are NaN; the kernel's m of such a
 *                         row is unspecified (only s, which every use divides by, must be NaN).
 *   maskedMeanForward     x [B, T, D], mask [B, T]: out[b, d] = sum_t mask[b,t] x[b,t,d] / sum_t mask[b,t] over the
 *                         positions with mask != 0 (x there is never read: it may be NaN), 0 for an all-zero row;
 *                         inv [B] = 1 / sum_t mask[b,t] (0 for an empty row). A NaN mask value counts (NaN != 0):
 *                         its row's count, inv and mean are NaN.
 *   maskedMeanBackward    from the forward's inv: dx[b,t,d] = dout[b,d] mask[b,t] inv[b].
 *   l2NormalizeForward    per row of n: y = x / max(||x||, eps) (NaN when ||x|| is: clamp_min keeps a NaN).
 *   l2NormalizeBackward   with r = ||x||, d = max(r, eps): dx = (dy - x (dy · x) / r^2) / d when r >= eps, else dy / eps.
 *   contract              out [rows, cols] = sum_k lhs[r lr + k lk] rhs[k rk + c rc] over k < depth.
 * And the op the last three make (src/tensor/ops/loss.ts):
 *   cosineSimilarityMatrix  out [N, M] = l2(a) l2(b)ᵀ for a [N, D], b [M, D], and given dout the gradients of
 *                           sum(out * dout) wrt a and b.
 */
import type { ContractOptions, CrossEntropyLaunchOptions } from "../../src/kernels/loss.ts";

export type { ContractOptions, CrossEntropyLaunchOptions } from "../../src/kernels/loss.ts";

// ---- cross-entropy ------------------------------------------------------------------------------------

/** loss [1] and stats [2 rows + 1] (exact up to f32 rounding of each: no magnitude needed). */
export function crossEntropyForward(io: { logits: Float64Array; targets: ArrayLike<number> }, o: CrossEntropyLaunchOptions) {
  const { rows, classes: V, ignoreIndex } = o;
  const stats = new Float64Array(2 * rows + 1);
  let total = 0;
  let kept = 0;
  for (let r = 0; r < rows; r++) {
    const x = io.logits.subarray(r * V, (r + 1) * V);
    let m = -Infinity;
    for (let k = 0; k < V; k++) m = Math.max(m, x[k]!);
    let s = 0;
    for (let k = 0; k < V; k++) s += Math.exp(x[k]! - m);
    stats[2 * r] = m;
    stats[2 * r + 1] = s;
    const t = io.targets[r]!;
    if (t === ignoreIndex) continue;
    kept++;
    total += Number.isInteger(t) && t >= 0 && t < V ? m - x[t]! + Math.log(s) : NaN;
  }
  stats[2 * rows] = kept;
  return { loss: Float64Array.of(kept ? total / kept : NaN), stats };
}

/** dlogits [rows, classes] from the forward's stats and dloss [1], with dlogitsMag = |dloss / kept| (p + [i == t]). */
export function crossEntropyBackward(
  io: { logits: Float64Array; targets: ArrayLike<number>; stats: Float64Array; dloss: ArrayLike<number> },
  o: CrossEntropyLaunchOptions,
) {
  const { rows, classes: V, ignoreIndex } = o;
  const dlogits = new Float64Array(rows * V);
  const dlogitsMag = new Float64Array(rows * V);
  const scale = io.dloss[0]! / io.stats[2 * rows]!;
  for (let r = 0; r < rows; r++) {
    const t = io.targets[r]!;
    const [m, s] = [io.stats[2 * r]!, io.stats[2 * r + 1]!];
    if (t === ignoreIndex) {
      for (let k = 0; k < V; k++) dlogits[r * V + k] = 0 * (Math.exp(io.logits[r * V + k]! - m) / s);
      continue;
    }
    const valid = Number.isInteger(t) && t >= 0 && t < V;
    for (let k = 0; k < V; k++) {
      const p = Math.exp(io.logits[r * V + k]! - m) / s;
      const oh = k === t ? 1 : 0;
      dlogits[r * V + k] = valid ? scale * (p - oh) : NaN;
      dlogitsMag[r * V + k] = Math.abs(scale) * (p + oh);
    }
  }
  return { dlogits, dlogitsMag };
}

// ---- masked mean --------------------------------------------------------------------------------------

export interface MaskedMeanOptions {
  B: number;
  T: number;
  D: number;
}

/** out [B, D] with outMag = sum_t |mask x| / sum_t mask, and inv [B]. */
export function maskedMeanForward(io: { x: Float64Array; mask: Float64Array }, o: MaskedMeanOptions) {
  const { B, T, D } = o;
  const out = new Float64Array(B * D);
  const outMag = new Float64Array(B * D);
  const inv = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    let cnt = 0;
    for (let t = 0; t < T; t++) cnt += io.mask[b * T + t]!;
    inv[b] = cnt !== 0 ? 1 / cnt : 0; // NaN for a NaN count (a NaN mask value)
    for (let d = 0; d < D; d++) {
      let s = 0;
      let sAbs = 0;
      for (let t = 0; t < T; t++) {
        const m = io.mask[b * T + t]!;
        if (m !== 0) (s += m * io.x[(b * T + t) * D + d]!), (sAbs += Math.abs(m * io.x[(b * T + t) * D + d]!));
      }
      out[b * D + d] = cnt !== 0 ? s / cnt : 0;
      outMag[b * D + d] = cnt !== 0 ? sAbs / Math.abs(cnt) : 0;
    }
  }
  return { out, outMag, inv };
}

/** dx [B, T, D] (one product per element: no magnitude needed). */
export function maskedMeanBackward(io: { dout: Float64Array; mask: Float64Array; inv: Float64Array }, o: MaskedMeanOptions) {
  const { B, T, D } = o;
  const dx = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) dx[(b * T + t) * D + d] = io.dout[b * D + d]! * io.mask[b * T + t]! * io.inv[b]!;
  return { dx };
}

// ---- L2 normalization ---------------------------------------------------------------------------------

export interface L2Options {
  rows: number;
  n: number;
  eps: number;
}

/** y = x / max(||x||, eps) per row (exact up to rounding: no magnitude needed). */
export function l2NormalizeForward(io: { x: Float64Array }, o: L2Options) {
  const { n } = o;
  const y = new Float64Array(o.rows * n);
  for (let base = 0; base < y.length; base += n) {
    let ss = 0;
    for (let k = 0; k < n; k++) ss += io.x[base + k]! ** 2;
    const d = Math.max(Math.sqrt(ss), o.eps);
    for (let k = 0; k < n; k++) y[base + k] = io.x[base + k]! / d;
  }
  return { y };
}

/** dx with dxMag = (|dy| + |x| sum|dy x| / r^2) / d (r >= eps), else |dy| / eps. */
export function l2NormalizeBackward(io: { x: Float64Array; dy: Float64Array }, o: L2Options) {
  const { n, eps } = o;
  const dx = new Float64Array(o.rows * n);
  const dxMag = new Float64Array(o.rows * n);
  for (let base = 0; base < dx.length; base += n) {
    let ss = 0;
    let gx = 0;
    let gxAbs = 0;
    for (let k = 0; k < n; k++) {
      const [x, g] = [io.x[base + k]!, io.dy[base + k]!];
      ss += x * x;
      gx += g * x;
      gxAbs += Math.abs(g * x);
    }
    const r = Math.sqrt(ss);
    const d = Math.max(r, eps);
    for (let k = 0; k < n; k++) {
      const [x, g] = [io.x[base + k]!, io.dy[base + k]!];
      dx[base + k] = r >= eps ? (g - (x * gx) / ss) / d : g / d; // d = eps, or NaN with r
      dxMag[base + k] = r >= eps ? (Math.abs(g) + Math.abs(x * gxAbs) / ss) / d : Math.abs(g) / eps;
    }
  }
  return { dx, dxMag };
}

// ---- contract -----------------------------------------------------------------------------------------

/** out [rows, cols] with outMag = sum_k |lhs rhs|. */
export function contract(io: { lhs: Float64Array; rhs: Float64Array }, o: Omit<ContractOptions, "name">) {
  const { rows, cols, depth, lr, lk, rk, rc } = o;
  const out = new Float64Array(rows * cols);
  const outMag = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      let s = 0;
      let sAbs = 0;
      for (let k = 0; k < depth; k++) {
        const t = io.lhs[r * lr + k * lk]! * io.rhs[k * rk + c * rc]!;
        s += t;
        sAbs += Math.abs(t);
      }
      out[r * cols + c] = s;
      outMag[r * cols + c] = sAbs;
    }
  return { out, outMag };
}

// ---- the cosine-similarity matrix (an op of the above) ------------------------------------------------

/**
 * out [N, M] = l2(a) l2(b)ᵀ, and for dout [N, M] the gradients of sum(out * dout): da = l2'(a)(dout l2(b)),
 * db = l2'(b)(doutᵀ l2(a)), with their magnitudes. The product is written as plain loops, not with `contract`.
 */
export function cosineSimilarityMatrix(io: { a: Float64Array; b: Float64Array; dout: Float64Array }, o: { N: number; M: number; D: number; eps?: number }) {
  const { N, M, D } = o;
  const eps = o.eps ?? 1e-12;
  const an = l2NormalizeForward({ x: io.a }, { rows: N, n: D, eps }).y;
  const bn = l2NormalizeForward({ x: io.b }, { rows: M, n: D, eps }).y;
  const out = new Float64Array(N * M);
  const gan = new Float64Array(N * D);
  const gbn = new Float64Array(M * D);
  for (let i = 0; i < N; i++)
    for (let j = 0; j < M; j++) {
      let s = 0;
      for (let d = 0; d < D; d++) {
        s += an[i * D + d]! * bn[j * D + d]!;
        gan[i * D + d] += io.dout[i * M + j]! * bn[j * D + d]!;
        gbn[j * D + d] += io.dout[i * M + j]! * an[i * D + d]!;
      }
      out[i * M + j] = s;
    }
  const ga = l2NormalizeBackward({ x: io.a, dy: gan }, { rows: N, n: D, eps });
  const gb = l2NormalizeBackward({ x: io.b, dy: gbn }, { rows: M, n: D, eps });
  return { out, da: ga.dx, daMag: ga.dxMag, db: gb.dx, dbMag: gb.dxMag };
}

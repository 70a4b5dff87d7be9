/**
 * float64 reference of the chunked cross-entropy launchers (src/kernels/linear_cross_entropy.ts), same names and
 * io/option shapes, and of the op they make (linearCrossEntropy, src/tensor/ops/loss.ts). Inputs are Float64Array
 * (targets: Int32Array or numbers); outputs are returned, with per-element magnitudes (the sum of |terms|) where a
 * relative tolerance needs a scale. stats is [3 rows + 1]: per row (M, S, x_t), then kept.
 *
 *   lceChunkStats    logits [rows, cols] = columns col0 .. col0 + cols: with the chunk's m = max, s = sum(exp(x - m)),
 *                    M' = max(M, m), S' = S exp(M - M') + s exp(m - M') (first: M' = m, S' = s, x_t = NaN), and
 *                    x_t = x[r, t - col0] when col0 <= t < col0 + cols. A NaN or +inf in the chunk makes s, and so S,
 *                    NaN (exp(NaN - m), exp(inf - inf)); M of such a row is unspecified (only S is compared).
 *   lceMean          loss [1] = mean over kept rows (t != ignoreIndex) of (M - x_t) + log(S), NaN when none is kept;
 *                    stats[3 rows] = kept. A target outside [0, vocab) never had its x_t taken: NaN.
 *   lceChunkGrad     dlogits[r, k] = dloss[0] / kept (exp(x - M) / S - [col0 + k == t]); 0 · exp(x - M) / S in ignored
 *                    rows (0, or NaN where that is), NaN in rows with a target outside [0, vocab).
 *   linearCrossEntropy  h [N, D], w [V, D]: the loss of the logits h wᵀ all at once (no chunks), and given dloss the
 *                    gradients dh = G w, dw = Gᵀ h with G the logits' gradient, with magnitudes |G| |w|, |G|ᵀ |h|.
 *                    Checked by central differences in test/tensor/linear_cross_entropy.test.ts.
 */
import type { LceChunkOptions } from "../../src/kernels/linear_cross_entropy.ts";

export type { LceChunkOptions } from "../../src/kernels/linear_cross_entropy.ts";

const inRange = (t: number, lo: number, hi: number) => Number.isInteger(t) && t >= lo && t < hi;

/** The new stats [3 rows + 1] after one chunk (stats[3 rows] passed through). */
export function lceChunkStats(io: { logits: Float64Array; targets: ArrayLike<number>; stats: Float64Array | null }, o: LceChunkOptions & { first: boolean }) {
  const { rows, cols, col0 } = o;
  const stats = new Float64Array(3 * rows + 1);
  if (io.stats) stats.set(io.stats);
  for (let r = 0; r < rows; r++) {
    const x = io.logits.subarray(r * cols, (r + 1) * cols);
    let m = -Infinity;
    for (let k = 0; k < cols; k++) m = Math.max(m, x[k]!);
    let s = 0;
    for (let k = 0; k < cols; k++) s += Math.exp(x[k]! - m);
    if (Number.isNaN(m)) s = NaN;
    let [M, S, xt] = o.first ? [-Infinity, 0, NaN] : [stats[3 * r]!, stats[3 * r + 1]!, stats[3 * r + 2]!];
    const M2 = Math.max(M, m);
    // exp(-inf - -inf) is NaN in float64; an empty side contributes 0.
    const part = (mm: number, ss: number) => (ss === 0 ? 0 : ss * Math.exp(mm - M2));
    S = Number.isNaN(S) || Number.isNaN(s) ? NaN : part(M, S) + part(m, s);
    M = M2;
    const t = io.targets[r]!;
    if (inRange(t, col0, col0 + cols)) xt = x[t - col0]!;
    stats[3 * r] = M;
    stats[3 * r + 1] = S;
    stats[3 * r + 2] = xt;
  }
  return { stats };
}

/** loss [1] and stats with kept set (exact up to f32 rounding: no magnitude needed). */
export function lceMean(io: { targets: ArrayLike<number>; stats: Float64Array }, o: { rows: number; vocab: number; ignoreIndex: number }) {
  const stats = Float64Array.from(io.stats);
  let total = 0;
  let kept = 0;
  for (let r = 0; r < o.rows; r++) {
    if (io.targets[r] === o.ignoreIndex) continue;
    kept++;
    total += stats[3 * r]! - stats[3 * r + 2]! + Math.log(stats[3 * r + 1]!);
  }
  stats[3 * o.rows] = kept;
  return { loss: Float64Array.of(kept ? total / kept : NaN), stats };
}

/** dlogits [rows, cols] from the final stats and dloss [1], with dlogitsMag = |dloss / kept| (p + [col0 + k == t]). */
export function lceChunkGrad(io: { logits: Float64Array; targets: ArrayLike<number>; stats: Float64Array; dloss: ArrayLike<number> }, o: LceChunkOptions) {
  const { rows, cols, col0, vocab, ignoreIndex } = o;
  const dlogits = new Float64Array(rows * cols);
  const dlogitsMag = new Float64Array(rows * cols);
  const scale = io.dloss[0]! / io.stats[3 * rows]!;
  for (let r = 0; r < rows; r++) {
    const t = io.targets[r]!;
    const [M, S] = [io.stats[3 * r]!, io.stats[3 * r + 1]!];
    for (let k = 0; k < cols; k++) {
      const p = Math.exp(io.logits[r * cols + k]! - M) / S;
      if (t === ignoreIndex) {
        dlogits[r * cols + k] = 0 * p;
        continue;
      }
      const oh = col0 + k === t ? 1 : 0;
      dlogits[r * cols + k] = inRange(t, 0, vocab) ? scale * (p - oh) : NaN;
      dlogitsMag[r * cols + k] = Math.abs(scale) * (p + oh);
    }
  }
  return { dlogits, dlogitsMag };
}

/**
 * The op in one piece: loss [1] of the logits h wᵀ [N, V], and for dloss the gradients dh [N, D], dw [V, D] with
 * their magnitudes (sums of |terms|).
 */
export function linearCrossEntropy(
  io: { h: Float64Array; w: Float64Array; targets: ArrayLike<number>; dloss: ArrayLike<number> },
  o: { N: number; D: number; V: number; ignoreIndex: number },
) {
  const { N, D, V } = o;
  const logits = new Float64Array(N * V);
  for (let r = 0; r < N; r++)
    for (let j = 0; j < V; j++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += io.h[r * D + d]! * io.w[j * D + d]!;
      logits[r * V + j] = s;
    }
  const c = { rows: N, cols: V, col0: 0, vocab: V, ignoreIndex: o.ignoreIndex };
  const { loss, stats } = lceMean({ targets: io.targets, stats: lceChunkStats({ logits, targets: io.targets, stats: null }, { ...c, first: true }).stats }, c);
  const { dlogits: G, dlogitsMag: Gm } = lceChunkGrad({ logits, targets: io.targets, stats, dloss: io.dloss }, c);
  const dh = new Float64Array(N * D);
  const dhMag = new Float64Array(N * D);
  const dw = new Float64Array(V * D);
  const dwMag = new Float64Array(V * D);
  for (let r = 0; r < N; r++)
    for (let j = 0; j < V; j++) {
      const [g, gm] = [G[r * V + j]!, Gm[r * V + j]!];
      for (let d = 0; d < D; d++) {
        const [hv, wv] = [io.h[r * D + d]!, io.w[j * D + d]!];
        dh[r * D + d] += g * wv;
        dhMag[r * D + d] += gm * Math.abs(wv);
        dw[j * D + d] += g * hv;
        dwMag[j * D + d] += gm * Math.abs(hv);
      }
    }
  return { loss, logits, dh, dhMag, dw, dwMag };
}

/**
 * float64 reference of the row-kernel launchers of src/kernels/softmax.ts, same names and io/option shapes;
 * inputs are Float64Array, outputs are returned, with per-element magnitudes (the sum of |terms|) where a
 * relative tolerance needs a scale. Every array is `rows` contiguous rows of `n` (the last axis). Per row, with
 * m its max and s = sum_j exp(x_j - m):
 *
 *   softmaxForward            softmax y = exp(x - m) / s;  log_softmax y = (x - m) - log(s)
 *   softmaxBackward           from the forward's output y and dy: softmax dx = y (dy - sum(dy y));
 *                             log_softmax dx = dy - exp(y) sum(dy)
 *   attentionSoftmaxForward   row r is query i = r % n against keys j < n: probs = softmax_j(scale * scores) over
 *                             the visible keys (j <= i if causal, and mask[floor(r / batchRows), j] != 0 with a
 *                             mask), 0 at the others and in rows with none
 *   attentionSoftmaxBackward  dscores = scale probs (dprobs - sum(dprobs probs))
 *   rowSumMap                 out_i = def.map(a_i, b_i, S, eps) with S = sum over the row of def.term(a_j, b_j) (two
 *                             sums): the launcher's WGSL `def` written as float64 functions
 *
 * NaN and infinities as in torch, by plain float64 arithmetic: a NaN in a row makes m or s NaN and so the whole
 * row's softmax (attentionSoftmax: a NaN among the visible scores, its visible probabilities; invisible scores are
 * never read); a +inf gives m = +inf and exp(inf - inf) = NaN in s, so NaN everywhere too.
 */
import type { AttentionSoftmaxOptions, SoftmaxKind } from "../../src/kernels/softmax.ts";

export type { AttentionSoftmaxOptions, SoftmaxKind } from "../../src/kernels/softmax.ts";

export interface SoftmaxOptions {
  rows: number;
  n: number;
  kind: SoftmaxKind;
}

/** softmax or log_softmax of every row (exact: no magnitude needed, the default relative tolerance applies). */
export function softmaxForward(io: { x: Float64Array }, o: SoftmaxOptions) {
  const { n } = o;
  const y = new Float64Array(o.rows * n);
  for (let base = 0; base < y.length; base += n) {
    let m = -Infinity;
    for (let k = 0; k < n; k++) m = Math.max(m, io.x[base + k]!);
    let s = 0;
    for (let k = 0; k < n; k++) s += Math.exp(io.x[base + k]! - m);
    for (let k = 0; k < n; k++) y[base + k] = o.kind === "softmax" ? Math.exp(io.x[base + k]! - m) / s : io.x[base + k]! - m - Math.log(s);
  }
  return { y };
}

/** dx from the forward's output y and dy, with dxMag: softmax y (|dy| + sum|dy y|); log_softmax |dy| + exp(y) sum|dy|. */
export function softmaxBackward(io: { y: Float64Array; dy: Float64Array }, o: SoftmaxOptions) {
  const { n } = o;
  const dx = new Float64Array(o.rows * n);
  const dxMag = new Float64Array(o.rows * n);
  const soft = o.kind === "softmax";
  for (let base = 0; base < dx.length; base += n) {
    let dot = 0;
    let dotAbs = 0;
    for (let k = 0; k < n; k++) {
      const w = soft ? io.y[base + k]! : 1;
      dot += io.dy[base + k]! * w;
      dotAbs += Math.abs(io.dy[base + k]! * w);
    }
    for (let k = 0; k < n; k++) {
      const [g, y] = [io.dy[base + k]!, io.y[base + k]!];
      const p = soft ? y : Math.exp(y);
      dx[base + k] = soft ? y * (g - dot) : g - p * dot;
      dxMag[base + k] = soft ? y * (Math.abs(g) + dotAbs) : Math.abs(g) + p * dotAbs;
    }
  }
  return { dx, dxMag };
}

/** The attention probabilities [rows, n] (exact: the default relative tolerance applies). */
export function attentionSoftmaxForward(io: { scores: Float64Array; mask?: Float64Array }, o: AttentionSoftmaxOptions) {
  const { n } = o;
  const probs = new Float64Array(o.rows * n);
  for (let r = 0; r < o.rows; r++) {
    const i = r % n;
    const mb = Math.floor(r / o.batchRows) * n;
    const js: number[] = [];
    for (let j = 0; j < n; j++) if ((!o.causal || j <= i) && (!io.mask || io.mask[mb + j] !== 0)) js.push(j);
    if (!js.length) continue;
    const s = js.map((j) => o.scale * io.scores[r * n + j]!);
    const m = Math.max(...s);
    const e = s.map((x) => Math.exp(x - m));
    const Z = e.reduce((a, x) => a + x, 0);
    js.forEach((j, t) => (probs[r * n + j] = e[t]! / Z));
  }
  return { probs };
}

/** dscores with dscoresMag = scale probs (|dprobs| + sum|dprobs probs|). */
export function attentionSoftmaxBackward(io: { probs: Float64Array; dprobs: Float64Array }, o: { rows: number; n: number; scale: number }) {
  const { n, scale } = o;
  const dscores = new Float64Array(o.rows * n);
  const dscoresMag = new Float64Array(o.rows * n);
  for (let base = 0; base < dscores.length; base += n) {
    let dot = 0;
    let dotAbs = 0;
    for (let k = 0; k < n; k++) (dot += io.dprobs[base + k]! * io.probs[base + k]!), (dotAbs += Math.abs(io.dprobs[base + k]! * io.probs[base + k]!));
    for (let k = 0; k < n; k++) {
      const [p, g] = [io.probs[base + k]!, io.dprobs[base + k]!];
      dscores[base + k] = scale * p * (g - dot);
      dscoresMag[base + k] = Math.abs(scale) * p * (Math.abs(g) + dotAbs);
    }
  }
  return { dscores, dscoresMag };
}

/** A row_sum_map definition in float64: the per-element pair summed over the row, and the output element. */
export interface RowSumMapRef {
  term(a: number, b: number): [number, number];
  map(a: number, b: number, s: [number, number], eps: number): number;
  /** The output's magnitude from |a|, |b| and the sums of |term| (default 0: tolerance relative to |out|). */
  mag?(a: number, b: number, sAbs: [number, number], eps: number): number;
}

/** out (shaped like a), with outMag from def.mag. */
export function rowSumMap(io: { a: Float64Array; b?: Float64Array }, o: { rows: number; n: number; def: RowSumMapRef; eps?: number }) {
  const { n, def } = o;
  const eps = o.eps ?? 0;
  const out = new Float64Array(o.rows * n);
  const outMag = new Float64Array(o.rows * n);
  const bAt = (i: number) => (io.b ? io.b[i]! : 0);
  for (let base = 0; base < out.length; base += n) {
    const s: [number, number] = [0, 0];
    const sAbs: [number, number] = [0, 0];
    for (let k = 0; k < n; k++) {
      const t = def.term(io.a[base + k]!, bAt(base + k));
      for (const c of [0, 1]) (s[c] += t[c]!), (sAbs[c] += Math.abs(t[c]!));
    }
    for (let k = 0; k < n; k++) {
      const [a, b] = [io.a[base + k]!, bAt(base + k)];
      out[base + k] = def.map(a, b, s, eps);
      outMag[base + k] = def.mag ? def.mag(Math.abs(a), Math.abs(b), sAbs, eps) : 0;
    }
  }
  return { out, outMag };
}

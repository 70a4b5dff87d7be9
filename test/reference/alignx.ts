// Float64 CPU reference of AlignX's stage-1 extra losses (src/align/losses.ts), written from the reference's
// Python (compute_contrastive_loss, compute_language_matching_loss, languageMatchingMLP) and independently of
// the GPU code: materialized pair inputs, log-softmax over the targets of each source anchor, NaN for an
// empty span (as the reference's 0/0). Forward only; gradients come from central differences of these
// functions (test/align/losses.test.ts) and from the PyTorch goldens.

/** Mean over t of x[b, t, :] where sel(b, t); NaN rows when nothing is selected. x is [B, T, D] flat. */
function pool(x: ArrayLike<number>, B: number, T: number, D: number, sel: (b: number, t: number) => boolean): Float64Array[] {
  const out: Float64Array[] = [];
  for (let b = 0; b < B; b++) {
    const acc = new Float64Array(D);
    let n = 0;
    for (let t = 0; t < T; t++)
      if (sel(b, t)) {
        n++;
        for (let d = 0; d < D; d++) acc[d]! += x[(b * T + t) * D + d]!;
      }
    for (let d = 0; d < D; d++) acc[d] = acc[d]! / n;
    out.push(acc);
  }
  return out;
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};

/** log Σ exp(v) */
function logSumExp(v: readonly number[]): number {
  const m = Math.max(...v);
  return m + Math.log(v.reduce((s, x) => s + Math.exp(x - m), 0));
}

/** L_CTR of hidden [B, T, D] (flat) with index B × T; 0 when B = 1. */
export function contrastiveLoss(hidden: ArrayLike<number>, index: readonly (readonly number[])[], B: number, T: number, D: number, tau: number): number {
  if (B === 1) return 0;
  const u = pool(hidden, B, T, D, (b, t) => index[b]![t] === 1);
  const v = pool(hidden, B, T, D, (b, t) => index[b]![t] === 2);
  let loss = 0;
  for (let i = 0; i < B; i++) {
    // torch 1.13 CosineSimilarity: x·y / sqrt(max(|x|² |y|², eps²)), eps 1e-8
    const s = v.map((vj) => dot(u[i]!, vj) / Math.sqrt(Math.max(dot(u[i]!, u[i]!) * dot(vj, vj), 1e-16)) / tau);
    loss -= s[i]! - logSumExp(s);
  }
  return loss / B / 2;
}

export interface ClassifierWeights {
  /** [w, 2D] row-major */
  gate: ArrayLike<number>;
  up: ArrayLike<number>;
  /** [2, w] */
  down: ArrayLike<number>;
  w: number;
}

/** The classifier on one input x [2D]: down(silu(gate x) * up x) → [2]. */
export function classify(x: ArrayLike<number>, c: ClassifierWeights): [number, number] {
  const K = x.length;
  const h = new Float64Array(c.w);
  for (let r = 0; r < c.w; r++) {
    let g = 0;
    let u = 0;
    for (let k = 0; k < K; k++) {
      g += c.gate[r * K + k]! * x[k]!;
      u += c.up[r * K + k]! * x[k]!;
    }
    h[r] = (g / (1 + Math.exp(-g))) * u;
  }
  let z0 = 0;
  let z1 = 0;
  for (let r = 0; r < c.w; r++) {
    z0 += c.down[r]! * h[r]!;
    z1 += c.down[c.w + r]! * h[r]!;
  }
  return [z0, z1];
}

/** L_LAM of last [B, T, D] (flat) with index B × T, languages [B] each, and the classifier. */
export function languageMatchingLoss(
  last: ArrayLike<number>,
  index: readonly (readonly number[])[],
  srcLang: ArrayLike<number>,
  tgtLang: ArrayLike<number>,
  c: ClassifierWeights,
  B: number,
  T: number,
  D: number,
): number {
  // states[:, :-1] with index[:, 1:]: row t (t < T - 1) goes with index[t + 1]
  const src = pool(last, B, T, D, (b, t) => t < T - 1 && index[b]![t + 1] === 1);
  const tgt = pool(last, B, T, D, (b, t) => t < T - 1 && index[b]![t + 1] === 2);
  const e = [...src, ...tgt];
  const lang = [...Array.from(srcLang), ...Array.from(tgtLang)];
  const N = 2 * B;
  let loss = 0;
  for (let i = 0; i < N; i++)
    for (let j = 0; j < N; j++) {
      const x = new Float64Array(2 * D);
      x.set(e[i]!, 0);
      x.set(e[j]!, D);
      const z = classify(x, c);
      loss += logSumExp(z) - z[lang[i] === lang[j] ? 1 : 0];
    }
  return loss / (N * N);
}

/**
 * Representation alignment of translations, layer by layer (the paper's analysis, ../shared/ALIGNX.md
 * "Analysis"; the trainer's quick evaluation): how close a model's mean-pooled states of N-way parallel
 * sentences are across languages.
 *
 *   const rep = await alignmentReport(model, { langs: ["en", "de", "zh"], pivot: "en", sentences }, { layers: [0, 8, 16] });
 *   rep.layers[i].langs.de   { x2pivot, pivot2x, meanCos, randomCos, cka } at layer rep.layers[i].layer
 *   rep.layers[i].mean       the same, averaged over the non-pivot languages
 *
 * `meanPooledStates(model, sentences, {layers})`: the sentences (token ids) run through the model in batches
 * (longest first, right-padded with `padId` and an attention mask; the forward is causal, so a sentence's own
 * states do not depend on what pads it), and each requested hidden state (HF's hidden_states: 0 = embeddings,
 * k = after decoder layer k, L = after the final norm) is averaged over the sentence's own tokens on the GPU
 * (maskedMean). Result: per layer an N × D row-major Float32Array. Runs under noGrad; every tensor it makes is
 * released before it returns.
 *
 * Then, on the host in float64, for two N × D matrices whose rows i are translations of each other:
 *   retrievalAccuracy(a, b)  share of rows i whose cosine nearest neighbour among b's rows is b_i (top-1);
 *                            ties go to the lowest row index (so N identical rows of b count only row 0)
 *   meanCosine(a, b)         mean of cos(a_i, b_i)
 *   randomPairCosine(a, b)   mean of cos(a_i, b_π(i)), π a seeded derangement (the baseline: how similar any
 *                            two sentences' states are, whatever they say)
 *   linearCka(a, b)          linear CKA (Kornblith et al. 2019) of the column-centred X = a, Y = b:
 *                            ||YᵀX||_F² / (||XᵀX||_F · ||YᵀY||_F), computed through whichever Gram matrices are
 *                            smaller (N × N: XXᵀ, YYᵀ, or D × D), which give the same value
 * A zero row has cosine 0 with everything; CKA of a matrix whose columns are all constant is NaN (undefined).
 * Cost: O(N² · D) per pair of matrices (a few seconds for N = 1000, D = 4096): for a quick evaluation, use a
 * few hundred sentences and the layers of interest.
 */
import {
  maskedMean,
  mixSeed,
  Mulberry32,
  noGrad,
  scope,
  Tensor,
  TensorError,
} from "../tensor/index.ts";
import type { LlamaModel } from "../nn/index.ts";

/** Host matrices: N × D, row-major. */
export type HostMatrix = Float32Array | Float64Array;

export interface PoolOptions {
  /** hidden_states indices to pool, 0 (embeddings) … L (after the final norm). Default all, 0..L. */
  layers?: readonly number[];
  /** Sentences per forward (default 16). */
  batchSize?: number;
  /** Fills the right padding (default: the config's pad_token_id, else 0). Never pooled. */
  padId?: number;
  /**
   * Tokens at the start of each sentence that are run but not pooled (default 0), e.g. 1 to leave out BOS,
   * whose states are the same in every language. Each sentence needs more tokens than this.
   */
  skipPrefix?: number;
}

const fail = (op: string, msg: string) => new TensorError(`${op}: ${msg}`);

/** Check token-id sentences: a non-empty array of non-empty integer arrays in [0, V), each longer than `skip`. */
function checkSentences(op: string, what: string, sentences: readonly (readonly number[])[], V: number, skip: number): void {
  if (!Array.isArray(sentences) || sentences.length === 0) throw fail(op, `${what}: no sentences`);
  sentences.forEach((s, i) => {
    if (!Array.isArray(s) || s.length === 0) throw fail(op, `${what}: sentence ${i} is empty`);
    if (s.length <= skip) throw fail(op, `${what}: sentence ${i} has ${s.length} token(s), no more than skipPrefix ${skip}`);
    for (let t = 0; t < s.length; t++) {
      const id = s[t]!;
      if (!Number.isInteger(id) || id < 0 || id >= V) throw fail(op, `${what}: sentence ${i}, token ${t} is ${id}, not a token id in [0, ${V})`);
    }
  });
}

function poolSettings(op: string, model: LlamaModel, opts: PoolOptions): { layers: number[]; batchSize: number; padId: number; skip: number } {
  const c = model.config;
  const L = c.numHiddenLayers;
  const layers = opts.layers ? [...opts.layers] : Array.from({ length: L + 1 }, (_, l) => l);
  if (layers.length === 0) throw fail(op, "layers is empty");
  for (const l of layers)
    if (!Number.isInteger(l) || l < 0 || l > L) throw fail(op, `layer ${l} is not a hidden-states index in 0..${L} (0 = embeddings, ${L} = after the final norm)`);
  const batchSize = opts.batchSize ?? 16;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw fail(op, `batchSize must be a positive integer, got ${batchSize}`);
  const padId = opts.padId ?? c.padTokenId ?? 0;
  if (!Number.isInteger(padId) || padId < 0 || padId >= c.vocabSize) throw fail(op, `padId ${padId} is not a token id in [0, ${c.vocabSize})`);
  const skip = opts.skipPrefix ?? 0;
  if (!Number.isInteger(skip) || skip < 0) throw fail(op, `skipPrefix must be an integer >= 0, got ${skip}`);
  return { layers, batchSize, padId, skip };
}

/**
 * Each sentence's hidden states averaged over its own tokens (after the first `skipPrefix`), per requested
 * layer: an N × D row-major Float32Array per entry of `opts.layers` (in that order). Sentences are token ids
 * without padding; they run longest first in right-padded batches of `batchSize` with an attention mask, so a
 * sentence gets the same vector (to f32 rounding) alone or in any batch. Under noGrad; releases everything it
 * allocates, also when it throws. Throws a TensorError for an empty list, an empty sentence, a token id
 * outside the vocabulary or a layer outside 0..L.
 */
export async function meanPooledStates(model: LlamaModel, sentences: readonly (readonly number[])[], opts: PoolOptions = {}): Promise<Float32Array[]> {
  const op = "meanPooledStates";
  const { layers, batchSize, padId, skip } = poolSettings(op, model, opts);
  checkSentences(op, "sentences", sentences, model.config.vocabSize, skip);
  return pool(model, sentences, layers, batchSize, padId, skip);
}

async function pool(model: LlamaModel, sentences: readonly (readonly number[])[], layers: number[], batchSize: number, padId: number, skip: number): Promise<Float32Array[]> {
  const N = sentences.length;
  const D = model.config.hiddenSize;
  const out = layers.map(() => new Float32Array(N * D));
  // Longest first (stable), so each batch pads to about its own length.
  const order = Array.from({ length: N }, (_, i) => i).sort((i, j) => sentences[j]!.length - sentences[i]!.length || i - j);
  for (let s = 0; s < N; s += batchSize) {
    const rows = order.slice(s, s + batchSize);
    const B = rows.length;
    const T = sentences[rows[0]!]!.length;
    const ids = rows.map((i) => {
      const r = Array.from(sentences[i]!);
      while (r.length < T) r.push(padId);
      return r;
    });
    const attentionMask = rows.map((i) => Array.from({ length: T }, (_, t) => (t < sentences[i]!.length ? 1 : 0)));
    const poolMask = rows.map((i) => Array.from({ length: T }, (_, t) => (t >= skip && t < sentences[i]!.length ? 1 : 0)));
    const pooled = noGrad(() =>
      scope(() => {
        const { hiddenStates } = model.forward(ids, { attentionMask, outputHiddenStates: true });
        const m = Tensor.fromArray(model.gpu, Float32Array.from(poolMask.flat()), [B, T]);
        return layers.map((l) => maskedMean(hiddenStates![l]!, m));
      }),
    );
    try {
      for (let k = 0; k < layers.length; k++) {
        const v = await pooled[k]!.toArray();
        rows.forEach((i, b) => out[k]!.set(v.subarray(b * D, (b + 1) * D), i * D));
      }
    } finally {
      for (const t of pooled) t.release();
    }
  }
  return out;
}

// ---- host metrics ---------------------------------------------------------------------------------------

function checkPair(op: string, a: HostMatrix, b: HostMatrix, n: number, d: number): void {
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(d) || d < 1) throw fail(op, `n and d must be positive integers, got n = ${n}, d = ${d}`);
  for (const [name, m] of [["a", a], ["b", b]] as const) {
    if (!(m instanceof Float32Array || m instanceof Float64Array)) throw fail(op, `${name} must be a Float32Array or Float64Array`);
    if (m.length !== n * d) throw fail(op, `${name} has ${m.length} values, not n × d = ${n} × ${d} = ${n * d}`);
    for (let i = 0; i < m.length; i++)
      if (!Number.isFinite(m[i]!)) throw fail(op, `${name}[${Math.floor(i / d)}][${i % d}] is ${m[i]} (not finite)`);
  }
}

/** Rows scaled to unit L2 norm, in float64 (a zero row stays zero). */
function unitRows(m: HostMatrix, n: number, d: number): Float64Array {
  const u = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let k = 0; k < d; k++) ss += m[i * d + k]! * m[i * d + k]!;
    const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
    for (let k = 0; k < d; k++) u[i * d + k] = m[i * d + k]! * inv;
  }
  return u;
}

const dot = (x: Float64Array, i: number, y: Float64Array, j: number, d: number): number => {
  let s = 0;
  const oi = i * d;
  const oj = j * d;
  for (let k = 0; k < d; k++) s += x[oi + k]! * y[oj + k]!;
  return s;
};

/** S[i][j] = cos(a_i, b_j), n × n. */
function cosineMatrix(ua: Float64Array, ub: Float64Array, n: number, d: number): Float64Array {
  const S = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) S[i * n + j] = dot(ua, i, ub, j, d);
  return S;
}

/** Share of i with argmax_j S[i][j] = i (transposed: argmax_j S[j][i]); ties to the lowest j. */
function top1(S: Float64Array, n: number, transposed: boolean): number {
  let hits = 0;
  for (let i = 0; i < n; i++) {
    let best = 0;
    let bestV = -Infinity;
    for (let j = 0; j < n; j++) {
      const v = transposed ? S[j * n + i]! : S[i * n + j]!;
      if (v > bestV) [best, bestV] = [j, v];
    }
    if (best === i) hits++;
  }
  return hits / n;
}

/**
 * A seeded derangement of 0..n−1 (no i with π(i) = i), n ≥ 2: Sattolo's algorithm (a uniformly random
 * n-cycle, and every n-cycle is a derangement) driven by Mulberry32(mixSeed(seed)).
 */
export function derangement(n: number, seed: number): number[] {
  if (!Number.isInteger(n) || n < 2) throw fail("derangement", `needs n >= 2 (one item cannot be paired with another), got ${n}`);
  if (!Number.isSafeInteger(seed)) throw fail("derangement", `seed must be an integer, got ${seed}`);
  const rng = new Mulberry32(mixSeed(seed));
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * i); // 0 ≤ j < i: never leaves i in place
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  return p;
}

/**
 * Top-1 retrieval accuracy a → b: the share of rows i whose cosine nearest neighbour among b's rows is b_i.
 * Ties go to the lowest row index of b. a, b: n × d row-major; float64 arithmetic.
 */
export function retrievalAccuracy(a: HostMatrix, b: HostMatrix, n: number, d: number): number {
  checkPair("retrievalAccuracy", a, b, n, d);
  return top1(cosineMatrix(unitRows(a, n, d), unitRows(b, n, d), n, d), n, false);
}

/** Mean cosine similarity of matched rows, (1/n) Σ cos(a_i, b_i). */
export function meanCosine(a: HostMatrix, b: HostMatrix, n: number, d: number): number {
  checkPair("meanCosine", a, b, n, d);
  const [ua, ub] = [unitRows(a, n, d), unitRows(b, n, d)];
  let s = 0;
  for (let i = 0; i < n; i++) s += dot(ua, i, ub, i, d);
  return s / n;
}

/** Mean cosine of mismatched rows, (1/n) Σ cos(a_i, b_π(i)) with π = derangement(n, seed). Needs n ≥ 2. */
export function randomPairCosine(a: HostMatrix, b: HostMatrix, n: number, d: number, seed: number): number {
  checkPair("randomPairCosine", a, b, n, d);
  const p = derangement(n, seed);
  const [ua, ub] = [unitRows(a, n, d), unitRows(b, n, d)];
  let s = 0;
  for (let i = 0; i < n; i++) s += dot(ua, i, ub, p[i]!, d);
  return s / n;
}

/** The matrix minus its column means, in float64. */
function centreColumns(m: HostMatrix, n: number, d: number): Float64Array {
  const c = new Float64Array(n * d);
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let k = 0; k < d; k++) mean[k] += m[i * d + k]!;
  for (let k = 0; k < d; k++) mean[k] /= n;
  for (let i = 0; i < n; i++) for (let k = 0; k < d; k++) c[i * d + k] = m[i * d + k]! - mean[k]!;
  return c;
}

/** XXᵀ (n × n, symmetric) of an n × d matrix. */
function rowGram(x: Float64Array, n: number, d: number): Float64Array {
  const g = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      const v = dot(x, i, x, j, d);
      g[i * n + j] = v;
      g[j * n + i] = v;
    }
  return g;
}

/** XᵀY (d × d) of two n × d matrices. */
function colCross(x: Float64Array, y: Float64Array, n: number, d: number): Float64Array {
  const g = new Float64Array(d * d);
  for (let i = 0; i < n; i++) {
    const o = i * d;
    for (let p = 0; p < d; p++) {
      const xp = x[o + p]!;
      if (xp === 0) continue;
      const r = p * d;
      for (let q = 0; q < d; q++) g[r + q] += xp * y[o + q]!;
    }
  }
  return g;
}

const frob2 = (m: Float64Array): number => {
  let s = 0;
  for (let i = 0; i < m.length; i++) s += m[i]! * m[i]!;
  return s;
};

/**
 * Linear CKA (Kornblith et al. 2019) of X = a and Y = b after centring their columns:
 * ||YᵀX||_F² / (||XᵀX||_F · ||YᵀY||_F). 1 for matrices equal up to an orthogonal transform and an isotropic
 * scale, 0 for ones whose centred columns are orthogonal. NaN when either centred matrix is zero (every
 * column constant, e.g. n = 1). For n ≤ d through the n × n Grams (⟨XXᵀ, YYᵀ⟩_F / (||XXᵀ||_F ||YYᵀ||_F),
 * the same value), else the d × d ones.
 */
export function linearCka(a: HostMatrix, b: HostMatrix, n: number, d: number): number {
  checkPair("linearCka", a, b, n, d);
  const [x, y] = [centreColumns(a, n, d), centreColumns(b, n, d)];
  let hsic: number, nx: number, ny: number;
  if (n <= d) {
    const [k, l] = [rowGram(x, n, d), rowGram(y, n, d)];
    hsic = 0;
    for (let i = 0; i < k.length; i++) hsic += k[i]! * l[i]!;
    [nx, ny] = [frob2(k), frob2(l)];
  } else {
    hsic = frob2(colCross(y, x, n, d));
    [nx, ny] = [frob2(colCross(x, x, n, d)), frob2(colCross(y, y, n, d))];
  }
  const den = Math.sqrt(nx) * Math.sqrt(ny);
  return den > 0 ? hsic / den : Number.NaN;
}

// ---- the report -----------------------------------------------------------------------------------------

/** N-way parallel sentences: sentences[lang][i] are translations of each other for every language. */
export interface ParallelSentences {
  langs: readonly string[];
  /** The language every other one is compared with (one of `langs`). */
  pivot: string;
  /** Token ids per language (no padding), the same N for each. Keys not in `langs` are ignored. */
  sentences: Readonly<Record<string, readonly (readonly number[])[]>>;
}

export interface AlignmentOptions {
  /** hidden_states indices (default all, 0..L). */
  layers?: readonly number[];
  /** Sentences per forward (default 16). */
  batchSize?: number;
  /** Seed of the derangement behind randomCos (default 0; the same pairs for every language and layer). */
  seed?: number;
  /** See PoolOptions.skipPrefix (default 0). */
  skipPrefix?: number;
  /** See PoolOptions.padId. */
  padId?: number;
}

/** One language against the pivot at one layer. */
export interface AlignmentScores {
  /** Top-1 retrieval accuracy, this language's sentences as queries among the pivot's. */
  x2pivot: number;
  /** Top-1 retrieval accuracy, the pivot's sentences as queries among this language's. */
  pivot2x: number;
  /** Mean cosine of translations. */
  meanCos: number;
  /** Mean cosine of non-translations (a seeded derangement): the baseline for meanCos. */
  randomCos: number;
  /** Linear CKA of the two N × D matrices. */
  cka: number;
}

export interface AlignmentLayer {
  /** hidden_states index: 0 embeddings, k after decoder layer k, L after the final norm. */
  layer: number;
  /** Per non-pivot language. */
  langs: Record<string, AlignmentScores>;
  /** Each score averaged over the non-pivot languages. */
  mean: AlignmentScores;
}

export interface AlignmentReport {
  pivot: string;
  /** The non-pivot languages, in the order given. */
  langs: string[];
  /** Sentences per language. */
  n: number;
  /** hidden size D. */
  dim: number;
  seed: number;
  skipPrefix: number;
  layers: AlignmentLayer[];
}

/** Every score of x against the pivot p (both n × d), sharing one cosine matrix. */
function scorePair(x: Float32Array, p: Float32Array, n: number, d: number, perm: readonly number[], where: string): AlignmentScores {
  checkPair(`alignmentReport (${where})`, x, p, n, d);
  const S = cosineMatrix(unitRows(x, n, d), unitRows(p, n, d), n, d);
  let meanCos = 0;
  let randomCos = 0;
  for (let i = 0; i < n; i++) {
    meanCos += S[i * n + i]!;
    randomCos += S[i * n + perm[i]!]!;
  }
  return { x2pivot: top1(S, n, false), pivot2x: top1(S, n, true), meanCos: meanCos / n, randomCos: randomCos / n, cka: linearCka(x, p, n, d) };
}

const SCORE_KEYS = ["x2pivot", "pivot2x", "meanCos", "randomCos", "cka"] as const;

/**
 * Per layer, every non-pivot language's alignment with the pivot (retrieval both ways, mean cosine of
 * translations and of random pairs, linear CKA) and their averages; a plain JSON-serializable object. The
 * pivot's states are pooled once, then each language's in turn (host memory: two × layers × N × D floats).
 * Throws (TensorError, naming the language) for a pivot that is not in `langs`, a language without
 * sentences, different N across languages, N < 2, an empty sentence, or no language besides the pivot.
 */
export async function alignmentReport(model: LlamaModel, parallel: ParallelSentences, opts: AlignmentOptions = {}): Promise<AlignmentReport> {
  const op = "alignmentReport";
  const { langs, pivot, sentences } = parallel;
  if (!Array.isArray(langs) || langs.length === 0) throw fail(op, "langs is empty");
  const dup = langs.find((l, i) => langs.indexOf(l) !== i);
  if (dup !== undefined) throw fail(op, `language "${dup}" is listed twice`);
  if (!langs.includes(pivot)) throw fail(op, `the pivot "${pivot}" is not one of the languages (${langs.join(", ")})`);
  const others = langs.filter((l) => l !== pivot);
  if (others.length === 0) throw fail(op, `no language besides the pivot "${pivot}" to compare with it`);
  const settings = poolSettings(op, model, opts);
  const V = model.config.vocabSize;
  const n = sentences?.[pivot]?.length ?? 0;
  for (const l of langs) {
    const s = sentences?.[l];
    if (!Array.isArray(s)) throw fail(op, `no sentences for language "${l}"`);
    checkSentences(op, `language "${l}"`, s, V, settings.skip);
    if (s.length !== n) throw fail(op, `language "${l}" has ${s.length} sentences, the pivot "${pivot}" ${n} (the set must be N-way parallel)`);
  }
  if (n < 2) throw fail(op, `needs at least 2 parallel sentences per language (retrieval and random pairs), got ${n}`);
  const seed = opts.seed ?? 0;
  const perm = derangement(n, seed);
  const d = model.config.hiddenSize;
  const { layers, batchSize, padId, skip } = settings;

  const pivotStates = await pool(model, sentences[pivot]!, layers, batchSize, padId, skip);
  const byLayer = layers.map(() => ({}) as Record<string, AlignmentScores>);
  for (const l of others) {
    const states = await pool(model, sentences[l]!, layers, batchSize, padId, skip);
    layers.forEach((layer, k) => {
      byLayer[k]![l] = scorePair(states[k]!, pivotStates[k]!, n, d, perm, `language "${l}", layer ${layer}`);
    });
  }
  return {
    pivot,
    langs: others,
    n,
    dim: d,
    seed,
    skipPrefix: skip,
    layers: layers.map((layer, k) => {
      const per = byLayer[k]!;
      const mean = Object.fromEntries(SCORE_KEYS.map((key) => [key, others.reduce((s, l) => s + per[l]![key], 0) / others.length])) as unknown as AlignmentScores;
      return { layer, langs: per, mean };
    }),
  };
}

// src/eval/alignment.ts:
//   - the host metrics on hand-worked cases (identical matrices: retrieval 1, cosine 1, CKA 1; a derangement of
//     one-hot rows: retrieval 0; ties to the lowest index; a zero row), CKA's invariance to orthogonal rotation
//     and isotropic scaling, and every metric against a naive float64 re-implementation on random data (CKA
//     through both the n × n and the d × d Grams); the seeded derangement;
//   - meanPooledStates against each sentence's own unpadded forward (hidden_states averaged on the host), the
//     same vector alone and in a padded batch, skipPrefix, a layer subset, GPU memory given back, errors;
//   - alignmentReport on a tiny random LLaMA with 3 languages × 5 sentences: its shape, its numbers equal to
//     the host metrics of meanPooledStates' matrices, JSON round trip, and the errors that name a language.
import { describe, expect, test } from "bun:test";
import {
  alignmentReport,
  derangement,
  linearCka,
  meanCosine,
  meanPooledStates,
  randomPairCosine,
  retrievalAccuracy,
} from "../../src/eval/index.ts";
import { LlamaModel } from "../../src/nn/index.ts";
import { noGrad, TensorError } from "../../src/tensor/index.ts";
import { getGpu, randomF32, rng } from "../helpers.ts";
import { TINY_LLAMA } from "../nn/tiny.ts";

// ---- naive float64 references -------------------------------------------------------------------------

const row = (m: ArrayLike<number>, i: number, d: number) => Array.from({ length: d }, (_, k) => m[i * d + k]!);
function cos(x: number[], y: number[]): number {
  let xy = 0, xx = 0, yy = 0;
  for (let k = 0; k < x.length; k++) [xy, xx, yy] = [xy + x[k]! * y[k]!, xx + x[k]! ** 2, yy + y[k]! ** 2];
  return xx > 0 && yy > 0 ? xy / Math.sqrt(xx * yy) : 0;
}
function naiveRetrieval(a: ArrayLike<number>, b: ArrayLike<number>, n: number, d: number): number {
  let hits = 0;
  for (let i = 0; i < n; i++) {
    const sims = Array.from({ length: n }, (_, j) => cos(row(a, i, d), row(b, j, d)));
    if (sims.indexOf(Math.max(...sims)) === i) hits++;
  }
  return hits / n;
}
/** CKA straight from the definition: centred X, Y; ||YᵀX||² / (||XᵀX|| ||YᵀY||) with d × d products. */
function naiveCka(a: ArrayLike<number>, b: ArrayLike<number>, n: number, d: number): number {
  const centre = (m: ArrayLike<number>) => {
    const rows = Array.from({ length: n }, (_, i) => row(m, i, d));
    const mean = Array.from({ length: d }, (_, k) => rows.reduce((s, r) => s + r[k]!, 0) / n);
    return rows.map((r) => r.map((v, k) => v - mean[k]!));
  };
  const [X, Y] = [centre(a), centre(b)];
  const frob2 = (P: number[][], Q: number[][]) => {
    let s = 0;
    for (let p = 0; p < d; p++)
      for (let q = 0; q < d; q++) {
        let v = 0;
        for (let i = 0; i < n; i++) v += P[i]![p]! * Q[i]![q]!;
        s += v * v;
      }
    return s;
  };
  return frob2(Y, X) / (Math.sqrt(frob2(X, X)) * Math.sqrt(frob2(Y, Y)));
}

/** A random d × d orthogonal matrix (Gram–Schmidt on random columns), row-major. */
function orthogonal(d: number, r: () => number): number[][] {
  const q: number[][] = [];
  while (q.length < d) {
    let v = Array.from({ length: d }, () => r() * 2 - 1);
    for (const u of q) {
      const p = v.reduce((s, x, k) => s + x * u[k]!, 0);
      v = v.map((x, k) => x - p * u[k]!);
    }
    const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    if (norm > 1e-6) q.push(v.map((x) => x / norm));
  }
  return q;
}
/** a (n × d) · M (d × d) · s, in float64. */
function transform(a: ArrayLike<number>, n: number, d: number, M: number[][], s: number): Float64Array {
  const out = new Float64Array(n * d);
  for (let i = 0; i < n; i++) for (let q = 0; q < d; q++) for (let p = 0; p < d; p++) out[i * d + q] += a[i * d + p]! * M[p]![q]! * s;
  return out;
}

describe("host metrics", () => {
  test("identical matrices: retrieval 1, cosine 1, CKA 1", () => {
    const [n, d] = [6, 4];
    const a = randomF32(n * d, rng(1));
    expect(retrievalAccuracy(a, a, n, d)).toBe(1);
    expect(meanCosine(a, a, n, d)).toBeCloseTo(1, 12);
    expect(linearCka(a, a, n, d)).toBeCloseTo(1, 12);
    expect(linearCka(a, Float64Array.from(a), n, d)).toBeCloseTo(1, 12);
  });

  test("a derangement of one-hot rows: retrieval 0; ties go to the lowest index; zero rows have cosine 0", () => {
    const n = 5;
    const eye = new Float32Array(n * n);
    for (let i = 0; i < n; i++) eye[i * n + i] = 1;
    const p = derangement(n, 3);
    const perm = new Float32Array(n * n);
    for (let i = 0; i < n; i++) perm[i * n + p[i]!] = 1;
    expect(retrievalAccuracy(eye, perm, n, n)).toBe(0);
    expect(retrievalAccuracy(perm, eye, n, n)).toBe(0);
    expect(meanCosine(eye, perm, n, n)).toBe(0);
    // The same rows twice: row 0 finds b_0, row 1 ties between b_0 and b_1 and takes b_0.
    const twice = Float32Array.from([1, 0, 1, 0]);
    expect(retrievalAccuracy(twice, twice, 2, 2)).toBe(0.5);
    // A zero row: cosine 0 with everything (not NaN).
    const z = Float32Array.from([0, 0, 1, 1]);
    expect(meanCosine(z, z, 2, 2)).toBeCloseTo(0.5, 12);
    expect(randomPairCosine(z, Float32Array.from([1, 1, 2, 2]), 2, 2, 0)).toBeCloseTo(0.5, 12);
  });

  test("CKA is invariant to orthogonal rotation and isotropic scaling", () => {
    const r = rng(7);
    for (const [n, d] of [[8, 5], [4, 6]]) {
      const a = randomF32(n * d, r);
      const b = randomF32(n * d, r);
      const Q = orthogonal(d, r);
      const aQ = transform(a, n, d, Q, 3.7);
      expect(linearCka(a, aQ, n, d)).toBeCloseTo(1, 10);
      expect(linearCka(aQ, b, n, d)).toBeCloseTo(linearCka(a, b, n, d), 10);
      expect(linearCka(a, transform(b, n, d, orthogonal(d, r), 0.01), n, d)).toBeCloseTo(linearCka(a, b, n, d), 10);
      // Adding a constant to a column changes nothing either (columns are centred).
      const shifted = Float64Array.from(b, (v, i) => v + (i % d) * 5);
      expect(linearCka(a, shifted, n, d)).toBeCloseTo(linearCka(a, b, n, d), 10);
    }
  });

  test("against a naive float64 reference on random data (n < d and n > d)", () => {
    const r = rng(11);
    for (const [n, d] of [[7, 12], [20, 6], [9, 9]]) {
      const a = randomF32(n * d, r);
      // b: a noisy copy of a, so retrieval is neither 0 nor 1.
      const b = Float32Array.from(a, (v) => v + 1.5 * (r() * 2 - 1));
      expect(retrievalAccuracy(a, b, n, d)).toBe(naiveRetrieval(a, b, n, d));
      expect(retrievalAccuracy(b, a, n, d)).toBe(naiveRetrieval(b, a, n, d));
      const cosines = Array.from({ length: n }, (_, i) => cos(row(a, i, d), row(b, i, d)));
      expect(meanCosine(a, b, n, d)).toBeCloseTo(cosines.reduce((s, v) => s + v, 0) / n, 12);
      const p = derangement(n, 42);
      const rand = Array.from({ length: n }, (_, i) => cos(row(a, i, d), row(b, p[i]!, d)));
      expect(randomPairCosine(a, b, n, d, 42)).toBeCloseTo(rand.reduce((s, v) => s + v, 0) / n, 12);
      const cka = linearCka(a, b, n, d);
      expect(cka).toBeGreaterThan(0);
      expect(cka).toBeLessThan(1);
      expect(cka).toBeCloseTo(naiveCka(a, b, n, d), 12);
    }
  });

  test("derangement: a permutation without fixed points, the same for the same seed", () => {
    for (const n of [2, 3, 10, 101])
      for (const seed of [0, 1, 12345, 2 ** 40]) {
        const p = derangement(n, seed);
        expect([...p].sort((x, y) => x - y)).toEqual(Array.from({ length: n }, (_, i) => i));
        expect(p.every((v, i) => v !== i)).toBe(true);
        expect(derangement(n, seed)).toEqual(p);
      }
    expect(derangement(50, 1)).not.toEqual(derangement(50, 2));
    expect(() => derangement(1, 0)).toThrow(/n >= 2/);
  });

  test("errors", () => {
    const a = new Float32Array(6);
    expect(() => retrievalAccuracy(a, new Float32Array(5), 2, 3)).toThrow(/b has 5 values, not n × d = 2 × 3 = 6/);
    expect(() => meanCosine(a, Float32Array.from([0, 0, 0, 0, Number.NaN, 0]), 2, 3)).toThrow(/b\[1\]\[1\] is NaN/);
    expect(() => linearCka(a, a, 0, 3)).toThrow(/positive integers/);
    expect(() => randomPairCosine(new Float32Array(3), new Float32Array(3), 1, 3, 0)).toThrow(/n >= 2/);
    expect(linearCka(Float32Array.from([1, 2, 3]), Float32Array.from([3, 2, 1]), 1, 3)).toBeNaN(); // n = 1: nothing varies
  });
});

// ---- on the GPU -----------------------------------------------------------------------------------------

async function tinyModel(): Promise<LlamaModel> {
  return LlamaModel.fromConfig(await getGpu(), TINY_LLAMA, { seed: 1 });
}

/** Each sentence alone, unpadded: its hidden_states[l] averaged over tokens [skip, len) in float64. */
async function reference(model: LlamaModel, sentences: number[][], layers: number[], skip = 0): Promise<Float64Array[]> {
  const D = model.config.hiddenSize;
  const out = layers.map(() => new Float64Array(sentences.length * D));
  for (const [i, s] of sentences.entries()) {
    const { logits, hiddenStates } = noGrad(() => model.forward([s], { outputHiddenStates: true }));
    for (const [k, l] of layers.entries()) {
      const h = await hiddenStates![l]!.toArray();
      for (let t = skip; t < s.length; t++) for (let c = 0; c < D; c++) out[k]![i * D + c] += h[t * D + c]! / (s.length - skip);
    }
    logits.release();
    for (const h of hiddenStates!) h.release();
  }
  return out;
}

function expectClose(got: Float32Array, want: Float64Array, tol: number, what: string): void {
  expect(got.length, what).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / Math.max(1, Math.abs(want[i]!)));
  expect(worst, what).toBeLessThan(tol);
}

/** Sentences of varied lengths (1..9 tokens) with ids in [1, 64). */
function sentencesOf(seed: number, count: number): number[][] {
  const r = rng(seed);
  return Array.from({ length: count }, () => Array.from({ length: 1 + Math.floor(r() * 9) }, () => 1 + Math.floor(r() * 63)));
}

describe("meanPooledStates", () => {
  test("= each sentence's own unpadded forward, averaged; alone = in a padded batch; memory given back", async () => {
    const gpu = await getGpu();
    const model = await tinyModel();
    const L = model.config.numHiddenLayers;
    const D = model.config.hiddenSize;
    const sentences = [...sentencesOf(3, 6), [5], [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]];
    await gpu.sync();
    const start = gpu.memory().liveBytes;
    const all = await meanPooledStates(model, sentences, { batchSize: 3 });
    await gpu.sync();
    expect(gpu.memory().liveBytes).toBe(start);
    expect(all).toHaveLength(L + 1);
    for (const m of all) expect(m.length).toBe(sentences.length * D);
    const ref = await reference(model, sentences, Array.from({ length: L + 1 }, (_, l) => l));
    all.forEach((m, l) => expectClose(m, ref[l]!, 2e-5, `layer ${l}`));

    // The single-token sentence [5] (index 6) alone vs in one padded batch with every other sentence.
    const alone = await meanPooledStates(model, [sentences[6]!, sentences[0]!]);
    const batched = await meanPooledStates(model, sentences, { batchSize: 16 });
    for (let l = 0; l <= L; l++) {
      const a = alone[l]!.subarray(0, D);
      const b = batched[l]!.subarray(6 * D, 7 * D);
      for (let c = 0; c < D; c++) expect(Math.abs(a[c]! - b[c]!)).toBeLessThan(1e-5 * Math.max(1, Math.abs(a[c]!)));
    }
    // A subset of layers in the given order, skipPrefix, a pad id.
    const sub = await meanPooledStates(model, sentences.slice(0, 4).map((s) => [1, ...s]), { layers: [L, 1], skipPrefix: 1, padId: 63, batchSize: 2 });
    const subRef = await reference(model, sentences.slice(0, 4).map((s) => [1, ...s]), [L, 1], 1);
    expect(sub).toHaveLength(2);
    sub.forEach((m, k) => expectClose(m, subRef[k]!, 2e-5, `subset ${k}`));
    await gpu.sync();
    expect(gpu.memory().liveBytes).toBe(start);
    model.release();
  });

  test("errors", async () => {
    const model = await tinyModel();
    const gpu = model.gpu;
    await gpu.sync();
    const start = gpu.memory().liveBytes;
    await expect(meanPooledStates(model, [])).rejects.toThrow(/meanPooledStates: sentences: no sentences/);
    await expect(meanPooledStates(model, [[1, 2], []])).rejects.toThrow(/sentence 1 is empty/);
    await expect(meanPooledStates(model, [[1, 64]])).rejects.toThrow(/sentence 0, token 1 is 64, not a token id in \[0, 64\)/);
    await expect(meanPooledStates(model, [[1, 2]], { layers: [3] })).rejects.toThrow(/layer 3 is not a hidden-states index in 0..2/);
    await expect(meanPooledStates(model, [[1, 2]], { batchSize: 0 })).rejects.toThrow(/batchSize must be a positive integer/);
    await expect(meanPooledStates(model, [[1]], { skipPrefix: 1 })).rejects.toThrow(/sentence 0 has 1 token\(s\), no more than skipPrefix 1/);
    await expect(meanPooledStates(model, [[]])).rejects.toBeInstanceOf(TensorError);
    await gpu.sync();
    expect(gpu.memory().liveBytes).toBe(start);
    model.release();
  });
});

describe("alignmentReport", () => {
  const langs = ["en", "de", "zh"];
  const sentences = { en: sentencesOf(21, 5), de: sentencesOf(22, 5), zh: sentencesOf(23, 5) };

  test("shape, the host metrics of the pooled matrices, JSON round trip", async () => {
    const model = await tinyModel();
    const gpu = model.gpu;
    const D = model.config.hiddenSize;
    await gpu.sync();
    const start = gpu.memory().liveBytes;
    const rep = await alignmentReport(model, { langs, pivot: "en", sentences }, { seed: 9, batchSize: 2 });
    await gpu.sync();
    expect(gpu.memory().liveBytes).toBe(start);
    expect(rep).toMatchObject({ pivot: "en", langs: ["de", "zh"], n: 5, dim: D, seed: 9, skipPrefix: 0 });
    expect(rep.layers.map((l) => l.layer)).toEqual([0, 1, 2]);
    const pooled = Object.fromEntries(await Promise.all(langs.map(async (l) => [l, await meanPooledStates(model, sentences[l as keyof typeof sentences])] as const)));
    for (const [k, layer] of rep.layers.entries()) {
      expect(Object.keys(layer.langs)).toEqual(["de", "zh"]);
      for (const l of ["de", "zh"]) {
        const s = layer.langs[l]!;
        const [x, p] = [pooled[l]![k]!, pooled.en![k]!];
        expect(Object.keys(s).sort()).toEqual(["cka", "meanCos", "pivot2x", "randomCos", "x2pivot"]);
        expect(s.x2pivot).toBe(retrievalAccuracy(x, p, 5, D));
        expect(s.pivot2x).toBe(retrievalAccuracy(p, x, 5, D));
        expect(s.meanCos).toBeCloseTo(meanCosine(x, p, 5, D), 5);
        expect(s.randomCos).toBeCloseTo(randomPairCosine(x, p, 5, D, 9), 5);
        expect(s.cka).toBeCloseTo(linearCka(x, p, 5, D), 5);
        for (const v of Object.values(s)) expect(Number.isFinite(v)).toBe(true);
        expect(s.x2pivot * 5).toBe(Math.round(s.x2pivot * 5));
      }
      for (const key of ["x2pivot", "pivot2x", "meanCos", "randomCos", "cka"] as const)
        expect(layer.mean[key]).toBeCloseTo((layer.langs.de![key] + layer.langs.zh![key]) / 2, 12);
    }
    expect(JSON.parse(JSON.stringify(rep))).toEqual(rep);
    // A language against itself: retrieval 1, cosine 1, CKA 1 at every layer (distinct sentences).
    const distinct = [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10], [11, 12]];
    const self = await alignmentReport(model, { langs: ["a", "b"], pivot: "a", sentences: { a: distinct, b: distinct } }, { layers: [2, 0] });
    expect(self.layers.map((l) => l.layer)).toEqual([2, 0]);
    for (const l of self.layers) {
      expect(l.langs.b!.x2pivot).toBe(1);
      expect(l.langs.b!.pivot2x).toBe(1);
      expect(l.langs.b!.meanCos).toBeCloseTo(1, 6);
      expect(l.langs.b!.cka).toBeCloseTo(1, 6);
      expect(l.mean).toEqual(l.langs.b!);
    }
    model.release();
  });

  test("errors name the language", async () => {
    const model = await tinyModel();
    const run = (p: Parameters<typeof alignmentReport>[1], o = {}) => alignmentReport(model, p, o);
    await expect(run({ langs, pivot: "fr", sentences })).rejects.toThrow(/the pivot "fr" is not one of the languages \(en, de, zh\)/);
    await expect(run({ langs, pivot: "en", sentences: { ...sentences, de: sentences.de.slice(0, 4) } })).rejects.toThrow(
      /language "de" has 4 sentences, the pivot "en" 5 \(the set must be N-way parallel\)/,
    );
    await expect(run({ langs, pivot: "en", sentences: { ...sentences, zh: [...sentences.zh.slice(0, 4), []] } })).rejects.toThrow(/language "zh": sentence 4 is empty/);
    await expect(run({ langs, pivot: "en", sentences: { en: sentences.en, de: sentences.de } })).rejects.toThrow(/no sentences for language "zh"/);
    await expect(run({ langs: ["en"], pivot: "en", sentences })).rejects.toThrow(/no language besides the pivot "en"/);
    await expect(run({ langs: ["en", "de", "en"], pivot: "en", sentences })).rejects.toThrow(/language "en" is listed twice/);
    await expect(run({ langs, pivot: "en", sentences: { en: [[1]], de: [[2]], zh: [[3]] } })).rejects.toThrow(/at least 2 parallel sentences/);
    await expect(run({ langs, pivot: "en", sentences }, { layers: [9] })).rejects.toBeInstanceOf(TensorError);
    model.release();
  });
});

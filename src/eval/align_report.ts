/**
 * The representation analysis of `alignx eval --align-report` (the paper's: translations' states come closer at
 * the align layer, while the output layer keeps languages apart):
 *   - src/eval/alignment.ts's alignmentReport per layer 0..L (retrieval top-1 x→eng and eng→x, mean cosine of
 *     translations vs random pairs, linear CKA);
 *   - a language-identification probe per layer: a nearest-centroid classifier of mean-pooled states
 *     (`lidProbe`). The same seeded half of the sentence indices trains it in every language and the other half
 *     tests it, so no test sentence is seen in any language during training. Each state is scaled to unit length
 *     (middle layers of LLaMA-family models carry a few huge dimensions that would dominate distances), a
 *     language's centroid is the mean of its training states, and a test state goes to the centroid of highest
 *     cosine (ties: the language listed first). Accuracy near 1 at the last layer: the output layer keeps languages
 *     apart; 1 / (number of languages) is chance;
 *   - `alignmentSvg`: the curves against the layer index (retrieval, cosine gap, CKA, probe accuracy), the align
 *     layer marked when the model's config.json names one.
 * The probe pools the states once more (alignmentReport does not hand its states out): twice the forward work
 * of alignmentReport alone, which for the few hundred sentences of an analysis is seconds on a GPU.
 */
import type { LlamaModel } from "../nn/llama.ts";
import { mixSeed, Mulberry32 } from "../tensor/index.ts";
import { alignmentReport, meanPooledStates, type AlignmentReport, type HostMatrix } from "./alignment.ts";
import { linePlotSvg } from "./plot.ts";

export interface LidProbeLayer {
  layer: number;
  /** Share of test states assigned to their own language. */
  accuracy: number;
  /** Per language, the share of its test states assigned to it. */
  langs: Record<string, number>;
}

export interface LidProbeResult {
  langs: string[];
  /** Sentence indices per split (the same in every language). */
  train: number;
  test: number;
  seed: number;
  chance: number;
  layers: LidProbeLayer[];
}

/** The first ⌊n/2⌋ of a seeded permutation of 0..n−1 (train) and the rest (test). n ≥ 2. */
export function probeSplit(n: number, seed: number): { train: number[]; test: number[] } {
  if (!Number.isInteger(n) || n < 2) throw new Error(`lidProbe: needs at least 2 sentences per language (half to train, half to test), got ${n}`);
  const rng = new Mulberry32(mixSeed(seed, 0x11d));
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [p[i], p[j]] = [p[j]!, p[i]!];
  }
  const h = Math.floor(n / 2);
  return { train: p.slice(0, h).sort((a, b) => a - b), test: p.slice(h).sort((a, b) => a - b) };
}

/** Row i of an n × d matrix scaled to unit length, in float64 (a zero row stays zero). */
function unitRow(m: HostMatrix, i: number, d: number): Float64Array {
  const r = new Float64Array(d);
  let ss = 0;
  for (let k = 0; k < d; k++) ss += (r[k] = m[i * d + k]!) ** 2;
  const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
  for (let k = 0; k < d; k++) r[k]! *= inv;
  return r;
}

/**
 * Nearest-centroid language identification on one layer's states: `states[lang]` is n × d (row i the same
 * sentence in every language). Trained on `split.train`, tested on `split.test` (see the module comment).
 */
export function nearestCentroidProbe(
  states: Readonly<Record<string, HostMatrix>>,
  langs: readonly string[],
  n: number,
  d: number,
  split: { train: readonly number[]; test: readonly number[] },
): { accuracy: number; langs: Record<string, number> } {
  if (langs.length < 2) throw new Error("lidProbe: needs at least 2 languages");
  const centroids = langs.map((l) => {
    const m = states[l];
    if (!m || m.length !== n * d) throw new Error(`lidProbe: language "${l}" has ${m?.length ?? 0} values, not n × d = ${n * d}`);
    const c = new Float64Array(d);
    for (const i of split.train) {
      const u = unitRow(m, i, d);
      for (let k = 0; k < d; k++) c[k]! += u[k]!;
    }
    let ss = 0;
    for (let k = 0; k < d; k++) ss += c[k]! ** 2;
    const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
    for (let k = 0; k < d; k++) c[k]! *= inv;
    return c;
  });
  let hits = 0;
  const per: Record<string, number> = {};
  langs.forEach((l, li) => {
    let own = 0;
    for (const i of split.test) {
      const u = unitRow(states[l]!, i, d);
      let best = 0;
      let bestV = -Infinity;
      centroids.forEach((c, ci) => {
        let s = 0;
        for (let k = 0; k < d; k++) s += u[k]! * c[k]!;
        if (s > bestV) [best, bestV] = [ci, s];
      });
      if (best === li) own++;
    }
    per[l] = own / split.test.length;
    hits += own;
  });
  return { accuracy: hits / (split.test.length * langs.length), langs: per };
}

export interface LidProbeOptions {
  /** hidden_states indices (default all, 0..L). */
  layers?: readonly number[];
  batchSize?: number;
  skipPrefix?: number;
  padId?: number;
  /** Seed of the train/test split (default 0). */
  seed?: number;
}

/** The probe at every requested layer, from the sentences' token ids (N-way parallel, N ≥ 2). */
export async function lidProbe(model: LlamaModel, langs: readonly string[], sentences: Readonly<Record<string, readonly (readonly number[])[]>>, o: LidProbeOptions = {}): Promise<LidProbeResult> {
  const L = model.config.numHiddenLayers;
  const layers = o.layers ? [...o.layers] : Array.from({ length: L + 1 }, (_, l) => l);
  const n = sentences[langs[0]!]?.length ?? 0;
  for (const l of langs) if ((sentences[l]?.length ?? -1) !== n) throw new Error(`lidProbe: language "${l}" has ${sentences[l]?.length ?? 0} sentences, "${langs[0]}" ${n}`);
  const seed = o.seed ?? 0;
  const split = probeSplit(n, seed);
  const d = model.config.hiddenSize;
  const pooled: Record<string, Float32Array[]> = {};
  for (const l of langs) pooled[l] = await meanPooledStates(model, sentences[l]!, { layers, batchSize: o.batchSize, skipPrefix: o.skipPrefix, padId: o.padId });
  return {
    langs: [...langs],
    train: split.train.length,
    test: split.test.length,
    seed,
    chance: 1 / langs.length,
    layers: layers.map((layer, k) => ({ layer, ...nearestCentroidProbe(Object.fromEntries(langs.map((l) => [l, pooled[l]![k]!])), langs, n, d, split) })),
  };
}

export interface AlignmentAnalysis {
  format: "alignx-alignment";
  version: 1;
  model: string;
  data: string;
  split: string;
  /** Every language, the pivot first. */
  langs: string[];
  pivot: string;
  n: number;
  num_layers: number;
  /** The model's config.json align_layer, or null. */
  align_layer: number | null;
  alignment: AlignmentReport;
  lid_probe: LidProbeResult;
  seconds: number;
  created: string;
}

export interface AnalysisOptions {
  pivot: string;
  langs: readonly string[];
  /** Token ids per language (N-way parallel). */
  sentences: Readonly<Record<string, readonly (readonly number[])[]>>;
  batchSize?: number;
  skipPrefix?: number;
  padId?: number;
  seed?: number;
  alignLayer: number | null;
  model: string;
  data: string;
  split: string;
}

/** alignmentReport and lidProbe at every layer 0..L, as one JSON-ready object. */
export async function alignmentAnalysis(model: LlamaModel, o: AnalysisOptions): Promise<AlignmentAnalysis> {
  const t0 = performance.now();
  const langs = [o.pivot, ...o.langs.filter((l) => l !== o.pivot)];
  const common = { batchSize: o.batchSize, skipPrefix: o.skipPrefix, padId: o.padId, seed: o.seed ?? 0 };
  const alignment = await alignmentReport(model, { langs, pivot: o.pivot, sentences: o.sentences }, common);
  const probe = await lidProbe(model, langs, o.sentences, common);
  return {
    format: "alignx-alignment",
    version: 1,
    model: o.model,
    data: o.data,
    split: o.split,
    langs,
    pivot: o.pivot,
    n: alignment.n,
    num_layers: model.config.numHiddenLayers,
    align_layer: o.alignLayer,
    alignment,
    lid_probe: probe,
    seconds: (performance.now() - t0) / 1000,
    created: new Date().toISOString(),
  };
}

/** The analysis' curves against the layer index, one panel per measure, the align layer marked. */
export function alignmentSvg(a: AlignmentAnalysis): string {
  const layers = a.alignment.layers;
  const markers = a.align_layer === null ? [] : [{ x: a.align_layer, label: "align layer" }];
  const pts = (f: (l: (typeof layers)[number]) => number) => layers.map((l) => [l.layer, f(l)] as [number, number]);
  return linePlotSvg({
    title: `Representation alignment per layer: ${a.langs.length} languages × ${a.n} sentences (${a.split})`,
    xLabel: `layer (0 = embeddings, ${a.num_layers} = after the final norm)`,
    panels: [
      {
        yLabel: `retrieval top-1 (x↔${a.pivot})`,
        series: [
          { name: `x→${a.pivot}`, points: pts((l) => l.mean.x2pivot) },
          { name: `${a.pivot}→x`, points: pts((l) => l.mean.pivot2x) },
        ],
        markers,
      },
      {
        yLabel: "cosine",
        series: [
          { name: "translations − random", points: pts((l) => l.mean.meanCos - l.mean.randomCos) },
          { name: "translations", dashed: true, points: pts((l) => l.mean.meanCos) },
          { name: "random pairs", dashed: true, points: pts((l) => l.mean.randomCos) },
        ],
        markers,
      },
      { yLabel: "linear CKA", series: [{ name: `CKA (x, ${a.pivot})`, points: pts((l) => l.mean.cka) }], markers },
      {
        yLabel: "language-ID probe accuracy",
        series: [
          { name: "LID probe", points: a.lid_probe.layers.map((l) => [l.layer, l.accuracy] as [number, number]) },
          { name: "chance", dashed: true, points: a.lid_probe.layers.map((l) => [l.layer, a.lid_probe.chance] as [number, number]) },
        ],
        markers,
      },
    ],
  });
}

/** A short text summary: the mean scores per layer. */
export function alignmentTable(a: AlignmentAnalysis): string {
  const head = ["layer", "x→en", "en→x", "cos", "random", "CKA", "LID probe"];
  const rows = a.alignment.layers.map((l, k) => [
    `${l.layer}${l.layer === a.align_layer ? " (align)" : ""}`,
    (100 * l.mean.x2pivot).toFixed(1),
    (100 * l.mean.pivot2x).toFixed(1),
    l.mean.meanCos.toFixed(3),
    l.mean.randomCos.toFixed(3),
    l.mean.cka.toFixed(3),
    (100 * a.lid_probe.layers[k]!.accuracy).toFixed(1),
  ]);
  const all = [head, ...rows];
  const w = head.map((_, j) => Math.max(...all.map((r) => r[j]!.length)));
  return [
    ...all.map((r) => r.map((c, j) => (j === 0 ? c.padEnd(w[j]!) : c.padStart(w[j]!))).join("  ")),
    "",
    `retrieval top-1 and LID probe accuracy in %; ${a.langs.length} languages (pivot ${a.pivot}) × ${a.n} sentences; probe chance ${(100 * a.lid_probe.chance).toFixed(1)}%`,
  ].join("\n");
}

/**
 * Alignment of translations inside the translation prompt: the states AlignX's contrastive loss pulls together.
 * For each example of stage-1 shards (the translation prompt with the span index: 1 = the source sentence, 2 = the
 * target), at each layer k: u = the mean of hidden_states[k] over the source span, v = the mean over the target
 * span (what L_CTR computes at the align layer). Then, per translation direction (src_lang → tgt_lang), the top-1
 * cosine retrieval of each example's v among the direction's v's from its u, and of u from v
 * (`retrievalAccuracy` of alignment.ts), averaged over both ways and over the directions with at least two examples.
 *
 * The target span attends to the source (causal attention over the whole prompt), so this measures how much of the
 * source a model carries into its translation's states, which L_CTR optimizes; `alignmentReport` (alignment.ts)
 * encodes each sentence alone, as the paper's analysis does. On held-out examples both say whether the alignment
 * generalizes beyond the pairs trained on.
 */
import { Loader, type LoaderBatch } from "../data/index.ts";
import type { LlamaModel } from "../nn/index.ts";
import { maskedMean, noGrad, Tensor, TensorError } from "../tensor/index.ts";
import { retrievalAccuracy } from "./alignment.ts";

export interface SpanAlignmentOptions {
  /** Layers to score (default every one, 0..L). */
  layers?: number[];
  /** Examples per forward (default 8). */
  batchSize?: number;
  /** The model's tokenizer hash: shards packed with another are refused. */
  expectTokenizerHash?: string;
  padId?: number;
}

export interface SpanAlignmentLayer {
  layer: number;
  /** Mean over directions of (u→v + v→u) / 2 top-1 retrieval. */
  retrieval: number;
  /** Mean cosine of an example's u and v. */
  meanCos: number;
}

export interface SpanAlignmentReport {
  examples: number;
  /** Directions scored ("<src id>-<tgt id>" of the corpus's language table → examples). */
  directions: Record<string, number>;
  /** The mean over scored directions of 1 / examples: what retrieval would be by chance. */
  chance: number;
  layers: SpanAlignmentLayer[];
}

/** Score stage-1 shards `data` (a pack output directory, its manifest or shard globs) with `model`; see the module comment. */
export async function spanAlignment(model: LlamaModel, data: string, o: SpanAlignmentOptions = {}): Promise<SpanAlignmentReport> {
  const L = model.config.numHiddenLayers;
  const layers = o.layers ?? Array.from({ length: L + 1 }, (_, i) => i);
  for (const k of layers) if (!Number.isInteger(k) || k < 0 || k > L) throw new TensorError(`spanAlignment: layer ${k} is outside 0..${L}`);
  const D = model.config.hiddenSize;
  const gpu = model.gpu;
  /** direction → per layer: the u rows and v rows. */
  const groups = new Map<string, { u: number[][]; v: number[][] }[]>();
  const loader = await Loader.open({ data, batchSize: o.batchSize ?? 8, shuffle: false, epochs: 1, padId: o.padId ?? 0, expectTokenizerHash: o.expectTokenizerHash });
  let examples = 0;
  try {
    for await (const b of loader) await scoreBatch(b);
  } finally {
    await loader.close();
  }

  async function scoreBatch(b: LoaderBatch): Promise<void> {
    const B = b.batch, T = b.length;
    const rows = (a: Int32Array) => Array.from({ length: B }, (_, i) => Array.from(a.subarray(i * T, (i + 1) * T)));
    for (let i = 0; i < B; i++) {
      const span = b.srcTgtIndex.subarray(i * T, (i + 1) * T);
      if (!span.includes(1) || !span.includes(2)) throw new TensorError(`spanAlignment: example ${examples + i} of ${data} has no source or no target span (not stage-1 shards?)`);
    }
    const out = noGrad(() => model.forward(rows(b.inputIds), { attentionMask: rows(b.attentionMask), outputHiddenStates: true }));
    const m1 = Tensor.fromArray(gpu, Float32Array.from(b.srcTgtIndex, (x) => (x === 1 ? 1 : 0)), [B, T]);
    const m2 = Tensor.fromArray(gpu, Float32Array.from(b.srcTgtIndex, (x) => (x === 2 ? 1 : 0)), [B, T]);
    try {
      for (const [li, k] of layers.entries()) {
        const h = out.hiddenStates![k]!;
        const uT = noGrad(() => maskedMean(h, m1));
        const vT = noGrad(() => maskedMean(h, m2));
        const [u, v] = [await uT.toArray(), await vT.toArray()];
        uT.release();
        vT.release();
        for (let i = 0; i < B; i++) {
          const key = `${b.srcLang[i]}-${b.tgtLang[i]}`;
          let g = groups.get(key);
          if (!g) groups.set(key, (g = layers.map(() => ({ u: [], v: [] }))));
          g[li]!.u.push(Array.from(u.subarray(i * D, (i + 1) * D)));
          g[li]!.v.push(Array.from(v.subarray(i * D, (i + 1) * D)));
        }
      }
    } finally {
      m1.release();
      m2.release();
      out.logits.release();
      for (const h of out.hiddenStates ?? []) h.release();
    }
    examples += B;
  }

  const scored = [...groups].filter(([, g]) => g[0]!.u.length >= 2);
  if (scored.length === 0) throw new TensorError(`spanAlignment: ${data} has no translation direction with two or more examples to retrieve among`);
  const flat = (rs: number[][]) => Float32Array.from(rs.flat());
  const out: SpanAlignmentLayer[] = layers.map((k, li) => {
    let retrieval = 0, cos = 0, pairs = 0;
    for (const [, g] of scored) {
      const { u, v } = g[li]!;
      const n = u.length;
      const [U, V] = [flat(u), flat(v)];
      retrieval += (retrievalAccuracy(U, V, n, D) + retrievalAccuracy(V, U, n, D)) / 2;
      for (let i = 0; i < n; i++) {
        let dot = 0, nu = 0, nv = 0;
        for (let d = 0; d < D; d++) (dot += u[i]![d]! * v[i]![d]!), (nu += u[i]![d]! ** 2), (nv += v[i]![d]! ** 2);
        cos += nu > 0 && nv > 0 ? dot / Math.sqrt(nu * nv) : 0;
        pairs++;
      }
    }
    return { layer: k, retrieval: retrieval / scored.length, meanCos: cos / pairs };
  });
  const sizes = scored.map(([, g]) => g[0]!.u.length);
  return {
    examples,
    directions: Object.fromEntries(scored.map(([k, g]) => [k, g[0]!.u.length])),
    chance: sizes.reduce((a, n) => a + 1 / n, 0) / sizes.length,
    layers: out,
  };
}

/**
 * AlignX's stage-1 objective (../shared/ALIGNX.md; the reference is ictnlp/AlignX's
 * LlamaForCasualLMWithContrastiveLearningAndLanguageMatchingWithinInst.forward), on the ops of src/tensor so
 * autograd gives every backward:
 *
 *   L = L_NTP + λ_ctr · L_CTR + λ_lam · L_LAM
 *
 *   L_NTP  the model's shifted cross-entropy (LlamaModel.loss, HF's LlamaForCausalLM loss), unchanged.
 *   L_CTR  contrastiveLoss(hidden_states[align_layer], src_tgt_index, τ):
 *            u_i = mean of the rows t with index[i][t] = 1, v_i = mean of the rows with index 2   (B × D each)
 *            S[i][j] = cos(u_i, v_j) / τ
 *            L_CTR = −(1 / 2B) Σ_i log softmax_j(S[i][·])[i]    (= ½ · cross_entropy(S, arange(B)))
 *          The reference builds S with nn.CosineSimilarity on expanded copies and LogSoftmax over dim 0 of
 *          cos(u_j, v_i): the same matrix, transposed, so its softmax runs over the targets v_j for each
 *          source anchor u_i, as written here. B = 1: the reference adds the integer 0 (no term, no gradient).
 *   L_LAM  languageMatchingLoss(hidden_states[L] (after the final norm), src_tgt_index, src_lang, tgt_lang, C):
 *            the states without their last position, the index without its first (state row t goes with the
 *            index of token t + 1); e = [mean of index-1 rows (B); mean of index-2 rows (B)], lang = [src; tgt]
 *            logits[i, j] = C([e_i ; e_j]) for all (2B)² ordered pairs, self-pairs included
 *            L_LAM = mean over the pairs of cross_entropy(logits[i, j], lang_i == lang_j ? 1 : 0)
 *          Here the shift is a mask: row t of the full states is weighted by (index[t + 1] == k) and the last
 *          row by 0, so no [B, T − 1, D] copy is made; the masked mean is the same sum over the same rows.
 *
 * Differences from the reference, none in the value of a well-formed batch:
 *   - an example with no index-1 or no index-2 position (after the shift, for L_LAM) is a TensorError naming
 *     it; the reference divides by a zero count and the loss becomes NaN;
 *   - the classifier never builds its (2B)² × 2d pair inputs (LanguageMatchingClassifier below);
 *   - a λ of 0 leaves the term out of the graph (its value is still computed, under noGrad, for the metrics),
 *     so `--no-ctr` / `--no-lam` cost no backward and L is bit-identical to plain next-token training.
 *   - The reference drops, per micro-batch, the examples whose position −4 is not target; the packer drops
 *     them when it writes the shards (../shared/ALIGNX.md), so the loss takes the batch as it comes.
 */
import type { Gpu } from "../gpu/index.ts";
import type { ParamSpec } from "../io/index.ts";
import { Module, type LlamaModel } from "../nn/index.ts";
import {
  add,
  concat,
  contiguous,
  cosineSimilarityMatrix,
  crossEntropy,
  DEFAULT_SEED,
  Generator,
  linear,
  maskedMean,
  mul,
  mulScalar,
  noGrad,
  rand,
  scope,
  silu,
  slice,
  Tensor,
  TensorError,
} from "../tensor/index.ts";
import type { Stage1Config } from "./config.ts";

// ---- span masks ---------------------------------------------------------------------------------------

/**
 * Check `srcTgtIndex` (B × T of 0, 1, 2) against the states' [B, T]; return it as rows. Throws naming the
 * first bad row or value.
 */
function checkIndex(op: string, index: readonly (readonly number[])[], B: number, T: number): void {
  if (!Array.isArray(index) || index.length !== B) throw new TensorError(`${op}: srcTgtIndex must have ${B} rows (the batch), got ${Array.isArray(index) ? index.length : typeof index}`);
  for (let b = 0; b < B; b++) {
    const row = index[b]!;
    if (!row || row.length !== T) throw new TensorError(`${op}: srcTgtIndex[${b}] has ${row?.length ?? 0} values, but the states have ${T} positions`);
    for (let t = 0; t < T; t++) {
      const v = row[t]!;
      if (v !== 0 && v !== 1 && v !== 2) throw new TensorError(`${op}: srcTgtIndex[${b}][${t}] = ${v} is not 0, 1 (source) or 2 (target)`);
    }
  }
}

/**
 * The f32 mask [B, T] of the rows whose index (read `shift` positions later) is `k`, checking each row has one.
 * shift = 1: row t takes index[t + 1], the last row none.
 */
function spanMask(gpu: Gpu, op: string, index: readonly (readonly number[])[], B: number, T: number, k: 1 | 2, shift: 0 | 1): Tensor {
  const m = new Float32Array(B * T);
  for (let b = 0; b < B; b++) {
    let n = 0;
    for (let t = 0; t + shift < T; t++) if (index[b]![t + shift] === k) (m[b * T + t] = 1), n++;
    if (n === 0)
      throw new TensorError(
        `${op}: example ${b} has no ${k === 1 ? "source (index 1)" : "target (index 2)"} token${shift ? " after the first position" : ""}; ` +
          `its mean is undefined (the reference divides by zero)`,
      );
  }
  return Tensor.fromArray(gpu, m, [B, T]);
}

function checkStates(op: string, h: Tensor, what: string): [number, number, number] {
  h.assertLive();
  if (h.rank !== 3) throw new TensorError(`${op}: ${what} must be [B, T, D], got ${h}`);
  if (h.dtype !== "f32") throw new TensorError(`${op}: ${what} must be f32, got ${h.dtype}`);
  return h.shape as [number, number, number];
}

// ---- contrastive loss ---------------------------------------------------------------------------------

export interface ContrastiveOptions {
  /** τ > 0 (the reference's contrastive_temperature, 0.1). */
  temperature: number;
}

/** L_CTR of `hidden` [B, T, D] (hidden_states[align_layer]) with the span index B × T; a scalar. See the module comment. */
export function contrastiveLoss(hidden: Tensor, srcTgtIndex: readonly (readonly number[])[], opts: ContrastiveOptions): Tensor {
  const op = "contrastiveLoss";
  const [B, T] = checkStates(op, hidden, "hidden");
  const tau = opts.temperature;
  if (!(tau > 0) || !Number.isFinite(tau)) throw new TensorError(`${op}: temperature must be finite and > 0, got ${tau}`);
  checkIndex(op, srcTgtIndex, B, T);
  // B = 1: the reference's `contrastive_loss = 0` (a constant: nothing to differentiate).
  if (B === 1) return Tensor.zeros(hidden.gpu, []);
  return scope(() => {
    const u = maskedMean(hidden, spanMask(hidden.gpu, op, srcTgtIndex, B, T, 1, 0));
    const v = maskedMean(hidden, spanMask(hidden.gpu, op, srcTgtIndex, B, T, 2, 0));
    const s = mulScalar(cosineSimilarityMatrix(u, v, COS_EPS), 1 / tau);
    // −(1/2B) Σ_i log softmax(S[i])[i] = ½ · mean_i cross_entropy(S[i], i)
    return mulScalar(crossEntropy(s, Int32Array.from({ length: B }, (_, i) => i)), 0.5);
  });
}

/** nn.CosineSimilarity's eps (1e-8); only a (near-)zero mean vector would see it. */
const COS_EPS = 1e-8;

// ---- the language-matching classifier -------------------------------------------------------------------

export const CLASSIFIER_PREFIX = "language_matching_classifier";

export interface ClassifierInit {
  /** The uniform weights' generator (default: a fresh one from `seed`). */
  generator?: Generator;
  seed?: number | bigint;
  requiresGrad?: boolean;
}

/**
 * The reference's `languageMatchingMLP` (a LlamaMLP): down_proj(silu(gate_proj(x)) * up_proj(x)) on x = [e_i ; e_j],
 * gate/up 2d → w, down w → 2, no biases, parameters under their HF names
 * (`language_matching_classifier.{gate,up,down}_proj.weight`).
 *
 * pairLogits(e [N, d]) gives the logits of all N² ordered pairs without building the [N², 2d] inputs: with
 * G = [G_a | G_b] split by columns, gate([e_i; e_j]) = G_a e_i + G_b e_j, so A = e G_aᵀ and A' = e G_bᵀ
 * ([N, w] each, one small product apiece) and the pair rows are A[i] + A'[j], a broadcast add [N, 1, w] +
 * [1, N, w]; likewise for up. For N = 2B = 32, d = 4096, w = 128 this is 2·2·32·4096·128 ≈ 67 MFLOP and
 * 2 × 512 KiB of pair rows instead of 2·2·1024·8192·128 ≈ 4.3 GFLOP over a 32 MiB input (plus its gradient),
 * so no dedicated kernel: the pair activations ([N², w]) are what a fused kernel would have to keep anyway.
 */
export class LanguageMatchingClassifier extends Module {
  private constructor(
    gpu: Gpu,
    /** d: the model's hidden size (the classifier's input is 2d). */
    readonly hiddenSize: number,
    /** w: language_matching_intermediate_size. */
    readonly intermediateSize: number,
    params: Map<string, Tensor>,
    requiresGrad: boolean,
  ) {
    super(gpu);
    for (const s of LanguageMatchingClassifier.specs(hiddenSize, intermediateSize)) {
      const t = params.get(s.name);
      if (!t) throw new TensorError(`LanguageMatchingClassifier: parameter ${s.name} was not given`);
      if (t.rank !== 2 || t.shape[0] !== s.shape[0] || t.shape[1] !== s.shape[1] || t.dtype !== "f32")
        throw new TensorError(`LanguageMatchingClassifier: ${s.name} must be f32 [${s.shape.join(", ")}], got ${t}`);
      this.register(s.name, t, requiresGrad);
    }
  }

  /** HF names and shapes for hidden size d and intermediate size w. */
  static specs(hiddenSize: number, intermediateSize: number): ParamSpec[] {
    for (const [k, v] of [["hidden size", hiddenSize], ["language_matching_intermediate_size", intermediateSize]] as const)
      if (!Number.isInteger(v) || v < 1) throw new TensorError(`LanguageMatchingClassifier: ${k} must be a positive integer, got ${v}`);
    const p = CLASSIFIER_PREFIX;
    return [
      { name: `${p}.gate_proj.weight`, shape: [intermediateSize, 2 * hiddenSize] },
      { name: `${p}.up_proj.weight`, shape: [intermediateSize, 2 * hiddenSize] },
      { name: `${p}.down_proj.weight`, shape: [2, intermediateSize] },
    ];
  }

  /**
   * A new classifier initialized as torch's nn.Linear: every weight ~ U(−1/√fan_in, 1/√fan_in)
   * (kaiming_uniform with a = √5), from a seeded GPU generator.
   */
  static create(gpu: Gpu, hiddenSize: number, intermediateSize = 128, opts: ClassifierInit = {}): LanguageMatchingClassifier {
    const gen = opts.generator ?? new Generator(opts.seed ?? DEFAULT_SEED);
    const params = new Map<string, Tensor>();
    try {
      for (const s of LanguageMatchingClassifier.specs(hiddenSize, intermediateSize)) {
        const bound = 1 / Math.sqrt(s.shape[1]!);
        params.set(s.name, scope(() => mulScalar(rand(gpu, s.shape, gen).addScalar(-0.5), 2 * bound)));
      }
      return new LanguageMatchingClassifier(gpu, hiddenSize, intermediateSize, params, opts.requiresGrad ?? true);
    } catch (e) {
      for (const t of params.values()) t.release();
      throw e;
    }
  }

  /** A classifier over given weights (by HF name, e.g. from a stage-1 checkpoint); it takes ownership of them. */
  static fromTensors(gpu: Gpu, hiddenSize: number, params: Map<string, Tensor>, opts: { requiresGrad?: boolean } = {}): LanguageMatchingClassifier {
    const up = params.get(`${CLASSIFIER_PREFIX}.up_proj.weight`);
    if (!up) throw new TensorError(`LanguageMatchingClassifier: parameter ${CLASSIFIER_PREFIX}.up_proj.weight was not given`);
    return new LanguageMatchingClassifier(gpu, hiddenSize, up.shape[0]!, params, opts.requiresGrad ?? true);
  }

  /** The classifier on x [..., 2d] as the reference runs it (materialized pair inputs): [..., 2]. */
  forward(x: Tensor): Tensor {
    const p = CLASSIFIER_PREFIX;
    return scope(() => {
      const g = silu(linear(x, this.param(`${p}.gate_proj.weight`)));
      return linear(mul(g, linear(x, this.param(`${p}.up_proj.weight`))), this.param(`${p}.down_proj.weight`));
    });
  }

  /** Logits [N², 2] of every ordered pair (i, j) (row i·N + j is [e_i ; e_j]) for e [N, d]; see the class comment. */
  pairLogits(e: Tensor): Tensor {
    const op = "LanguageMatchingClassifier.pairLogits";
    const d = this.hiddenSize;
    if (e.rank !== 2 || e.shape[1] !== d) throw new TensorError(`${op}: e must be [N, ${d}], got ${e}`);
    const N = e.shape[0]!;
    const w = this.intermediateSize;
    const p = CLASSIFIER_PREFIX;
    return scope(() => {
      /** proj([e_i ; e_j]) for all pairs, [N, N, w], from the weight's two column blocks. */
      const pairs = (name: string) => {
        const W = this.param(`${p}.${name}.weight`);
        const a = linear(e, slice(W, 1, 0, d)).reshape(N, 1, w);
        const b = linear(e, slice(W, 1, d, 2 * d)).reshape(1, N, w);
        return add(a, b);
      };
      const h = mul(silu(pairs("gate_proj")), pairs("up_proj"));
      return linear(h.reshape(N * N, w), this.param(`${p}.down_proj.weight`));
    });
  }
}

// ---- language-matching loss ---------------------------------------------------------------------------

function checkLangs(op: string, name: string, v: ArrayLike<number>, B: number): void {
  if (v === null || typeof v !== "object" || v.length !== B) throw new TensorError(`${op}: ${name} must hold ${B} language ids (one per example), got ${v?.length ?? v}`);
  for (let i = 0; i < B; i++) if (!Number.isInteger(v[i])) throw new TensorError(`${op}: ${name}[${i}] = ${v[i]} is not an integer language id`);
}

/**
 * L_LAM of `lastHidden` [B, T, D] (hidden_states[L], after the final norm), the span index B × T, the
 * examples' source and target language ids [B] and the classifier; a scalar. See the module comment.
 */
export function languageMatchingLoss(
  lastHidden: Tensor,
  srcTgtIndex: readonly (readonly number[])[],
  srcLang: ArrayLike<number>,
  tgtLang: ArrayLike<number>,
  classifier: LanguageMatchingClassifier,
): Tensor {
  const op = "languageMatchingLoss";
  const [B, T, D] = checkStates(op, lastHidden, "lastHidden");
  if (D !== classifier.hiddenSize) throw new TensorError(`${op}: the states' width ${D} is not the classifier's hidden size ${classifier.hiddenSize}`);
  if (lastHidden.gpu !== classifier.gpu) throw new TensorError(`${op}: the states and the classifier live on different GPU devices`);
  checkIndex(op, srcTgtIndex, B, T);
  checkLangs(op, "srcLang", srcLang, B);
  checkLangs(op, "tgtLang", tgtLang, B);
  const N = 2 * B;
  const lang = [...Array.from(srcLang), ...Array.from(tgtLang)];
  const labels = new Int32Array(N * N);
  for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) labels[i * N + j] = lang[i] === lang[j] ? 1 : 0;
  return scope(() => {
    const gpu = lastHidden.gpu;
    const src = maskedMean(lastHidden, spanMask(gpu, op, srcTgtIndex, B, T, 1, 1));
    const tgt = maskedMean(lastHidden, spanMask(gpu, op, srcTgtIndex, B, T, 2, 1));
    return crossEntropy(classifier.pairLogits(concat([src, tgt], 0)), labels);
  });
}

// ---- the stage-1 objective ----------------------------------------------------------------------------

export interface Stage1Batch {
  /** B × T token ids. */
  inputIds: number[][];
  /** B × T, 1 = token, 0 = padding. */
  attentionMask?: number[][];
  /** B × T next-token labels (-100: no loss); default inputIds, as LlamaModel.forwardLoss. */
  labels?: number[][];
  /** B × T: 1 source sentence, 2 target sentence, 0 anything else. */
  srcTgtIndex: number[][];
  /** B language ids each. */
  srcLang: ArrayLike<number>;
  tgtLang: ArrayLike<number>;
}

export interface Stage1Output {
  /** L_NTP + λ_ctr · L_CTR + λ_lam · L_LAM: the scalar to call backward() on. */
  loss: Tensor;
  /** The three terms, unweighted (scalars; a term whose λ is 0 is computed without gradient). */
  ntp: Tensor;
  ctr: Tensor;
  lam: Tensor;
  /** [B, T, V] */
  logits: Tensor;
}

/**
 * The stage-1 forward of `model` on `batch` with the classifier: the model's forward with its hidden states
 * (HF's output_hidden_states: [k] after decoder layer k, [L] after the final norm) and the three terms.
 * The caller releases the returned tensors (or runs this inside a scope and keeps what it wants).
 */
export function stage1Loss(model: LlamaModel, classifier: LanguageMatchingClassifier, batch: Stage1Batch, cfg: Stage1Config): Stage1Output {
  const op = "stage1Loss";
  const L = model.config.numHiddenLayers;
  if (!Number.isInteger(cfg.alignLayer) || cfg.alignLayer < 0 || cfg.alignLayer > L)
    throw new TensorError(`${op}: align_layer ${cfg.alignLayer} is outside the model's hidden states 0..${L}`);
  if (classifier.hiddenSize !== model.config.hiddenSize)
    throw new TensorError(`${op}: the classifier's hidden size ${classifier.hiddenSize} is not the model's ${model.config.hiddenSize}`);
  return scope(() => {
    const out = model.forwardLoss(batch.inputIds, { attentionMask: batch.attentionMask, labels: batch.labels, outputHiddenStates: true });
    const hs = out.hiddenStates!;
    const term = (lambda: number, f: () => Tensor) => (lambda === 0 ? noGrad(f) : f());
    const ctr = term(cfg.contrastiveLambda, () => contrastiveLoss(hs[cfg.alignLayer]!, batch.srcTgtIndex, { temperature: cfg.contrastiveTemperature }));
    const lam = term(cfg.languageMatchingLambda, () => languageMatchingLoss(hs[L]!, batch.srcTgtIndex, batch.srcLang, batch.tgtLang, classifier));
    let loss = out.loss;
    // The reference's order: (lm_loss + λ_ctr · ctr) + λ_lam · lam; a λ of 0 (or B = 1 for ctr) adds nothing.
    if (cfg.contrastiveLambda !== 0 && batch.inputIds.length > 1) loss = add(loss, mulScalar(ctr, cfg.contrastiveLambda));
    if (cfg.languageMatchingLambda !== 0) loss = add(loss, mulScalar(lam, cfg.languageMatchingLambda));
    // Its own tensor even when nothing was added, so the caller can release every field once.
    if (loss === out.loss) loss = contiguous(loss);
    return { loss, ntp: out.loss, ctr, lam, logits: out.logits };
  });
}

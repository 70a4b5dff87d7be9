/**
 * LlamaModel: Hugging Face LlamaForCausalLM (and MistralForCausalLM, GemmaForCausalLM as src/io/hf_config.ts
 * normalizes their configs) on the GPU ops of src/tensor, with HF parameter names, so HF checkpoints load and
 * save as they are.
 *
 *   const model = await LlamaModel.fromPretrained(gpu, "path/to/checkpoint");   // or LlamaModel.fromConfig(gpu, cfg, {seed})
 *   const { logits } = model.forward(inputIds, { attentionMask });              // logits [B, T, V]
 *   const loss = model.loss(logits, labels ?? inputIds);                       // HF's shifted cross-entropy
 *   const { loss } = model.forwardLoss(inputIds, { labels, logits: false });   // the same loss, no [B, T, V] logits
 *   loss.backward(); opt.step(); ...
 *   model.forwardCached(ids, cache, { attentionMask, lastTokenOnly: true });   // inference with a KvCache
 *   await model.save("out/dir");                                               // config.json + model.safetensors
 *
 * The computation, as transformers does it (see tools/parity_reference.py, which re-implements HF in torch and
 * against which test/nn/parity.test.ts checks logits, loss, hidden states and every gradient):
 *   x = embed_tokens[input_ids]                   nn.Embedding(V, D, padding_idx = pad_token_id): the padding
 *                                                 row gets no gradient from the lookup (it may from a tied head)
 *       Gemma: x · fround(sqrt(D))                HF rounds the normalizer to the activation dtype
 *   each layer:
 *     h = RMSNorm(x)                              LLaMA w · x̂; Gemma (1 + w) · x̂; x̂ = x / sqrt(mean(x²) + eps)
 *     q, k = RoPE(h Wqᵀ + bq, h Wkᵀ + bk)         rotate-half, angles pos · inv_freq in f32 (rope scaling:
 *                                                 linear, dynamic, llama3 as transformers' modeling_rope_utils)
 *     a = softmax(q kᵀ / sqrt(Dh) + mask) v       causal, key padding from attention_mask, GQA/MQA (kv heads
 *                                                 shared by Hq / Hkv query heads each)
 *     x = x + a Woᵀ + bo
 *     h = RMSNorm(x);  x = x + (act(h Wgᵀ) ⊙ h Wuᵀ) Wdᵀ    act: silu, gelu, gelu_pytorch_tanh (Gemma)
 *   logits = RMSNorm(x) · lm_headᵀ                lm_head = embed_tokens when tie_word_embeddings
 * Fused ops, same values: act(·) ⊙ · is glu (src/tensor/ops/unary.ts), and each residual add with the RMSNorm
 * after it is addRmsnorm (src/tensor/ops/norm.ts): within a layer always, across layers (the next input_layernorm,
 * model.norm) unless gradientCheckpointing (a checkpointed layer returns one tensor) or lastOnly (norm of one row);
 * q and k are rotated together by ropePair (src/tensor/ops/rope.ts), one dispatch each way.
 * position_ids default to arange(T) for every row, whatever attention_mask says (HF's forward; only generate()
 * derives positions from the mask). Pass `positionIds` for anything else.
 *
 * Differences from HF, all at positions that HF itself leaves undefined: a query that sees no key at all (a
 * left-padding position: causal + padding masks hide every key) gets attention output 0 here; HF eager gives
 * it uniform weights over all keys, sdpa gives it unmasked attention. Their logits are garbage in every
 * implementation; keep them out of the loss with label -100 (HF does not do that for you).
 * Not supported (a clear error): Mistral's sliding window when T exceeds it (the attention op has no window),
 * attention dropout (HF applies it in training mode only; configs with attention_dropout > 0 get a warning).
 *
 * Generation (src/nn/generate.ts) runs the same layers through `forwardCached`: only the attention differs
 * (the new keys and values go into a KvCache; after the prefill, queries attend to the cache with the decode
 * attention op), so both paths share every other line.
 *
 * Memory: each decoder layer runs in its own scope(), so its intermediates are released when it returns; what
 * backward needs stays alive only inside autograd nodes, and is freed as backward passes them.
 * `memoryReport(config, {batch, seq})` estimates parameter, gradient, optimizer and activation bytes before
 * a model is built.
 */
import { join } from "node:path";
import type { Gpu } from "../gpu/index.ts";
import {
  CheckpointError,
  checkConfigScale,
  checkParameters,
  expectedParameters,
  hfConfigJson,
  openCheckpoint,
  parseHfConfig,
  readHfConfig,
  requireCheckpointDir,
  type LlamaFamilyConfig,
  type ParamSpec,
  type WrittenCheckpoint,
} from "../io/index.ts";
import { checkpoint } from "../tensor/recompute.ts";
import { attention, attentionLayout, type AttentionLayout } from "../tensor/ops/attention.ts";
import { attentionDecode } from "../tensor/ops/attention_decode.ts";
import { cast } from "../tensor/ops/cast.ts";
import { linear } from "../tensor/ops/matmul.ts";
import {
  add,
  addRmsnorm,
  crossEntropy,
  DEFAULT_SEED,
  embedding,
  Generator,
  glu,
  type GluAct,
  isGradEnabled,
  linearCrossEntropy,
  linearCrossEntropyChunk,
  mulScalar,
  narrow,
  noGrad,
  numel,
  randn,
  rmsnorm,
  ropePair,
  ROPE_MAX_ANGLE,
  ropeInvFreq,
  scope,
  Tensor,
  TensorError,
  transpose,
  where,
} from "../tensor/index.ts";
import { checkBatch, checkIntMatrix, IGNORE_INDEX, labelCheck } from "./batch.ts";
import type { KvCache } from "./kv_cache.ts";
import { loadParameters, Module, torchDtypeOf, type SaveOptions } from "./module.ts";

export interface ForwardOptions {
  /** B × T, 1 = token, 0 = padding (masks keys; HF's attention_mask). */
  attentionMask?: number[][];
  /** Also return HF's hidden_states: [0] embeddings, [i] output of layer i (i < L), [L] the final norm's output. */
  outputHiddenStates?: boolean;
  /** Rotary positions: B × T, or one row of T shared by the batch. Default arange(T). */
  positionIds?: number[][] | number[];
}

export interface CachedForwardOptions {
  /** B × T for the new tokens, 1 = token, 0 = padding (left padding of a batched prompt). Default all 1. */
  attentionMask?: number[][];
  /** Logits of each row's last position only ([B, 1, V]): the LM head skips the others. Default false. */
  lastTokenOnly?: boolean;
}

export interface ForwardOutput {
  /** [B, T, V] */
  logits: Tensor;
  /** L + 1 tensors [B, T, D] when asked for (see ForwardOptions). */
  hiddenStates?: Tensor[];
}

export interface ForwardLossOptions extends ForwardOptions {
  /** B × T next-token labels (-100: no loss); default input_ids. */
  labels?: number[][];
  /**
   * false: compute the loss from the final hidden state with linearCrossEntropy (src/tensor/ops/loss.ts), walking
   * the vocabulary in chunks, so neither the [B·T, V] logits nor their gradient is ever held (a 128k-vocabulary
   * LM head); the result's `logits` is null. Same loss and gradients up to f32 summation order; honours `autocast`
   * and gradientCheckpointing. Default true: the logits are returned (and kept by the loss until backward).
   */
  logits?: boolean;
  /** With logits: false, vocabulary columns per chunk (default: linearCrossEntropyChunk, N · chunk f32 within 64 MiB). */
  lossChunk?: number;
}

/** forwardLoss with `logits: false`: the loss (and hidden states when asked for), no logits. */
export interface LossOnlyOutput {
  logits: null;
  hiddenStates?: Tensor[];
  loss: Tensor;
}

export interface InitOptions {
  /** The generator the normal(0, initializer_range) weights are drawn from (default: a fresh one from `seed`). */
  generator?: Generator;
  seed?: number | bigint;
  /** Mark parameters as requiring gradients (default true). */
  requiresGrad?: boolean;
}

export interface LoadOptions {
  /** Mark parameters as requiring gradients (default true: loaded to be trained). */
  requiresGrad?: boolean;
  /**
   * Tensors of the checkpoint that are not the model's but another module's (e.g. AlignX's
   * `language_matching_classifier.*` in a stage-1 checkpoint): left out of the parameter check and not loaded.
   */
  foreign?: (name: string) => boolean;
}

/**
 * A layer's attention: `run` on layer `layer`'s rotated q [B, Hq, T, Dh] and k, v [B, Hkv, T, Dh] → [B, Hq, T, Dh]
 * in `layout` "bhtd", or all four [B, T, H, Dh] in "bthd" (the projections' own layout: no transposed copies
 * around attention, forward or backward; src/tensor/ops/attention.ts `attentionLayout` says which a call runs
 * without copies). `mask` is the forward's key-padding mask, passed explicitly so a checkpointed layer can keep
 * it for its recompute; the cached path ignores it (its closure holds the cache's own mask).
 */
interface Attend {
  layout: AttentionLayout;
  run: (layer: number, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | null) => Tensor;
}

type Positions = ReturnType<typeof positions>;

/** Files of a HF checkpoint directory besides config.json and the weights that a saved copy keeps. */
export const COMPANION_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "tokenizer.model",
  "vocab.json",
  "merges.txt",
  "added_tokens.json",
  "generation_config.json",
] as const;

export class LlamaModel extends Module {
  /** Notes about the config that do not stop the model (e.g. attention dropout that is not applied). */
  readonly warnings: string[];
  /**
   * Recompute each decoder layer during backward instead of keeping its activations (HF's
   * `gradient_checkpointing_enable()`): activation memory of one layer instead of all, for one extra forward.
   */
  gradientCheckpointing = false;
  /**
   * "f16": mixed precision as torch.autocast(float16) runs the matrix products: every linear layer (q, k, v, o, the
   * MLP, the LM head) reads f16 copies of its input and weight and accumulates in f32 into an f32 result; norms,
   * rope, attention, the loss and the residual stream stay f32, and the parameters (master weights) and their
   * gradients are f32 (the casts' backward widens them). Pair it with a GradScaler: the f16 gradients of the
   * products' inputs are where small values underflow. Needs the device feature shader-f16. Default "f32".
   */
  autocast: "f32" | "f16" = "f32";
  /** The checkpoint directory this model was loaded from (fromPretrained), whose companion files save() copies. */
  sourceDir: string | undefined;
  /** The MLP's activation, as the fused gated unit glu(gate, up, act) runs it (src/tensor/ops/unary.ts). */
  private readonly act: GluAct;

  private constructor(
    gpu: Gpu,
    readonly config: LlamaFamilyConfig,
    params: Map<string, Tensor>,
    requiresGrad: boolean,
  ) {
    super(gpu);
    checkSupported(config);
    this.warnings = [...config.warnings];
    if (config.attentionDropout > 0) this.warnings.push(`attention_dropout ${config.attentionDropout} is not applied (alignx's attention has no dropout)`);
    this.act = activation(config.hiddenAct);
    for (const s of expectedParameters(config)) {
      const t = params.get(s.name);
      if (!t) throw new TensorError(`LlamaModel: parameter ${s.name} was not given`);
      this.register(s.name, t, requiresGrad);
    }
  }

  /** Parse a config.json object (or take a normalized config) into the config this class uses. */
  static config(cfg: LlamaFamilyConfig | Record<string, unknown>, source = "config"): LlamaFamilyConfig {
    return isNormalized(cfg) ? cfg : parseHfConfig(cfg, source);
  }

  /**
   * A freshly initialized model, as HF's _init_weights: linear and embedding weights ~ normal(0,
   * initializer_range) from the seeded GPU generator, biases 0, the embedding's padding row 0, norm weights 1
   * (Gemma 0, since it applies 1 + w).
   */
  static fromConfig(gpu: Gpu, cfg: LlamaFamilyConfig | Record<string, unknown>, opts: InitOptions = {}): LlamaModel {
    const config = LlamaModel.config(cfg);
    checkSupported(config);
    checkFitsDevice(gpu, config);
    const gen = opts.generator ?? new Generator(opts.seed ?? DEFAULT_SEED);
    const params = new Map<string, Tensor>();
    const std = config.initializerRange;
    try {
      for (const s of expectedParameters(config)) {
        let t: Tensor;
        if (s.name.endsWith("norm.weight")) t = Tensor.full(gpu, s.shape, config.normWeightOffset ? 0 : 1);
        else if (s.name.endsWith(".bias")) t = Tensor.zeros(gpu, s.shape);
        else {
          t = randn(gpu, s.shape, gen, { std });
          if (s.name === "model.embed_tokens.weight" && config.padTokenId !== null) {
            const d = s.shape[1]!;
            gpu.write(t.buffer, new Float32Array(d), config.padTokenId * d * 4);
          }
        }
        params.set(s.name, t);
      }
      return new LlamaModel(gpu, config, params, opts.requiresGrad ?? true);
    } catch (e) {
      for (const t of params.values()) t.release();
      throw e;
    }
  }

  /**
   * Load a HF checkpoint directory (config.json + model.safetensors or shards). Every missing, unexpected
   * or mis-shaped tensor is listed in one error before anything is uploaded; tensors then stream in one at a
   * time (F16/BF16 widened to f32).
   */
  static async fromPretrained(gpu: Gpu, dir: string, opts: LoadOptions = {}): Promise<LlamaModel> {
    await requireCheckpointDir(dir);
    const configPath = join(dir, "config.json");
    const config = await readHfConfig(configPath);
    checkSupported(config, configPath);
    const ckpt = await openCheckpoint(dir);
    try {
      // Sizes first, in O(checkpoint): a config out of proportion to the weights fails before anything
      // proportional to it (the expected parameter list) is built.
      const own = ckpt.params().filter((p) => !opts.foreign?.(p.name));
      checkConfigScale(config, own, configPath, ckpt.path);
      checkParameters(config, own, ckpt.path);
      checkFitsDevice(gpu, config, dir);
      const params = await loadParameters(gpu, ckpt, expectedParameters(config), opts);
      const model = new LlamaModel(gpu, config, params, opts.requiresGrad ?? true);
      model.sourceDir = dir;
      return model;
    } finally {
      await ckpt.close();
    }
  }

  /**
   * Save as a HF checkpoint directory (config.json with torch_dtype set to match, weights; atomic). A model
   * loaded with fromPretrained carries its tokenizer and generation files along (COMPANION_FILES found in
   * the source directory), so the result loads in HF and in `alignx generate` as the original did;
   * `opts.files` adds or overrides files.
   */
  async save(dir: string, opts: SaveOptions = {}): Promise<WrittenCheckpoint> {
    const companions: Record<string, Uint8Array> = {};
    if (this.sourceDir)
      for (const name of COMPANION_FILES) {
        const f = Bun.file(join(this.sourceDir, name));
        if (await f.exists()) companions[name] = new Uint8Array(await f.arrayBuffer());
      }
    return this.saveParams(dir, { "config.json": hfConfigJson(this.config, { torchDtype: torchDtypeOf(opts.dtype) }) }, {
      ...opts,
      files: { ...companions, ...opts.files },
    });
  }

  /** HF parameter names and shapes of this model, in order. */
  get specs(): ParamSpec[] {
    return expectedParameters(this.config);
  }

  // ---- forward ----------------------------------------------------------------------------------------

  forward(inputIds: number[][], opts: ForwardOptions = {}): ForwardOutput {
    return this.forwardWith("LlamaModel.forward", inputIds, opts);
  }

  /** forward(), with `head` in place of the LM head on the final norm's output (its result is returned as `logits`). */
  private forwardWith(op: string, inputIds: number[][], opts: ForwardOptions, head?: (h: Tensor) => Tensor): ForwardOutput {
    const batch = checkBatch(op, { inputIds, attentionMask: opts.attentionMask }, this.config.vocabSize);
    const [B, T] = [inputIds.length, inputIds[0]!.length];
    this.checkWindow(op, T);
    const mask = batch.attentionMask;
    const padded = mask?.some((row) => row.includes(0)) ?? false;
    return this.run(op, inputIds, positions(opts.positionIds, B, T), { hidden: opts.outputHiddenStates ?? false, head }, () => ({
      mask: padded ? Tensor.fromArray(this.gpu, Float32Array.from(mask!.flat()), [B, T]) : null,
      attend: this.attendFull(B, T),
    }));
  }

  /** forward()'s attention: causal + padding, in the layout the op runs without copies for these dimensions. */
  private attendFull(B: number, T: number): Attend {
    const c = this.config;
    const layout = attentionLayout(this.gpu, { B, Hq: c.numAttentionHeads, Hkv: c.numKeyValueHeads, T, Dh: c.headDim });
    const scale = this.attnScale;
    return { layout, run: (_layer, q, k, v, m) => attention(q, k, v, { causal: true, keyPaddingMask: m ?? undefined, scale, layout }) };
  }

  /**
   * Inference with a KV cache (what generate() runs): `inputIds` are B × T new tokens per row, after the
   * tokens `cache` holds; their keys and values are appended to it and their logits returned. Always under
   * noGrad. Positions come from the cache (each row counts its own real tokens, so left padding shifts
   * them as HF's generate does). The first call on an empty cache is the prefill: the same causal attention
   * as forward() over the new tokens (padding from `attentionMask`); later calls attend to every cached
   * slot with the decode attention op (any T >= 1). The cache advances only when the call succeeds.
   */
  forwardCached(inputIds: number[][], cache: KvCache, opts: CachedForwardOptions = {}): ForwardOutput {
    const c = this.config;
    const op = "LlamaModel.forwardCached";
    const batch = checkBatch(op, { inputIds, attentionMask: opts.attentionMask }, c.vocabSize);
    const [B, T] = [inputIds.length, inputIds[0]!.length];
    if (cache.batch !== B || cache.layers !== c.numHiddenLayers || cache.kvHeads !== c.numKeyValueHeads || cache.headDim !== c.headDim)
      throw new TensorError(
        `${op}: the cache (batch ${cache.batch}, ${cache.layers} layers, ${cache.kvHeads} kv heads of ${cache.headDim}) does not fit ` +
          `this model and batch (batch ${B}, ${c.numHiddenLayers} layers, ${c.numKeyValueHeads} kv heads of ${c.headDim})`,
      );
    this.checkWindow(op, cache.length + T);
    const step = cache.plan(T, batch.attentionMask);
    const scale = this.attnScale;
    const out = noGrad(() =>
      this.run(op, inputIds, positions(step.positionIds, B, T), { lastOnly: opts.lastTokenOnly ?? false }, () => {
        cache.writeMask(step);
        if (step.offset === 0) {
          const maskT = step.padded ? Tensor.fromArray(this.gpu, Float32Array.from(step.mask.flat()), [B, T]) : undefined;
          // The cache holds [B, Hkv, T, Dh]: the prefill runs in that layout.
          return {
            mask: null,
            attend: {
              layout: "bhtd",
              run: (layer, q, k, v) => {
                cache.append(layer, step, k, v);
                return attention(q, k, v, { causal: true, keyPaddingMask: maskT, scale });
              },
            },
          };
        }
        // One new token per row: [B, 1, H, Dh] and [B, H, 1, Dh] are the same memory, so the layer's own layout
        // costs only views; more tokens: [B, H, T, Dh], as the cache and the decode op take it.
        const one = T === 1;
        const heads = (x: Tensor) => (one ? x.reshape([B, x.shape[2]!, 1, c.headDim]) : x);
        return {
          mask: null,
          attend: {
            layout: one ? "bthd" : "bhtd",
            run: (layer, q, k, v) => {
              cache.append(layer, step, heads(k), heads(v));
              const keyPaddingMask = step.padded ? cache.mask : undefined;
              const a = attentionDecode(heads(q), cache.keys(layer), cache.values(layer), { keyLength: step.offset + T, offset: step.offset, keyPaddingMask, scale });
              return one ? a.reshape([B, 1, c.numAttentionHeads, c.headDim]) : a;
            },
          },
        };
      }),
    );
    cache.commit(step);
    return out;
  }

  /**
   * The decoder on `inputIds` at positions `pos`, attention by `attend()` (called inside the forward's scope,
   * so what it allocates is released with it). `lastOnly`: the final norm and LM head on the last position only.
   * `head`: what runs on the final norm's output instead of the LM head (its result is returned as `logits`).
   */
  private run(
    op: string,
    inputIds: number[][],
    pos: Positions,
    o: { hidden?: boolean; lastOnly?: boolean; head?: (h: Tensor) => Tensor },
    attend: () => { attend: Attend; mask: Tensor | null },
  ): ForwardOutput {
    const c = this.config;
    const [B, T] = [inputIds.length, inputIds[0]!.length];
    const ids = Int32Array.from(inputIds.flat());
    const invFreq = this.invFreq(pos.max + 1);
    const maxInv = invFreq.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    if (Math.max(pos.max, -pos.min) * maxInv >= ROPE_MAX_ANGLE)
      throw new TensorError(`${op}: position ${pos.max} is too large for the rotary kernel (|position × inv_freq| must stay below 2^21)`);
    const want = o.hidden ?? false;
    const gpu = this.gpu;

    return scope(() => {
      // Positions and the rotary frequencies go up once per forward, shared by every layer's q and k.
      const posT = Tensor.fromArray(gpu, pos.data, pos.shape, { dtype: "i32" });
      const invT = Tensor.fromArray(gpu, invFreq, [invFreq.length]);
      const { attend: att, mask } = attend();
      const hidden: Tensor[] = [];
      let x = this.embed(ids, B, T);
      const recompute = this.gradientCheckpointing && isGradEnabled();
      // Without recomputation each layer's last residual add is fused with the norm after it (addRmsnorm): the next
      // layer's input_layernorm, or model.norm after the last layer (unless only the last position is normed), and
      // the layer hands on both the residual stream x and that normed h. A checkpointed layer returns one tensor
      // (its recompute reruns it alone), so there each layer ends with its add and starts with its own norm.
      const finalNorm = this.param("model.norm.weight");
      const fuseFinal = !(o.lastOnly && T > 1);
      let normed: Tensor | null = null; // the next layer's input_layernorm output (or the final norm's), when fused
      for (let i = 0; i < c.numHiddenLayers; i++) {
        if (want) hidden.push(x);
        const prev = x;
        const hPrev: Tensor | null = normed;
        if (recompute) {
          const layer = (h: Tensor, p: Tensor, m: Tensor | null, f: Tensor) => this.decoderLayer(i, h, p, m, f, att).x;
          x = checkpoint((h, p, m, f) => layer(h!, p!, m ?? null, f!), [prev, posT, mask, invT], this.layerParams(i));
        } else {
          const next = i + 1 < c.numHiddenLayers ? this.param(`model.layers.${i + 1}.input_layernorm.weight`) : fuseFinal ? finalNorm : undefined;
          const out: { x: Tensor; h: Tensor | null } = scope(() => this.decoderLayer(i, prev, posT, mask, invT, att, { h: hPrev ?? undefined, next }));
          ({ x, h: normed } = out);
        }
        if (!want) prev.release();
        hPrev?.release();
      }
      let h: Tensor;
      if (normed) {
        h = normed;
      } else {
        if (o.lastOnly && T > 1) {
          const all = x;
          x = narrow(all, 1, T - 1, 1);
          all.release();
        }
        h = rmsnorm(x, finalNorm, this.normOpts);
      }
      x.release();
      const logits = o.head ? o.head(h) : this.linear(h, this.lmHead, null);
      if (!want) {
        h.release();
        return { logits };
      }
      hidden.push(h);
      return { logits, hiddenStates: hidden };
    });
  }

  private checkWindow(op: string, T: number): void {
    const w = this.config.slidingWindow;
    if (w !== null && T > w) throw new TensorError(`${op}: sequence length ${T} exceeds sliding_window ${w}; sliding-window attention is not implemented`);
  }

  /**
   * HF's causal-LM loss: mean cross-entropy of logits[:, t] against labels[:, t + 1] over the positions whose
   * label is not -100. `labels` is B × T (usually input_ids, with -100 where no loss is wanted; padding is
   * NOT masked unless you say so, as in HF).
   */
  loss(logits: Tensor, labels: number[][]): Tensor {
    const V = this.config.vocabSize;
    if (logits.rank !== 3 || logits.shape[2] !== V) throw new TensorError(`LlamaModel.loss: logits must be [B, T, ${V}], got ${logits}`);
    const [B, T] = logits.shape as [number, number, number];
    const targets = this.shiftedTargets("LlamaModel.loss", labels, B, T);
    return scope(() => crossEntropy(logits.reshape(B * T, V), targets, { ignoreIndex: IGNORE_INDEX }));
  }

  /** HF's shift: targets[b·T + t] = labels[b][t + 1], -100 at each row's last position (labels checked). */
  private shiftedTargets(op: string, labels: number[][], B: number, T: number): Int32Array {
    checkIntMatrix(op, "labels", labels, labelCheck(this.config.vocabSize), [B, T]);
    const targets = new Int32Array(B * T).fill(IGNORE_INDEX);
    for (let b = 0; b < B; b++) for (let t = 0; t + 1 < T; t++) targets[b * T + t] = labels[b]![t + 1]!;
    return targets;
  }

  /**
   * forward + loss in one call; labels default to input_ids. With `logits: false` the loss comes from the final
   * hidden state through linearCrossEntropy, chunked over the vocabulary: no [B, T, V] logits (nor their gradient)
   * exist at any point, and the result's `logits` is null (see ForwardLossOptions).
   */
  forwardLoss(inputIds: number[][], opts: ForwardLossOptions & { logits: false }): LossOnlyOutput;
  forwardLoss(inputIds: number[][], opts?: ForwardLossOptions & { logits?: true }): ForwardOutput & { loss: Tensor };
  forwardLoss(inputIds: number[][], opts: ForwardLossOptions): (ForwardOutput & { loss: Tensor }) | LossOnlyOutput;
  forwardLoss(inputIds: number[][], opts: ForwardLossOptions = {}): (ForwardOutput & { loss: Tensor }) | LossOnlyOutput {
    if (opts.logits === false) {
      const op = "LlamaModel.forwardLoss";
      checkBatch(op, { inputIds, attentionMask: opts.attentionMask }, this.config.vocabSize);
      const targets = this.shiftedTargets(op, opts.labels ?? inputIds, inputIds.length, inputIds[0]!.length);
      const out = this.forwardWith(op, inputIds, opts, (h) => this.headLoss(h, targets, opts.lossChunk));
      return out.hiddenStates ? { logits: null, hiddenStates: out.hiddenStates, loss: out.logits } : { logits: null, loss: out.logits };
    }
    const out = this.forward(inputIds, opts);
    try {
      return { ...out, loss: this.loss(out.logits, opts.labels ?? inputIds) };
    } catch (e) {
      out.logits.release();
      for (const h of out.hiddenStates ?? []) h.release();
      throw e;
    }
  }

  /** The LM head's cross-entropy against `targets` [B·T] from the final norm's output h [B, T, D], chunked (autocast honoured). */
  private headLoss(h: Tensor, targets: Int32Array, chunk?: number): Tensor {
    const [B, T, D] = h.shape as [number, number, number];
    return scope(() => {
      const x = h.reshape(B * T, D);
      const w = this.lmHead;
      const [hx, hw] = this.autocast === "f32" ? [x, w] : [cast(x, "f16"), cast(w, "f16")];
      return linearCrossEntropy(hx, hw, targets, { ignoreIndex: IGNORE_INDEX, chunk });
    });
  }

  // ---- pieces -----------------------------------------------------------------------------------------

  private get normOpts() {
    return { eps: this.config.rmsNormEps, addUnitOffset: this.config.normWeightOffset === 1 };
  }

  private get attnScale(): number {
    return this.config.headDim ** -0.5;
  }

  /** A linear layer in the model's compute precision (see `autocast`). */
  private linear(x: Tensor, w: Tensor, bias: Tensor | null): Tensor {
    if (this.autocast === "f32") return linear(x, w, bias);
    return scope(() => linear(cast(x, "f16"), cast(w, "f16"), bias ? cast(bias, "f16") : null, { outDtype: "f32" }));
  }

  private get lmHead(): Tensor {
    return this.param(this.config.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  }

  /** HF's inverse frequencies for sequences up to `seqLen` (rope scaling applied), float32 as HF computes them. */
  invFreq(seqLen: number): Float32Array {
    return ropeInvFreqScaled(this.config, seqLen);
  }

  private embed(ids: Int32Array, B: number, T: number): Tensor {
    const c = this.config;
    const table = this.param("model.embed_tokens.weight");
    let e = embedding(ids, table, { shape: [B, T] });
    const pad = c.padTokenId;
    if (pad !== null && table.requiresGrad && isGradEnabled() && ids.includes(pad)) {
      // nn.Embedding(padding_idx): the lookup of the padding id passes no gradient to the table.
      const cond = Tensor.fromArray(this.gpu, Float32Array.from(ids, (id) => (id === pad ? 0 : 1)), [B, T, 1]);
      e = where(cond, e, e.detach());
    }
    if (c.normWeightOffset === 1) e = mulScalar(e, Math.fround(Math.sqrt(c.hiddenSize)));
    return e;
  }

  /** The trainable parameters of decoder layer i (what a checkpointed layer's recompute differentiates). */
  private layerParams(i: number): Tensor[] {
    const prefix = `model.layers.${i}.`;
    return [...this.params].filter(([name, t]) => name.startsWith(prefix) && t.requiresGrad).map(([, t]) => t);
  }

  /**
   * Decoder layer i on the residual stream x. `io.h`: its input_layernorm output when the previous layer computed it
   * (fused with its last add); `io.next`: the weight of the norm after this layer, to fuse this layer's last add
   * with (then `h` is that norm's output, else null).
   */
  private decoderLayer(
    i: number,
    x: Tensor,
    pos: Tensor,
    mask: Tensor | null,
    invFreq: Tensor,
    attend: Attend,
    io: { h?: Tensor; next?: Tensor } = {},
  ): { x: Tensor; h: Tensor | null } {
    const c = this.config;
    const [B, T] = x.shape as [number, number, number];
    const [Hq, Hkv, Dh] = [c.numAttentionHeads, c.numKeyValueHeads, c.headDim];
    const p = `model.layers.${i}`;
    const proj = (v: Tensor, name: string) => this.linear(v, this.param(`${p}.${name}.weight`), this.params.get(`${p}.${name}.bias`) ?? null);
    // q, k, v and the attention output in the attend's layout: in "bthd" (forward() on the fused kernels) no
    // transposed copy is made, the projections' [B, T, H*Dh] is attention's input and o_proj's input as is.
    const bthd = attend.layout === "bthd";
    const ropeOpts = { layout: "bthd", outLayout: attend.layout, invFreq } as const;

    const h = io.h ?? rmsnorm(x, this.param(`${p}.input_layernorm.weight`), this.normOpts);
    const [q, k] = ropePair(proj(h, "self_attn.q_proj").reshape(B, T, Hq, Dh), proj(h, "self_attn.k_proj").reshape(B, T, Hkv, Dh), pos, ropeOpts);
    const v0 = proj(h, "self_attn.v_proj").reshape(B, T, Hkv, Dh);
    const v = bthd ? v0 : transpose(v0, 1, 2);
    const a = attend.run(i, q, k, v, mask);
    const o = proj((bthd ? a : transpose(a, 1, 2)).reshape(B, T, Hq * Dh), "self_attn.o_proj");
    const { sum: x1, out: h2 } = addRmsnorm(x, o, this.param(`${p}.post_attention_layernorm.weight`), this.normOpts);
    const m = glu(proj(h2, "mlp.gate_proj"), proj(h2, "mlp.up_proj"), this.act);
    const down = proj(m, "mlp.down_proj");
    if (!io.next) return { x: add(x1, down), h: null };
    const { sum, out } = addRmsnorm(x1, down, io.next, this.normOpts);
    return { x: sum, h: out };
  }
}

// ---- helpers ----------------------------------------------------------------------------------------------

function isNormalized(c: object): c is LlamaFamilyConfig {
  return "modelType" in c && "hiddenSize" in c && "raw" in c;
}

/**
 * Every parameter must fit one buffer binding of the device as f32 (maxStorageBufferBindingSize / maxBufferSize):
 * those that do not are named, with their shapes and sizes, before anything is allocated (a TensorError, or with
 * `source`, the checkpoint directory, a CheckpointError naming the first). Without this the first kernel to bind
 * one failed naming only its own binding.
 */
function checkFitsDevice(gpu: Gpu, c: LlamaFamilyConfig, source?: string): void {
  const limit = largestBinding(gpu.limits);
  const bytes = (shape: readonly number[]) => 4 * numel(shape);
  const over = expectedParameters(c).filter((p) => bytes(p.shape) > limit);
  if (!over.length) return;
  const list = over.map((p) => `${p.name} [${p.shape.join(", ")}] ${fmt(bytes(p.shape))}`).join(", ");
  const why =
    `${over.length === 1 ? "a parameter is" : `${over.length} parameters are`} larger than one buffer binding of ${gpu.adapter.description} ` +
    `(${fmt(limit)}: maxStorageBufferBindingSize / maxBufferSize), as f32: ${list}`;
  if (source !== undefined) throw new CheckpointError(why, source, { tensor: over[0]!.name });
  throw new TensorError(`LlamaModel: ${why}`);
}

/** What the GPU ops cannot do: a TensorError naming the field, or with `source` (config.json) a CheckpointError naming it. */
function checkSupported(c: LlamaFamilyConfig, source?: string): void {
  if (c.headDim % 4 !== 0) {
    const given = c.raw.head_dim !== undefined && c.raw.head_dim !== null;
    const why = `head_dim ${c.headDim}${given ? "" : ` (hidden_size ${c.hiddenSize} / num_attention_heads ${c.numAttentionHeads})`} is not a multiple of 4, which the attention kernel needs`;
    if (source !== undefined) throw new CheckpointError(why, source, { field: given ? "head_dim" : "num_attention_heads" });
    throw new TensorError(`LlamaModel: ${why}`);
  }
}

function activation(name: LlamaFamilyConfig["hiddenAct"]): GluAct {
  switch (name) {
    case "silu":
      return "silu";
    case "gelu":
      return "gelu";
    case "gelu_pytorch_tanh":
      return "gelu_tanh";
  }
}

function positions(p: ForwardOptions["positionIds"], B: number, T: number): { data: Int32Array; shape: number[]; max: number; min: number } {
  let data: Int32Array;
  let shape: number[];
  if (p === undefined) {
    data = Int32Array.from({ length: T }, (_, t) => t);
    shape = [T];
  } else if (p.length > 0 && !Array.isArray(p[0])) {
    const row = p as number[];
    if (row.length !== T) throw new TensorError(`LlamaModel.forward: positionIds has ${row.length} positions, the sequences ${T}`);
    checkIntMatrix("LlamaModel.forward", "positionIds", [row], () => null);
    data = Int32Array.from(row);
    shape = [T];
  } else {
    checkIntMatrix("LlamaModel.forward", "positionIds", p, () => null, [B, T]);
    data = Int32Array.from((p as number[][]).flat());
    shape = [B, T];
  }
  let [max, min] = [-Infinity, Infinity];
  for (const v of data) [max, min] = [Math.max(max, v), Math.min(min, v)];
  return { data, shape, max, min };
}

/**
 * transformers' rope init functions (modeling_rope_utils) for the rope_scaling types hf_config.ts accepts, with
 * every step rounded to float32 as torch computes it. `seqLen` = max(position_ids) + 1 matters only for
 * "dynamic" (NTK), which rescales the base past max_position_embeddings.
 */
export function ropeInvFreqScaled(c: Pick<LlamaFamilyConfig, "headDim" | "ropeTheta" | "ropeScaling" | "maxPositionEmbeddings">, seqLen: number): Float32Array {
  const dim = c.headDim;
  const rs = c.ropeScaling;
  const f = Math.fround;
  if (rs?.type === "dynamic" && seqLen > c.maxPositionEmbeddings) {
    const base = c.ropeTheta * ((rs.factor * seqLen) / c.maxPositionEmbeddings - (rs.factor - 1)) ** (dim / (dim - 2));
    return ropeInvFreq(dim, base);
  }
  const inv = ropeInvFreq(dim, c.ropeTheta);
  if (rs?.type === "linear") return inv.map((v) => f(v / f(rs.factor)));
  if (rs?.type !== "llama3") return inv;
  const factor = f(rs.factor);
  const old = rs.originalMaxPositionEmbeddings;
  const lowWl = f(old / rs.lowFreqFactor);
  const highWl = f(old / rs.highFreqFactor);
  return inv.map((v) => {
    const wavelen = f(f(2 * Math.PI) / v);
    const invL = wavelen > lowWl ? f(v / factor) : v;
    const smooth = f(f(f(f(old) / wavelen) - f(rs.lowFreqFactor)) / f(rs.highFreqFactor - rs.lowFreqFactor));
    const smoothed = f(f(f(f(1 - smooth) * invL) / factor) + f(smooth * invL));
    const medium = !(wavelen < highWl) && !(wavelen > lowWl);
    return medium ? smoothed : invL;
  });
}

// ---- memory estimate --------------------------------------------------------------------------------------

export interface MemoryOptions {
  batch: number;
  seq: number;
  /** Optimizer state per parameter: AdamW 2 tensors (default), SGD with momentum 1, none 0. */
  optimizer?: "adamw" | "sgd" | "none";
  /** false: inference under noGrad (no gradients, no optimizer, no saved activations). Default true. */
  training?: boolean;
  /** Bytes available (e.g. parseBytes(process.env.ALIGNX_GPU_MEMORY)); `fits` compares the total with it. */
  budgetBytes?: number;
  /** The device's limits (gpu.limits): single tensors must fit maxStorageBufferBindingSize / maxBufferSize. */
  limits?: Pick<GPUSupportedLimits, "maxStorageBufferBindingSize" | "maxBufferSize">;
  /**
   * How a training step computes its loss: "logits" (default: forwardLoss with the [B·T, V] logits) or "chunked"
   * (forwardLoss({ logits: false }), as the trainer runs it: one [B·T, chunk] block of logits at a time,
   * linearCrossEntropyChunk columns).
   */
  loss?: "logits" | "chunked";
  /** With loss "chunked": the columns per chunk, as forwardLoss's `lossChunk` (default: linearCrossEntropyChunk's). */
  lossChunk?: number;
}

/** The largest buffer one binding can take under these limits (Infinity without any). */
export function largestBinding(limits?: Pick<GPUSupportedLimits, "maxStorageBufferBindingSize" | "maxBufferSize">): number {
  return limits ? Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize) : Infinity;
}

export interface MemoryReport {
  parameters: number;
  gradients: number;
  optimizer: number;
  /** Tensors autograd keeps from the forward for the backward (training), or the live working set (inference). */
  activations: number;
  /** Working memory on top at the peak: the logits' gradient and a few activation-sized gradients. */
  transient: number;
  /** Estimated peak bytes: everything above. */
  total: number;
  /** The largest single tensor (it must fit one GPU buffer binding). */
  largest: { what: string; bytes: number };
  /** Problems found: the total over budget, a tensor over the binding limit. Empty when it fits. */
  problems: string[];
  fits: boolean;
  /** A short human-readable table. */
  text: string;
}

/**
 * Estimate the GPU bytes of training (or running) `config` on batches of `batch` × `seq` tokens, in f32: the
 * parameters, their gradients, the optimizer state, the activations autograd saves (counted from what each op
 * of LlamaModel.forward keeps for its backward), and the transient peak of the backward. An estimate: the
 * buffer pool rounds each buffer up to a size class (at most 25% more, 256 bytes at least), and kernels'
 * small per-row statistics are left out. test/nn/llama.test.ts compares it with a measured peak.
 */
export function memoryReport(cfg: LlamaFamilyConfig | Record<string, unknown>, o: MemoryOptions): MemoryReport {
  const c = LlamaModel.config(cfg);
  if (!(Number.isInteger(o.batch) && o.batch > 0 && Number.isInteger(o.seq) && o.seq > 0))
    throw new TensorError(`memoryReport: batch and seq must be positive integers, got ${o.batch} and ${o.seq}`);
  const F = 4;
  const training = o.training ?? true;
  const N = o.batch * o.seq;
  const [D, I, V, L] = [c.hiddenSize, c.intermediateSize, c.vocabSize, c.numHiddenLayers];
  const Q = c.numAttentionHeads * c.headDim;
  const KV = c.numKeyValueHeads * c.headDim;
  const nParams = expectedParameters(c).reduce((n, p) => n + p.shape.reduce((a, d) => a * d, 1), 0);
  const parameters = nParams * F;
  const gradients = training ? parameters : 0;
  const optimizer = training ? parameters * ({ adamw: 2, sgd: 1, none: 0 }[o.optimizer ?? "adamw"] ?? 2) : 0;
  // Saved per layer: the residual input and post-attention residual (norms), both norm outputs (projections),
  // q, k, v after RoPE and the attention output (attention), the attention output re-laid-out (o_proj), the
  // gate and up outputs (glu) and their gated product (down_proj).
  const perLayer = N * (4 * D + 3 * Q + 2 * KV + 3 * I) + N * c.numAttentionHeads;
  // The logits: all V columns (kept by the loss; their gradient is the transient), or one chunk of C columns at a
  // time (recomputed in the backward: the chunk and its gradient are transient).
  const chunked = training && o.loss === "chunked";
  const C = !chunked ? V : Math.min(V, o.lossChunk ?? linearCrossEntropyChunk(N, V, largestBinding(o.limits)));
  const head = N * (2 * D + (chunked ? 0 : V)); // final norm input and output, the logits (kept by the loss)
  const widest = Math.max(D, I, Q);
  const activations = training ? F * (L * perLayer + head) : F * N * (2 * widest + Q + 2 * KV + V);
  const transient = training ? F * ((chunked ? 2 * N * C : N * V) + 4 * N * widest) : 0;
  const total = parameters + gradients + optimizer + activations + transient;

  const tensors: [string, number][] = [
    ["embed_tokens [V, D]", V * D * F],
    chunked ? [`logits chunk [B*T, ${C}]`, N * C * F] : ["logits [B*T, V]", N * V * F],
    ["MLP activation [B*T, I]", N * I * F],
    ["q / attention output [B*T, Hq*Dh]", N * Q * F],
  ];
  const largest = tensors.reduce((a, b) => (b[1] > a[1] ? b : a));
  const problems: string[] = [];
  if (o.budgetBytes !== undefined && total > o.budgetBytes) problems.push(`estimated peak ${fmt(total)} exceeds the budget ${fmt(o.budgetBytes)}`);
  if (o.limits) {
    const lim = largestBinding(o.limits);
    for (const [what, bytes] of tensors) if (bytes > lim) problems.push(`${what} needs ${fmt(bytes)}, over the device's largest buffer binding ${fmt(lim)}`);
  }
  const rows: [string, number][] = [
    ["parameters", parameters],
    ["gradients", gradients],
    ["optimizer", optimizer],
    ["activations", activations],
    ["transient", transient],
    ["total (est.)", total],
  ];
  const text = [
    `${c.modelType}: ${(nParams / 1e6).toFixed(2)}M parameters, batch ${o.batch} × seq ${o.seq}${training ? ", training" : ", inference"} (f32)`,
    ...rows.map(([k, v]) => `  ${k.padEnd(13)} ${fmt(v).padStart(10)}`),
    `  largest tensor: ${largest[0]} ${fmt(largest[1])}`,
    ...problems.map((p) => `  PROBLEM: ${p}`),
  ].join("\n");
  return { parameters, gradients, optimizer, activations, transient, total, largest: { what: largest[0], bytes: largest[1] }, problems, fits: problems.length === 0, text };
}

function fmt(b: number): string {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) {
    b /= 1024;
    i++;
  }
  return `${b.toFixed(i ? 2 : 0)} ${u[i]}`;
}

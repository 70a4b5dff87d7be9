/**
 * Hugging Face `config.json` for LLaMA-family causal LMs (model_type llama, mistral, gemma): read, check,
 * normalize (defaults as `transformers` applies them), and the parameter names and shapes such a model has
 * in HF naming, with a checker that compares a checkpoint against them and lists every difference at once.
 *
 * Defaults follow transformers' LlamaConfig / MistralConfig / GemmaConfig; the sizes that define a model
 * (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, vocab_size) are required, since
 * a default there would silently build the wrong model. Every error names the file and the field. Sizes have
 * sane bounds (MAX_HIDDEN_LAYERS layers, MAX_PARAMETERS parameters, counted in closed form), and
 * `checkConfigScale` compares a config with a checkpoint's tensors in O(checkpoint) before anything
 * proportional to the config (its parameter list) is built: `num_hidden_layers: 1e9` fails at once.
 *
 * Family differences the model needs (all in the normalized config):
 *   - Gemma: RMSNorm multiplies by (1 + weight) (`normWeightOffset` 1); embeddings are scaled by
 *     sqrt(hidden_size) (`embedScale`; transformers rounds that factor to the activation dtype);
 *     GeLU-tanh MLP (`hidden_activation`, else "gelu_pytorch_tanh" even where an old config says "gelu",
 *     as transformers does); tied embeddings by default.
 *   - Mistral: optional sliding-window attention (`slidingWindow`; transformers' default 4096 when the
 *     field is absent, null = full attention, as in v0.2+).
 *   - LLaMA 3.x: rope_scaling {rope_type: "llama3", ...}, eos_token_id may be a list.
 */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { CheckpointError, listLines } from "./errors.ts";

export const MODEL_TYPES = ["llama", "mistral", "gemma"] as const;
export type ModelType = (typeof MODEL_TYPES)[number];

/** The most decoder layers a config may have (a sane bound: released models have at most a few hundred). */
export const MAX_HIDDEN_LAYERS = 10_000;
/** The most parameters a config may describe (10 trillion; the largest released models have about 2). */
export const MAX_PARAMETERS = 1e13;

export const ACTIVATIONS = ["silu", "gelu", "gelu_pytorch_tanh"] as const;
export type Activation = (typeof ACTIVATIONS)[number];

export type RopeScaling =
  | { type: "linear" | "dynamic"; factor: number }
  | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

export interface LlamaFamilyConfig {
  modelType: ModelType;
  architectures: string[];
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Key/value heads (grouped-query attention); = numAttentionHeads for plain multi-head attention. */
  numKeyValueHeads: number;
  /** Per-head size; q_proj has numAttentionHeads × headDim outputs (≠ hiddenSize for Gemma-7B). */
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  maxPositionEmbeddings: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  attentionBias: boolean;
  mlpBias: boolean;
  hiddenAct: Activation;
  initializerRange: number;
  attentionDropout: number;
  /** Mistral's sliding-window attention span; null = full causal attention. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  /** End-of-sequence ids (config.json may give one id or a list). */
  eosTokenIds: number[];
  padTokenId: number | null;
  /** "float32" | "float16" | "bfloat16", or null when not given. */
  torchDtype: string | null;
  /** RMSNorm computes x̂ · (normWeightOffset + weight): 1 for Gemma, 0 otherwise. */
  normWeightOffset: 0 | 1;
  /** Embedding output multiplier: sqrt(hiddenSize) for Gemma, 1 otherwise. */
  embedScale: number;
  /** Things that were accepted but deserve a look (normalized values, ignored fields). */
  warnings: string[];
  /** The file's JSON as read, so a saved config keeps fields this module does not interpret. */
  raw: Readonly<Record<string, unknown>>;
}

const DEFAULTS: Record<ModelType, { maxPos: number; tie: boolean; bos: number; eos: number; pad: number | null; slidingWindow: number | null }> = {
  llama: { maxPos: 2048, tie: false, bos: 1, eos: 2, pad: null, slidingWindow: null },
  mistral: { maxPos: 4096 * 32, tie: false, bos: 1, eos: 2, pad: null, slidingWindow: 4096 },
  gemma: { maxPos: 8192, tie: true, bos: 2, eos: 1, pad: 0, slidingWindow: null },
};

/** Read `config.json` (a path to it, or the directory holding it). */
export async function readHfConfig(pathOrDir: string): Promise<LlamaFamilyConfig> {
  const st = await stat(pathOrDir).catch(() => null);
  const path = st?.isDirectory() ? join(pathOrDir, "config.json") : pathOrDir;
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new CheckpointError((e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : `cannot read: ${(e as Error).message}`, path);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(`not valid JSON: ${(e as Error).message}`, path);
  }
  return parseHfConfig(doc, path);
}

/** Check and normalize a parsed config.json; `source` names it in errors. */
export function parseHfConfig(doc: unknown, source = "config.json"): LlamaFamilyConfig {
  const fail = (field: string, msg: string) => new CheckpointError(msg, source, { field });
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new CheckpointError("not a JSON object", source);
  const raw = doc as Record<string, unknown>;
  const has = (k: string) => raw[k] !== undefined && raw[k] !== null;
  const warnings: string[] = [];

  const modelType = raw.model_type;
  if (typeof modelType !== "string" || !(MODEL_TYPES as readonly string[]).includes(modelType))
    throw fail(
      "model_type",
      `${modelType === undefined ? "missing" : `${JSON.stringify(modelType)} is not supported`} (supported: ${MODEL_TYPES.join(", ")})`,
    );
  const type = modelType as ModelType;
  const D = DEFAULTS[type];

  const int = (k: string, min: number, dflt?: number): number => {
    if (!has(k)) {
      if (dflt === undefined) throw fail(k, "missing (required)");
      return dflt;
    }
    const v = raw[k];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) throw fail(k, `${JSON.stringify(v)} is not an integer >= ${min}`);
    return v;
  };
  const num = (k: string, dflt: number, ok: (x: number) => boolean, what: string): number => {
    if (!has(k)) return dflt;
    const v = raw[k];
    if (typeof v !== "number" || !Number.isFinite(v) || !ok(v)) throw fail(k, `${JSON.stringify(v)} is not ${what}`);
    return v;
  };
  const bool = (k: string, dflt: boolean): boolean => {
    if (!has(k)) return dflt;
    if (typeof raw[k] !== "boolean") throw fail(k, `${JSON.stringify(raw[k])} is not true or false`);
    return raw[k] as boolean;
  };

  const hiddenSize = int("hidden_size", 1);
  const intermediateSize = int("intermediate_size", 1);
  const numHiddenLayers = int("num_hidden_layers", 1);
  const numAttentionHeads = int("num_attention_heads", 1);
  const vocabSize = int("vocab_size", 1);
  const numKeyValueHeads = int("num_key_value_heads", 1, numAttentionHeads);
  if (numAttentionHeads % numKeyValueHeads !== 0)
    throw fail("num_key_value_heads", `num_attention_heads (${numAttentionHeads}) is not a multiple of num_key_value_heads (${numKeyValueHeads})`);
  let headDim: number;
  if (has("head_dim")) headDim = int("head_dim", 1);
  else {
    if (hiddenSize % numAttentionHeads !== 0)
      throw fail("num_attention_heads", `hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numAttentionHeads}), and no head_dim is given`);
    headDim = hiddenSize / numAttentionHeads;
  }
  if (headDim % 2 !== 0) throw fail("head_dim", `head size ${headDim} is odd; rotary embeddings rotate pairs of dimensions`);
  // Sane bounds, before anything is built from these sizes (parameter lists, checks against a checkpoint).
  if (numHiddenLayers > MAX_HIDDEN_LAYERS)
    throw fail("num_hidden_layers", `${numHiddenLayers} layers are more than the ${MAX_HIDDEN_LAYERS} this loader accepts (released models have at most a few hundred)`);

  const rmsNormEps = num("rms_norm_eps", 1e-6, (x) => x > 0, "a number > 0");
  const ropeTheta = num("rope_theta", 10000, (x) => x > 0, "a number > 0");
  const maxPositionEmbeddings = int("max_position_embeddings", 1, D.maxPos);
  const tieWordEmbeddings = bool("tie_word_embeddings", D.tie);
  const attentionBias = bool("attention_bias", false);
  const mlpBias = bool("mlp_bias", false);
  if (attentionBias && type === "mistral") throw fail("attention_bias", "true, but transformers' Mistral has no attention biases");
  if (mlpBias && type !== "llama") throw fail("mlp_bias", `true, but transformers' ${type === "gemma" ? "Gemma" : "Mistral"} has no MLP biases`);
  const initializerRange = num("initializer_range", 0.02, (x) => x >= 0, "a number >= 0");
  const attentionDropout = num("attention_dropout", 0, (x) => x >= 0 && x < 1, "a probability in [0, 1)");
  if (attentionDropout > 0) warnings.push(`attention_dropout is ${attentionDropout}`);

  let hiddenAct: Activation;
  const act = (k: string): Activation => {
    const v = raw[k];
    if (typeof v !== "string" || !(ACTIVATIONS as readonly string[]).includes(v)) throw fail(k, `${JSON.stringify(v)} is not a supported activation (${ACTIVATIONS.join(", ")})`);
    return v as Activation;
  };
  if (type === "gemma") {
    // transformers' Gemma MLP uses hidden_activation; without it, GeLU-tanh whatever hidden_act says.
    if (has("hidden_activation")) hiddenAct = act("hidden_activation");
    else {
      if (has("hidden_act")) act("hidden_act");
      if (has("hidden_act") && raw.hidden_act !== "gelu_pytorch_tanh")
        warnings.push(`hidden_act ${JSON.stringify(raw.hidden_act)} read as "gelu_pytorch_tanh" (Gemma's activation, as transformers does)`);
      hiddenAct = "gelu_pytorch_tanh";
    }
  } else hiddenAct = has("hidden_act") ? act("hidden_act") : "silu";

  const slidingWindow = raw.sliding_window === undefined ? D.slidingWindow : raw.sliding_window === null ? null : int("sliding_window", 1);
  if (slidingWindow !== null && type !== "mistral") throw fail("sliding_window", `is ${slidingWindow}, but only Mistral uses sliding-window attention`);

  const tokenId = (k: string, v: unknown): number => {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0 || v >= vocabSize) throw fail(k, `${JSON.stringify(v)} is not a token id in [0, vocab_size ${vocabSize})`);
    return v;
  };
  const bosTokenId = raw.bos_token_id === undefined ? D.bos : raw.bos_token_id === null ? null : tokenId("bos_token_id", raw.bos_token_id);
  const eosRaw = raw.eos_token_id === undefined ? D.eos : raw.eos_token_id;
  let eosTokenIds: number[];
  if (eosRaw === null) eosTokenIds = [];
  else if (Array.isArray(eosRaw)) {
    if (eosRaw.length === 0) throw fail("eos_token_id", "is an empty list");
    eosTokenIds = eosRaw.map((v) => tokenId("eos_token_id", v));
  } else eosTokenIds = [tokenId("eos_token_id", eosRaw)];
  let padTokenId: number | null;
  if (raw.pad_token_id === undefined) padTokenId = D.pad;
  else if (raw.pad_token_id === null) padTokenId = null;
  else if (raw.pad_token_id === -1) {
    warnings.push("pad_token_id -1 read as no padding token");
    padTokenId = null;
  } else padTokenId = tokenId("pad_token_id", raw.pad_token_id);

  const dtypeKey = has("torch_dtype") ? "torch_dtype" : "dtype";
  let torchDtype: string | null = null;
  if (has(dtypeKey)) {
    const v = raw[dtypeKey];
    if (typeof v !== "string" || !["float32", "float16", "bfloat16"].includes(v)) throw fail(dtypeKey, `${JSON.stringify(v)} is not float32, float16 or bfloat16`);
    torchDtype = v;
  }

  let architectures: string[] = [];
  if (has("architectures")) {
    const a = raw.architectures;
    if (!Array.isArray(a) || !a.every((x) => typeof x === "string")) throw fail("architectures", "is not a list of strings");
    architectures = a as string[];
  }

  const sizes = { hiddenSize, intermediateSize, numHiddenLayers, numAttentionHeads, numKeyValueHeads, headDim, vocabSize, tieWordEmbeddings, attentionBias, mlpBias };
  const { embed, perLayer, total } = parameterParts(sizes);
  if (!(total <= MAX_PARAMETERS)) {
    const field =
      embed >= perLayer * numHiddenLayers ? "vocab_size" : perLayer > MAX_PARAMETERS ? (3 * intermediateSize > 4 * hiddenSize ? "intermediate_size" : "hidden_size") : "num_hidden_layers";
    throw fail(
      field,
      `the config describes ${fmtCount(total)} parameters (${describeSizes(sizes)}), more than the ${fmtCount(MAX_PARAMETERS)} this loader accepts`,
    );
  }

  return {
    modelType: type,
    architectures,
    hiddenSize,
    intermediateSize,
    numHiddenLayers,
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    rmsNormEps,
    ropeTheta,
    ropeScaling: parseRopeScaling(raw.rope_scaling, fail),
    maxPositionEmbeddings,
    vocabSize,
    tieWordEmbeddings,
    attentionBias,
    mlpBias,
    hiddenAct,
    initializerRange,
    attentionDropout,
    slidingWindow,
    bosTokenId,
    eosTokenIds,
    padTokenId,
    torchDtype,
    normWeightOffset: type === "gemma" ? 1 : 0,
    embedScale: type === "gemma" ? Math.sqrt(hiddenSize) : 1,
    warnings,
    raw,
  };
}

function parseRopeScaling(v: unknown, fail: (field: string, msg: string) => CheckpointError): RopeScaling | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== "object" || Array.isArray(v)) throw fail("rope_scaling", `${JSON.stringify(v)} is not an object or null`);
  const o = v as Record<string, unknown>;
  const kind = o.rope_type ?? o.type;
  const pos = (k: string, min = 0): number => {
    const x = o[k];
    if (typeof x !== "number" || !Number.isFinite(x) || x <= min) throw fail("rope_scaling", `${k} is ${JSON.stringify(x)}, not a number > ${min}`);
    return x;
  };
  switch (kind) {
    case "default":
      return null;
    case "linear":
    case "dynamic":
      return { type: kind, factor: pos("factor") };
    case "llama3": {
      const r = {
        type: "llama3" as const,
        factor: pos("factor"),
        lowFreqFactor: pos("low_freq_factor"),
        highFreqFactor: pos("high_freq_factor"),
        originalMaxPositionEmbeddings: pos("original_max_position_embeddings"),
      };
      if (r.highFreqFactor <= r.lowFreqFactor) throw fail("rope_scaling", `high_freq_factor (${r.highFreqFactor}) must be above low_freq_factor (${r.lowFreqFactor})`);
      return r;
    }
    default:
      throw fail("rope_scaling", `rope type ${JSON.stringify(kind)} is not supported (default, linear, dynamic, llama3)`);
  }
}

/** The config as config.json content: the original fields, with `torch_dtype` updated if given. */
export function hfConfigJson(cfg: LlamaFamilyConfig, opts: { torchDtype?: "float32" | "float16" | "bfloat16" } = {}): string {
  const out: Record<string, unknown> = { ...cfg.raw };
  if (opts.torchDtype) {
    if ("dtype" in out && !("torch_dtype" in out)) out.dtype = opts.torchDtype;
    else out.torch_dtype = opts.torchDtype;
  }
  return `${JSON.stringify(out, null, 2)}\n`;
}

// ---- parameters ---------------------------------------------------------------------------------------

export interface ParamSpec {
  name: string;
  shape: number[];
}

/** Every parameter of the model in HF naming and shape ([out, in] for linear weights), in model order. */
export function expectedParameters(cfg: LlamaFamilyConfig): ParamSpec[] {
  const h = cfg.hiddenSize;
  const q = cfg.numAttentionHeads * cfg.headDim;
  const kv = cfg.numKeyValueHeads * cfg.headDim;
  const inter = cfg.intermediateSize;
  const out: ParamSpec[] = [{ name: "model.embed_tokens.weight", shape: [cfg.vocabSize, h] }];
  for (let i = 0; i < cfg.numHiddenLayers; i++) {
    const p = `model.layers.${i}`;
    const linear = (name: string, o: number, inp: number, bias: boolean) => {
      out.push({ name: `${p}.${name}.weight`, shape: [o, inp] });
      if (bias) out.push({ name: `${p}.${name}.bias`, shape: [o] });
    };
    linear("self_attn.q_proj", q, h, cfg.attentionBias);
    linear("self_attn.k_proj", kv, h, cfg.attentionBias);
    linear("self_attn.v_proj", kv, h, cfg.attentionBias);
    linear("self_attn.o_proj", h, q, cfg.attentionBias);
    linear("mlp.gate_proj", inter, h, cfg.mlpBias);
    linear("mlp.up_proj", inter, h, cfg.mlpBias);
    linear("mlp.down_proj", h, inter, cfg.mlpBias);
    out.push({ name: `${p}.input_layernorm.weight`, shape: [h] });
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [h] });
  }
  out.push({ name: "model.norm.weight", shape: [h] });
  if (!cfg.tieWordEmbeddings) out.push({ name: "lm_head.weight", shape: [cfg.vocabSize, h] });
  return out;
}

/** The sizes that decide the parameters. */
type Sizes = Pick<
  LlamaFamilyConfig,
  "hiddenSize" | "intermediateSize" | "numHiddenLayers" | "numAttentionHeads" | "numKeyValueHeads" | "headDim" | "vocabSize" | "tieWordEmbeddings" | "attentionBias" | "mlpBias"
>;

/** Parameters of the embeddings (and untied head), of one layer, and in all, in closed form (O(1)). */
function parameterParts(c: Sizes): { embed: number; perLayer: number; total: number } {
  const h = c.hiddenSize;
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const inter = c.intermediateSize;
  const perLayer = 2 * q * h + 2 * kv * h + (c.attentionBias ? q + 2 * kv + h : 0) + 3 * inter * h + (c.mlpBias ? 2 * inter + h : 0) + 2 * h;
  const embed = c.vocabSize * h * (c.tieWordEmbeddings ? 1 : 2);
  return { embed, perLayer, total: embed + c.numHiddenLayers * perLayer + h };
}

/** 21632, 41.2M, 8.03B, 51.2T: a parameter count for messages. */
function fmtCount(n: number): string {
  if (n < 1e6) return String(n);
  const [div, unit] = n < 1e9 ? [1e6, "M"] : n < 1e12 ? [1e9, "B"] : [1e12, "T"];
  const v = n / div;
  return `${v < 1000 ? v.toPrecision(3) : Math.round(v)}${unit}`;
}

function describeSizes(c: Sizes): string {
  return `${c.numHiddenLayers} layers, hidden ${c.hiddenSize}, intermediate ${c.intermediateSize}, ${c.numAttentionHeads} heads of ${c.headDim}, vocab ${c.vocabSize}`;
}

/** Number of parameters (tied embeddings counted once), in closed form: O(1) whatever the config says. */
export function parameterCount(cfg: Sizes): number {
  return parameterParts(cfg).total;
}

/** Number of tensors `expectedParameters` lists, in closed form. */
export function expectedTensorCount(cfg: Sizes): number {
  return 2 + (cfg.tieWordEmbeddings ? 0 : 1) + cfg.numHiddenLayers * (9 + (cfg.attentionBias ? 4 : 0) + (cfg.mlpBias ? 3 : 0));
}

/**
 * Before a checkpoint is compared tensor by tensor with its config (which lists every expected parameter):
 * a config out of proportion to the checkpoint (more than twice its tensors or its parameters, as a typo in
 * num_hidden_layers or hidden_size makes it) fails here, in O(checkpoint) time and memory, with one error
 * naming config.json (`configSource`), the sizes on both sides and the checkpoint (`ckptSource`).
 */
export function checkConfigScale(
  cfg: LlamaFamilyConfig,
  params: Iterable<{ name: string; shape: readonly number[] }>,
  configSource: string,
  ckptSource: string,
): void {
  let tensors = 0;
  let elements = 0;
  let layers = 0;
  for (const p of params) {
    tensors++;
    elements += p.shape.reduce((a, d) => a * d, 1);
    const m = /^model\.layers\.(\d+)\./.exec(p.name);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  const wantTensors = expectedTensorCount(cfg);
  const wantParams = parameterCount(cfg);
  if (wantTensors <= 2 * tensors + 64 && wantParams <= 2 * elements + 2 ** 20) return;
  throw new CheckpointError(
    `the config describes ${fmtCount(wantParams)} parameters in ${wantTensors} tensors (${describeSizes(cfg)}), ` +
      `but the checkpoint ${ckptSource} holds ${fmtCount(elements)} in ${tensors} tensors (${layers} layers): the config does not describe these weights`,
    configSource,
    layers !== cfg.numHiddenLayers ? { field: "num_hidden_layers" } : {},
  );
}

/** Names a checkpoint may hold beyond the parameters (and that loading skips). */
export const IGNORED_NAMES: readonly RegExp[] = [/^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/];

/** Float dtypes a parameter may be stored in. */
const PARAM_DTYPES = ["F32", "F16", "BF16"];

export interface ParameterReport {
  missing: ParamSpec[];
  unexpected: { name: string; shape: readonly number[] }[];
  misshaped: { name: string; shape: readonly number[]; expected: number[] }[];
  badDtype: { name: string; dtype: string }[];
  /** Names skipped by IGNORED_NAMES, and lm_head.weight of a tied model that stores it anyway. */
  ignored: string[];
}

/** Compare a checkpoint's tensors with what `cfg` needs (see `checkParameters` for the throwing form). */
export function compareParameters(cfg: LlamaFamilyConfig, params: Iterable<{ name: string; shape: readonly number[]; dtype?: string }>): ParameterReport {
  const want = new Map(expectedParameters(cfg).map((p) => [p.name, p.shape]));
  const r: ParameterReport = { missing: [], unexpected: [], misshaped: [], badDtype: [], ignored: [] };
  const seen = new Set<string>();
  const lmHead = [cfg.vocabSize, cfg.hiddenSize];
  for (const p of params) {
    seen.add(p.name);
    const shape = want.get(p.name);
    if (!shape) {
      if (IGNORED_NAMES.some((re) => re.test(p.name)) || (cfg.tieWordEmbeddings && p.name === "lm_head.weight" && sameShape(p.shape, lmHead))) r.ignored.push(p.name);
      else r.unexpected.push({ name: p.name, shape: p.shape });
      continue;
    }
    if (!sameShape(p.shape, shape)) r.misshaped.push({ name: p.name, shape: p.shape, expected: shape });
    if (p.dtype !== undefined && !PARAM_DTYPES.includes(p.dtype)) r.badDtype.push({ name: p.name, dtype: p.dtype });
  }
  for (const [name, shape] of want) if (!seen.has(name)) r.missing.push({ name, shape });
  return r;
}

/**
 * Throw one CheckpointError listing every missing, unexpected, mis-shaped and wrongly typed tensor, or
 * return the report (with what was ignored) when the checkpoint fits the config. `source` names the
 * checkpoint in the error.
 */
export function checkParameters(
  cfg: LlamaFamilyConfig,
  params: Iterable<{ name: string; shape: readonly number[]; dtype?: string }>,
  source = "checkpoint",
): ParameterReport {
  const r = compareParameters(cfg, params);
  const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;
  const lines = [
    ...r.missing.map((p) => `missing: ${p.name} ${fmt(p.shape)}`),
    ...r.unexpected.map((p) => `unexpected: ${p.name} ${fmt(p.shape)}`),
    ...r.misshaped.map((p) => `mis-shaped: ${p.name} is ${fmt(p.shape)}, expected ${fmt(p.expected)}`),
    ...r.badDtype.map((p) => `wrong dtype: ${p.name} is ${p.dtype}, expected one of ${PARAM_DTYPES.join(", ")}`),
  ];
  if (lines.length) {
    const counts = [
      [r.missing.length, "missing"],
      [r.unexpected.length, "unexpected"],
      [r.misshaped.length, "mis-shaped"],
      [r.badDtype.length, "wrong dtype"],
    ]
      .filter(([n]) => n)
      .map(([n, w]) => `${n} ${w}`)
      .join(", ");
    const desc = `${cfg.modelType}, ${cfg.numHiddenLayers} layers, hidden ${cfg.hiddenSize}, vocab ${cfg.vocabSize}`;
    throw new CheckpointError(`tensors do not match the config (${desc}): ${counts}\n${listLines(lines, 200)}`, source);
  }
  return r;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * The trainer's options: one table (TRAIN_OPTIONS) that the JSON config file, the command-line flags, the presets,
 * the validation and `alignx train --help` all read, so an option is declared once.
 *
 * Names: the JSON key is HF TrainingArguments' name where HF has one (learning_rate, warmup_steps,
 * per_device_train_batch_size, gradient_accumulation_steps, num_train_epochs, max_grad_norm, save_steps,
 * save_total_limit, logging_steps, ...) and the reference's config.json name for the AlignX settings
 * (align_layer, contrastive_lambda, ...); the flag is the key in kebab case (`--learning-rate`), plus a few short
 * aliases (`--lr`, `--micro-batch`, `--epochs`).
 *
 * Precedence, lowest first: the preset's defaults → the model's config.json (AlignX settings only, as the
 * reference reads them) → the JSON config file (`--config FILE`) → flags. Every value is checked against its
 * range with a message naming where it came from (`--learning-rate`, `run.json: warmup_steps`, `preset
 * finetune`), and the cross-option rules (global batch = micro-batch × accumulation × ranks) after all are read.
 *
 * Presets (../shared/ALIGNX.md, "Optimisation"):
 *   finetune      the reference's defaults for a pretrained 7B model: AdamW β 0.9/0.999, ε 1e-8, weight decay 0,
 *                 LR 2e-6, 100 warmup steps then linear decay to 0, global batch 128 = 16 × 8, 2 epochs,
 *                 clipping at 1.0, cutoff 512, length grouping, padding to × 8.
 *   from-scratch  a small model trained from nothing (the built-in `bun run align`): LR 3e-3 with 10% warmup,
 *                 global batch 16 = 8 × 2, weight decay 0.01, the same losses and clipping.
 */
export const PRESETS = ["finetune", "from-scratch"] as const;
export type Preset = (typeof PRESETS)[number];

/** The stage being trained: 0 = pretraining (NTP from a fresh config), 1 = AlignX stage 1, 2 = stage 2. */
export type Stage = 0 | 1 | 2;

export class TrainOptionError extends Error {
  override name = "TrainOptionError";
  exitCode = 2;
  constructor(
    message: string,
    /** The option's JSON key. */
    readonly key?: string,
  ) {
    super(message);
  }
}

type Kind = "int" | "num" | "bool";

interface OptionSpec {
  key: string;
  kind: Kind;
  help: string;
  /** Inclusive bounds (num/int); `minOpen`: the lower bound is excluded. */
  min?: number;
  max?: number;
  minOpen?: boolean;
  /** Other flags that set it. */
  aliases?: string[];
  /** Only meaningful for stage 1 (the AlignX losses). */
  stage1?: boolean;
}

/** Every numeric/boolean training option, in --help order. */
export const TRAIN_OPTIONS = [
  { key: "learning_rate", kind: "num", min: 0, help: "Peak learning rate (AdamW)", aliases: ["lr"] },
  { key: "warmup_steps", kind: "int", min: 0, help: "Linear warmup steps, then linear decay to 0" },
  { key: "warmup_ratio", kind: "num", min: 0, max: 1, help: "Warmup as a share of the steps (used when warmup_steps is not set)" },
  { key: "weight_decay", kind: "num", min: 0, help: "AdamW decoupled weight decay" },
  { key: "adam_beta1", kind: "num", min: 0, max: 0.999999, help: "AdamW β1" },
  { key: "adam_beta2", kind: "num", min: 0, max: 0.999999999, help: "AdamW β2" },
  { key: "adam_epsilon", kind: "num", min: 0, minOpen: true, help: "AdamW ε" },
  { key: "max_grad_norm", kind: "num", min: 0, help: "Clip the global gradient norm to this (0: no clipping)" },
  { key: "per_device_train_batch_size", kind: "int", min: 1, max: 65536, help: "Micro-batch: examples per forward/backward", aliases: ["micro-batch"] },
  { key: "gradient_accumulation_steps", kind: "int", min: 1, max: 65536, help: "Micro-batches per optimizer step (mean of their losses)" },
  { key: "global_batch_size", kind: "int", min: 1, help: "Examples per optimizer step; sets the accumulation (= global / (micro × ranks))" },
  { key: "num_train_epochs", kind: "num", min: 0, minOpen: true, help: "Passes over the data (fractions allowed)", aliases: ["epochs"] },
  { key: "max_steps", kind: "int", min: 1, help: "Optimizer steps (overrides num_train_epochs)" },
  { key: "cutoff_len", kind: "int", min: 8, max: 1 << 20, help: "Most tokens per example (the first are kept)" },
  { key: "train_on_inputs", kind: "bool", help: "Next-token loss on the prompt too (the reference: true)" },
  { key: "group_by_length", kind: "bool", help: "Batch examples of similar length (HF LengthGroupedSampler)" },
  { key: "pad_to_multiple_of", kind: "int", min: 1, max: 4096, help: "Pad each batch's length up to a multiple of this" },
  { key: "shuffle_buffer", kind: "int", min: 0, max: 1 << 24, help: "Records in the loader's shuffle buffer" },
  { key: "seed", kind: "int", min: 0, max: 2 ** 32 - 1, help: "Seed of the data order and of new weights" },
  { key: "gradient_checkpointing", kind: "bool", help: "Recompute each decoder layer in backward (less memory, one more forward)" },
  { key: "logging_steps", kind: "int", min: 1, help: "A plain progress line every N steps when not on a terminal" },
  { key: "save_steps", kind: "int", min: 0, help: "A checkpoint every N steps (0: only at the end)" },
  { key: "save_total_limit", kind: "int", min: 1, help: "Keep the last K checkpoints" },
  { key: "max_bad_steps", kind: "int", min: 1, help: "Stop after this many steps in a row with a non-finite loss or gradient" },
  { key: "align_layer", kind: "int", min: 0, help: "Hidden state of the contrastive loss (0 = embeddings; default L/2)", stage1: true },
  { key: "contrastive_lambda", kind: "num", min: 0, help: "λ_ctr (0: --no-ctr)", stage1: true },
  { key: "contrastive_temperature", kind: "num", min: 0, minOpen: true, help: "τ of the contrastive loss", stage1: true },
  { key: "language_matching_lambda", kind: "num", min: 0, help: "λ_lam (0: --no-lam)", stage1: true },
  { key: "language_matching_intermediate_size", kind: "int", min: 1, max: 1 << 20, help: "Width of the language-matching classifier", stage1: true },
] as const satisfies readonly OptionSpec[];

export type OptionKey = (typeof TRAIN_OPTIONS)[number]["key"];
export type StringKey = "preset" | "precision";
/** Keys a JSON config may hold besides the numeric ones. */
export const STRING_KEYS = ["preset", "precision"] as const;

/** Resolved numeric options (the AlignX settings stay partial: they are read with the model's config.json). */
export interface TrainHyper {
  preset: Preset;
  /** fp16: the model's products in f16 (LlamaModel.autocast) with dynamic loss scaling (GradScaler); fp32: none. */
  precision: "fp32" | "fp16";
  learning_rate: number;
  warmup_steps: number | undefined;
  warmup_ratio: number;
  weight_decay: number;
  adam_beta1: number;
  adam_beta2: number;
  adam_epsilon: number;
  max_grad_norm: number;
  per_device_train_batch_size: number;
  gradient_accumulation_steps: number;
  num_train_epochs: number;
  max_steps: number | undefined;
  cutoff_len: number;
  train_on_inputs: boolean;
  group_by_length: boolean;
  pad_to_multiple_of: number;
  shuffle_buffer: number;
  seed: number;
  gradient_checkpointing: boolean;
  logging_steps: number;
  save_steps: number;
  save_total_limit: number;
  max_bad_steps: number;
  /** AlignX stage-1 settings given by the preset, file or flags (the model's config.json fills the rest). */
  stage1: Partial<Record<"align_layer" | "contrastive_lambda" | "contrastive_temperature" | "language_matching_lambda" | "language_matching_intermediate_size", number>>;
}

type Values = Partial<Record<OptionKey | StringKey, unknown>>;

const COMMON: Values = {
  adam_beta1: 0.9,
  adam_beta2: 0.999,
  adam_epsilon: 1e-8,
  max_grad_norm: 1.0,
  cutoff_len: 512,
  train_on_inputs: true,
  group_by_length: true,
  pad_to_multiple_of: 8,
  shuffle_buffer: 4096,
  seed: 42,
  gradient_checkpointing: false,
  logging_steps: 10,
  save_steps: 500,
  save_total_limit: 2,
  max_bad_steps: 5,
  warmup_ratio: 0,
  precision: "fp32",
};

/** Each preset's values (over COMMON). */
export const PRESET_VALUES: Record<Preset, Values> = {
  finetune: {
    ...COMMON,
    learning_rate: 2e-6,
    warmup_steps: 100,
    weight_decay: 0,
    per_device_train_batch_size: 16,
    global_batch_size: 128,
    num_train_epochs: 2,
  },
  "from-scratch": {
    ...COMMON,
    learning_rate: 3e-3,
    warmup_ratio: 0.1,
    weight_decay: 0.01,
    per_device_train_batch_size: 8,
    global_batch_size: 16,
    num_train_epochs: 4,
    cutoff_len: 256,
    save_steps: 0,
    logging_steps: 20,
  },
};

const SPECS = new Map<string, OptionSpec>(TRAIN_OPTIONS.map((s) => [s.key, s]));
const kebab = (key: string) => key.replaceAll("_", "-");

/** The flags of an option: --key-in-kebab-case and its aliases. */
export function flagsOf(key: string): string[] {
  const s = SPECS.get(key);
  return [kebab(key), ...(s?.aliases ?? [])];
}

/** Parse and range-check one value; `where` names its origin in messages. */
function checkValue(spec: OptionSpec, v: unknown, where: string): number | boolean {
  if (spec.kind === "bool") {
    if (typeof v === "boolean") return v;
    if (v === "true" || v === "1") return true;
    if (v === "false" || v === "0") return false;
    throw new TrainOptionError(`${where} must be true or false, got ${JSON.stringify(v)}`, spec.key);
  }
  const x = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : Number.NaN;
  const kind = spec.kind === "int" ? "an integer" : "a number";
  if (!Number.isFinite(x) || (spec.kind === "int" && !Number.isSafeInteger(x))) throw new TrainOptionError(`${where} must be ${kind}, got ${JSON.stringify(v)}`, spec.key);
  const low = spec.min !== undefined && (spec.minOpen ? x <= spec.min : x < spec.min);
  const high = spec.max !== undefined && x > spec.max;
  if (low || high) {
    const lo = spec.min === undefined ? "" : `${spec.minOpen ? ">" : ">="} ${spec.min}`;
    const hi = spec.max === undefined ? "" : `<= ${spec.max}`;
    throw new TrainOptionError(`${where} must be ${kind} ${[lo, hi].filter(Boolean).join(" and ")}, got ${typeof v === "string" ? v : x}`, spec.key);
  }
  return x;
}

export interface ResolveOptions {
  preset?: unknown;
  /** The parsed JSON config file and its path (for messages). */
  file?: { path: string; doc: unknown };
  /** Flag values by JSON key (from the CLI: undefined = not given). */
  flags?: Values;
  /** Data-parallel ranks (global batch = micro × accumulation × world). Default 1. */
  worldSize?: number;
}

/**
 * Resolve the options: preset → file → flags, each checked, then the cross-option rules. Throws
 * TrainOptionError (exit 2) naming the flag or the file and key.
 */
export function resolveTrainOptions(o: ResolveOptions): TrainHyper {
  const values = new Map<string, { v: unknown; where: string }>();
  let preset: Preset = "finetune";
  const fileDoc = o.file?.doc;
  if (o.file) {
    if (fileDoc === null || typeof fileDoc !== "object" || Array.isArray(fileDoc)) throw new TrainOptionError(`${o.file.path}: a training config must be a JSON object of options`);
    for (const k of Object.keys(fileDoc))
      if (!SPECS.has(k) && !(STRING_KEYS as readonly string[]).includes(k))
        throw new TrainOptionError(`${o.file.path}: unknown option "${k}" (known: ${[...STRING_KEYS, ...SPECS.keys()].join(", ")})`, k);
  }
  const presetGiven = o.flags?.preset ?? o.preset ?? (fileDoc as Record<string, unknown> | undefined)?.preset;
  if (presetGiven !== undefined) {
    if (!(PRESETS as readonly unknown[]).includes(presetGiven))
      throw new TrainOptionError(`${o.flags?.preset !== undefined || o.preset !== undefined ? "--preset" : `${o.file!.path}: preset`} must be one of ${PRESETS.join(", ")}, got ${JSON.stringify(presetGiven)}`, "preset");
    preset = presetGiven as Preset;
  }
  for (const [k, v] of Object.entries(PRESET_VALUES[preset])) if (v !== undefined) values.set(k, { v, where: `${k} (preset ${preset})` });
  if (o.file) for (const [k, v] of Object.entries(fileDoc as Record<string, unknown>)) if (v !== null) values.set(k, { v, where: `${o.file.path}: ${k}` });
  for (const [k, v] of Object.entries(o.flags ?? {})) if (v !== undefined) values.set(k, { v, where: `--${kebab(k)}` });

  const precision = values.get("precision");
  if (precision && precision.v !== "fp32" && precision.v !== "fp16")
    throw new TrainOptionError(
      precision.v === "bf16"
        ? `${precision.where} = "bf16": WebGPU has no bf16 arithmetic (WGSL has f32 and f16); use fp16 (mixed precision with loss scaling) or fp32`
        : `${precision.where} must be fp32 or fp16, got ${JSON.stringify(precision.v)}`,
      "precision",
    );
  const out: Record<string, unknown> = { preset, precision: (precision?.v as "fp32" | "fp16" | undefined) ?? "fp32", stage1: {} };
  for (const spec of TRAIN_OPTIONS) {
    const e = values.get(spec.key);
    const v = e === undefined ? undefined : checkValue(spec, e.v, e.where);
    if ("stage1" in spec && spec.stage1) {
      if (v !== undefined) (out.stage1 as Record<string, number>)[spec.key] = v as number;
    } else out[spec.key] = v;
  }
  // Batch sizes: accumulation from the global batch when it is given.
  const world = o.worldSize ?? 1;
  const micro = out.per_device_train_batch_size as number;
  const g = values.get("global_batch_size");
  const acc = values.get("gradient_accumulation_steps");
  const accFromFlagsOrFile = acc !== undefined && !acc.where.includes("(preset");
  const globalFromFlagsOrFile = g !== undefined && !g.where.includes("(preset");
  if (g !== undefined && !(accFromFlagsOrFile && !globalFromFlagsOrFile)) {
    const global = out.global_batch_size as number;
    const per = micro * world;
    if (global % per !== 0)
      throw new TrainOptionError(
        `${g.where} = ${global} is not a multiple of the micro-batch × ranks = ${micro} × ${world} = ${per} (per_device_train_batch_size from ${values.get("per_device_train_batch_size")!.where})`,
        "global_batch_size",
      );
    const a = global / per;
    if (accFromFlagsOrFile && (out.gradient_accumulation_steps as number) !== a)
      throw new TrainOptionError(`${acc!.where} = ${out.gradient_accumulation_steps as number} conflicts with ${g.where} = ${global} (= ${micro} × ${a} × ${world} ranks)`, "gradient_accumulation_steps");
    out.gradient_accumulation_steps = a;
  }
  out.gradient_accumulation_steps ??= 1;
  delete out.global_batch_size;
  return out as unknown as TrainHyper;
}

/** Examples per optimizer step. */
export function globalBatch(h: TrainHyper, worldSize = 1): number {
  return h.per_device_train_batch_size * h.gradient_accumulation_steps * worldSize;
}

/** The options as a JSON config file would hold them (what run.json records; `--config` reads it back). */
export function hyperJson(h: TrainHyper): Record<string, unknown> {
  const { stage1, ...rest } = h;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rest)) if (v !== undefined) out[k] = v;
  return { ...out, ...stage1 };
}

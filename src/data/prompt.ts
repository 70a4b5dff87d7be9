/**
 * Instruction tuning data: the Stanford Alpaca prompt template and (input_ids, labels) for supervised
 * fine-tuning, where only the response (and the EOS after it) is supervised.
 *
 * Template: exactly Stanford Alpaca's PROMPT_DICT (train.py); the "input" variant is used when the
 * example's input is a non-empty string (Alpaca tests `example.get("input", "") != ""`).
 *
 * Token layout of one example:
 *   [prefix] tokens(prompt + response) [EOS]
 *   labels: IGNORE_INDEX (-100) for the prefix and every prompt token; the response tokens and EOS are their
 *   own ids (the model shifts labels by one itself, as in transformers).
 * `prefix` is what the tokenizer's post-processor puts before a text (BOS for LLaMA-family tokenizers; found by
 * encoding a probe with and without special tokens); whatever it would put after (a tokenizer configured with
 * add_eos_token) is replaced by the single EOS appended here.
 * prompt and response are encoded together, as Alpaca does, so the boundary is tokenized as the model will see
 * it at inference; the prompt part is the longest common prefix of tokens(prompt) and tokens(prompt + response)
 * (the prompt ends in "\n", which no tokenizer here merges with what follows, so this is all of tokens(prompt)).
 * Truncation keeps the first maxLength tokens (Alpaca's right truncation): a long response loses its end and
 * its EOS; a prompt of maxLength tokens or more leaves nothing supervised (`supervised` is 0: drop it).
 */
import { readFile } from "node:fs/promises";

export const IGNORE_INDEX = -100;

export const ALPACA_PROMPT_INPUT_PREAMBLE =
  "Below is an instruction that describes a task, paired with an input that provides further context. " +
  "Write a response that appropriately completes the request.";
export const ALPACA_PROMPT_NO_INPUT_PREAMBLE =
  "Below is an instruction that describes a task. Write a response that appropriately completes the request.";

/** The templates as Alpaca writes them, with {instruction} and {input} placeholders. */
export const ALPACA_PROMPT_INPUT = `${ALPACA_PROMPT_INPUT_PREAMBLE}\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n`;
export const ALPACA_PROMPT_NO_INPUT = `${ALPACA_PROMPT_NO_INPUT_PREAMBLE}\n\n### Instruction:\n{instruction}\n\n### Response:\n`;

export interface AlpacaExample {
  instruction: string;
  input?: string;
  output: string;
}

/**
 * The prompt for an example. Built by concatenation, not by replacing placeholders, so an instruction that
 * contains "{input}" stays as it is (Python's format_map substitutes once, too).
 */
export function alpacaPrompt(ex: { instruction: string; input?: string | null }): string {
  if (typeof ex.input === "string" && ex.input !== "") {
    return `${ALPACA_PROMPT_INPUT_PREAMBLE}\n\n### Instruction:\n${ex.instruction}\n\n### Input:\n${ex.input}\n\n### Response:\n`;
  }
  return `${ALPACA_PROMPT_NO_INPUT_PREAMBLE}\n\n### Instruction:\n${ex.instruction}\n\n### Response:\n`;
}

/** The part of a tokenizer that SFT needs. */
export interface SftTokenizer {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  readonly eosId: number | null;
}

export interface SftOptions {
  /** Keep at most this many tokens (prefix and EOS included). */
  maxLength: number;
  /** Put the tokenizer's special prefix (BOS) first. Default true. */
  addSpecialPrefix?: boolean;
  /** Append EOS (supervised). Default true; requires tokenizer.eosId. */
  addEos?: boolean;
}

export interface SftExample {
  inputIds: number[];
  /** Same length as inputIds; IGNORE_INDEX where not supervised. */
  labels: number[];
  /** Tokens before the response (prefix + prompt) within inputIds, after truncation. */
  promptLength: number;
  /** Supervised tokens (labels !== IGNORE_INDEX). */
  supervised: number;
  /** True when tokens were cut to fit maxLength. */
  truncated: boolean;
  /** tokens(prompt + response) without special tokens, before truncation (for span positions). */
  textIds: number[];
}

const affixCache = new WeakMap<object, number[]>();

/** The ids a tokenizer puts before a text when adding special tokens (e.g. [BOS]). */
export function specialPrefix(tok: SftTokenizer): number[] {
  const cached = affixCache.get(tok);
  if (cached) return cached;
  const probe = "Hello world";
  const plain = tok.encode(probe, { addSpecialTokens: false });
  const full = tok.encode(probe, { addSpecialTokens: true });
  let at = -1;
  for (let i = 0; i + plain.length <= full.length && at < 0; i++) {
    if (plain.every((id, j) => full[i + j] === id)) at = i;
  }
  if (at < 0) throw new Error("specialPrefix: the tokenizer's special tokens change the text's own tokens; cannot split prefix and text");
  const prefix = full.slice(0, at);
  affixCache.set(tok, prefix);
  return prefix;
}

/** input_ids and labels of a prompt/response pair (see the module comment). */
export function buildSftTokens(tok: SftTokenizer, prompt: string, response: string, opts: SftOptions): SftExample {
  const { maxLength } = opts;
  if (!Number.isInteger(maxLength) || maxLength < 1) throw new Error(`buildSftTokens: maxLength must be a positive integer, got ${maxLength}`);
  const addEos = opts.addEos ?? true;
  if (addEos && tok.eosId === null) throw new Error("buildSftTokens: the tokenizer has no EOS token (pass addEos: false to go without)");
  const prefix = opts.addSpecialPrefix === false ? [] : specialPrefix(tok);
  const p = tok.encode(prompt, { addSpecialTokens: false });
  const full = tok.encode(prompt + response, { addSpecialTokens: false });
  let common = 0;
  while (common < p.length && common < full.length && p[common] === full[common]) common++;
  const ids = [...prefix, ...full];
  if (addEos) ids.push(tok.eosId!);
  const promptLen = prefix.length + common;
  const truncated = ids.length > maxLength;
  if (truncated) ids.length = maxLength;
  const labels = ids.map((id, i) => (i < promptLen ? IGNORE_INDEX : id));
  const promptLength = Math.min(promptLen, ids.length);
  return { inputIds: ids, labels, promptLength, supervised: ids.length - promptLength, truncated, textIds: full };
}

/** buildSftTokens for an Alpaca example: prompt = alpacaPrompt(ex), response = ex.output. */
export function buildAlpacaSft(tok: SftTokenizer, ex: AlpacaExample, opts: SftOptions): SftExample {
  return buildSftTokens(tok, alpacaPrompt(ex), ex.output, opts);
}

export interface SftBatch {
  /** Row-major [batch, length]. */
  inputIds: Int32Array;
  labels: Int32Array;
  /** 1 for real tokens, 0 for padding. */
  attentionMask: Int32Array;
  batch: number;
  length: number;
}

/**
 * Right-pad examples to the longest one (rounded up to a multiple of `padToMultipleOf`): padding gets
 * `padId` in inputIds, IGNORE_INDEX in labels and 0 in the attention mask.
 */
export function collateSft(examples: readonly SftExample[], opts: { padId: number; padToMultipleOf?: number }): SftBatch {
  const mult = opts.padToMultipleOf ?? 1;
  let length = 0;
  for (const e of examples) length = Math.max(length, e.inputIds.length);
  length = Math.ceil(length / mult) * mult;
  const batch = examples.length;
  const inputIds = new Int32Array(batch * length).fill(opts.padId);
  const labels = new Int32Array(batch * length).fill(IGNORE_INDEX);
  const attentionMask = new Int32Array(batch * length);
  examples.forEach((e, b) => {
    inputIds.set(e.inputIds, b * length);
    labels.set(e.labels, b * length);
    attentionMask.fill(1, b * length, b * length + e.inputIds.length);
  });
  return { inputIds, labels, attentionMask, batch, length };
}

/**
 * One Alpaca record as an AlpacaExample (a null or missing input becomes ""), or why it is not one. The one
 * validator for Alpaca records: loadAlpacaJson and the corpus readers (src/data/formats/) both use it.
 */
export function parseAlpacaExample(x: unknown): AlpacaExample | string {
  if (x === null || typeof x !== "object" || Array.isArray(x)) return "not an object";
  const o = x as Record<string, unknown>;
  for (const k of ["instruction", "output"]) {
    if (typeof o[k] !== "string") return `"${k}" must be a string`;
  }
  if (o.input !== undefined && o.input !== null && typeof o.input !== "string") return `"input" must be a string`;
  return { instruction: o.instruction as string, input: (o.input as string | undefined | null) ?? "", output: o.output as string };
}

/** Read an Alpaca-format JSON file (an array of {instruction, input?, output}); errors name the file and index. */
export async function loadAlpacaJson(path: string): Promise<AlpacaExample[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new Error(`${path}: cannot be read: ${(e as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: is not valid JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(data)) throw new Error(`${path}: expected a JSON array of {instruction, input, output}`);
  return data.map((x, i) => {
    const ex = parseAlpacaExample(x);
    if (typeof ex === "string") throw new Error(`${path}: example ${i}: ${ex}`);
    return ex;
  });
}

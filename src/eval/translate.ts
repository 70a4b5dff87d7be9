/**
 * Translation with a causal LM, as the paper evaluates it (../shared/ALIGNX.md "Evaluation in the paper"): the
 * Alpaca translation prompt the packer trains on, greedy decoding with the KV cache, the response extracted.
 *
 *   const ids = translationPromptIds(tok, "eng", "deu", "The dog sleeps.");
 *   const r = await translate(model, tok, [ids, ...], { batchSize: 16, maxNewTokens: 256, eosTokenIds: [2] });
 *   r.outputs[i]   the response to prompt i; r.newTokens / r.seconds is the generation speed
 *
 * The prompt is the packer's, built by the same functions (src/data/examples.ts translationInstruction,
 * src/data/prompt.ts alpacaPrompt and specialPrefix): instruction "Translate the following sentences from German
 * to English.", input = the source sentence, in the Alpaca "input" template ending in "### Response:\n"; its ids
 * are the tokenizer's special prefix (BOS) + tokens(prompt), which are exactly the first promptLen ids of the
 * packed training example (the template ends in "\n", which no tokenizer here merges with what follows).
 *
 * Decoding: src/nn/generate.ts, greedy, prompts of a batch left-padded (each row's positions count only its
 * own tokens), a row stops at its first EOS or after maxNewTokens. Prompts run longest first so that a batch
 * pads little; the outputs come back in the caller's order, and a prompt's output does not depend on the batch
 * it ran in (a test compares batch 1 with batch 4).
 * Response: the new tokens before the EOS, decoded without special tokens, cut at the first newline followed
 * by "###" (a model that goes on with another section of the template), its remaining line breaks turned into
 * spaces (one hypothesis per line), stripped of surrounding whitespace (Python's str.strip, so that the line
 * sacreBLEU reads back from a hypothesis file is the same string).
 */
import { translationInstruction } from "../data/examples.ts";
import { alpacaPrompt, specialPrefix, type SftTokenizer } from "../data/prompt.ts";
import type { LlamaFamilyConfig } from "../io/index.ts";
import { generate } from "../nn/generate.ts";
import { largestBinding, memoryReport, type LlamaModel } from "../nn/llama.ts";
import { pyStrip } from "./tokenizers.ts";

/** The Alpaca translation prompt for `text` from `srcLang` to `tgtLang` (canonical codes), as the packer writes it. */
export function translationPrompt(srcLang: string, tgtLang: string, text: string): string {
  return alpacaPrompt({ instruction: translationInstruction(srcLang, tgtLang), input: text });
}

/** The prompt's token ids: the special prefix (BOS) and tokens(prompt), as the packed example starts. */
export function translationPromptIds(tok: SftTokenizer, srcLang: string, tgtLang: string, text: string): number[] {
  return [...specialPrefix(tok), ...tok.encode(translationPrompt(srcLang, tgtLang, text), { addSpecialTokens: false })];
}

/** The translation in a model's decoded continuation (see the module comment). */
export function extractResponse(text: string): string {
  const cut = /\r?\n[ \t]*###/.exec(text);
  const body = cut ? text.slice(0, cut.index) : text;
  return pyStrip(body.replace(/\r\n|\r|\n|\u2028|\u2029|\u0085/g, " "));
}

/** What translate() needs of a tokenizer. */
export interface DecodingTokenizer {
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
}

export interface TranslateOptions {
  /** Prompts per generate() call. */
  batchSize: number;
  maxNewTokens: number;
  /** Tokens that end a translation. */
  eosTokenIds: readonly number[];
  /** Fills the left padding (default: generate's: the config's pad_token_id, else the first EOS). */
  padTokenId?: number;
  /** After each batch: prompts done so far, and the total. */
  onBatch?: (done: number, total: number) => void;
}

export interface TranslateResult {
  /** The extracted responses, in the order of the prompts. */
  outputs: string[];
  /** The raw decoded continuations (before extraction), in order. */
  raw: string[];
  /** New tokens generated, each row's up to and including its EOS. */
  newTokens: number;
  /** Rows that reached maxNewTokens without an EOS. */
  hitMaxNewTokens: number;
  /** Wall seconds inside generate() (prefill and decoding). */
  seconds: number;
}

/** Greedy translations of tokenized prompts, batched (see the module comment). */
export async function translate(model: LlamaModel, tok: DecodingTokenizer, prompts: readonly (readonly number[])[], o: TranslateOptions): Promise<TranslateResult> {
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new Error(`translate: batchSize must be a positive integer, got ${o.batchSize}`);
  const N = prompts.length;
  const outputs = new Array<string>(N);
  const raw = new Array<string>(N);
  const order = Array.from({ length: N }, (_, i) => i).sort((a, b) => prompts[b]!.length - prompts[a]!.length || a - b);
  const eos = new Set(o.eosTokenIds);
  let newTokens = 0;
  let hit = 0;
  let seconds = 0;
  for (let s = 0; s < N; s += o.batchSize) {
    const rows = order.slice(s, s + o.batchSize);
    const t0 = performance.now();
    const r = await generate(
      model,
      rows.map((i) => [...prompts[i]!]),
      { maxNewTokens: o.maxNewTokens, eosTokenIds: [...o.eosTokenIds], ...(o.padTokenId !== undefined ? { padTokenId: o.padTokenId } : {}) },
    );
    seconds += (performance.now() - t0) / 1000;
    rows.forEach((i, b) => {
      const ids = r.tokens[b]!.slice(0, r.lengths[b]);
      newTokens += ids.length;
      if (r.finished[b] === "length") hit++;
      const body = ids.length > 0 && eos.has(ids[ids.length - 1]!) ? ids.slice(0, -1) : ids;
      raw[i] = tok.decode(body, { skipSpecialTokens: true });
      outputs[i] = extractResponse(raw[i]!);
    });
    o.onBatch?.(Math.min(s + o.batchSize, N), N);
  }
  return { outputs, raw, newTokens, hitMaxNewTokens: hit, seconds };
}

/** Bytes of a KV cache of `batch` rows × `slots` positions (f32 keys and values of every layer). */
export function kvCacheBytes(c: LlamaFamilyConfig, batch: number, slots: number): number {
  return 2 * c.numHiddenLayers * batch * c.numKeyValueHeads * c.headDim * slots * 4;
}

/**
 * The default batch size: `start` (16), halved (down to 1) while it would not fit: the inference estimate of
 * src/nn's memoryReport for batches of `promptTokens` + `maxNewTokens` tokens, plus the KV cache, over
 * `budgetBytes` (ALIGNX_GPU_MEMORY; none by default, WebGPU does not tell a device's memory), or the prefill's
 * widest activation [B·T, max(D, I, Hq·Dh)] or the last position's logits [B, V] over the device's largest
 * buffer binding. (memoryReport's own binding check counts logits for every position; generation computes only
 * the last one's.)
 */
export function defaultBatchSize(
  c: LlamaFamilyConfig,
  o: { promptTokens: number; maxNewTokens: number; budgetBytes?: number; limits?: Pick<GPUSupportedLimits, "maxStorageBufferBindingSize" | "maxBufferSize">; start?: number },
): number {
  const seq = Math.max(1, o.promptTokens + o.maxNewTokens);
  const budget = o.budgetBytes !== undefined && Number.isFinite(o.budgetBytes) ? o.budgetBytes : undefined;
  const binding = largestBinding(o.limits);
  const widest = Math.max(c.hiddenSize, c.intermediateSize, c.numAttentionHeads * c.headDim);
  const fits = (b: number) =>
    b * seq * widest * 4 <= binding &&
    b * c.vocabSize * 4 <= binding &&
    (budget === undefined || memoryReport(c, { batch: b, seq, training: false }).total + kvCacheBytes(c, b, seq) <= budget);
  let b = o.start ?? 16;
  while (b > 1 && !fits(b)) b = Math.floor(b / 2);
  return b;
}

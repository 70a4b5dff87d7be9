/**
 * Byte-level BPE for models trained from scratch: a trainer that writes a standard Hugging Face
 * `tokenizer.json`, and a small encoder of its own that gives the same ids as the `tokenizers` library
 * (Rust) and `@huggingface/tokenizers` (JS) do for that file.
 *
 * The tokenizer it writes is LLaMA-3-shaped:
 *   - no normalizer (text is encoded exactly as given, so decode(encode(x)) === x for any string);
 *   - pre_tokenizer Sequence[Split(PRETOKENIZE_PATTERN, Isolated), ByteLevel(use_regex false)]: the regex
 *     cuts text into pieces, each piece's UTF-8 bytes are mapped to printable characters (GPT-2's
 *     bytes_to_unicode), and BPE merges never cross a piece boundary;
 *   - model BPE over the 256 byte characters (all 256 are always in the vocabulary, so nothing is unknown);
 *   - added_tokens: the special tokens, split out of the text before anything else;
 *   - post_processor TemplateProcessing that puts the BOS token first (when there is one), decoder ByteLevel.
 *
 * The pre-tokenizer pattern is multilingual: a "word" is a run of letters AND combining marks
 * ([\p{L}\p{M}]+), so Thai, Bengali or Devanagari words, whose vowel signs are marks (Mn/Mc), stay one
 * piece, and scripts written without spaces (Thai, Japanese, Chinese) give long pieces inside which BPE
 * learns its merges. Digits are grouped by at most three (\p{N}{1,3}), as in LLaMA-3. The pattern uses only
 * constructs that Oniguruma (the Rust library), JavaScript `u` regexes and tokenizers.js's Oniguruma
 * translation read the same way: explicit \p{White_Space} instead of \s (JS's \s adds U+FEFF and lacks
 * U+0085), and spelled-out case variants instead of (?i:...) (JS's `i` flag folds ſ to s and K to k).
 *
 * Training (`trainBpe`) is the classic algorithm with incremental pair counts: the corpus is reduced to
 * unique pieces with their counts; every pair of adjacent symbols has a count and the list of pieces it
 * occurs in; a max-heap (lazy: stale entries are re-pushed with their current count when popped) yields
 * the most frequent pair; merging it touches only the pieces that contain it, and only the pair counts
 * around each occurrence change. Ties are broken deterministically: among pairs with the same count the
 * one with the smallest (left id, right id) wins, i.e. the pair whose tokens entered the vocabulary first
 * (the same rule as the Rust library's BpeTrainer). Vocabulary order: special tokens (ids 0..k-1, in the
 * order given), the 256 byte characters sorted by code point (GPT-2's order), then merged tokens in the
 * order they were learned. The same texts and options always give the same file, byte for byte.
 *
 * Encoding (`ByteLevelBpe`) applies merges by rank: repeatedly merge the adjacent pair with the lowest
 * merge rank, the leftmost one on ties (what both libraries do), with a heap over a linked list so long
 * pieces (a Thai sentence is one piece) stay O(n log n).
 */

import { mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";

export const DEFAULT_SPECIAL_TOKENS = ["<s>", "</s>", "<pad>"] as const;

/** The Split regex of trained tokenizers (see the module comment); an Oniguruma/JS common subset. */
export const PRETOKENIZE_PATTERN = String.raw`'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{M}\p{N}]?[\p{L}\p{M}]+|\p{N}{1,3}| ?[^\p{White_Space}\p{L}\p{M}\p{N}]+[\r\n]*|\p{White_Space}*[\r\n]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+`;

/** GPT-2's ByteLevel pre-tokenizer regex (use_regex: true), as tokenizers.js writes it in JavaScript. */
export const GPT2_PATTERN = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`;

/** GPT-2's bytes_to_unicode: byte → a printable character (printable Latin-1 bytes map to themselves). */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const keep: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b);
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b);
  for (let b = 0xae; b <= 0xff; b++) keep.push(b);
  const out = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) out[b] = keep.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + n++);
  return out;
})();

const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/** The 256 byte characters in vocabulary order (by code point, as the Rust trainer sorts its alphabet). */
export const BYTE_ALPHABET: readonly string[] = [...BYTE_TO_CHAR].sort((a, b) => a.charCodeAt(0) - b.charCodeAt(0));

const ENCODER = new TextEncoder();

/** A piece of text → its byte-level string (one character per UTF-8 byte). */
export function toByteLevel(text: string): string {
  let s = "";
  for (const b of ENCODER.encode(text)) s += BYTE_TO_CHAR[b];
  return s;
}

/** Pair of token ids → one number key (ids < 2^21, so keys stay exact doubles). */
const SHIFT = 2 ** 21;
export const MAX_VOCAB_SIZE = SHIFT;
const pairKey = (a: number, b: number): number => a * SHIFT + b;

export interface TrainBpeOptions {
  /** Total vocabulary size, special tokens and the 256 byte tokens included. */
  vocabSize: number;
  /** Added as special tokens with ids 0..k-1, in this order. Default ["<s>", "</s>", "<pad>"]. */
  specialTokens?: readonly string[];
  /** Stop merging when the most frequent pair occurs fewer times than this. Default 2. */
  minFrequency?: number;
  /** Token put first by the post-processor (encode with addSpecialTokens). Default "<s>" when it is special; null for none. */
  bosToken?: string | null;
  /** End-of-sequence token for tokenizer_config.json. Default "</s>" when it is special. */
  eosToken?: string | null;
  /** Padding token for tokenizer_config.json. Default "<pad>" when it is special. */
  padToken?: string | null;
  /** The Split pre-tokenizer regex. Default PRETOKENIZE_PATTERN. */
  pattern?: string;
}

export interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** The subset of HF's tokenizer.json that this module writes and reads. */
export interface ByteLevelTokenizerJson {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: AddedTokenJson[];
  normalizer: null;
  pre_tokenizer: unknown;
  post_processor: unknown;
  decoder: unknown;
  model: {
    type: "BPE";
    dropout: null;
    unk_token: null;
    continuing_subword_prefix: null;
    end_of_word_suffix: null;
    fuse_unk: boolean;
    byte_fallback: boolean;
    ignore_merges: boolean;
    vocab: Record<string, number>;
    merges: [string, string][];
  };
}

export interface TrainedBpe {
  /** tokenizer.json, ready for JSON.stringify. */
  tokenizerJson: ByteLevelTokenizerJson;
  /** tokenizer_config.json: bos/eos/pad tokens, tokenizer_class. */
  tokenizerConfig: Record<string, unknown>;
  /** id → token string (byte-level characters; special tokens as written). */
  vocab: string[];
  merges: [string, string][];
  stats: {
    /** Pre-tokenized pieces in the corpus (with repeats) and distinct pieces. */
    pieces: number;
    uniquePieces: number;
    merges: number;
    /** Why training stopped. */
    stoppedBy: "vocabSize" | "minFrequency" | "noPairs";
    seconds: number;
  };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\\/]/g, "\\$&"); // the escapes a `u` regex allows
}

/**
 * Splits text on added tokens the way both libraries do: at each position the longest token starting
 * there. Returns alternating [text, token, text, token, ..., text] (texts may be empty).
 */
export function makeAddedTokenSplitter(tokens: readonly string[]): (text: string) => string[] {
  const sorted = [...new Set(tokens)].filter((t) => t.length > 0).sort((a, b) => b.length - a.length || (a < b ? -1 : 1));
  if (sorted.length === 0) return (text) => [text];
  const re = new RegExp(`(${sorted.map(escapeRegExp).join("|")})`, "u");
  return (text) => text.split(re);
}

function* regexPieces(text: string, re: RegExp): Generator<string> {
  // Split with behavior "Isolated": matches and the gaps between them, empty ones dropped.
  let prev = 0;
  re.lastIndex = 0;
  for (const m of text.matchAll(re)) {
    const at = m.index!;
    if (at > prev) yield text.slice(prev, at);
    if (m[0].length > 0) yield m[0];
    prev = at + m[0].length;
  }
  if (prev < text.length) yield text.slice(prev);
}

/** Max-heap of (count, key): higher count first, then smaller key. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];
  get size(): number {
    return this.counts.length;
  }
  private better(i: number, j: number): boolean {
    const ci = this.counts[i], cj = this.counts[j];
    return ci > cj || (ci === cj && this.keys[i] < this.keys[j]);
  }
  private swap(i: number, j: number): void {
    const c = this.counts[i]; this.counts[i] = this.counts[j]; this.counts[j] = c;
    const k = this.keys[i]; this.keys[i] = this.keys[j]; this.keys[j] = k;
  }
  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.better(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  /** Pops the top; returns [count, key]. */
  pop(): [number, number] {
    const top: [number, number] = [this.counts[0], this.keys[0]];
    const lastC = this.counts.pop()!, lastK = this.keys.pop()!;
    const n = this.counts.length;
    if (n > 0) {
      this.counts[0] = lastC;
      this.keys[0] = lastK;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < n && this.better(l, m)) m = l;
        if (r < n && this.better(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

function resolveSpecial(opt: string | null | undefined, fallback: string, specials: readonly string[], what: string): string | null {
  if (opt === null) return null;
  if (opt === undefined) return specials.includes(fallback) ? fallback : null;
  if (!specials.includes(opt)) throw new Error(`trainBpe: ${what} ${JSON.stringify(opt)} is not one of specialTokens ${JSON.stringify(specials)}`);
  return opt;
}

/** Train a byte-level BPE tokenizer on `texts` (see the module comment for the algorithm and tie rule). */
export function trainBpe(texts: Iterable<string>, options: TrainBpeOptions): TrainedBpe {
  const t0 = performance.now();
  const specials = [...(options.specialTokens ?? DEFAULT_SPECIAL_TOKENS)];
  const minFrequency = options.minFrequency ?? 2;
  const pattern = options.pattern ?? PRETOKENIZE_PATTERN;
  const { vocabSize } = options;
  if (new Set(specials).size !== specials.length) throw new Error(`trainBpe: specialTokens has duplicates: ${JSON.stringify(specials)}`);
  if (specials.some((s) => s.length === 0)) throw new Error("trainBpe: a special token is empty");
  if (!Number.isInteger(vocabSize) || vocabSize < specials.length + 256 || vocabSize > MAX_VOCAB_SIZE) {
    throw new Error(`trainBpe: vocabSize must be an integer in [${specials.length + 256}, ${MAX_VOCAB_SIZE}] (${specials.length} special tokens + 256 bytes at least), got ${vocabSize}`);
  }
  if (!Number.isFinite(minFrequency) || minFrequency < 0) throw new Error(`trainBpe: minFrequency must be >= 0, got ${minFrequency}`);
  const bos = resolveSpecial(options.bosToken, "<s>", specials, "bosToken");
  const eos = resolveSpecial(options.eosToken, "</s>", specials, "eosToken");
  const pad = resolveSpecial(options.padToken, "<pad>", specials, "padToken");
  const re = new RegExp(pattern, "gu");

  // 1. Unique pieces with counts.
  const split = makeAddedTokenSplitter(specials);
  const pieceCounts = new Map<string, number>();
  let pieces = 0;
  for (const text of texts) {
    const parts = split(text);
    for (let i = 0; i < parts.length; i += 2) {
      for (const p of regexPieces(parts[i], re)) {
        pieceCounts.set(p, (pieceCounts.get(p) ?? 0) + 1);
        pieces++;
      }
    }
  }

  // 2. Vocabulary: specials, then the byte alphabet.
  const vocab: string[] = [...specials];
  const ids = new Map<string, number>();
  specials.forEach((s, i) => ids.set(s, i));
  for (const c of BYTE_ALPHABET) {
    if (ids.has(c)) throw new Error(`trainBpe: special token ${JSON.stringify(c)} collides with a byte token`);
    ids.set(c, vocab.length);
    vocab.push(c);
  }
  const byteId = new Int32Array(256);
  for (let b = 0; b < 256; b++) byteId[b] = ids.get(BYTE_TO_CHAR[b])!;

  // 3. Pieces as symbol arrays; initial pair counts and where each pair occurs.
  const nWords = pieceCounts.size;
  const words: Int32Array[] = new Array(nWords);
  const lens = new Int32Array(nWords);
  const freq = new Float64Array(nWords);
  const pairCount = new Map<number, number>();
  const where = new Map<number, number[]>();
  const addWhere = (k: number, wi: number): void => {
    const list = where.get(k);
    if (list === undefined) where.set(k, [wi]);
    else if (list[list.length - 1] !== wi) list.push(wi);
  };
  let maxLen = 0;
  {
    let wi = 0;
    for (const [piece, count] of pieceCounts) {
      const bytes = ENCODER.encode(piece);
      const w = new Int32Array(bytes.length);
      for (let j = 0; j < bytes.length; j++) w[j] = byteId[bytes[j]];
      words[wi] = w;
      lens[wi] = w.length;
      freq[wi] = count;
      if (w.length > maxLen) maxLen = w.length;
      for (let j = 0; j + 1 < w.length; j++) {
        const k = pairKey(w[j], w[j + 1]);
        pairCount.set(k, (pairCount.get(k) ?? 0) + count);
        addWhere(k, wi);
      }
      wi++;
    }
  }
  pieceCounts.clear();

  const heap = new PairHeap();
  for (const [k, c] of pairCount) heap.push(c, k);

  // 4. Merge loop.
  const merges: [number, number][] = [];
  const seen = new Int32Array(nWords).fill(-1);
  const scratch = new Int32Array(maxLen);
  const mergedAt = new Int32Array(maxLen);
  let stoppedBy: TrainedBpe["stats"]["stoppedBy"] = "noPairs";
  const dec = (k: number, f: number): void => {
    const c = pairCount.get(k)! - f;
    if (c <= 0) pairCount.delete(k);
    else pairCount.set(k, c);
  };
  while (true) {
    if (vocab.length >= vocabSize) {
      stoppedBy = "vocabSize";
      break;
    }
    if (heap.size === 0) break;
    const [count, key] = heap.pop();
    const current = pairCount.get(key) ?? 0;
    if (current !== count) {
      if (current > 0) heap.push(current, key);
      continue;
    }
    if (count < minFrequency) {
      stoppedBy = "minFrequency";
      break;
    }
    const a = Math.floor(key / SHIFT), b = key - a * SHIFT;
    const merged = vocab[a] + vocab[b];
    let c = ids.get(merged);
    if (c === undefined) {
      c = vocab.length;
      ids.set(merged, c);
      vocab.push(merged);
    }
    const step = merges.length;
    merges.push([a, b]);
    const newKeys = new Set<number>();
    for (const wi of where.get(key) ?? []) {
      if (seen[wi] === step) continue;
      seen[wi] = step;
      const w = words[wi], n = lens[wi], f = freq[wi];
      let out = 0, nMerged = 0, lastSub = -1;
      for (let j = 0; j < n; ) {
        if (j + 1 < n && w[j] === a && w[j + 1] === b) {
          // Old pairs (j-1,j), (j,j+1), (j+1,j+2) disappear; each is subtracted once.
          for (let p = Math.max(j - 1, lastSub + 1); p <= j + 1 && p + 1 < n; p++) {
            dec(pairKey(w[p], w[p + 1]), f);
            lastSub = p;
          }
          mergedAt[nMerged++] = out;
          scratch[out++] = c;
          j += 2;
        } else {
          scratch[out++] = w[j++];
        }
      }
      if (nMerged === 0) continue; // stale entry in `where`
      w.set(scratch.subarray(0, out));
      lens[wi] = out;
      // New pairs: those touching a merged position (a pair of two merged positions once).
      let prev = -2;
      for (let m = 0; m < nMerged; m++) {
        const k0 = mergedAt[m];
        if (k0 > 0 && prev !== k0 - 1) {
          const k = pairKey(w[k0 - 1], w[k0]);
          pairCount.set(k, (pairCount.get(k) ?? 0) + f);
          addWhere(k, wi);
          newKeys.add(k);
        }
        if (k0 + 1 < out) {
          const k = pairKey(w[k0], w[k0 + 1]);
          pairCount.set(k, (pairCount.get(k) ?? 0) + f);
          addWhere(k, wi);
          newKeys.add(k);
        }
        prev = k0;
      }
    }
    where.delete(key);
    pairCount.delete(key);
    for (const k of newKeys) {
      const cnt = pairCount.get(k);
      if (cnt !== undefined && cnt > 0) heap.push(cnt, k);
    }
  }

  const mergeStrings: [string, string][] = merges.map(([x, y]) => [vocab[x], vocab[y]]);
  const tokenizerJson = buildTokenizerJson(vocab, mergeStrings, specials, { bos, pattern });
  const tokenizerConfig: Record<string, unknown> = {
    tokenizer_class: "PreTrainedTokenizerFast",
    bos_token: bos,
    eos_token: eos,
    pad_token: pad,
    unk_token: null,
    add_bos_token: bos !== null,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
  };
  return {
    tokenizerJson,
    tokenizerConfig,
    vocab,
    merges: mergeStrings,
    stats: { pieces, uniquePieces: nWords, merges: merges.length, stoppedBy, seconds: (performance.now() - t0) / 1000 },
  };
}

/** tokenizer.json for a byte-level BPE vocabulary whose first entries are `specials`. */
export function buildTokenizerJson(
  vocab: readonly string[],
  merges: readonly (readonly [string, string])[],
  specials: readonly string[],
  opts: { bos: string | null; pattern?: string },
): ByteLevelTokenizerJson {
  const vocabObj: Record<string, number> = {};
  vocab.forEach((t, i) => (vocabObj[t] = i));
  const added: AddedTokenJson[] = specials.map((content) => ({
    id: vocabObj[content],
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const bos = opts.bos;
  const postProcessor =
    bos === null
      ? null
      : {
          type: "TemplateProcessing",
          single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
          pair: [
            { SpecialToken: { id: bos, type_id: 0 } },
            { Sequence: { id: "A", type_id: 0 } },
            { SpecialToken: { id: bos, type_id: 1 } },
            { Sequence: { id: "B", type_id: 1 } },
          ],
          special_tokens: { [bos]: { id: bos, ids: [vocabObj[bos]], tokens: [bos] } },
        };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: opts.pattern ?? PRETOKENIZE_PATTERN }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: postProcessor,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: vocabObj,
      merges: merges.map(([x, y]) => [x, y]),
    },
  };
}

/** tokenizer.json text as the Rust library writes it (2-space indent). */
export function tokenizerJsonText(json: unknown): string {
  return JSON.stringify(json, null, 2) + "\n";
}

/** Write tokenizer.json and tokenizer_config.json into `dir` (created if needed). */
export async function saveTrainedBpe(dir: string, trained: Pick<TrainedBpe, "tokenizerJson" | "tokenizerConfig">): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [name, obj] of [["tokenizer.json", trained.tokenizerJson], ["tokenizer_config.json", trained.tokenizerConfig]] as const) {
    const path = join(dir, name);
    const tmp = `${path}.tmp-${process.pid}`;
    await writeFile(tmp, tokenizerJsonText(obj));
    await rename(tmp, path);
  }
}

// ---------------------------------------------------------------------------------------------------
// The encoder.

type Json = Record<string, unknown>;

function fail(msg: string): never {
  throw new Error(`ByteLevelBpe: ${msg}`);
}

function asObj(v: unknown, what: string): Json {
  if (v === null || typeof v !== "object" || Array.isArray(v)) fail(`${what} must be an object`);
  return v as Json;
}

/** Template post-processor reduced to what a single sequence gets: tokens before and after it. */
function templateAffixes(pp: unknown): { prefix: string[]; suffix: string[] } {
  const none = { prefix: [], suffix: [] };
  if (pp === null || pp === undefined) return none;
  const o = asObj(pp, "post_processor");
  if (o.type === "ByteLevel") return none;
  if (o.type === "Sequence") {
    const parts = (o.processors as unknown[]).map(templateAffixes);
    return { prefix: parts.flatMap((p) => p.prefix), suffix: parts.flatMap((p) => p.suffix) };
  }
  if (o.type !== "TemplateProcessing") fail(`post_processor type ${JSON.stringify(o.type)} is not supported`);
  const prefix: string[] = [], suffix: string[] = [];
  let seenA = false;
  for (const item of o.single as Json[]) {
    if ("SpecialToken" in item) (seenA ? suffix : prefix).push((item.SpecialToken as Json).id as string);
    else if ("Sequence" in item) seenA = true;
  }
  return { prefix, suffix };
}

/**
 * This module's own byte-level BPE encoder. Reads tokenizer.json files shaped like those `trainBpe`
 * writes (and GPT-2's / LLaMA-3's: ByteLevel with use_regex, Split + ByteLevel, ignore_merges, BOS
 * templates); compiles Split regexes as JavaScript `u` regexes, which for PRETOKENIZE_PATTERN is exactly
 * what both libraries do.
 */
export class ByteLevelBpe {
  readonly vocab: string[];
  readonly tokenToIdMap: Map<string, number>;
  readonly addedTokens: { id: number; content: string; special: boolean }[];
  private readonly ranks = new Map<number, number>();
  private readonly mergeResult: Int32Array;
  private readonly byteId = new Int32Array(256);
  private readonly re: RegExp;
  private readonly split: (text: string) => string[];
  private readonly addedById = new Map<number, { content: string; special: boolean }>();
  private readonly addedByContent = new Map<string, number>();
  private readonly ignoreMerges: boolean;
  private readonly prefixIds: number[];
  private readonly suffixIds: number[];
  private readonly cache = new Map<string, number[]>();

  constructor(json: unknown) {
    const root = asObj(json, "tokenizer.json");
    if (root.normalizer !== null && root.normalizer !== undefined) fail("a normalizer is not supported");
    const model = asObj(root.model, "model");
    if (model.type !== undefined && model.type !== "BPE") fail(`model type ${JSON.stringify(model.type)} is not BPE`);
    if (model.byte_fallback) fail("byte_fallback BPE is not byte-level");
    if (model.continuing_subword_prefix || model.end_of_word_suffix) fail("subword prefixes/suffixes are not supported");
    this.ignoreMerges = model.ignore_merges === true;
    const vocabObj = asObj(model.vocab, "model.vocab");
    this.tokenToIdMap = new Map();
    this.vocab = [];
    for (const [t, id] of Object.entries(vocabObj)) {
      if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= MAX_VOCAB_SIZE) fail(`bad id for ${JSON.stringify(t)}`);
      this.tokenToIdMap.set(t, id as number);
      this.vocab[id as number] = t;
    }
    this.addedTokens = [];
    for (const at of (root.added_tokens ?? []) as Json[]) {
      const id = at.id as number, content = at.content as string, special = at.special === true;
      if (at.lstrip || at.rstrip || at.single_word) fail(`added token ${JSON.stringify(content)}: lstrip/rstrip/single_word are not supported`);
      this.addedTokens.push({ id, content, special });
      this.addedById.set(id, { content, special });
      this.addedByContent.set(content, id);
      this.tokenToIdMap.set(content, id);
      this.vocab[id] = content;
    }
    for (let b = 0; b < 256; b++) {
      const id = this.tokenToIdMap.get(BYTE_TO_CHAR[b]);
      if (id === undefined) fail(`byte token ${JSON.stringify(BYTE_TO_CHAR[b])} (byte ${b}) is missing from the vocabulary`);
      this.byteId[b] = id;
    }
    const merges = model.merges as unknown[];
    if (!Array.isArray(merges)) fail("model.merges must be an array");
    this.mergeResult = new Int32Array(merges.length);
    merges.forEach((m, rank) => {
      const [x, y] = typeof m === "string" ? (m.split(" ", 2) as [string, string]) : (m as [string, string]);
      const a = this.tokenToIdMap.get(x), b = this.tokenToIdMap.get(y), c = this.tokenToIdMap.get(x + y);
      if (a === undefined || b === undefined || c === undefined) fail(`merge ${rank} ${JSON.stringify(m)} uses a token that is not in the vocabulary`);
      const k = pairKey(a, b);
      if (!this.ranks.has(k)) this.ranks.set(k, rank);
      this.mergeResult[rank] = c;
    });
    this.re = new RegExp(ByteLevelBpe.patternOf(root.pre_tokenizer), "gu");
    this.split = makeAddedTokenSplitter(this.addedTokens.map((t) => t.content));
    const { prefix, suffix } = templateAffixes(root.post_processor);
    const idOf = (t: string): number => this.tokenToIdMap.get(t) ?? fail(`post_processor token ${JSON.stringify(t)} is not in the vocabulary`);
    this.prefixIds = prefix.map(idOf);
    this.suffixIds = suffix.map(idOf);
  }

  private static patternOf(pt: unknown): string {
    const o = asObj(pt, "pre_tokenizer");
    const bl = (x: Json): boolean => x.type === "ByteLevel" && x.add_prefix_space !== true;
    if (bl(o)) return o.use_regex === false ? "[\\s\\S]+" : GPT2_PATTERN;
    if (o.type === "Sequence") {
      const list = (o.pretokenizers as Json[]) ?? [];
      if (list.length === 2 && list[0].type === "Split" && bl(list[1]) && list[1].use_regex === false) {
        const sp = list[0];
        const pat = asObj(sp.pattern, "Split pattern");
        if (typeof pat.Regex === "string" && sp.behavior === "Isolated" && sp.invert !== true) return pat.Regex;
      }
    }
    fail(`pre_tokenizer ${JSON.stringify(o).slice(0, 200)} is not supported (ByteLevel, or Sequence[Split(Regex, Isolated), ByteLevel(use_regex false)])`);
  }

  get vocabSize(): number {
    return this.vocab.length;
  }

  tokenToId(token: string): number | undefined {
    return this.tokenToIdMap.get(token);
  }

  /** BPE of one pre-tokenized piece (raw text). */
  private encodePiece(piece: string, out: number[]): void {
    const cached = this.cache.get(piece);
    if (cached !== undefined) {
      for (const id of cached) out.push(id);
      return;
    }
    const bytes = ENCODER.encode(piece);
    const n = bytes.length;
    let result: number[];
    if (this.ignoreMerges && n > 0) {
      const whole = this.tokenToIdMap.get(toByteLevel(piece));
      if (whole !== undefined && !this.addedById.has(whole)) result = [whole];
      else result = this.bpe(bytes);
    } else {
      result = this.bpe(bytes);
    }
    if (this.cache.size > 100_000) this.cache.clear();
    this.cache.set(piece, result);
    for (const id of result) out.push(id);
  }

  private bpe(bytes: Uint8Array): number[] {
    const n = bytes.length;
    const sym = new Int32Array(n), next = new Int32Array(n), prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      sym[i] = this.byteId[bytes[i]];
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // Min-heap of (rank, position) packed as rank * n + position (exact: ranks < 2^21, n < 2^32).
    const heap: number[] = [];
    const POS = Math.max(n, 1);
    const push = (v: number): void => {
      heap.push(v);
      let i = heap.length - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (heap[p] <= v) break;
        heap[i] = heap[p];
        i = p;
      }
      heap[i] = v;
    };
    const pop = (): number => {
      const top = heap[0];
      const last = heap.pop()!;
      const len = heap.length;
      if (len > 0) {
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          if (l >= len) break;
          const r = l + 1;
          const m = r < len && heap[r] < heap[l] ? r : l;
          if (heap[m] >= last) break;
          heap[i] = heap[m];
          i = m;
        }
        heap[i] = last;
      }
      return top;
    };
    const consider = (i: number): void => {
      const j = next[i];
      if (j < 0) return;
      const r = this.ranks.get(pairKey(sym[i], sym[j]));
      if (r !== undefined) push(r * POS + i);
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    while (heap.length > 0) {
      const v = pop();
      const r = Math.floor(v / POS), i = v - r * POS;
      if (!alive[i]) continue;
      const j = next[i];
      if (j < 0 || this.ranks.get(pairKey(sym[i], sym[j])) !== r) continue; // stale
      sym[i] = this.mergeResult[r];
      alive[j] = 0;
      next[i] = next[j];
      if (next[j] >= 0) prev[next[j]] = i;
      if (prev[i] >= 0) consider(prev[i]);
      consider(i);
    }
    const out: number[] = [];
    for (let i = n > 0 ? 0 : -1; i >= 0; i = next[i]) out.push(sym[i]);
    return out;
  }

  /** Token ids of `text`; with addSpecialTokens (default true) the post-processor's tokens (BOS) too. */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    const out: number[] = opts.addSpecialTokens === false ? [] : [...this.prefixIds];
    const parts = this.split(text);
    for (let i = 0; i < parts.length; i++) {
      if (i % 2 === 1) {
        out.push(this.addedByContent.get(parts[i])!);
        continue;
      }
      for (const p of regexPieces(parts[i], this.re)) this.encodePiece(p, out);
    }
    if (opts.addSpecialTokens !== false) out.push(...this.suffixIds);
    return out;
  }

  /** Text of `ids` (invalid UTF-8 becomes U+FFFD, as in both libraries). */
  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    const dec = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
    let s = "";
    let bytes: number[] = [];
    const flush = (): void => {
      if (bytes.length) s += dec.decode(new Uint8Array(bytes));
      bytes = [];
    };
    for (const id of ids) {
      const added = this.addedById.get(id);
      if (added !== undefined) {
        if (added.special && opts.skipSpecialTokens) continue;
        flush();
        s += added.content;
        continue;
      }
      const tok = this.vocab[id];
      if (tok === undefined) throw new RangeError(`ByteLevelBpe.decode: token id ${id} is not in the vocabulary (size ${this.vocab.length})`);
      for (const ch of tok) {
        const b = CHAR_TO_BYTE.get(ch);
        if (b === undefined) throw new RangeError(`ByteLevelBpe.decode: token ${id} ${JSON.stringify(tok)} has a non-byte character`);
        bytes.push(b);
      }
    }
    flush();
    return s;
  }
}

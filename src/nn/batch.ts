/**
 * A batch of token ids as Hugging Face passes it to a causal LM: `input_ids` B × T, optional `labels` B × T
 * (-100 = ignored) and `attention_mask` B × T (1 keep, 0 padding). Checked here once, with errors that name the
 * source (a file, or the function called), the field and the position: `batch.json: input_ids[1][4] = 130 is
 * not a token id in [0, 128)`.
 *
 * `readBatch(path, vocab)` reads such a JSON file ({input_ids, labels?, attention_mask?}; null counts as absent;
 * other fields are an error, so a misspelt "attention_masks" is not silently ignored). A stage-1 batch
 * (AlignX, ../shared/ALIGNX.md) also holds `src_tgt_index` B × T (1 source sentence, 2 target, 0 else) and
 * `src_lang`, `tgt_lang` (B integer language ids each); the three come together or not at all.
 */
import { readFile } from "node:fs/promises";

export class BatchError extends Error {
  exitCode = 1;
  override name = "BatchError";
}

export interface Batch {
  inputIds: number[][];
  labels?: number[][];
  attentionMask?: number[][];
  /** Stage 1: B × T span index (0, 1 source, 2 target). */
  srcTgtIndex?: number[][];
  /** Stage 1: B language ids each. */
  srcLang?: number[];
  tgtLang?: number[];
}

export const IGNORE_INDEX = -100;

/**
 * Check that `v` is a non-empty rectangular array of integer arrays (B × T, or `shape` when given) whose every
 * value passes `ok` (which returns a complaint or null). Returns it typed.
 */
export function checkIntMatrix(
  source: string,
  field: string,
  v: unknown,
  ok: (x: number) => string | null,
  shape?: readonly [number, number],
): number[][] {
  const fail = (msg: string) => new BatchError(`${source}: ${msg}`);
  if (!Array.isArray(v)) throw fail(`${field} must be a list of rows (B × T), got ${describe(v)}`);
  if (v.length === 0) throw fail(`${field} is empty (a batch needs at least one row)`);
  if (shape && v.length !== shape[0]) throw fail(`${field} has ${v.length} rows, but input_ids has ${shape[0]}`);
  let cols = -1;
  v.forEach((row, b) => {
    if (!Array.isArray(row)) throw fail(`${field}[${b}] must be a list of integers, got ${describe(row)}`);
    if (cols < 0) {
      cols = row.length;
      if (shape && cols !== shape[1]) throw fail(`${field}[0] has ${cols} values, but input_ids rows have ${shape[1]}`);
      if (cols === 0) throw fail(`${field}[0] is empty (sequences need at least one token)`);
    } else if (row.length !== cols)
      throw fail(`${field}[${b}] has ${row.length} values, but ${field}[0] has ${cols} (rows must be equally long: pad them and set attention_mask)`);
    row.forEach((x: unknown, t: number) => {
      if (typeof x !== "number" || !Number.isInteger(x)) throw fail(`${field}[${b}][${t}] = ${describe(x)} is not an integer`);
      const why = ok(x);
      if (why) throw fail(`${field}[${b}][${t}] = ${x} ${why}`);
    });
  });
  return v as number[][];
}

function describe(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return `a list of ${x.length}`;
  if (typeof x === "string") return JSON.stringify(x.length > 20 ? `${x.slice(0, 20)}...` : x);
  return typeof x === "object" ? "an object" : String(x);
}

export const tokenCheck = (vocab: number) => (x: number) => (x >= 0 && x < vocab ? null : `is not a token id in [0, ${vocab})`);
export const labelCheck = (vocab: number) => (x: number) =>
  x === IGNORE_INDEX || (x >= 0 && x < vocab) ? null : `is not a token id in [0, ${vocab}) or ${IGNORE_INDEX} (ignored)`;
export const maskCheck = (x: number) => (x === 0 || x === 1 ? null : "is not 0 or 1");
export const spanCheck = (x: number) => (x === 0 || x === 1 || x === 2 ? null : "is not 0, 1 (source) or 2 (target)");

/** A list of B non-negative integer language ids. */
export function checkLangList(source: string, field: string, v: unknown, B: number): number[] {
  const fail = (msg: string) => new BatchError(`${source}: ${msg}`);
  if (!Array.isArray(v)) throw fail(`${field} must be a list of ${B} language ids (one per row), got ${describe(v)}`);
  if (v.length !== B) throw fail(`${field} has ${v.length} values, but input_ids has ${B} rows`);
  v.forEach((x: unknown, b: number) => {
    if (typeof x !== "number" || !Number.isInteger(x)) throw fail(`${field}[${b}] = ${describe(x)} is not an integer`);
    if (x < 0) throw fail(`${field}[${b}] = ${x} is not a language id (>= 0)`);
  });
  return v as number[];
}

/** Check a batch against a vocabulary of `vocab` ids. */
export function checkBatch(
  source: string,
  b: { inputIds: unknown; labels?: unknown; attentionMask?: unknown; srcTgtIndex?: unknown; srcLang?: unknown; tgtLang?: unknown },
  vocab: number,
): Batch {
  const inputIds = checkIntMatrix(source, "input_ids", b.inputIds, tokenCheck(vocab));
  const shape: [number, number] = [inputIds.length, inputIds[0]!.length];
  const out: Batch = { inputIds };
  if (b.labels != null) out.labels = checkIntMatrix(source, "labels", b.labels, labelCheck(vocab), shape);
  if (b.attentionMask != null) out.attentionMask = checkIntMatrix(source, "attention_mask", b.attentionMask, maskCheck, shape);
  const stage1 = { src_tgt_index: b.srcTgtIndex, src_lang: b.srcLang, tgt_lang: b.tgtLang };
  const given = Object.entries(stage1).filter(([, v]) => v != null).map(([k]) => k);
  if (given.length && given.length < 3)
    throw new BatchError(`${source}: ${given.join(", ")} given without ${Object.keys(stage1).filter((k) => !given.includes(k)).join(", ")} (a stage-1 batch has all three)`);
  if (given.length === 3) {
    out.srcTgtIndex = checkIntMatrix(source, "src_tgt_index", b.srcTgtIndex, spanCheck, shape);
    out.srcLang = checkLangList(source, "src_lang", b.srcLang, shape[0]);
    out.tgtLang = checkLangList(source, "tgt_lang", b.tgtLang, shape[0]);
    out.srcTgtIndex.forEach((row, i) => {
      for (const [k, what] of [[1, "source (1)"], [2, "target (2)"]] as const)
        if (!row.slice(1).includes(k)) throw new BatchError(`${source}: src_tgt_index[${i}] has no ${what} position after the first (its mean is undefined)`);
      if (out.attentionMask) {
        const t = row.findIndex((v, t) => v !== 0 && out.attentionMask![i]![t] === 0);
        if (t >= 0) throw new BatchError(`${source}: src_tgt_index[${i}][${t}] = ${row[t]} marks a padding position (attention_mask 0)`);
      }
    });
  }
  return out;
}

const FIELDS = ["input_ids", "labels", "attention_mask", "src_tgt_index", "src_lang", "tgt_lang"];

/** Parse a batch document ({input_ids, labels?, attention_mask?, src_tgt_index?, src_lang?, tgt_lang?}); `source` names it in errors. */
export function parseBatch(doc: unknown, source: string, vocab: number): Batch {
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new BatchError(`${source}: must be a JSON object {input_ids, labels?, attention_mask?, src_tgt_index?, src_lang?, tgt_lang?}`);
  const o = doc as Record<string, unknown>;
  const extra = Object.keys(o).filter((k) => !FIELDS.includes(k));
  if (extra.length) throw new BatchError(`${source}: unknown field(s) ${extra.map((k) => JSON.stringify(k)).join(", ")} (allowed: ${FIELDS.join(", ")})`);
  if (o.input_ids == null) throw new BatchError(`${source}: input_ids is missing`);
  return checkBatch(
    source,
    { inputIds: o.input_ids, labels: o.labels, attentionMask: o.attention_mask, srcTgtIndex: o.src_tgt_index, srcLang: o.src_lang, tgtLang: o.tgt_lang },
    vocab,
  );
}

export async function readBatch(path: string, vocab: number): Promise<Batch> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new BatchError(`${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new BatchError(`${path}: not valid JSON: ${(e as Error).message}`);
  }
  return parseBatch(doc, path, vocab);
}

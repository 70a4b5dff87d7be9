/**
 * manifest.json: what one `alignx pack` output directory holds. Written last by pack (the directory appears
 * only when complete), read by the loader and `alignx verify`, meant to be read by people too.
 *
 *   {
 *     "format": "alignx-shards", "version": 1, "created_by": "alignx 0.1.0",
 *     "task": "stage1",
 *     "tokenizer": { "hash": "<sha256>", "source": "path/tokenizer.json", "vocab_size": 32000, "token_bytes": 2 },
 *     "languages": ["eng", "deu", ...],            language id = index (src_lang / tgt_lang in the records)
 *     "shards": [{ "file": "shard-00000.axs", "records": 8123, "tokens": 1520331, "bytes": 3412992 }, ...],
 *     "counts": { "records": N, "tokens": T,
 *                 "by_task": { "translation": { "records", "tokens" }, ... },
 *                 "by_language": { "deu": { "records", "tokens" }, ... },   keyed by the example's target /
 *                                                                           response language ("und": unknown)
 *                 "by_direction": { "deu-eng": { "records", "tokens" }, ... } },
 *     "dropped": { "target_cut": n, "empty": n, "bad_records": n, "no_supervision": n },
 *     "inputs": [{ "path", "format", "items" }],
 *     "options": { ...the pack options that shape the records... }, "seed": 0
 *   }
 */
import { readFile } from "node:fs/promises";
import { ShardError, type Task } from "./shard.ts";

export const MANIFEST_FILE = "manifest.json";
export const MANIFEST_FORMAT = "alignx-shards";
export const MANIFEST_VERSION = 1;

export interface Count {
  records: number;
  tokens: number;
}

export interface ShardEntry extends Count {
  file: string;
  bytes: number;
}

export type Counts = Count & { by_task: Record<string, Count>; by_language: Record<string, Count>; by_direction: Record<string, Count> };

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  created_by: string;
  task: string;
  tokenizer: { hash: string; source: string; vocab_size: number; token_bytes: 2 | 4 };
  languages: string[];
  shards: ShardEntry[];
  counts: Counts;
  dropped: Record<string, number>;
  inputs: { path: string; format: string; items: number }[];
  options: Record<string, unknown>;
  seed: number;
}

/** The language key of a record whose language is unknown (language id -1). */
export const UNDETERMINED = "und";
const TRANSLATION: Task = "translation";

/** Add `tokens` of one record to a keyed count. */
export function tally(map: Record<string, Count>, key: string, tokens: number): void {
  const c = (map[key] ??= { records: 0, tokens: 0 });
  c.records++;
  c.tokens += tokens;
}

export function emptyCounts(): Counts {
  return { records: 0, tokens: 0, by_task: {}, by_language: {}, by_direction: {} };
}

/**
 * Count one record into `counts` as manifest.json does: by task name, by the language code of its target
 * (response) language, and for translation records by direction "src-tgt". `languages` is the language table;
 * a language id of -1 counts as UNDETERMINED.
 */
export function countRecord(counts: Counts, languages: readonly string[], r: { task: string; srcLang: number; tgtLang: number; tokens: number }): void {
  const code = (id: number) => (id < 0 ? UNDETERMINED : languages[id]!);
  counts.records++;
  counts.tokens += r.tokens;
  tally(counts.by_task, r.task, r.tokens);
  tally(counts.by_language, code(r.tgtLang), r.tokens);
  if (r.task === TRANSLATION) tally(counts.by_direction, `${code(r.srcLang)}-${code(r.tgtLang)}`, r.tokens);
}

const isCountValue = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0;
const isCount = (v: unknown): v is Count => !!v && typeof v === "object" && isCountValue((v as Count).records) && isCountValue((v as Count).tokens);

/** Read and check a manifest.json: errors name the file and the field. */
export async function readManifest(path: string): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new ShardError(`cannot be read: ${(e as Error).message}`, path);
  }
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new ShardError(`is not valid JSON: ${(e as Error).message}`, path);
  }
  const bad = (field: string, why: string) => new ShardError(`field "${field}": ${why}`, path);
  if (m === null || typeof m !== "object" || Array.isArray(m)) throw new ShardError("is not a JSON object", path);
  if (m.format !== MANIFEST_FORMAT) throw bad("format", `${JSON.stringify(m.format)}, expected "${MANIFEST_FORMAT}" (not an alignx pack manifest)`);
  if (m.version !== MANIFEST_VERSION) throw bad("version", `${JSON.stringify(m.version)}, this alignx reads version ${MANIFEST_VERSION}`);
  const tok = m.tokenizer as Record<string, unknown> | undefined;
  if (!tok || typeof tok.hash !== "string" || typeof tok.vocab_size !== "number" || (tok.token_bytes !== 2 && tok.token_bytes !== 4))
    throw bad("tokenizer", "needs {hash: string, vocab_size: number, token_bytes: 2 | 4}");
  if (!Array.isArray(m.languages) || !m.languages.every((l) => typeof l === "string")) throw bad("languages", "must be a list of language codes");
  if (!Array.isArray(m.shards) || m.shards.length === 0) throw bad("shards", "must be a non-empty list");
  const seen = new Set<string>();
  m.shards.forEach((s: unknown, i: number) => {
    const e = s as Record<string, unknown>;
    if (!e || typeof e.file !== "string" || e.file.includes("/") || e.file.includes("\\") || e.file.startsWith("."))
      throw bad(`shards[${i}].file`, "must be a file name inside the manifest's directory");
    if (seen.has(e.file)) throw bad(`shards[${i}].file`, `${e.file} is listed twice`);
    seen.add(e.file);
    for (const k of ["records", "tokens", "bytes"]) if (!isCountValue(e[k])) throw bad(`shards[${i}].${k}`, "must be a non-negative integer");
  });
  const c = m.counts as Record<string, unknown> | undefined;
  if (!c || !isCountValue(c.records) || !isCountValue(c.tokens)) throw bad("counts", "needs records and tokens");
  for (const k of ["by_task", "by_language", "by_direction"]) {
    const map = c[k] as Record<string, unknown> | undefined;
    if (!map || typeof map !== "object" || Array.isArray(map)) throw bad(`counts.${k}`, "must be an object of {records, tokens}");
    for (const [key, v] of Object.entries(map))
      if (!isCount(v)) throw bad(`counts.${k}.${key}`, "must be {records, tokens}, non-negative integers");
  }
  const shards = m.shards as ShardEntry[];
  for (const k of ["records", "tokens"] as const) {
    const sum = shards.reduce((a, s) => a + s[k], 0);
    if (sum !== c[k]) throw bad(`counts.${k}`, `${c[k]}, but the shards list ${sum} ${k}`);
  }
  return m as unknown as Manifest;
}

/**
 * What every corpus reader shares, so that each format file is only its own layout:
 *   - reading a file as strict UTF-8 (readText, readLines): an unreadable path or a bad byte is a CorpusError
 *     naming the file, the line and the byte offset;
 *   - JSON with a position (parseJsonAt, readJson): JavaScriptCore's JSON.parse says what went wrong but not where, so on
 *     failure a small syntax scanner finds the offset and the error names file:line:column;
 *   - bad records (badRecord) and dropped empty texts (dropped), which honour --skip-bad-records;
 *   - ParallelRow and InstructionItem construction, and languages taken from file names.
 *
 * Files are read whole: a file is decoded at once and split into lines. That keeps the readers small and lets a
 * whole-file problem (bad UTF-8, a line-count mismatch) fail before any item is produced; it is meant for files up
 * to a few hundred MB (an OPUS-100 pair's 1M lines, FLORES, Tatoeba and Bactrian-X fit easily); split larger
 * corpora first.
 */
import { open, readFile } from "node:fs/promises";
import { basename } from "node:path";
import { CorpusError, type InstructionItem, type ParallelRow, type ReadOptions } from "../corpus.ts";
import { exactLang, normalizeLang } from "../languages.ts";
import { parseAlpacaExample } from "../prompt.ts";

// ---- files and UTF-8 ----

/** Why a read failed, in words (the codes tests can provoke: a directory, a dangling link, no permission). */
function readFailure(e: unknown): string {
  const code = (e as { code?: string }).code;
  if (code === "EISDIR") return "is a directory, not a file";
  if (code === "ENOENT") return "no such file (or a symbolic link to a missing file)";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return (e as Error).message;
}

/** A file's bytes; any failure is a CorpusError naming the path. */
export async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (e) {
    throw new CorpusError(`${path}: cannot be read: ${readFailure(e)}`, path);
  }
}

/** The first `n` bytes of a file as text (not validated: a character may be cut), for format detection. */
export async function readHead(path: string, n: number): Promise<string> {
  try {
    const fh = await open(path, "r");
    try {
      const buf = new Uint8Array(n);
      const { bytesRead } = await fh.read(buf, 0, n, 0);
      return new TextDecoder().decode(buf.subarray(0, bytesRead));
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw new CorpusError(`${path}: cannot be read: ${readFailure(e)}`, path);
  }
}

/**
 * Offset of the first byte that does not start a valid UTF-8 sequence (WHATWG rules: no overlong forms, no
 * surrogates, nothing past U+10FFFF, no truncated sequence), or -1 when all of `b` is valid.
 */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80, hi = 0xbf; // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0; // overlong
      if (c === 0xed) hi = 0x9f; // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90; // overlong
      if (c === 0xf4) hi = 0x8f; // past U+10FFFF
    } else return i;
    for (let k = 1; k <= need; k++) {
      const d = b[i + k];
      if (d === undefined || d < (k === 1 ? lo : 0x80) || d > (k === 1 ? hi : 0xbf)) return i;
    }
    i += need + 1;
  }
  return -1;
}

const utf8 = new TextDecoder("utf-8", { fatal: true }); // a leading BOM is dropped

/** Decode strict UTF-8; a bad byte is a CorpusError "FILE:LINE: not valid UTF-8 (byte 0xNN at offset N)". */
export function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    let line = 1;
    for (let i = 0; i < at; i++) if (bytes[i] === 0x0a) line++;
    const hex = bytes[at]!.toString(16).toUpperCase().padStart(2, "0");
    throw new CorpusError(`${file}:${line}: not valid UTF-8 (byte 0x${hex} at offset ${at})`, file);
  }
}

/** A whole file as text (strict UTF-8). */
export async function readText(path: string): Promise<string> {
  return decodeUtf8(await readBytes(path), path);
}

/**
 * Lines of a text: split at "\n", a trailing "\r" removed from each (CRLF files), and no empty last line for a
 * text that ends in "\n". Line i of the result is line i + 1 of the file.
 */
export function splitLines(text: string): string[] {
  if (text.length === 0) return [];
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.endsWith("\r")) lines[i] = l.slice(0, -1);
  }
  return lines;
}

/** A whole file as lines (strict UTF-8, see splitLines). */
export async function readLines(path: string): Promise<string[]> {
  return splitLines(await readText(path));
}

/** Line-aligned files must have equal line counts: else a CorpusError naming the first file that differs. */
export function checkLineCounts(files: readonly { path: string; lines: number }[], where: string): void {
  const first = files[0];
  for (const f of files) {
    if (first && f.lines !== first.lines) {
      throw new CorpusError(`${where}: line counts differ: ${first.path} has ${first.lines} lines, ${f.path} has ${f.lines}`, f.path);
    }
  }
}

// ---- JSON with positions ----

/** 1-based line and column of a string offset. */
export function lineCol(text: string, offset: number): { line: number; col: number } {
  let line = 1, start = 0;
  for (let i = text.indexOf("\n"); i !== -1 && i < offset; i = text.indexOf("\n", i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, col: offset - start + 1 };
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/**
 * Offset in `s` of the first JSON syntax error (RFC 8259), or -1 when `s` is one valid JSON value. Only used to
 * say where JSON.parse failed, so it checks syntax and builds nothing.
 */
export function jsonErrorOffset(s: string): number {
  let i = 0;
  const fail = (): never => {
    throw i;
  };
  const ws = () => {
    for (let c = s.charCodeAt(i); c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d; c = s.charCodeAt(++i));
  };
  const literal = (w: string) => (s.startsWith(w, i) ? (i += w.length) : fail());
  const string = () => {
    const open = i++;
    for (;;) {
      if (i >= s.length) {
        i = open; // an unterminated string is reported where it starts
        fail();
      }
      const c = s.charCodeAt(i);
      if (c === 0x22) return void i++;
      if (c < 0x20) fail();
      if (c !== 0x5c) i++;
      else if (s[i + 1] === "u") {
        if (!/^[0-9a-fA-F]{4}$/.test(s.slice(i + 2, i + 6))) fail();
        i += 6;
      } else if (s[i + 1] !== undefined && '"\\/bfnrt'.includes(s[i + 1]!)) i += 2;
      else fail();
    }
  };
  const value = (): void => {
    ws();
    const c = s[i];
    if (c === "{" || c === "[") return container(c === "{" ? "}" : "]");
    if (c === '"') return string();
    if (c === "t") return void literal("true");
    if (c === "f") return void literal("false");
    if (c === "n") return void literal("null");
    NUMBER.lastIndex = i;
    if (!NUMBER.test(s)) fail();
    i = NUMBER.lastIndex;
  };
  const container = (close: string) => {
    const object = close === "}";
    i++;
    ws();
    if (s[i] === close) return void i++;
    for (;;) {
      if (object) {
        ws();
        if (s[i] !== '"') fail();
        string();
        ws();
        if (s[i] !== ":") fail();
        i++;
      }
      value();
      ws();
      if (s[i] === ",") i++;
      else if (s[i] === close) return void i++;
      else fail();
    }
  };
  try {
    value();
    ws();
    return i < s.length ? i : -1;
  } catch (e) {
    if (typeof e === "number") return e;
    throw e; // a stack overflow on absurd nesting
  }
}

/**
 * JSON.parse, with a failure named "WHERE:LINE:COL: invalid JSON: why". `lineOffset` shifts the line (JSONL:
 * the record's line in the file is 1 + lineOffset for its first line).
 */
export function parseJsonAt(text: string, where: string, lineOffset = 0): { ok: true; value: unknown } | { ok: false; message: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    const off = jsonErrorOffset(text);
    const { line, col } = lineCol(text, off < 0 ? text.length : off);
    const why = (e as Error).message.replace(/^JSON Parse error: /, "");
    return { ok: false, message: `${where}:${line + lineOffset}:${col}: invalid JSON: ${why}` };
  }
}

/** A whole JSON file's value; invalid JSON is a CorpusError naming file:line:column. */
export async function readJson(path: string): Promise<unknown> {
  const r = parseJsonAt(await readText(path), path);
  if (!r.ok) throw new CorpusError(r.message, path);
  return r.value;
}

// ---- bad records ----

/** A bad record (unparseable line, wrong column count, missing field): thrown, or reported and skipped. */
export function badRecord(opts: ReadOptions, file: string, message: string): void {
  if (!opts.skipBadRecords) throw new CorpusError(message, file);
  opts.onBadRecord?.(message);
}

/** An empty text dropped from the data: never an error; reported only with --skip-bad-records. */
export function dropped(opts: ReadOptions, message: string): void {
  if (opts.skipBadRecords) opts.onBadRecord?.(message);
}

// ---- items ----

/**
 * A ParallelRow from (canonical language, text) pairs: texts trimmed, empty ones dropped (see `dropped`); null
 * when fewer than two languages are left. Callers check that the languages are distinct.
 */
export function parallelRow(entries: readonly (readonly [string, string])[], source: string, opts: ReadOptions): ParallelRow | null {
  const texts: Record<string, string> = {};
  const empty: string[] = [];
  for (const [lang, text] of entries) {
    const t = text.trim();
    if (t === "") empty.push(lang);
    else texts[lang] = t;
  }
  const kept = entries.length - empty.length;
  if (empty.length > 0) dropped(opts, `${source}: empty text in ${empty.join(", ")}: ${kept >= 2 ? "those languages dropped" : "row dropped"}`);
  return kept >= 2 ? { kind: "parallel", texts, source } : null;
}

/**
 * Canonical language of a record's own "lang" or "language" field, or `fallback` when it has none. An unknown
 * code (a non-string too) is an error naming `where`, as unknown languages are even with --skip-bad-records.
 */
export function recordLang(o: Record<string, unknown>, where: string, fallback: string | null): string | null {
  const l = o.lang ?? o.language;
  if (l === undefined || l === null || l === "") return fallback;
  return normalizeLang(String(l), where);
}

/**
 * An InstructionItem from an Alpaca-style record, or null after badRecord when it is not one (validated by
 * prompt.ts's parseAlpacaExample). `file` is the path for the error, `source` the record's place in it.
 */
export function instructionItem(x: unknown, file: string, source: string, lang: string | null, opts: ReadOptions): InstructionItem | null {
  const ex = parseAlpacaExample(x);
  if (typeof ex === "string") {
    badRecord(opts, file, `${source}: ${ex}`);
    return null;
  }
  const own = recordLang(x as Record<string, unknown>, source, lang);
  return { kind: "instruction", instruction: ex.instruction, input: ex.input ?? "", output: ex.output, lang: own, source };
}

// ---- languages from names ----

/** The language given by --lang (a usage error, exit 2, when unknown), or null. */
export function optionLang(opts: ReadOptions): string | null {
  return opts.lang ? normalizeLang(opts.lang, "--lang", 2) : null;
}

/** basename without its last extension: "xquad.de.json" → "xquad.de". */
export function stemOf(path: string): string {
  const b = basename(path);
  const dot = b.lastIndexOf(".");
  return dot > 0 ? b.slice(0, dot) : b;
}

/** The last "."-separated part of the stem ("x.deu-eng.tsv" → "deu-eng"). */
const lastPart = (path: string) => stemOf(path).split(".").pop()!;

/**
 * The language a file name ends in, or null: the stem's last "."-part when it is a code ("xquad.de.json",
 * "cmn_Hans.txt"), else that part's last "-"/"_" token ("bactrian-x-de.json", "alpaca_de.json"). A name ending
 * in two codes ("deu-eng.txt") is a pair, not a language: null. Exact codes only (languages.ts's exactLang).
 */
export function langFromFileName(path: string): string | null {
  const part = lastPart(path);
  const whole = exactLang(part);
  if (whole !== null) return whole;
  const tokens = part.split(/[-_]/);
  const last = exactLang(tokens[tokens.length - 1]!);
  if (last === null || tokens.length < 2) return last;
  return exactLang(tokens[tokens.length - 2]!) !== null ? null : last;
}

/** The language pair a file name ends in ("deu-eng.tsv", "x.de_en.tsv" → [deu, eng]), or null. */
export function langPairFromFileName(path: string): [string, string] | null {
  const part = lastPart(path);
  for (const sep of ["-", "_"]) {
    const tokens = part.split(sep);
    if (tokens.length !== 2) continue;
    const a = exactLang(tokens[0]!), b = exactLang(tokens[1]!);
    if (a !== null && b !== null) return [a, b];
  }
  return null;
}

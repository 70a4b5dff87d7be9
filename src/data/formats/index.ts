/**
 * The corpus readers behind `alignx pack INPUTS...`: expand the inputs, tell each one's format, open a
 * CorpusSource per input (corpus.ts). One file per format:
 *   flores.ts  a directory of {lang}.dev / {lang}.devtest files   → ParallelRow per line index
 *   moses.ts   STEM.LANG1 + STEM.LANG2 (Tatoeba, OPUS)             → ParallelRow per line pair
 *   tsv.ts     src<TAB>tgt (langs from the name) or 4 columns      → ParallelRow
 *   jsonl.ts   translation / src,tgt / instruction / text objects  → any item kind
 *   alpaca.ts  a JSON array of {instruction, input?, output}       → InstructionItem
 *   squad.ts   SQuAD/XQuAD JSON                                    → InstructionItem per question
 *   text.ts    plain text, a document per line or paragraph        → DocumentItem
 *   udhr.ts    the word `udhr` or `udhr:deu,eng,...`               → ParallelRow per UDHR paragraph or section
 * and common.ts for what they share (strict UTF-8, line splitting, JSON positions, bad records).
 *
 * Inputs: a path that exists is taken as it is (so names with glob characters such as brackets work); anything
 * else is a glob (fast-glob; matches sorted, directories included), and one that matches nothing is a usage
 * error (exit 2). The word `udhr` (or `udhr:...`) is the UDHR source whatever --format says, unless a file of that
 * name exists. A path named twice is read once; Moses files of one stem become one source (moses.ts), placed where
 * the first of them was named.
 *
 * Detection, when --format is absent (detectFormat): a directory holding *.dev or *.devtest files → flores;
 * .tsv → tsv; .jsonl → jsonl; .json → its first 64 KiB: an array whose objects have "instruction" → alpaca, an
 * object with a "data" array of "paragraphs" → squad; .txt → text; an extension that is a language code
 * ("x.deu", "train.en") → moses (its partner is found, or missing, when grouping); anything else is a usage error
 * that names the path and lists the --format values.
 */
import fg from "fast-glob";
import { lstatSync, statSync } from "node:fs";
import { extname, resolve } from "node:path";
import { CorpusError, FORMATS, type CorpusSource, type Format, type ReadOptions } from "../corpus.ts";
import { normalizeLang } from "../languages.ts";
import { openAlpaca } from "./alpaca.ts";
import { readHead } from "./common.ts";
import { openFlores, floresSplit } from "./flores.ts";
import { openJsonl } from "./jsonl.ts";
import { groupMoses, mosesLang, openMoses } from "./moses.ts";
import { openSquad } from "./squad.ts";
import { openText } from "./text.ts";
import { openTsv } from "./tsv.ts";
import { openUdhr } from "./udhr.ts";

export { openAlpaca, openFlores, openJsonl, openMoses, openSquad, openText, openTsv, openUdhr };
export { groupMoses, mosesLang, mosesPartners } from "./moses.ts";
export { SQUAD_CONTEXT, SQUAD_INSTRUCTION, SQUAD_QUESTION, squadInput } from "./squad.ts";
export { alignUdhr, decodeEntities, htmlBlocks, parseUdhrHtml, pickEncodings, type UdhrDoc, type UdhrInfo } from "./udhr.ts";
export { firstInvalidUtf8, jsonErrorOffset, langFromFileName, langPairFromFileName, splitLines } from "./common.ts";

export type OpenOptions = ReadOptions & { format?: Format };

const FORMAT_LIST = `--format ${FORMATS.join("|")}`;

const isUdhrWord = (s: string) => s === "udhr" || s.startsWith("udhr:");

/** Whether a path names something, a dangling symbolic link included (its read then fails with a clear error). */
function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The paths (or the udhr word) one input stands for. */
export function expandInput(input: string): string[] {
  if (exists(input) || isUdhrWord(input)) return [input];
  if (!fg.isDynamicPattern(input)) throw new CorpusError(`${input}: no such file or directory`, input, 2);
  const matches = fg.sync(input, { onlyFiles: false, dot: false, unique: true, followSymbolicLinks: true }).sort();
  if (matches.length === 0) throw new CorpusError(`${input}: no file matches this pattern`, input, 2);
  return matches;
}

/** alpaca or squad, from the start of a .json file. */
async function detectJson(path: string): Promise<Format> {
  const head = (await readHead(path, 64 * 1024)).replace(/^\uFEFF?\s*/, "");
  if (head.startsWith("[") && /"instruction"\s*:/.test(head)) return "alpaca";
  if (head.startsWith("{") && /"data"\s*:\s*\[/.test(head) && /"paragraphs"\s*:/.test(head)) return "squad";
  throw new CorpusError(
    `${path}: JSON that is neither Alpaca (an array of {instruction, input, output}) nor SQuAD ({data: [{paragraphs}]}); pass ${FORMAT_LIST}`,
    path,
    2,
  );
}

/** The format of an input path when --format is absent (the rules in the module comment). */
export async function detectFormat(path: string): Promise<Format> {
  if (isUdhrWord(path) && !exists(path)) return "udhr";
  let dir = false;
  try {
    dir = statSync(path).isDirectory();
  } catch {
    // a dangling link: judged by its name, and the read says what is wrong
  }
  if (dir) {
    if (floresSplit(path) !== null) return "flores";
    throw new CorpusError(`${path}: a directory without *.dev or *.devtest files (FLORES layout); name its files, or use a glob`, path, 2);
  }
  const ext = extname(path).toLowerCase();
  if (ext === ".tsv") return "tsv";
  if (ext === ".jsonl") return "jsonl";
  if (ext === ".json") return detectJson(path);
  if (ext === ".txt") return "text";
  if (mosesLang(path) !== null) return "moses";
  if (ext === ".dev" || ext === ".devtest") throw new CorpusError(`${path}: a FLORES file: name its directory to read the FLORES set`, path, 2);
  throw new CorpusError(`${path}: cannot tell the format from the name; pass ${FORMAT_LIST}`, path, 2);
}

/** Open one non-Moses input in a known format. */
async function openOne(path: string, format: Exclude<Format, "moses">, opts: ReadOptions): Promise<CorpusSource> {
  switch (format) {
    case "flores":
      return openFlores(path, opts);
    case "tsv":
      return openTsv(path, opts);
    case "jsonl":
      return openJsonl(path, opts);
    case "alpaca":
      return openAlpaca(path, opts);
    case "squad":
      return openSquad(path, opts);
    case "text":
      return openText(path, opts);
    case "udhr":
      if (!isUdhrWord(path)) throw new CorpusError(`${path}: --format udhr takes the input 'udhr' or 'udhr:LANG,LANG,...'`, path, 2);
      return openUdhr(path, opts);
  }
}

/**
 * Expand `patterns`, tell each input's format (opts.format, else detectFormat), and open one CorpusSource per
 * input (per Moses group), in the order named. Usage problems (a pattern matching nothing, an unknown --format or
 * --lang, an undetectable input) are CorpusErrors with exitCode 2; bad data found here or by read() exit 1.
 */
export async function openInputs(patterns: readonly string[], opts: OpenOptions = {}): Promise<CorpusSource[]> {
  if (opts.format !== undefined && !FORMATS.includes(opts.format)) {
    throw new CorpusError(`unknown --format '${opts.format}' (one of: ${FORMATS.join(", ")})`, "--format", 2);
  }
  if (opts.lang !== undefined) normalizeLang(opts.lang, "--lang", 2);
  if (patterns.length === 0) throw new CorpusError("no inputs given", "", 2);
  const seen = new Set<string>();
  const inputs: { path: string; format: Format }[] = [];
  for (const pattern of patterns) {
    for (const path of expandInput(pattern)) {
      const key = isUdhrWord(path) && !exists(path) ? path : resolve(path);
      if (seen.has(key)) continue;
      seen.add(key);
      const format = isUdhrWord(path) && !exists(path) ? "udhr" : (opts.format ?? (await detectFormat(path)));
      inputs.push({ path, format });
    }
  }
  const moses = groupMoses(inputs.filter((i) => i.format === "moses").map((i) => i.path));
  const sources: CorpusSource[] = [];
  for (const { path, format } of inputs) {
    if (format !== "moses") sources.push(await openOne(path, format, opts));
    else {
      const group = moses.find((g) => g[0] === path); // a group is opened where its first file was named
      if (group) sources.push(openMoses(group, opts));
    }
  }
  return sources;
}

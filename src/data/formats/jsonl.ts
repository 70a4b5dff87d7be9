/**
 * JSON Lines: one JSON object per line, each read by its keys (a file may mix kinds):
 *   {"translation": {"de": "...", "en": "..."}}        Hugging Face's OPUS-100/WMT layout → ParallelRow
 *   {"src_lang", "tgt_lang", "src", "tgt"}              → ParallelRow
 *   {"instruction", "input"?, "output", "lang"?}        → InstructionItem (Alpaca fields, prompt.ts's validator)
 *   {"text", "lang"?}                                   → DocumentItem
 * An instruction's or document's language: its own "lang" (or "language") field, else --lang, else a code the
 * file name ends in, else null. Invalid JSON, an object of none of these shapes, or a field of the wrong type is a
 * bad record naming FILE:LINE (with the column for invalid JSON). Blank lines are skipped; empty texts are
 * dropped (common.ts). An unknown language code is an error even with --skip-bad-records.
 */
import type { CorpusItem, CorpusSource, ReadOptions } from "../corpus.ts";
import { normalizeLang } from "../languages.ts";
import { badRecord, dropped, instructionItem, langFromFileName, optionLang, parallelRow, parseJsonAt, readLines, recordLang } from "./common.ts";

export function openJsonl(path: string, opts: ReadOptions = {}): CorpusSource {
  const fileLang = optionLang(opts) ?? langFromFileName(path);
  return {
    format: "jsonl",
    path,
    langs: null,
    async *read(): AsyncGenerator<CorpusItem> {
      const lines = await readLines(path);
      for (let i = 0; i < lines.length; i++) {
        if (lines[i]!.trim() === "") continue;
        const where = `${path}:${i + 1}`;
        const parsed = parseJsonAt(lines[i]!, path, i);
        if (!parsed.ok) {
          badRecord(opts, path, parsed.message);
          continue;
        }
        const item = jsonlItem(parsed.value, path, where, fileLang, opts);
        if (item) yield item;
      }
    },
  };
}

/** The item one JSONL record stands for, or null (a bad record reported, or an empty text dropped). */
function jsonlItem(v: unknown, file: string, where: string, fileLang: string | null, opts: ReadOptions): CorpusItem | null {
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    badRecord(opts, file, `${where}: not a JSON object`);
    return null;
  }
  const o = v as Record<string, unknown>;
  if ("translation" in o) return translationRow(o.translation, file, where, opts);
  if ("src" in o || "tgt" in o) {
    const fields = [o.src_lang, o.tgt_lang, o.src, o.tgt];
    if (!fields.every((f) => typeof f === "string")) {
      badRecord(opts, file, `${where}: "src_lang", "tgt_lang", "src" and "tgt" must all be strings`);
      return null;
    }
    const [a, b, s, t] = fields as string[];
    return pairRow([[normalizeLang(a!, where), s!], [normalizeLang(b!, where), t!]], file, where, opts);
  }
  if ("instruction" in o) return instructionItem(o, file, where, fileLang, opts);
  if ("text" in o) {
    if (typeof o.text !== "string") {
      badRecord(opts, file, `${where}: "text" must be a string`);
      return null;
    }
    const text = o.text.trim();
    if (text === "") {
      dropped(opts, `${where}: empty text dropped`);
      return null;
    }
    return { kind: "document", text, lang: recordLang(o, where, fileLang), source: where };
  }
  badRecord(opts, file, `${where}: expected "translation", "src"/"tgt", "instruction" or "text"`);
  return null;
}

/** {"de": "...", "en": "..."} → a row over its languages (two or more). */
function translationRow(t: unknown, file: string, where: string, opts: ReadOptions): CorpusItem | null {
  if (t === null || typeof t !== "object" || Array.isArray(t) || !Object.values(t).every((s) => typeof s === "string")) {
    badRecord(opts, file, `${where}: "translation" must be an object of language code → string`);
    return null;
  }
  const entries = Object.entries(t as Record<string, string>).map(([l, s]) => [normalizeLang(l, where), s] as const);
  return pairRow(entries, file, where, opts);
}

/** A row from two or more distinct languages; a repeated language or a single one is a bad record. */
function pairRow(entries: (readonly [string, string])[], file: string, where: string, opts: ReadOptions): CorpusItem | null {
  const langs = entries.map(([l]) => l);
  if (langs.length < 2 || new Set(langs).size !== langs.length) {
    badRecord(opts, file, `${where}: a pair needs two different languages, got ${langs.join(", ") || "none"}`);
    return null;
  }
  return parallelRow(entries, where, opts);
}

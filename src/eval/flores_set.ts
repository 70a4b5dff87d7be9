/**
 * The N-way parallel sentences of a FLORES directory for evaluation (`alignx eval`): the requested languages'
 * first N line-aligned sentences.
 *
 *   const set = await loadFloresSet("../shared/data/flores101/devtest", { langs: ["eng", "deu"], maxSentences: 100 });
 *   set.sentences.deu[i]   line i + 1 of deu.devtest (trimmed), a translation of set.sentences.eng[i]
 *
 * The directory is read by the corpus reader (src/data/formats/flores.ts: file discovery, FLORES codes such as
 * cmn_Hans normalized to canonical ones, equal line counts checked). FLORES-101's root (holding dev/ and devtest/)
 * is accepted too: its devtest/ is read, as the paper reports on devtest.
 * `langs` null: the ten AlignX languages present (src/data/languages.ts ALIGNX_LANGS); a requested language
 * without a file is an error naming the file expected (`DIR/deu.devtest`; Chinese: `DIR/cmn_Hans.devtest`).
 * A line empty in any requested language is left out of every language (FLORES has none; the count is kept).
 * Every problem is an EvalInputError (exit code 2) naming the file.
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { CorpusError } from "../data/corpus.ts";
import { floresSplit, openFlores } from "../data/formats/flores.ts";
import { ALIGNX_LANGS, languageName } from "../data/languages.ts";

/** Bad evaluation input (a file, a language, an option): exit 2 at the command line. */
export class EvalInputError extends Error {
  override name = "EvalInputError";
  exitCode = 2;
}

/** FLORES-101's file stem of a canonical language (Chinese: cmn_Hans / cmn_Hant; the others their ISO 639-3 code). */
export function floresFileStem(lang: string): string {
  return lang === "zho" ? "cmn_Hans" : lang === "zho_Hant" ? "cmn_Hant" : lang;
}

export interface FloresSet {
  /** The directory read (FLORES-101's devtest/ when given its root). */
  dir: string;
  split: ".dev" | ".devtest";
  /** The languages, canonical, in the order requested (default: ALIGNX_LANGS order). */
  langs: string[];
  /** Every language of the directory, canonical. */
  available: string[];
  /** Per language, the sentences (the same N for every language). */
  sentences: Record<string, string[]>;
  n: number;
  /** Lines read before the first N usable ones (N plus those left out as empty). */
  linesRead: number;
  /** Lines left out because a requested language's text was empty. */
  emptyLines: number;
}

export interface LoadFloresOptions {
  /** Canonical codes; null or undefined: the ten AlignX languages present. */
  langs?: readonly string[] | null;
  /** Languages that must be present besides `langs` (e.g. the English pivot); added to `langs` when missing. */
  require?: readonly string[];
  /** Keep the first N usable lines (default all). */
  maxSentences?: number;
}

/** Read the requested languages of a FLORES directory (see the module comment). */
export async function loadFloresSet(dirArg: string, o: LoadFloresOptions = {}): Promise<FloresSet> {
  if (!existsSync(dirArg)) throw new EvalInputError(`--data ${dirArg}: no such directory`);
  if (!statSync(dirArg).isDirectory()) throw new EvalInputError(`--data ${dirArg}: not a directory (give a FLORES directory of {lang}.dev or {lang}.devtest files)`);
  let dir = dirArg;
  let split: ".dev" | ".devtest" | null;
  try {
    split = floresSplit(dir);
    if (split === null && floresSplit(join(dir, "devtest")) === ".devtest") {
      dir = join(dir, "devtest");
      split = ".devtest";
    }
  } catch (e) {
    throw asInputError(e);
  }
  if (split === null) throw new EvalInputError(`--data ${dirArg}: not a FLORES directory (no {lang}.dev or {lang}.devtest files, and no devtest/ holding them)`);
  const n = o.maxSentences;
  if (n !== undefined && !(Number.isInteger(n) && n >= 1)) throw new EvalInputError(`--max-sentences must be a positive integer, got ${n}`);

  let source;
  try {
    source = openFlores(dir);
  } catch (e) {
    throw asInputError(e);
  }
  const available = source.langs ?? [];
  const expected = (l: string) => join(dir, `${floresFileStem(l)}${split}`);
  let langs: string[];
  if (o.langs) {
    langs = [...new Set(o.langs)];
  } else {
    langs = ALIGNX_LANGS.filter((l) => available.includes(l));
    if (langs.length === 0) throw new EvalInputError(`${dir}: holds none of the ten AlignX languages (${ALIGNX_LANGS.join(", ")}); name the languages with --langs`);
  }
  for (const r of o.require ?? []) if (!langs.includes(r)) langs.unshift(r);
  for (const l of langs)
    if (!available.includes(l)) throw new EvalInputError(`${expected(l)}: no such file: the FLORES directory ${dir} has no ${languageName(l)} (${l}) file, which the evaluation needs`);

  const sentences: Record<string, string[]> = Object.fromEntries(langs.map((l) => [l, [] as string[]]));
  let linesRead = 0;
  let emptyLines = 0;
  try {
    // Rows are yielded one per line in order; a row whose every text is empty is not yielded at all, so lines
    // are counted from each row's source ("DIR/{lang}.devtest:LINE").
    let lastLine = 0;
    for await (const item of source.read()) {
      if (item.kind !== "parallel") continue;
      const line = Number(/:(\d+)$/.exec(item.source)?.[1] ?? lastLine + 1);
      emptyLines += line - lastLine - 1;
      lastLine = line;
      linesRead = line;
      if (!langs.every((l) => typeof item.texts[l] === "string" && item.texts[l] !== "")) {
        emptyLines++;
        continue;
      }
      for (const l of langs) sentences[l]!.push(item.texts[l]!);
      if (n !== undefined && sentences[langs[0]!]!.length >= n) break;
    }
  } catch (e) {
    throw asInputError(e);
  }
  const count = sentences[langs[0]!]!.length;
  if (count === 0) throw new EvalInputError(`${dir}: no line has text in every language asked for (${langs.join(", ")})`);
  return { dir, split, langs, available, sentences, n: count, linesRead, emptyLines };
}

function asInputError(e: unknown): Error {
  if (e instanceof CorpusError) return new EvalInputError(e.message);
  return e as Error;
}

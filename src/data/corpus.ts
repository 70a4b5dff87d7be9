/**
 * What the corpus readers (src/data/formats/) hand to the packer: plain text items, before any tokenizer.
 *
 *   ParallelRow     one aligned unit across two or more languages (a FLORES line index, a Moses/Tatoeba line
 *                   pair, a TSV/JSONL pair, a UDHR paragraph): `texts[lang]` for each language present.
 *   InstructionItem an Alpaca-style {instruction, input, output} (Alpaca, Bactrian-X, SQuAD/XQuAD turned into
 *                   QA), with its language when known.
 *   DocumentItem    running text for pretraining (a line or a paragraph of a plain-text file).
 *
 * Every item carries `source`, "FILE:LINE" (or "FILE#INDEX" for JSON arrays), so that any later complaint
 * (a dropped example, a bad record under --skip-bad-records) can name where it came from.
 * Language codes are canonical (see languages.ts): ISO 639-3, e.g. "deu", "zho".
 */

export interface ParallelRow {
  kind: "parallel";
  /** Canonical language code → sentence. Two or more entries. */
  texts: Record<string, string>;
  source: string;
}

export interface InstructionItem {
  kind: "instruction";
  instruction: string;
  /** "" when the example has no input. */
  input: string;
  output: string;
  /** Canonical language code, or null when unknown. */
  lang: string | null;
  source: string;
}

export interface DocumentItem {
  kind: "document";
  text: string;
  /** Canonical language code, or null when unknown. */
  lang: string | null;
  source: string;
}

export type CorpusItem = ParallelRow | InstructionItem | DocumentItem;

/** The input formats `alignx pack --format` names (detected when not given). */
export const FORMATS = ["flores", "moses", "tsv", "jsonl", "alpaca", "squad", "text", "udhr"] as const;
export type Format = (typeof FORMATS)[number];

/** One input after glob expansion and format detection: read() streams its items in file order. */
export interface CorpusSource {
  format: Format;
  /** What the user named (a path, a directory, or "udhr"), for messages and the manifest. */
  path: string;
  /** The languages this source holds, when known before reading (FLORES files, Moses pairs, UDHR). */
  langs: string[] | null;
  read(): AsyncIterable<CorpusItem>;
}

/** Bad input: names the file and the line (1-based) or byte offset; exit code 1 (2 for usage problems). */
export class CorpusError extends Error {
  override name = "CorpusError";
  constructor(
    message: string,
    readonly file: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** Options every reader may honour. */
export interface ReadOptions {
  /** The language of inputs whose format does not say it (plain text, Alpaca JSON without a lang field). */
  lang?: string;
  /** Plain text: one document per line (default) or per blank-line-separated paragraph. */
  textUnit?: "line" | "paragraph";
  /** Count and report bad records instead of failing on the first one. */
  skipBadRecords?: boolean;
  /** Called for each skipped bad record (with --skip-bad-records): the message names the file and line. */
  onBadRecord?: (message: string) => void;
}

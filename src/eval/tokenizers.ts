/**
 * sacreBLEU's BLEU tokenizers, character for character: `13a` (mteval-v13a, the default), `intl` (mteval-v14's
 * international tokenization), `zh` (Chinese characters split, the rest as 13a), `char` and `none`; and spBLEU's
 * `spm`, `flores101` and `flores200`: sacreBLEU's TokenizerSPM, `" ".join(sp.EncodeAsPieces(line))`, with the
 * SentencePiece model given as `--spm-model` (sacreBLEU downloads it; nothing is downloaded here), read by
 * src/data/sentencepiece.ts once per file. `ja-mecab` and `ko-mecab` are not provided.
 *
 * Python's string semantics are kept where they differ from JavaScript's: strings are sequences of code points
 * (not UTF-16 units), and `str.split()` / `str.strip()` use Python's whitespace (which includes U+001C..U+001F
 * and U+0085 and excludes U+FEFF, unlike JavaScript's `\s`).
 */
import { loadSentencePiece, SentencePieceError } from "../data/sentencepiece.ts";

/** Python's `str.isspace()` characters. */
const PY_WS = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const WS_RUN = new RegExp(`[${PY_WS}]+`, "gu");
const WS_TRAIL = new RegExp(`[${PY_WS}]+$`, "u");
const WS_LEAD = new RegExp(`^[${PY_WS}]+`, "u");

/** Python's `s.split()`: split on runs of whitespace, no empty items. */
export function pySplit(s: string): string[] {
  const out = s.split(WS_RUN);
  if (out.length && out[0] === "") out.shift();
  if (out.length && out[out.length - 1] === "") out.pop();
  return out;
}

/** Python's `s.rstrip()`. */
export const pyRstrip = (s: string): string => s.replace(WS_TRAIL, "");

/** Python's `s.strip()`. */
export const pyStrip = (s: string): string => s.replace(WS_LEAD, "").replace(WS_TRAIL, "");

/** Python's `s.lower()` (JavaScript's full lowercase mapping agrees with it, final sigma included). */
export const pyLower = (s: string): string => s.toLowerCase();

/** The code points of `s` (Python's indexing unit). */
export const codePoints = (s: string): string[] => Array.from(s);

/** sacreBLEU's TokenizerRegexp: the language-dependent part of 13a (and of zh), then one space between tokens. */
const RE_13A: [RegExp, string][] = [
  [/([{-~\[-` -&(-+:-@/])/gu, " $1 "],
  // period and comma unless preceded by a digit
  [/([^0-9])([.,])/gu, "$1 $2 "],
  // period and comma unless followed by a digit
  [/([.,])([^0-9])/gu, " $1 $2"],
  // dash when preceded by a digit
  [/([0-9])(-)/gu, "$1 $2 "],
];

function regexpTokenize(line: string): string {
  for (const [re, repl] of RE_13A) line = line.replace(re, repl);
  return pySplit(line).join(" ");
}

export function tokenize13a(line: string): string {
  line = line.replaceAll("<skipped>", "").replaceAll("-\n", "").replaceAll("\n", " ");
  if (line.includes("&"))
    line = line.replaceAll("&quot;", '"').replaceAll("&amp;", "&").replaceAll("&lt;", "<").replaceAll("&gt;", ">");
  return regexpTokenize(` ${line} `);
}

const RE_INTL: [RegExp, string][] = [
  // punctuation preceded by a non-digit
  [/(\P{N})(\p{P})/gu, "$1 $2 "],
  // punctuation followed by a non-digit
  [/(\p{P})(\P{N})/gu, " $1 $2"],
  // symbols
  [/(\p{S})/gu, " $1 "],
];

export function tokenizeIntl(line: string): string {
  for (const [re, repl] of RE_INTL) line = line.replace(re, repl);
  return pySplit(line).join(" ");
}

/**
 * sacreBLEU's `_UCODE_RANGES` of the zh tokenizer, as its comparisons work: two of its bounds are written
 * '\u20000' / '\u2a6d6' and '\u2f800' / '\u2fa1d', which in Python are two-character strings ('\u2000' + '0'), so
 * a single character c is "Chinese" there when '\u2000' < c <= '\u2a6d' (U+2001..U+2A6D) and U+2F81..U+2FA1 —
 * not the CJK Extension B / Compatibility Supplement planes they meant. Kept as sacreBLEU computes it.
 */
const ZH_RANGES: [number, number][] = [
  [0x3400, 0x4db5], [0x4e00, 0x9fa5], [0x9fa6, 0x9fbb], [0xf900, 0xfa2d], [0xfa30, 0xfa6a], [0xfa70, 0xfad9],
  [0x2001, 0x2a6d], [0x2f81, 0x2fa1], [0xff00, 0xffef], [0x2e80, 0x2eff], [0x3000, 0x303f], [0x31c0, 0x31ef],
  [0x2f00, 0x2fdf], [0x2ff0, 0x2fff], [0x3100, 0x312f], [0x31a0, 0x31bf], [0xfe10, 0xfe1f], [0xfe30, 0xfe4f],
  [0x2600, 0x26ff], [0x2700, 0x27bf], [0x3200, 0x32ff], [0x3300, 0x33ff],
];

export function isChineseChar(cp: number): boolean {
  for (const [a, b] of ZH_RANGES) if (cp >= a && cp <= b) return true;
  return false;
}

export function tokenizeZh(line: string): string {
  let out = "";
  for (const ch of pyStrip(line)) out += isChineseChar(ch.codePointAt(0)!) ? ` ${ch} ` : ch;
  return regexpTokenize(out);
}

export const tokenizeChar = (line: string): string => codePoints(line).join(" ");

export const tokenizeNone = (line: string): string => line;

/** Tokenizer names `--tokenize` accepts (sacreBLEU's, less ja-mecab / ko-mecab / spBLEU-1K). */
export const TOKENIZERS = ["13a", "intl", "zh", "char", "none", "spm", "flores101", "flores200"] as const;
export type TokenizerName = (typeof TOKENIZERS)[number];

export const isTokenizerName = (s: string): s is TokenizerName => (TOKENIZERS as readonly string[]).includes(s);
/** The tokenizers that read a SentencePiece model (`--spm-model`): spBLEU. */
export const SPM_TOKENIZERS: ReadonlySet<string> = new Set<TokenizerName>(["spm", "flores101", "flores200"]);

export interface Tokenizer {
  (line: string): string;
  /** What the signature's `tok:` says. */
  signature: string;
}

/** Why a tokenizer cannot be had: a problem of the input, exit 2 at the command line. */
export class TokenizerError extends Error {
  exitCode = 2;
}

const SPM_SOURCE =
  "sacreBLEU's flores101 model is sacrebleu_tokenizer_spm.model from the fairseq FLORES release (dl.fbaipublicfiles.com/fairseq/models/flores/), " +
  "flores200's is flores200_sacrebleu_tokenizer_spm.model (linked from sacreBLEU's tokenizer_spm.py)";

/** sacreBLEU's TokenizerSPM: the model's pieces joined by single spaces. */
function spmTokenizer(name: string, file: string): (line: string) => string {
  let sp;
  try {
    sp = loadSentencePiece(file);
  } catch (e) {
    if (e instanceof SentencePieceError) throw new TokenizerError(`tokenizer ${name}: --spm-model ${e.message}`);
    throw e;
  }
  return (line) => sp.encodeAsPieces(line).join(" ");
}

/**
 * The tokenizer named `name`. `spm` / `flores101` / `flores200` need `spmModel` (a SentencePiece .model file, which
 * cannot be downloaded here): without it, or with a file that is not a usable model, a TokenizerError saying so.
 * The signature is sacreBLEU's: `flores101` for spm and flores101, `flores200` for flores200.
 */
export function getTokenizer(name: string, opts: { spmModel?: string } = {}): Tokenizer {
  const make = (fn: (s: string) => string, signature: string): Tokenizer => Object.assign((s: string) => fn(s), { signature });
  switch (name) {
    case "13a":
      return make(tokenize13a, "13a");
    case "intl":
      return make(tokenizeIntl, "intl");
    case "zh":
      return make(tokenizeZh, "zh");
    case "char":
      return make(tokenizeChar, "char");
    case "none":
      return make(tokenizeNone, "none");
    case "spm":
    case "flores101":
    case "flores200":
      if (opts.spmModel === undefined)
        throw new TokenizerError(`tokenizer ${name} needs the SentencePiece model: pass --spm-model FILE (${SPM_SOURCE}; it cannot be downloaded from here)`);
      return make(spmTokenizer(name, opts.spmModel), name === "flores200" ? "flores200" : "flores101");
    case "ja-mecab":
    case "ko-mecab":
      throw new TokenizerError(`tokenizer ${name} is not supported (it needs MeCab); choose one of ${TOKENIZERS.join(", ")}`);
    default:
      throw new TokenizerError(`unknown tokenizer ${JSON.stringify(name)}; choose one of ${TOKENIZERS.join(", ")}`);
  }
}

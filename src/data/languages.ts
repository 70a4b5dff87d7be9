/**
 * The language table: one canonical code per language, its English name, and the other codes that name it.
 *
 * Canonical codes are ISO 639-3 ("deu", "zho", "swh"), with "zho_Hant" for Chinese in traditional characters
 * (the one script split the data needs: FLORES-101 has cmn_Hans and cmn_Hant). Corpora spell languages in
 * many ways, and every reader turns them into the canonical code through normalizeLang:
 *   ISO 639-1             de, zh, sw, ar                      (OPUS-100, Hugging Face "translation" dicts, XQuAD)
 *   FLORES-101 file names cmn_Hans → zho, cmn_Hant → zho_Hant, azj, npi, srp_Cyrl
 *   Tatoeba               swa → swh, zho
 *   macrolanguage/variant arb → ara, pes → fas, zsm → msa, khk → mon (the individual code FLORES uses)
 *   BCP-47                zh-Hans, zh-CN, zh-TW, pt-BR, en-US: the primary subtag, with the script or region
 *                         choosing between zho and zho_Hant; other subtags must look like a script (4 letters),
 *                         a region (2 letters or 3 digits) or a year (4 digits, the UDHR's deu_1996)
 *   case and separators   "DEU", "zh_hans", "cmn-Hans" are all the same code
 * The English names are the ones a translation instruction uses ("Translate the following sentences from German
 * to English."). The table covers every language of FLORES-101 and of OPUS-100.
 *
 * Guessing a language from a file name (languageFromName) accepts only exact codes, never the BCP-47 reading:
 * "de-en" in a file name is a language pair, not German as spoken in "en".
 */
import { CorpusError } from "./corpus.ts";

export interface Language {
  /** Canonical code (ISO 639-3; "zho_Hant" for traditional Chinese). */
  code: string;
  /** English name, as in a translation instruction. */
  name: string;
  /** Other codes for it: ISO 639-1, FLORES, Tatoeba, individual-language codes, script-qualified forms. */
  aliases: readonly string[];
}

// [canonical, English name, aliases...]. Aliases are matched case-insensitively with "-" and "_" alike.
const TABLE: readonly (readonly string[])[] = [
  ["afr", "Afrikaans", "af"],
  ["amh", "Amharic", "am"],
  ["ara", "Arabic", "ar", "arb"],
  ["arg", "Aragonese", "an"],
  ["asm", "Assamese", "as"],
  ["ast", "Asturian"],
  ["azj", "Azerbaijani", "az", "aze", "azj_latn", "aze_latn"],
  ["bel", "Belarusian", "be"],
  ["ben", "Bengali", "bn"],
  ["bos", "Bosnian", "bs", "bos_latn"],
  ["bre", "Breton", "br"],
  ["bul", "Bulgarian", "bg"],
  ["cat", "Catalan", "ca"],
  ["ceb", "Cebuano"],
  ["ces", "Czech", "cs", "cze"],
  ["ckb", "Central Kurdish"],
  ["cym", "Welsh", "cy", "wel"],
  ["dan", "Danish", "da"],
  ["deu", "German", "de", "ger"],
  ["dzo", "Dzongkha", "dz"],
  ["ell", "Greek", "el", "gre", "ell_monotonic"],
  ["eng", "English", "en"],
  ["epo", "Esperanto", "eo"],
  ["est", "Estonian", "et", "ekk"],
  ["eus", "Basque", "eu", "baq"],
  ["fas", "Persian", "fa", "per", "pes"],
  ["fin", "Finnish", "fi"],
  ["fra", "French", "fr", "fre"],
  ["fry", "Western Frisian", "fy"],
  ["ful", "Fula", "ff", "fuv"],
  ["gla", "Scottish Gaelic", "gd"],
  ["gle", "Irish", "ga"],
  ["glg", "Galician", "gl"],
  ["guj", "Gujarati", "gu"],
  ["hau", "Hausa", "ha"],
  ["hbs", "Serbo-Croatian", "sh"],
  ["heb", "Hebrew", "he", "iw"],
  ["hin", "Hindi", "hi"],
  ["hrv", "Croatian", "hr"],
  ["hun", "Hungarian", "hu"],
  ["hye", "Armenian", "hy", "arm"],
  ["ibo", "Igbo", "ig"],
  ["ind", "Indonesian", "id"],
  ["isl", "Icelandic", "is", "ice"],
  ["ita", "Italian", "it"],
  ["jav", "Javanese", "jv"],
  ["jpn", "Japanese", "ja"],
  ["kam", "Kamba"],
  ["kan", "Kannada", "kn"],
  ["kat", "Georgian", "ka", "geo"],
  ["kaz", "Kazakh", "kk"],
  ["kea", "Kabuverdianu"],
  ["khm", "Khmer", "km"],
  ["kin", "Kinyarwanda", "rw"],
  ["kir", "Kyrgyz", "ky"],
  ["kmr", "Kurdish", "ku", "kur"],
  ["kor", "Korean", "ko"],
  ["lao", "Lao", "lo"],
  ["lav", "Latvian", "lv", "lvs"],
  ["lim", "Limburgish", "li"],
  ["lin", "Lingala", "ln"],
  ["lit", "Lithuanian", "lt"],
  ["ltz", "Luxembourgish", "lb"],
  ["lug", "Ganda", "lg"],
  ["luo", "Luo"],
  ["mal", "Malayalam", "ml"],
  ["mar", "Marathi", "mr"],
  ["mkd", "Macedonian", "mk", "mac"],
  ["mlg", "Malagasy", "mg", "plt"],
  ["mlt", "Maltese", "mt"],
  ["mon", "Mongolian", "mn", "khk"],
  ["mri", "Maori", "mi", "mao"],
  ["msa", "Malay", "ms", "may", "zsm", "zlm"],
  ["mya", "Burmese", "my", "bur"],
  ["nld", "Dutch", "nl", "dut"],
  ["nno", "Norwegian Nynorsk", "nn"],
  ["nob", "Norwegian Bokmål", "nb", "no", "nor"],
  ["npi", "Nepali", "ne", "nep"],
  ["nso", "Northern Sotho"],
  ["nya", "Nyanja", "ny"],
  ["oci", "Occitan", "oc"],
  ["orm", "Oromo", "om", "gaz"],
  ["ory", "Odia", "or", "ori"],
  ["pan", "Punjabi", "pa"],
  ["pol", "Polish", "pl"],
  ["por", "Portuguese", "pt"],
  ["pus", "Pashto", "ps", "pbt"],
  ["ron", "Romanian", "ro", "rum"],
  ["rus", "Russian", "ru"],
  ["sin", "Sinhala", "si"],
  ["slk", "Slovak", "sk", "slo"],
  ["slv", "Slovenian", "sl"],
  ["sme", "Northern Sami", "se"],
  ["sna", "Shona", "sn"],
  ["snd", "Sindhi", "sd"],
  ["som", "Somali", "so"],
  ["spa", "Spanish", "es"],
  ["sqi", "Albanian", "sq", "alb", "als"],
  ["srp", "Serbian", "sr", "srp_cyrl"],
  ["swe", "Swedish", "sv"],
  ["swh", "Swahili", "sw", "swa"],
  ["tam", "Tamil", "ta"],
  ["tat", "Tatar", "tt"],
  ["tel", "Telugu", "te"],
  ["tgk", "Tajik", "tg"],
  ["tgl", "Tagalog", "tl", "fil"],
  ["tha", "Thai", "th"],
  ["tuk", "Turkmen", "tk"],
  ["tur", "Turkish", "tr"],
  ["uig", "Uyghur", "ug"],
  ["ukr", "Ukrainian", "uk"],
  ["umb", "Umbundu"],
  ["urd", "Urdu", "ur"],
  ["uzb", "Uzbek", "uz", "uzn", "uzn_latn"],
  ["vie", "Vietnamese", "vi"],
  ["wln", "Walloon", "wa"],
  ["wol", "Wolof", "wo"],
  ["xho", "Xhosa", "xh"],
  ["yid", "Yiddish", "yi", "ydd"],
  ["yor", "Yoruba", "yo"],
  ["zho", "Chinese", "zh", "chi", "cmn", "cmn_hans", "zho_hans", "zh_hans", "zh_cn", "zh_sg"],
  ["zho_Hant", "Traditional Chinese", "cmn_hant", "zh_hant", "zh_tw", "zh_hk", "zh_mo"],
  ["zul", "Zulu", "zu"],
];

export const LANGUAGES: readonly Language[] = TABLE.map(([code, name, ...aliases]) => ({ code, name, aliases }));

/** The ten languages of the AlignX setting, canonical. */
export const ALIGNX_LANGS: readonly string[] = ["ben", "deu", "eng", "fra", "jpn", "rus", "spa", "swh", "tha", "zho"];

/** How a code is looked up: lower case, "-" read as "_". */
const key = (code: string) => code.trim().toLowerCase().replaceAll("-", "_");

const BY_CODE = new Map<string, Language>(LANGUAGES.map((l) => [l.code, l]));
const ALIASES = new Map<string, string>();
for (const l of LANGUAGES) {
  for (const a of [l.code, ...l.aliases]) {
    const k = key(a);
    if (ALIASES.has(k)) throw new Error(`languages.ts: '${a}' names both ${ALIASES.get(k)} and ${l.code}`);
    ALIASES.set(k, l.code);
  }
}

/** The canonical code of an exact code or alias (no BCP-47 reading), or null. */
export function exactLang(code: string): string | null {
  return ALIASES.get(key(code)) ?? null;
}

// BCP-47 subtags after the primary one: script (Hans), region (CN, 419), or a year as the UDHR writes (1996).
const SUBTAG = /^(?:[a-z]{4}|[a-z]{2}|\d{3}|\d{4})$/;
const TRADITIONAL = new Set(["hant", "tw", "hk", "mo"]);

/** The canonical code of `code` (an alias, or a BCP-47-style tag), or null when it names no language here. */
export function tryNormalizeLang(code: string): string | null {
  const exact = exactLang(code);
  if (exact !== null) return exact;
  const [primary, ...subtags] = key(code).split("_");
  const base = ALIASES.get(primary!);
  if (base === undefined || subtags.length === 0 || !subtags.every((s) => SUBTAG.test(s))) return null;
  if (base === "zho" || base === "zho_Hant") return subtags.some((s) => TRADITIONAL.has(s)) ? "zho_Hant" : "zho";
  return base;
}

/**
 * The canonical code of `code`. An unknown code throws CorpusError naming `where` (a file, "FILE:LINE",
 * "FILE#INDEX" or "--lang"; the error's `file` is that without the line or index) and suggesting close codes;
 * exitCode 1 (bad data) unless told otherwise (2 for a command-line value).
 */
export function normalizeLang(code: string, where?: string, exitCode = 1): string {
  const c = tryNormalizeLang(code);
  if (c !== null) return c;
  const near = suggestLangs(code);
  const hint = near.length > 0 ? ` (did you mean ${near.map((l) => `${l} (${languageName(l)})`).join(", ")}?)` : "";
  const file = (where ?? "").replace(/(?::\d+)+$|#[^/]*$/, "");
  throw new CorpusError(`${where ? `${where}: ` : ""}unknown language code '${code}'${hint}`, file, exitCode);
}

/** English name of a language ("German" for "de", "deu" or "de-AT"). Throws on an unknown code. */
export function languageName(code: string): string {
  return BY_CODE.get(normalizeLang(code))!.name;
}

/**
 * Up to five canonical codes close to an unknown `code`: the languages whose English name starts with it
 * ("german" → deu), then codes and aliases within edit distance 1 (2 for codes longer than 3 letters).
 */
export function suggestLangs(code: string): string[] {
  const k = key(code);
  if (k.length === 0) return [];
  const scored: [number, string][] = [];
  for (const l of LANGUAGES) {
    if (k.length >= 3 && l.name.toLowerCase().startsWith(k.replaceAll("_", " "))) scored.push([0, l.code]);
  }
  const limit = k.length > 3 ? 2 : 1;
  for (const [alias, canonical] of ALIASES) {
    const d = editDistance(k, alias, limit);
    if (d <= limit) scored.push([d, canonical]);
  }
  scored.sort((a, b) => a[0] - b[0] || a[1].localeCompare(b[1]));
  return [...new Set(scored.map(([, c]) => c))].slice(0, 5);
}

/** Levenshtein distance of a and b, or limit + 1 as soon as it must exceed limit. */
function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    if (Math.min(...cur) > limit) return limit + 1;
    prev = cur;
  }
  return prev[b.length]!;
}

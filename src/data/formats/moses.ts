/**
 * Moses layout: line-aligned files that share a stem and differ in a language-code extension
 * (`deu-eng.deu` + `deu-eng.eng` as Tatoeba and OPUS ship them, `train.de` + `train.en`). Line i of each file is
 * the same sentence: one ParallelRow per line, its source "STEM.{deu,eng}:LINE".
 *
 * Pairing (groupMoses): the inputs that share a stem form one source, however they were named (one file, both,
 * or a glob matching both). A file named alone takes its partner from its directory: the one other file with
 * the same stem and a language extension (none, or several, is an error that lists them). Three or more files of
 * one stem named together make a multi-way source, as FLORES does.
 *
 * Empty lines: Moses corpora keep the line alignment with empty lines where a side has no sentence; a row with an
 * empty side is dropped (common.ts's parallelRow: reported with --skip-bad-records, never an error).
 */
import { readdirSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import { CorpusError, type CorpusItem, type CorpusSource, type ReadOptions } from "../corpus.ts";
import { exactLang } from "../languages.ts";
import { checkLineCounts, parallelRow, readLines } from "./common.ts";

/** The language of a Moses file's extension ("x.deu" → deu, "train.en" → eng), or null. */
export function mosesLang(path: string): string | null {
  const ext = extname(path);
  return ext.length > 1 ? exactLang(ext.slice(1)) : null;
}

/** "DIR/STEM": the path without its language extension. */
const stemPath = (path: string) => path.slice(0, path.length - extname(path).length);

/** The other files in `path`'s directory with the same stem and a language extension, sorted. */
export function mosesPartners(path: string): string[] {
  const dir = dirname(path), stem = basename(stemPath(path));
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n !== basename(path) && n.startsWith(`${stem}.`) && stemPath(n) === stem && mosesLang(n) !== null)
    .sort()
    .map((n) => join(dir, n));
}

/**
 * Group Moses inputs by stem, in the order of first appearance; a lone file gets its partner (see the module
 * comment). Each group is two or more paths.
 */
export function groupMoses(paths: readonly string[]): string[][] {
  const groups = new Map<string, string[]>(); // by the absolute stem, so "./x.de" and "x.en" pair up
  for (const p of paths) {
    const key = resolve(stemPath(p));
    const g = groups.get(key) ?? [];
    if (!g.some((q) => resolve(q) === resolve(p))) g.push(p);
    groups.set(key, g);
  }
  return [...groups.values()].map((g) => {
    if (g.length > 1) return g;
    const partners = mosesPartners(g[0]!);
    if (partners.length === 1) return [g[0]!, partners[0]!];
    if (partners.length === 0) throw new CorpusError(`${g[0]}: a Moses file with no partner (expected another ${basename(stemPath(g[0]!))}.LANG file beside it)`, g[0]!, 2);
    throw new CorpusError(`${g[0]}: several partner files (${partners.map((p) => basename(p)).join(", ")}): name the files to pair`, g[0]!, 2);
  });
}

/** One Moses group (two or more line-aligned files of one stem) as a source. */
export function openMoses(paths: readonly string[], opts: ReadOptions = {}): CorpusSource {
  if (paths.length < 2) throw new CorpusError(`${paths[0] ?? "moses"}: a Moses source needs two or more files`, paths[0] ?? "", 2);
  const langs: string[] = [];
  for (const p of paths) {
    const lang = mosesLang(p);
    if (lang === null) throw new CorpusError(`${p}: the extension is not a language code (Moses files are STEM.LANG)`, p, 2);
    const i = langs.indexOf(lang);
    if (i >= 0) throw new CorpusError(`${paths[i]} and ${p} are both ${lang}`, p, 2);
    langs.push(lang);
  }
  const name = `${stemPath(paths[0]!)}.{${paths.map((p) => extname(p).slice(1)).join(",")}}`;
  return {
    format: "moses",
    path: name,
    langs,
    async *read(): AsyncGenerator<CorpusItem> {
      const columns: string[][] = [];
      for (const p of paths) columns.push(await readLines(p));
      checkLineCounts(paths.map((p, i) => ({ path: p, lines: columns[i]!.length })), name);
      for (let i = 0; i < columns[0]!.length; i++) {
        const row = parallelRow(langs.map((l, j) => [l, columns[j]![i]!] as const), `${name}:${i + 1}`, opts);
        if (row) yield row;
      }
    },
  };
}

/**
 * FLORES-101 layout: a directory of line-aligned files `{lang}.dev` (or `{lang}.devtest`), one sentence per
 * line, line i of every file the same sentence. Read as one ParallelRow per line index holding every language of
 * the directory (the packer chooses languages later); its source is "DIR/{lang}.dev:LINE", literally "{lang}",
 * since the row spans all the files.
 *
 * All files must have the same number of lines, else an error naming two files and their counts. File names are
 * FLORES codes (cmn_Hans, azj, srp_Cyrl), normalized by languages.ts; two files of one language are an error,
 * except a link: FLORES-101's srp_Cyrl.dev is a symbolic link to srp.dev, and copies that cannot keep links
 * (this project's shared data among them) hold a few-byte file whose text is the target's name. Such a file is
 * read as the link it stands for, and a link to a file of the same language counts once.
 */
import { readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { join } from "node:path";
import { CorpusError, type CorpusItem, type CorpusSource, type ReadOptions } from "../corpus.ts";
import { normalizeLang } from "../languages.ts";
import { checkLineCounts, parallelRow, readLines } from "./common.ts";

const SPLITS = [".dev", ".devtest"] as const;

/** The FLORES split a directory's files belong to (".dev" or ".devtest"), or null when it holds neither. */
export function floresSplit(dir: string): ".dev" | ".devtest" | null {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return null;
  }
  const found = SPLITS.filter((s) => names.some((n) => n.endsWith(s)));
  if (found.length > 1) throw new CorpusError(`${dir}: holds both .dev and .devtest files: name a directory of one split`, dir, 2);
  return found[0] ?? null;
}

/** The file a link written as a small text file names (another file of the directory), or the path itself. */
function followTextLink(dir: string, name: string, names: Set<string>): string {
  const path = join(dir, name);
  try {
    if (statSync(path).size > 255) return path;
    const target = readFileSync(path, "utf8").trim();
    return names.has(target) && target !== name ? join(dir, target) : path;
  } catch {
    return path; // unreadable: reported when read
  }
}

/** The FLORES directory `dir` as a source: its languages are known from the file names. */
export function openFlores(dir: string, opts: ReadOptions = {}): CorpusSource {
  const split = floresSplit(dir);
  if (split === null) throw new CorpusError(`${dir}: not a FLORES directory (no *.dev or *.devtest files)`, dir, 2);
  const names = readdirSync(dir).filter((n) => n.endsWith(split)).sort();
  const nameSet = new Set(names);
  // language → the file read for it (links followed), keeping the first name of each language
  const files = new Map<string, { name: string; path: string }>();
  for (const name of names) {
    const lang = normalizeLang(name.slice(0, -split.length), join(dir, name));
    const path = followTextLink(dir, name, nameSet);
    const prev = files.get(lang);
    if (prev === undefined) files.set(lang, { name, path });
    else if (realPath(prev.path) !== realPath(path)) {
      throw new CorpusError(`${dir}: ${prev.name} and ${name} are both ${lang}: remove one`, dir);
    }
  }
  const langs = [...files.keys()];
  return {
    format: "flores",
    path: dir,
    langs,
    async *read(): AsyncGenerator<CorpusItem> {
      const columns: string[][] = [];
      for (const { path } of files.values()) columns.push(await readLines(path));
      checkLineCounts([...files.values()].map((f, i) => ({ path: join(dir, f.name), lines: columns[i]!.length })), dir);
      const n = columns[0]?.length ?? 0;
      for (let i = 0; i < n; i++) {
        const row = parallelRow(langs.map((l, j) => [l, columns[j]![i]!] as const), `${join(dir, `{lang}${split}`)}:${i + 1}`, opts);
        if (row) yield row;
      }
    },
  };
}

function realPath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

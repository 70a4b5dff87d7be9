/**
 * Tab-separated pairs, one per line, in one of two layouts chosen by the file name:
 *   - the name ends in a language pair ("deu-eng.tsv", "x.de_en.tsv"): two columns, `src<TAB>tgt`;
 *   - otherwise four columns, `src_lang<TAB>tgt_lang<TAB>src<TAB>tgt` (a first line that is exactly the header
 *     "src_lang, tgt_lang, src, tgt" is skipped).
 * No quoting: a tab never occurs inside a text. A line with another column count is a bad record naming
 * FILE:LINE; blank lines are skipped; an empty side drops the pair (common.ts's parallelRow). An unknown
 * language code is an error even with --skip-bad-records.
 */
import type { CorpusItem, CorpusSource, ReadOptions } from "../corpus.ts";
import { normalizeLang } from "../languages.ts";
import { badRecord, langPairFromFileName, parallelRow, readLines } from "./common.ts";

const HEADER = "src_lang\ttgt_lang\tsrc\ttgt";

export function openTsv(path: string, opts: ReadOptions = {}): CorpusSource {
  const pair = langPairFromFileName(path);
  const columns = pair ? 2 : 4;
  return {
    format: "tsv",
    path,
    langs: pair,
    async *read(): AsyncGenerator<CorpusItem> {
      const lines = await readLines(path);
      for (let i = 0; i < lines.length; i++) {
        const line = lines[i]!, where = `${path}:${i + 1}`;
        if (line.trim() === "" || (i === 0 && !pair && line === HEADER)) continue;
        const cells = line.split("\t");
        if (cells.length !== columns) {
          const layout = pair ? `src<TAB>tgt for ${pair.join("-")}, from the file name` : "src_lang<TAB>tgt_lang<TAB>src<TAB>tgt (the file name names no language pair)";
          badRecord(opts, path, `${where}: ${cells.length} columns, expected ${columns}: ${layout}`);
          continue;
        }
        const [a, b] = pair ?? [normalizeLang(cells[0]!.trim(), where), normalizeLang(cells[1]!.trim(), where)];
        if (a === b) {
          badRecord(opts, path, `${where}: both sides are ${a}`);
          continue;
        }
        const row = parallelRow([[a, cells[columns - 2]!], [b, cells[columns - 1]!]], where, opts);
        if (row) yield row;
      }
    },
  };
}

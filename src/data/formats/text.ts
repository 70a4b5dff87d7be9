/**
 * Plain text for pretraining-style data: a DocumentItem per non-empty line (textUnit "line", the default) or
 * per paragraph, a run of non-blank lines between blank ones (textUnit "paragraph", its lines joined with "\n").
 * Texts are trimmed; the source is FILE:LINE of the (first) line. Language: --lang, else a code the file name
 * ends in ("news.de.txt"), else null.
 */
import type { CorpusItem, CorpusSource, DocumentItem, ReadOptions } from "../corpus.ts";
import { langFromFileName, optionLang, readLines } from "./common.ts";

export function openText(path: string, opts: ReadOptions = {}): CorpusSource {
  const lang = optionLang(opts) ?? langFromFileName(path);
  const paragraphs = opts.textUnit === "paragraph";
  return {
    format: "text",
    path,
    langs: lang ? [lang] : null,
    async *read(): AsyncGenerator<CorpusItem> {
      const lines = await readLines(path);
      const doc = (text: string, line: number): DocumentItem => ({ kind: "document", text, lang, source: `${path}:${line}` });
      let start = -1; // first line of the paragraph being gathered
      for (let i = 0; i <= lines.length; i++) {
        const blank = i === lines.length || lines[i]!.trim() === "";
        if (!paragraphs) {
          if (!blank) yield doc(lines[i]!.trim(), i + 1);
        } else if (!blank && start < 0) start = i;
        else if (blank && start >= 0) {
          yield doc(lines.slice(start, i).map((l) => l.trim()).join("\n"), start + 1);
          start = -1;
        }
      }
    },
  };
}

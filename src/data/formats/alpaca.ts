/**
 * Alpaca JSON: one array of {instruction, input?, output} (Stanford Alpaca, Bactrian-X), each an
 * InstructionItem with source "FILE#INDEX" (0-based). Records are validated by prompt.ts's parseAlpacaExample,
 * the validator loadAlpacaJson uses; a bad one (e.g. no "output") is a bad record. Language: the record's own
 * "lang"/"language" field, else --lang, else a code the file name ends in ("bactrian-x-de.json",
 * "alpaca_de.json"), else null. A file that is not an array is an error even with --skip-bad-records.
 */
import { CorpusError, type CorpusItem, type CorpusSource, type ReadOptions } from "../corpus.ts";
import { instructionItem, langFromFileName, optionLang, readJson } from "./common.ts";

export function openAlpaca(path: string, opts: ReadOptions = {}): CorpusSource {
  const lang = optionLang(opts) ?? langFromFileName(path);
  return {
    format: "alpaca",
    path,
    langs: lang ? [lang] : null,
    async *read(): AsyncGenerator<CorpusItem> {
      const data = await readJson(path);
      if (!Array.isArray(data)) throw new CorpusError(`${path}: expected a JSON array of {instruction, input, output}`, path);
      for (let i = 0; i < data.length; i++) {
        const item = instructionItem(data[i], path, `${path}#${i}`, lang, opts);
        if (item) yield item;
      }
    },
  };
}

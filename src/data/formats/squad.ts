/**
 * SQuAD/XQuAD JSON ({data: [{paragraphs: [{context, qas: [{id, question, answers: [{text}]}]}]}]}) as
 * instruction data: one InstructionItem per question,
 *   instruction  SQUAD_INSTRUCTION
 *   input        SQUAD_CONTEXT + context + "\n" + SQUAD_QUESTION + question
 *   output       the first answer's text
 * (texts trimmed). Its source is "FILE#ID" (XQuAD uses the same ids in every language), or
 * "FILE#data[i].paragraphs[j].qas[k]" for a question without an id. Language: --lang, else the code the file
 * name ends in ("xquad.de.json" → deu), else null.
 * A file without a "data" array is an error; a paragraph without a context or a question without a question
 * string is a bad record; a question without answers (SQuAD 2.0's unanswerable ones) is dropped like an empty
 * text (reported only with --skip-bad-records).
 */
import { CorpusError, type CorpusItem, type CorpusSource, type ReadOptions } from "../corpus.ts";
import { badRecord, dropped, langFromFileName, optionLang, readJson } from "./common.ts";

export const SQUAD_INSTRUCTION = "Answer the question based on the context.";
export const SQUAD_CONTEXT = "Context: ";
export const SQUAD_QUESTION = "Question: ";

/** The input of a SQuAD question's InstructionItem. */
export function squadInput(context: string, question: string): string {
  return `${SQUAD_CONTEXT}${context}\n${SQUAD_QUESTION}${question}`;
}

const isObject = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === "object" && !Array.isArray(x);
const list = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);

export function openSquad(path: string, opts: ReadOptions = {}): CorpusSource {
  const lang = optionLang(opts) ?? langFromFileName(path);
  return {
    format: "squad",
    path,
    langs: lang ? [lang] : null,
    async *read(): AsyncGenerator<CorpusItem> {
      const doc = await readJson(path);
      if (!isObject(doc) || !Array.isArray(doc.data)) throw new CorpusError(`${path}: expected SQuAD JSON, an object with a "data" array`, path);
      for (const [i, article] of doc.data.entries()) {
        for (const [j, para] of list(isObject(article) ? article.paragraphs : undefined).entries()) {
          const at = `${path}#data[${i}].paragraphs[${j}]`;
          if (!isObject(para) || typeof para.context !== "string") {
            badRecord(opts, path, `${at}: "context" must be a string`);
            continue;
          }
          for (const [k, qa] of list(para.qas).entries()) {
            const source = isObject(qa) && typeof qa.id === "string" ? `${path}#${qa.id}` : `${at}.qas[${k}]`;
            if (!isObject(qa) || typeof qa.question !== "string") {
              badRecord(opts, path, `${source}: "question" must be a string`);
              continue;
            }
            const answer = list(qa.answers)[0];
            if (!isObject(answer) || typeof answer.text !== "string" || answer.text.trim() === "") {
              dropped(opts, `${source}: no answer: question dropped`);
              continue;
            }
            const input = squadInput(para.context.trim(), qa.question.trim());
            yield { kind: "instruction", instruction: SQUAD_INSTRUCTION, input, output: answer.text.trim(), lang, source };
          }
        }
      }
    },
  };
}

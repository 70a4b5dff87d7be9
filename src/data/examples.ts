/**
 * From text to the records a shard stores: the AlignX translation instruction with its span index, a general
 * instruction (Alpaca SFT), and pretraining sequences. Pure functions of (tokenizer, text, options): the
 * packer runs them in worker threads, and the same input gives the same ids wherever they run.
 *
 * Translation (ALIGNX.md, "Stage 1"): instruction "Translate the following sentences from {A} to {B}.",
 * input = the source sentence s, response = the target t, then EOS, in the Alpaca "input" template; the ids are
 * [BOS] + tokens(prompt + t) + [EOS], exactly as buildSftTokens lays out every SFT example.
 * The span index marks s with 1 and t with 2. The reference finds the spans by counting the tokens of prompt
 * prefixes: source start = |tokens(prompt up to "### Input:\n")|, source end = |tokens(prompt up to the end of
 * s)|, target start = |tokens(whole prompt)|, target = from there to the EOS (excluded). Here each prefix's
 * tokens are matched against the full text's tokens (longest common prefix): where no merge crosses the
 * boundary the prefix's tokens ARE a prefix of the full tokens and the count equals the reference's (a test
 * checks this on FLORES); where a merge crosses it, the crossing token is the one holding the boundary
 * character, and it is counted inside the span (a start at the crossing token, an end just after it), which is
 * what character offsets would give. Truncation keeps the first `cutoff` tokens; an example left with fewer
 * than MIN_TARGET_TOKENS target tokens is dropped (the reference drops it inside the batch: position -4 not
 * target).
 */
import { alpacaPrompt, buildSftTokens, specialPrefix, type SftTokenizer } from "./prompt.ts";
import { languageName } from "./languages.ts";
import type { Task } from "./shard.ts";

/** Fewer target tokens than this after truncation: the example is dropped (ALIGNX.md). */
export const MIN_TARGET_TOKENS = 3;

export const SPAN_OTHER = 0;
export const SPAN_SOURCE = 1;
export const SPAN_TARGET = 2;

/** The instruction of a translation example, as the reference words it. */
export function translationInstruction(srcLang: string, tgtLang: string): string {
  return `Translate the following sentences from ${languageName(srcLang)} to ${languageName(tgtLang)}.`;
}

/** One example ready for the shard writer, or the reason it is dropped. */
export type Built =
  | { ok: true; ids: number[]; spans: Uint8Array | null; promptLen: number; task: Task }
  | { ok: false; reason: "target_cut" | "no_supervision" | "empty" };

/** Longest common prefix of two id lists. */
function lcp(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/**
 * A translation example (both the stage-1 and the stage-2 kind). Positions are in the final ids, prefix (BOS)
 * included. `cutoff`: the most tokens kept.
 */
export function buildTranslation(tok: SftTokenizer, ex: { srcLang: string; tgtLang: string; src: string; tgt: string }, cutoff: number): Built {
  if (ex.src.trim() === "" || ex.tgt.trim() === "") return { ok: false, reason: "empty" };
  const instruction = translationInstruction(ex.srcLang, ex.tgtLang);
  const prompt = alpacaPrompt({ instruction, input: ex.src });
  const inputAt = prompt.indexOf("### Input:\n") + "### Input:\n".length;
  const built = buildSftTokens(tok, prompt, ex.tgt, { maxLength: cutoff });
  const pre = specialPrefix(tok).length;
  const full = built.textIds;
  const startOf = (text: string) => pre + lcp(tok.encode(text, { addSpecialTokens: false }), full);
  const endOf = (text: string) => {
    const p = tok.encode(text, { addSpecialTokens: false });
    const common = lcp(p, full);
    return pre + common + (common < p.length ? 1 : 0);
  };
  const srcStart = startOf(prompt.slice(0, inputAt));
  const srcEnd = endOf(prompt.slice(0, inputAt + ex.src.length));
  const tgtStart = built.promptLength; // prefix + lcp(tokens(prompt), full), as startOf(prompt)
  const n = built.inputIds.length;
  // The EOS is the last id when it survived truncation; the target runs up to it (or to the cut).
  const untruncated = pre + full.length + 1;
  const tgtEnd = n === untruncated ? n - 1 : n;
  if (tgtEnd - tgtStart < MIN_TARGET_TOKENS) return { ok: false, reason: "target_cut" };
  const spans = new Uint8Array(n);
  spans.fill(SPAN_SOURCE, Math.min(srcStart, n), Math.min(srcEnd, n));
  spans.fill(SPAN_TARGET, tgtStart, tgtEnd);
  return { ok: true, ids: built.inputIds, spans, promptLen: tgtStart, task: "translation" };
}

/** A general instruction (Alpaca SFT): no spans; dropped when truncation leaves nothing supervised. */
export function buildInstruction(tok: SftTokenizer, ex: { instruction: string; input: string; output: string }, cutoff: number): Built {
  if (ex.output.trim() === "") return { ok: false, reason: "empty" };
  const b = buildSftTokens(tok, alpacaPrompt(ex), ex.output, { maxLength: cutoff });
  if (b.supervised === 0) return { ok: false, reason: "no_supervision" };
  return { ok: true, ids: b.inputIds, spans: null, promptLen: b.promptLength, task: "general" };
}

/** A pretraining document's ids: [BOS] + tokens(text) + [EOS] (EOS between documents once concatenated). */
export function documentIds(tok: SftTokenizer, text: string): number[] {
  const ids = [...specialPrefix(tok), ...tok.encode(text, { addSpecialTokens: false })];
  if (tok.eosId !== null) ids.push(tok.eosId);
  return ids;
}

/**
 * Concatenates documents and cuts fixed-length sequences of `seqLen` ids (the last one may be shorter).
 * push() documents in order; each complete sequence is handed to `emit` with the language of the document
 * it starts in.
 */
export class SequencePacker {
  private buf: number[] = [];
  private lang = -1;
  constructor(
    private readonly seqLen: number,
    private readonly emit: (ids: number[], lang: number) => void,
  ) {}

  push(ids: ArrayLike<number>, lang: number): void {
    if (this.buf.length === 0) this.lang = lang;
    for (let i = 0; i < ids.length; ) {
      const take = Math.min(this.seqLen - this.buf.length, ids.length - i);
      for (let k = 0; k < take; k++) this.buf.push(ids[i + k]!);
      i += take;
      if (this.buf.length === this.seqLen) {
        this.emit(this.buf, this.lang);
        this.buf = [];
        this.lang = lang;
      }
    }
  }

  /** The last, shorter sequence (if any). */
  flush(): void {
    if (this.buf.length > 0) this.emit(this.buf, this.lang);
    this.buf = [];
  }
}

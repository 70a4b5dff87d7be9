/**
 * What sacreBLEU's Metric base class asks of a metric, and what `score.ts` drives: preprocess each line, extract
 * the references' information once per segment, per-segment sufficient statistics (numbers that add up over a
 * corpus), and the score of summed statistics.
 */
import type { Score } from "./format.ts";

export interface Metric<S extends Score = Score, R = unknown> {
  readonly kind: "bleu" | "chrf";
  /** Length of a segment's statistics vector. */
  readonly statsLength: number;
  /** Lowercasing and tokenization, applied to hypotheses and references alike. */
  preprocess(line: string): string;
  /** The references of one segment (preprocessed). */
  refInfo(refs: string[]): R;
  /** A preprocessed hypothesis against its segment's reference information. */
  segmentStats(hyp: string, info: R): number[];
  /** The score of summed statistics; `asF32`: they are float32 and the arithmetic is NumPy 2's (the bootstrap). */
  fromStats(stats: ArrayLike<number>, asF32?: boolean): S;
  /** The metric's own signature fields (after nrefs / bs / seed, before version). */
  signatureFields(): [string, string][];
}

/**
 * Evaluation: sacreBLEU-exact BLEU, chrF and chrF++ (corpus and sentence level, bootstrap confidence intervals),
 * the tokenizers they use, and sacreBLEU's output formats. Imports nothing above `nn`.
 */
export { Bleu, bleuVerbose, computeBleu, type BleuOptions, type BleuScore, type SmoothMethod } from "./bleu.ts";
export { bootstrapCI, numpyChoice, Pcg64, seedSequenceState, type BootstrapResult } from "./bootstrap.ts";
export { Chrf, chrfFScore, removePunctuation, type ChrfOptions } from "./chrf.ts";
export { alignLines, formatScore, pyFixed, pyFloatRepr, pyJsonDumps, SACREBLEU_VERSION, scoreJson, signature, type PyJson, type Score } from "./format.ts";
export type { Metric } from "./metric.ts";
export {
  CI_RESAMPLES,
  corpusScore,
  corpusStats,
  isMetricName,
  makeMetric,
  METRIC_NAMES,
  readLines,
  SACREBLEU_DEFAULT_SEED,
  ScoreInputError,
  sentenceScores,
  type MetricName,
  type ScoreResult,
} from "./score.ts";
export { getTokenizer, isTokenizerName, TokenizerError, TOKENIZERS, type Tokenizer, type TokenizerName } from "./tokenizers.ts";

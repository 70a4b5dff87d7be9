/**
 * Evaluation: sacreBLEU-exact BLEU, chrF and chrF++ (corpus and sentence level, bootstrap confidence intervals),
 * the tokenizers they use, and sacreBLEU's output formats; the representation-alignment analysis (retrieval,
 * cosine, CKA of translations' mean-pooled states per layer) and SVG line charts. Imports nothing above `nn`.
 */
export {
  alignmentReport,
  derangement,
  linearCka,
  meanCosine,
  meanPooledStates,
  randomPairCosine,
  retrievalAccuracy,
  type AlignmentLayer,
  type AlignmentOptions,
  type AlignmentReport,
  type AlignmentScores,
  type HostMatrix,
  type ParallelSentences,
  type PoolOptions,
} from "./alignment.ts";
export { Bleu, bleuVerbose, computeBleu, type BleuOptions, type BleuScore, type SmoothMethod } from "./bleu.ts";
export { bootstrapCI, numpyChoice, Pcg64, seedSequenceState, type BootstrapResult } from "./bootstrap.ts";
export { Chrf, chrfFScore, removePunctuation, type ChrfOptions } from "./chrf.ts";
export { alignLines, formatScore, pyFixed, pyFloatRepr, pyJsonDumps, SACREBLEU_VERSION, scoreJson, signature, type PyJson, type Score } from "./format.ts";
export type { Metric } from "./metric.ts";
export { formatNumber, linePlotSvg, logTicks, niceTicks, PLOT_DEFAULTS, PLOT_PALETTE, xmlEscape, type PlotMarker, type PlotPanel, type PlotSeries, type PlotSpec } from "./plot.ts";
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
export { getTokenizer, isTokenizerName, SPM_TOKENIZERS, TokenizerError, TOKENIZERS, type Tokenizer, type TokenizerName } from "./tokenizers.ts";
export * from "./span_alignment.ts";

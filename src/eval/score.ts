/**
 * Corpus- and sentence-level scoring as sacreBLEU's command line does it, and the reading of its input files.
 *
 * `corpusScore(metric, hyps, refs, {ci})`: references are streams (one array per reference file, each as long as
 * the hypotheses); per segment the metric's statistics, summed; with `ci` also sacreBLEU's bootstrap (1000
 * resamples, numpy's generator seeded as SACREBLEU_SEED, 12345 by default) and the signature's `bs:` / `seed:`.
 * `sentenceScores`: each line scored alone, as `sacrebleu --sentence-level` (BLEU with the effective order).
 *
 * `readLines(path)`: a file as sacreBLEU reads it (UTF-8, lines split at "\n" only, trailing whitespace stripped
 * with Python's rules); an empty file or bytes that are not UTF-8 are a ScoreInputError naming the file (and line).
 */
import { readFileSync } from "node:fs";
import { Bleu, type BleuOptions } from "./bleu.ts";
import { bootstrapCI } from "./bootstrap.ts";
import { Chrf } from "./chrf.ts";
import { signature, type Score } from "./format.ts";
import type { Metric } from "./metric.ts";
import { pyRstrip } from "./tokenizers.ts";
import { firstInvalidUtf8 } from "../data/formats/common.ts";

/** A problem of the inputs (a file, a line, a name): exit 2 at the command line. */
export class ScoreInputError extends Error {
  exitCode = 2;
}

export const METRIC_NAMES = ["bleu", "chrf", "chrf++"] as const;
export type MetricName = (typeof METRIC_NAMES)[number];
export const isMetricName = (s: string): s is MetricName => (METRIC_NAMES as readonly string[]).includes(s);

/** The metric `name` with sacreBLEU's command-line defaults (`sentence`: BLEU's effective order, as --sentence-level). */
export function makeMetric(name: string, o: { tokenize?: string; spmModel?: string; lowercase?: boolean; sentence?: boolean } = {}): Metric {
  switch (name) {
    case "bleu": {
      const b: BleuOptions = { tokenize: o.tokenize, spmModel: o.spmModel, lowercase: o.lowercase, effectiveOrder: o.sentence };
      return new Bleu(b);
    }
    case "chrf":
      return new Chrf({ lowercase: o.lowercase });
    case "chrf++":
      return new Chrf({ lowercase: o.lowercase, wordOrder: 2 });
    default:
      throw new ScoreInputError(`unknown metric ${JSON.stringify(name)}; choose from ${METRIC_NAMES.join(", ")}`);
  }
}

export interface ScoreResult<S extends Score = Score> {
  score: S;
  signature: string;
}

export const SACREBLEU_DEFAULT_SEED = 12345;
export const CI_RESAMPLES = 1000;

function checkStreams(hyps: string[], refs: string[][]): void {
  if (refs.length === 0) throw new ScoreInputError("no references");
  for (const r of refs)
    if (r.length !== hyps.length) throw new ScoreInputError(`a reference stream has ${r.length} lines, the hypotheses ${hyps.length}`);
}

/** Every segment's statistics (sacreBLEU's _extract_corpus_statistics). */
export function corpusStats(metric: Metric, hyps: string[], refs: string[][]): number[][] {
  checkStreams(hyps, refs);
  return hyps.map((h, i) => metric.segmentStats(metric.preprocess(h), metric.refInfo(refs.map((r) => metric.preprocess(r[i]!)))));
}

function sumStats(stats: number[][], k: number): number[] {
  const out = new Array<number>(k).fill(0);
  for (const s of stats) for (let j = 0; j < k; j++) out[j]! += s[j]!;
  return out;
}

/** The corpus score with its signature; `ci` adds the bootstrap mean and interval (sacreBLEU's --confidence). */
export function corpusScore<S extends Score>(
  metric: Metric<S>,
  hyps: string[],
  refs: string[][],
  o: { ci?: boolean; seed?: number; resamples?: number } = {},
): ScoreResult<S> {
  const stats = corpusStats(metric, hyps, refs);
  const score = metric.fromStats(sumStats(stats, metric.statsLength));
  let bs: { n: number; seed: number } | undefined;
  if (o.ci) {
    bs = { n: o.resamples ?? CI_RESAMPLES, seed: o.seed ?? SACREBLEU_DEFAULT_SEED };
    if (bs.n > 1) {
      const r = bootstrapCI(stats, (s) => metric.fromStats(s, true).score, { seed: bs.seed, resamples: bs.n, f32Score: metric.kind === "chrf" });
      score.ciMean = r.mean;
      score.ci = r.ci;
    }
  }
  return { score, signature: signature(refs.length, metric.signatureFields(), bs) };
}

/** Each line's score alone (sacreBLEU's sentence_score). */
export function sentenceScores<S extends Score>(metric: Metric<S>, hyps: string[], refs: string[][]): ScoreResult<S>[] {
  checkStreams(hyps, refs);
  const sig = signature(refs.length, metric.signatureFields());
  return hyps.map((h, i) => {
    const info = metric.refInfo(refs.map((r) => metric.preprocess(r[i]!)));
    return { score: metric.fromStats(metric.segmentStats(metric.preprocess(h), info)), signature: sig };
  });
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }); // Python's utf-8 keeps a BOM as U+FEFF


/**
 * A text file's lines as sacreBLEU reads them: UTF-8, split at "\n" (a final "\n" ends the last line), each
 * right-stripped of whitespace (Python's `str.rstrip()`). `label` names the file in errors (`--hyp out.txt`).
 */
export function readLines(path: string, label = path): string[] {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : code === "EACCES" ? "permission denied" : (e as Error).message;
    throw new ScoreInputError(`${label}: ${why}`);
  }
  if (buf.length === 0) throw new ScoreInputError(`${label}: the file is empty`);
  const lines: string[] = [];
  let start = 0;
  for (let lineNo = 1; start < buf.length; lineNo++) {
    let end = buf.indexOf(0x0a, start);
    if (end < 0) end = buf.length;
    const bytes = buf.subarray(start, end);
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      const bad = Math.max(0, firstInvalidUtf8(bytes)); // the decoder refused it, so some byte is bad
      throw new ScoreInputError(`${label}:${lineNo}: not UTF-8 (byte 0x${bytes[bad]!.toString(16).padStart(2, "0")} at offset ${start + bad})`);
    }
    lines.push(pyRstrip(text));
    start = end + 1;
  }
  return lines;
}

/**
 * `alignx score --hyp FILE --ref FILE [--ref FILE2 ...] [--metrics bleu,chrf,chrf++] [--tokenize T] [--lc]
 *  [--sentence] [--ci [--seed S]] [--width N] [--json]`: BLEU, chrF and chrF++ exactly as sacreBLEU 2.x computes and
 * prints them (src/eval/): the text lines of `sacrebleu REF... -i HYP -m ... -f text` with their signatures, or its
 * JSON (`-f json`) with --json. --lc lowercases for every metric (sacreBLEU: -lc for BLEU, --chrf-lowercase).
 * --sentence scores each line alone (`--sentence-level`; with --json one JSON object per line); --ci adds the
 * bootstrap confidence interval (`--confidence`, 1000 resamples, numpy's generator seeded with --seed, default
 * 12345 as SACREBLEU_SEED).
 *
 * Every input is read and checked before anything is printed: a missing or empty file, bytes that are not UTF-8
 * (file:line), hypothesis and reference files of different lengths, an unknown metric or tokenizer, an spm tokenizer
 * (spBLEU) without a model or with a file that is not a SentencePiece model (src/data/sentencepiece.ts) → exit 2 with
 * a message naming the file (and line, or byte offset). Nothing is written but stdout.
 */
import {
  alignLines,
  corpusScore,
  formatScore,
  isMetricName,
  isTokenizerName,
  makeMetric,
  METRIC_NAMES,
  pyJsonDumps,
  readLines,
  SACREBLEU_DEFAULT_SEED,
  ScoreInputError,
  scoreJson,
  sentenceScores,
  SPM_TOKENIZERS,
  TOKENIZERS,
  type PyJson,
} from "../eval/index.ts";
import { existsSync, statSync } from "node:fs";
import { listOption, numOption, SEED, UsageError } from "./usage.ts";

export interface ScoreArgs {
  hyp?: unknown;
  ref?: unknown;
  metrics?: unknown;
  tokenize?: unknown;
  spmModel?: unknown;
  lc?: boolean;
  sentence?: boolean;
  ci?: boolean;
  seed?: unknown;
  width?: unknown;
  json?: boolean;
}


/** A JSON value as plain JavaScript (Python floats as numbers), for one-line JSON. */
const plain = (v: PyJson): unknown =>
  typeof v !== "object" ? v : Array.isArray(v) ? v.map(plain) : "float" in v && typeof v.float === "number" ? v.float : Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));

export function score(o: ScoreArgs): number {
  const str = (flag: string, v: unknown): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== "string" || v === "") throw new UsageError(`score: --${flag} needs a value`);
    return v;
  };
  const hyp = str("hyp", o.hyp);
  if (hyp === undefined) throw new UsageError("score: --hyp FILE is required (see alignx score --help)");
  const refs = (o.ref === undefined ? [] : Array.isArray(o.ref) ? o.ref : [o.ref]).map((r) => str("ref", r)!);
  if (refs.length === 0) throw new UsageError("score: --ref FILE is required, once per reference file (see alignx score --help)");
  const metrics = [...new Set(listOption("score", "metrics", o.metrics) ?? ["bleu"])];
  for (const m of metrics)
    if (!isMetricName(m)) throw new UsageError(`score: --metrics: unknown metric ${JSON.stringify(m)}; choose from ${METRIC_NAMES.join(", ")}`);
  const tokenize = str("tokenize", o.tokenize) ?? "13a";
  if (!isTokenizerName(tokenize))
    throw new UsageError(`score: --tokenize: unknown tokenizer ${JSON.stringify(tokenize)}; choose one of ${TOKENIZERS.join(", ")}${tokenize.endsWith("-mecab") ? " (ja-mecab / ko-mecab are not supported)" : ""}`);
  const spmModel = str("spm-model", o.spmModel);
  if (spmModel !== undefined && !SPM_TOKENIZERS.has(tokenize)) throw new UsageError(`score: --spm-model applies only to --tokenize spm, flores101 or flores200 (got --tokenize ${tokenize})`);
  if (spmModel !== undefined && (!existsSync(spmModel) || !statSync(spmModel).isFile())) throw new UsageError(`score: --spm-model ${spmModel}: no such file`);
  if (o.sentence && o.ci) throw new UsageError("score: --ci is not available with --sentence (as in sacreBLEU: the interval is a corpus statistic)");
  const seed = numOption("score", "seed", o.seed, SEED);
  if (seed !== undefined && !o.ci) throw new UsageError("score: --seed applies only with --ci");
  const width = numOption("score", "width", o.width, { integer: true, min: 0, max: 10 }) ?? 1;

  // The metrics first (an spm tokenizer fails here), then every file, before anything is printed.
  const built = metrics
    .toSorted((a, b) => (METRIC_NAMES as readonly string[]).indexOf(a) - (METRIC_NAMES as readonly string[]).indexOf(b))
    .map((m) => {
      try {
        return makeMetric(m, { tokenize, spmModel, lowercase: o.lc, sentence: o.sentence });
      } catch (e) {
        throw new UsageError(`score: ${(e as Error).message}`);
      }
    });
  const read = (path: string, label: string): string[] => {
    try {
      return readLines(path, label);
    } catch (e) {
      if (e instanceof ScoreInputError) throw new UsageError(`score: ${e.message}`);
      throw e;
    }
  };
  const hyps = read(hyp, `--hyp ${hyp}`);
  const refLines = refs.map((r) => {
    const lines = read(r, `--ref ${r}`);
    if (lines.length !== hyps.length) {
      const where = lines.length < hyps.length ? `line ${lines.length + 1} of --hyp ${hyp} has no reference line` : `line ${hyps.length + 1} of --ref ${r} has no hypothesis line`;
      throw new UsageError(`score: --ref ${r} has ${lines.length} lines but --hyp ${hyp} has ${hyps.length} (${where})`);
    }
    return lines;
  });

  const out: string[] = [];
  if (o.sentence) {
    for (const m of built)
      for (const [i, r] of sentenceScores(m, hyps, refLines).entries())
        out.push(o.json ? JSON.stringify({ line: i + 1, ...(plain(scoreJson(r.score, width, r.signature)) as object) }) : formatScore(r.score, width, r.signature));
  } else {
    const results = built.map((m) => corpusScore(m, hyps, refLines, { ci: o.ci, seed: seed ?? SACREBLEU_DEFAULT_SEED }));
    if (o.json) {
      const docs = results.map((r) => pyJsonDumps(scoreJson(r.score, width, r.signature)));
      out.push(docs.length === 1 ? docs[0]! : `[\n${docs.join(",\n")}\n]`);
    } else out.push(...alignLines(results.map((r) => formatScore(r.score, width, r.signature))));
  }
  process.stdout.write(`${out.join("\n")}\n`);
  return 0;
}

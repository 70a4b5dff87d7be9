/**
 * The translation evaluation of `alignx eval` (../shared/ALIGNX.md "Evaluation in the paper"): every direction
 * of a FLORES set translated by the model (src/eval/translate.ts), scored, written and reported.
 *
 *   const report = await runTranslationEval(model, tok, { out, set, directions: [["eng", "deu"], ["deu", "eng"]], ... });
 *
 * Per direction src→tgt:
 *   - BLEU and chrF++ of the hypotheses against the tgt sentences, by this project's sacreBLEU (src/eval/score.ts,
 *     the library `alignx score` runs): corpus level, one reference, sacreBLEU's defaults. BLEU's tokenizer is
 *     the one sacreBLEU picks when told the target language (`-l src-tgt`): `zh` for Chinese, `13a` otherwise
 *     (sacreBLEU's `ja-mecab` for Japanese is not available here: 13a, which scores unsegmented scripts (Japanese,
 *     Thai) poorly; chrF++ is the comparable number there), unless `tokenize` names one for every direction;
 *   - the off-target rate: the share of hypotheses that src/eval/lid.ts does not detect as tgt (and, as the
 *     detector's error floor, the same share among the references);
 *   - tokens/s: new tokens (each up to and including its EOS) per second of generation, and the direction's
 *     wall seconds (prompts, generation, scoring).
 * Files in `out`: `ref.<lang>.txt` (the sentences scored against, one per line: FLORES's first N lines),
 * `hyp.<src>-<tgt>.txt` (one hypothesis per line, in the order of the references) as each direction finishes,
 * and `report.json` last; each written atomically (src/io writeBytesAtomic), so a report.json is always whole
 * and a run that stopped early has none. `alignx score --hyp OUT/hyp.eng-deu.txt --ref OUT/ref.deu.txt
 * [--tokenize zh]` gives the report's BLEU.
 */
import { join } from "node:path";
import { languageName } from "../data/languages.ts";
import type { SftTokenizer } from "../data/prompt.ts";
import { writeBytesAtomic } from "../io/index.ts";
import type { LlamaModel } from "../nn/llama.ts";
import type { FloresSet } from "./flores_set.ts";
import { EvalInputError } from "./flores_set.ts";
import { LID_NAME, offTargetRate, type LanguageDetector } from "./lid.ts";
import type { Metric } from "./metric.ts";
import { corpusScore, makeMetric } from "./score.ts";
import { translate, translationPromptIds, type DecodingTokenizer } from "./translate.ts";

/** The pivot of the en-x / x-en directions. */
export const PIVOT = "eng";

export const DIRECTION_MODES = ["en-x", "x-en", "all"] as const;
export type DirectionMode = (typeof DIRECTION_MODES)[number];

/** `--directions`: "en-x", "x-en", "en-x,x-en" or "all". */
export function parseDirections(spec: string): DirectionMode[] {
  const items = [...new Set(spec.split(",").map((s) => s.trim().toLowerCase()))];
  for (const it of items)
    if (!(DIRECTION_MODES as readonly string[]).includes(it)) throw new EvalInputError(`--directions: unknown ${JSON.stringify(it)}; give en-x, x-en, en-x,x-en or all`);
  if (items.includes("all") && items.length > 1) throw new EvalInputError("--directions: all already holds en-x and x-en; give it alone");
  return items as DirectionMode[];
}

/** The ordered (src, tgt) pairs of `modes` over `langs` (canonical codes): en-x first, then x-en; all: every ordered pair. */
export function evalDirections(langs: readonly string[], modes: readonly DirectionMode[]): [string, string][] {
  const out: [string, string][] = [];
  if (modes.includes("all")) {
    for (const a of langs) for (const b of langs) if (a !== b) out.push([a, b]);
    return out;
  }
  const others = langs.filter((l) => l !== PIVOT);
  if (modes.includes("en-x")) for (const x of others) out.push([PIVOT, x]);
  if (modes.includes("x-en")) for (const x of others) out.push([x, PIVOT]);
  return out;
}

/** BLEU's tokenizer for a target language, as sacreBLEU chooses it from `-l` (see the module comment). */
export function autoBleuTokenizer(tgt: string): string {
  return tgt === "zho" || tgt === "zho_Hant" ? "zh" : "13a";
}

/** The BLEU and chrF++ metrics of a direction; an unknown tokenizer, or an spm one without a usable --spm-model, is an EvalInputError. */
export function directionMetrics(tgt: string, o: { tokenize?: string; spmModel?: string }): { bleu: Metric; chrf: Metric; tokenize: string } {
  const tokenize = o.tokenize === undefined || o.tokenize === "auto" ? autoBleuTokenizer(tgt) : o.tokenize;
  try {
    return { bleu: makeMetric("bleu", { tokenize, spmModel: o.spmModel }), chrf: makeMetric("chrf++"), tokenize };
  } catch (e) {
    throw new EvalInputError(`--tokenize ${tokenize}: ${(e as Error).message}`);
  }
}

export interface DirectionResult {
  src: string;
  tgt: string;
  n: number;
  bleu: number;
  "chrf++": number;
  /** Share of hypotheses not detected as tgt; null when the detector does not know tgt. */
  off_target: number | null;
  /** The same share among the references: the detector's own error. */
  off_target_ref: number | null;
  tokens_per_s: number;
  new_tokens: number;
  /** Hypotheses cut at --max-new-tokens (no EOS). */
  hit_max_new_tokens: number;
  /** Generation seconds, and the direction's wall seconds. */
  generation_seconds: number;
  seconds: number;
  tokenize: string;
  bleu_signature: string;
  chrf_signature: string;
  /** File names in the output directory. */
  hyp: string;
  ref: string;
}

export interface Averages {
  directions: number;
  bleu: number;
  "chrf++": number;
  off_target: number | null;
  tokens_per_s: number;
}

export interface TranslationReport {
  format: "alignx-eval";
  version: 1;
  model: string;
  data: string;
  split: string;
  langs: string[];
  n: number;
  batch_size: number;
  max_new_tokens: number;
  prompt: string;
  decoding: string;
  lid: { detector: string; candidates: string[] };
  results: DirectionResult[];
  averages: Record<string, Averages>;
  signatures: { bleu: string[]; "chrf++": string[] };
  /** What a reader of the numbers should know (tokenizers that are not sacreBLEU's choice, languages the detector lacks). */
  notes: string[];
  seconds: number;
  created: string;
}

export interface TranslationEvalOptions {
  out: string;
  set: FloresSet;
  directions: readonly (readonly [string, string])[];
  batchSize: number;
  maxNewTokens: number;
  eosTokenIds: readonly number[];
  padTokenId?: number;
  /** BLEU's tokenizer for every direction; default "auto" (per target language). */
  tokenize?: string;
  spmModel?: string;
  lid: LanguageDetector;
  /** The model directory as the user named it (for the report). */
  model: string;
  log?: (line: string) => void;
}

export const hypFileName = (src: string, tgt: string) => `hyp.${src}-${tgt}.txt`;
export const refFileName = (lang: string) => `ref.${lang}.txt`;
const lines = (xs: readonly string[]) => xs.map((x) => `${x}\n`).join("");

/** Run every direction, write the files and report.json (last). Returns the report. */
export async function runTranslationEval(model: LlamaModel, tok: SftTokenizer & DecodingTokenizer, o: TranslationEvalOptions): Promise<TranslationReport> {
  const log = o.log ?? (() => {});
  const t0 = performance.now();
  const { set } = o;
  const metrics = new Map(o.directions.map(([, tgt]) => [tgt, directionMetrics(tgt, o)]));
  for (const tgt of new Set(o.directions.map(([, t]) => t))) await writeBytesAtomic(join(o.out, refFileName(tgt)), lines(set.sentences[tgt]!));
  const results: DirectionResult[] = [];
  for (const [src, tgt] of o.directions) {
    const d0 = performance.now();
    const sources = set.sentences[src]!;
    const refs = set.sentences[tgt]!;
    const prompts = sources.map((s) => translationPromptIds(tok, src, tgt, s));
    const r = await translate(model, tok, prompts, { batchSize: o.batchSize, maxNewTokens: o.maxNewTokens, eosTokenIds: o.eosTokenIds, padTokenId: o.padTokenId });
    const m = metrics.get(tgt)!;
    const bleu = corpusScore(m.bleu, r.outputs, [refs]);
    const chrf = corpusScore(m.chrf, r.outputs, [refs]);
    const hyp = hypFileName(src, tgt);
    await writeBytesAtomic(join(o.out, hyp), lines(r.outputs));
    const res: DirectionResult = {
      src,
      tgt,
      n: r.outputs.length,
      bleu: bleu.score.score,
      "chrf++": chrf.score.score,
      off_target: offTargetRate(o.lid, r.outputs, tgt),
      off_target_ref: offTargetRate(o.lid, refs, tgt),
      tokens_per_s: r.seconds > 0 ? r.newTokens / r.seconds : 0,
      new_tokens: r.newTokens,
      hit_max_new_tokens: r.hitMaxNewTokens,
      generation_seconds: r.seconds,
      seconds: (performance.now() - d0) / 1000,
      tokenize: m.tokenize,
      bleu_signature: bleu.signature,
      chrf_signature: chrf.signature,
      hyp,
      ref: refFileName(tgt),
    };
    results.push(res);
    log(`  ${src}→${tgt}: BLEU ${res.bleu.toFixed(1)}, chrF++ ${res["chrf++"].toFixed(1)}, off-target ${pct(res.off_target)}, ${res.tokens_per_s.toFixed(1)} tok/s, ${res.seconds.toFixed(1)} s`);
  }
  const averages: Record<string, Averages> = {};
  const group = (name: string, rs: DirectionResult[]) => {
    if (rs.length === 0) return;
    const offs = rs.map((r) => r.off_target).filter((x): x is number => x !== null);
    const gen = rs.reduce((s, r) => s + r.generation_seconds, 0);
    averages[name] = {
      directions: rs.length,
      bleu: mean(rs.map((r) => r.bleu)),
      "chrf++": mean(rs.map((r) => r["chrf++"])),
      off_target: offs.length ? mean(offs) : null,
      tokens_per_s: gen > 0 ? rs.reduce((s, r) => s + r.new_tokens, 0) / gen : 0,
    };
  };
  group("en-x", results.filter((r) => r.src === PIVOT));
  group("x-en", results.filter((r) => r.tgt === PIVOT));
  group("all", results);
  const notes: string[] = [];
  const tgts = [...new Set(results.map((r) => r.tgt))];
  if (tgts.includes("jpn") && results.some((r) => r.tgt === "jpn" && r.tokenize === "13a"))
    notes.push("Japanese targets: BLEU with 13a (sacreBLEU -l x-ja would use ja-mecab, which is not available here); compare chrF++ or spBLEU");
  if (tgts.includes("tha") && results.some((r) => r.tgt === "tha" && r.tokenize === "13a")) notes.push("Thai targets: BLEU with 13a on unsegmented text is near 0 for any system; compare chrF++ or spBLEU");
  const undetected = tgts.filter((t) => results.some((r) => r.tgt === t && r.off_target === null));
  if (undetected.length) notes.push(`off-target: ${LID_NAME} does not detect ${undetected.join(", ")} (n/a)`);
  const report: TranslationReport = {
    format: "alignx-eval",
    version: 1,
    model: o.model,
    data: set.dir,
    split: set.split.slice(1),
    langs: set.langs,
    n: set.n,
    batch_size: o.batchSize,
    max_new_tokens: o.maxNewTokens,
    prompt: "Alpaca input template, instruction \"Translate the following sentences from {Source} to {Target}.\" (src/data/prompt.ts, as packed for training)",
    decoding: `greedy, KV cache, stop at EOS (${o.eosTokenIds.join(", ") || "none"}) or ${o.maxNewTokens} new tokens`,
    lid: { detector: LID_NAME, candidates: [...o.lid.candidates] },
    results,
    averages,
    signatures: { bleu: [...new Set(results.map((r) => r.bleu_signature))], "chrf++": [...new Set(results.map((r) => r.chrf_signature))] },
    notes,
    seconds: (performance.now() - t0) / 1000,
    created: new Date().toISOString(),
  };
  await writeBytesAtomic(join(o.out, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const pct = (x: number | null) => (x === null ? "n/a" : `${(100 * x).toFixed(1)}%`);

/** The report as a text table: one row per direction, then the averages. */
export function translationTable(r: TranslationReport): string {
  const head = ["direction", "n", "BLEU", "chrF++", "off-target", "tok/s", "seconds"];
  const rows: string[][] = r.results.map((d) => [
    `${d.src}→${d.tgt}`,
    String(d.n),
    d.bleu.toFixed(1),
    d["chrf++"].toFixed(1),
    pct(d.off_target),
    d.tokens_per_s.toFixed(1),
    d.seconds.toFixed(1),
  ]);
  const avg: string[][] = Object.entries(r.averages).map(([k, a]) => [`average ${k}`, String(a.directions), a.bleu.toFixed(1), a["chrf++"].toFixed(1), pct(a.off_target), a.tokens_per_s.toFixed(1), ""]);
  const all = [head, ...rows, ...avg];
  const w = head.map((_, j) => Math.max(...all.map((row) => row[j]!.length)));
  const fmt = (row: string[]) => row.map((c, j) => (j === 0 ? c.padEnd(w[j]!) : c.padStart(w[j]!))).join("  ").trimEnd();
  const rule = w.map((x) => "-".repeat(x)).join("  ");
  const names = [...new Set(r.results.flatMap((d) => [d.src, d.tgt]))].map((l) => `${l} ${languageName(l)}`).join(", ");
  return [
    fmt(head),
    rule,
    ...rows.map(fmt),
    ...(avg.length ? [rule, ...avg.map(fmt)] : []),
    "",
    `${r.split} of ${r.data}, first ${r.n} lines; ${names}`,
    ...r.signatures.bleu.map((s) => `BLEU|${s}`),
    ...r.signatures["chrf++"].map((s) => `chrF2++|${s}`),
    `off-target: ${r.lid.detector} among ${r.lid.candidates.join(", ")}`,
    ...r.notes.map((n) => `note: ${n}`),
  ].join("\n");
}

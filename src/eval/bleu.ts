/**
 * BLEU as sacreBLEU 2.x computes it (sacrebleu/metrics/bleu.py): per segment the statistics
 * `[hyp_len, closest_ref_len, correct_1..N, total_1..N]` (n-gram counts clipped by the maximum count over the
 * references; the closest reference length, the shorter on a tie), summed over the corpus, then the brevity
 * penalty and the geometric mean of the precisions with the chosen smoothing (`exp` by default; `floor`, `add-k`,
 * `none`) and, for sentence-level scores, the effective order.
 *
 * `fromStats(stats, f32)`: with `f32` the statistics are numpy float32 (sacreBLEU's bootstrap) and the precisions
 * are computed in float32 as NumPy 2 does (a Python float times a float32 scalar is a float32).
 */
import { pyFixed, type Score } from "./format.ts";
import { getTokenizer, pyLower, pyRstrip, pySplit, type Tokenizer } from "./tokenizers.ts";
import type { Metric } from "./metric.ts";

export type SmoothMethod = "exp" | "floor" | "add-k" | "none";
const SMOOTH_DEFAULTS: Record<SmoothMethod, number | undefined> = { none: undefined, floor: 0.1, "add-k": 1, exp: undefined };

export interface BleuOptions {
  /** 13a (default), intl, zh, char, none (spm / flores101 / flores200 need `spmModel`). */
  tokenize?: string;
  spmModel?: string;
  lowercase?: boolean;
  smoothMethod?: SmoothMethod;
  smoothValue?: number;
  maxNgramOrder?: number;
  effectiveOrder?: boolean;
}

export interface BleuScore extends Score {
  counts: number[];
  totals: number[];
  precisions: number[];
  bp: number;
  sysLen: number;
  refLen: number;
}

interface RefInfo {
  ngrams: Map<string, number>;
  lens: number[];
}

/** n-grams (1..maxOrder) of a tokenized line, keyed by their tokens joined with a space, and the token count. */
function wordNgrams(line: string, maxOrder: number): [Map<string, number>, number] {
  const toks = pySplit(line);
  const out = new Map<string, number>();
  for (let n = 1; n <= maxOrder; n++)
    for (let i = 0; i + n <= toks.length; i++) {
      const k = `${n}\u0000${toks.slice(i, i + n).join(" ")}`;
      out.set(k, (out.get(k) ?? 0) + 1);
    }
  return [out, toks.length];
}

const f32 = Math.fround;

/** Python's `math.log` floored: sacreBLEU's my_log. */
const myLog = (x: number): number => (x === 0 ? -9999999999 : Math.log(x));

/** sacreBLEU's BLEU.compute_bleu on summed statistics. `asF32`: the statistics are float32 (the bootstrap). */
export function computeBleu(
  correctIn: ArrayLike<number>,
  totalIn: ArrayLike<number>,
  sysLen: number,
  refLen: number,
  o: { smoothMethod?: SmoothMethod; smoothValue?: number; effectiveOrder?: boolean; maxNgramOrder?: number } = {},
  asF32 = false,
): Omit<BleuScore, "name" | "verbose"> {
  const method = o.smoothMethod ?? "none";
  const smoothValue = o.smoothValue ?? SMOOTH_DEFAULTS[method] ?? 0;
  const N = o.maxNgramOrder ?? 4;
  const correct = Array.from(correctIn), total = Array.from(totalIn);
  const r = asF32 ? f32 : (x: number) => x;
  let bp = 1.0;
  if (sysLen < refLen) bp = sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0.0;
  const precisions = new Array<number>(N).fill(0);
  const done = (score: number) => ({ score, counts: correct, totals: total, precisions, bp, sysLen, refLen });
  if (!correct.some((c) => c !== 0)) return done(0.0);
  let smoothMteval = 1.0;
  let effOrder = N;
  for (let n = 1; n <= N; n++) {
    if (method === "add-k" && n > 1) {
      correct[n - 1] = r(correct[n - 1]! + smoothValue);
      total[n - 1] = r(total[n - 1]! + smoothValue);
    }
    if (total[n - 1] === 0) break;
    if (o.effectiveOrder) effOrder = n;
    if (correct[n - 1] === 0) {
      if (method === "exp") {
        smoothMteval *= 2;
        precisions[n - 1] = r(100 / r(smoothMteval * total[n - 1]!));
      } else if (method === "floor") precisions[n - 1] = r((100 * smoothValue) / total[n - 1]!);
    } else precisions[n - 1] = r(r(100 * correct[n - 1]!) / total[n - 1]!);
  }
  let sum = 0;
  for (const p of precisions.slice(0, effOrder)) sum += myLog(p);
  return done(bp * Math.exp(sum / effOrder));
}

/** BLEU's verbose part: `P1/P2/P3/P4 (BP = 1.000 ratio = 1.000 hyp_len = 11 ref_len = 11)`. */
export function bleuVerbose(s: Omit<BleuScore, "name" | "verbose">): string {
  const ratio = s.refLen ? s.sysLen / s.refLen : 0;
  return `${s.precisions.map((p) => pyFixed(p, 1)).join("/")} (BP = ${pyFixed(s.bp, 3)} ratio = ${pyFixed(ratio, 3)} hyp_len = ${s.sysLen} ref_len = ${s.refLen})`;
}

export class Bleu implements Metric<BleuScore, RefInfo> {
  readonly kind = "bleu";
  readonly tokenizer: Tokenizer;
  readonly lowercase: boolean;
  readonly smoothMethod: SmoothMethod;
  readonly smoothValue: number | undefined;
  readonly maxNgramOrder: number;
  readonly effectiveOrder: boolean;

  constructor(o: BleuOptions = {}) {
    this.tokenizer = getTokenizer(o.tokenize ?? "13a", { spmModel: o.spmModel });
    this.lowercase = o.lowercase ?? false;
    this.smoothMethod = o.smoothMethod ?? "exp";
    if (!(this.smoothMethod in SMOOTH_DEFAULTS)) throw new Error(`unknown BLEU smoothing ${JSON.stringify(this.smoothMethod)}`);
    this.smoothValue = o.smoothValue;
    this.maxNgramOrder = o.maxNgramOrder ?? 4;
    this.effectiveOrder = o.effectiveOrder ?? false;
  }

  get statsLength(): number {
    return 2 + 2 * this.maxNgramOrder;
  }

  preprocess(s: string): string {
    if (this.lowercase) s = pyLower(s);
    return this.tokenizer(pyRstrip(s));
  }

  refInfo(refs: string[]): RefInfo {
    let ngrams: Map<string, number> | undefined;
    const lens: number[] = [];
    for (const ref of refs) {
      const [these, len] = wordNgrams(ref, this.maxNgramOrder);
      lens.push(len);
      if (!ngrams) ngrams = these;
      else for (const [k, c] of these) ngrams.set(k, Math.max(ngrams.get(k) ?? 0, c));
    }
    return { ngrams: ngrams ?? new Map(), lens };
  }

  segmentStats(hyp: string, info: RefInfo): number[] {
    const [hypNgrams, hypLen] = wordNgrams(hyp, this.maxNgramOrder);
    let closestDiff = -1, refLen = -1;
    for (const len of info.lens) {
      const diff = Math.abs(hypLen - len);
      if (closestDiff === -1 || diff < closestDiff) {
        closestDiff = diff;
        refLen = len;
      } else if (diff === closestDiff && len < refLen) refLen = len;
    }
    const N = this.maxNgramOrder;
    const correct = new Array<number>(N).fill(0), total = new Array<number>(N).fill(0);
    for (const [k, c] of hypNgrams) {
      const n = Number(k.slice(0, k.indexOf("\u0000"))) - 1;
      total[n]! += c;
      const rc = info.ngrams.get(k);
      if (rc !== undefined) correct[n]! += Math.min(c, rc);
    }
    return [hypLen, refLen, ...correct, ...total];
  }

  fromStats(stats: ArrayLike<number>, asF32 = false): BleuScore {
    const N = this.maxNgramOrder;
    const a = Array.from(stats);
    const s = computeBleu(a.slice(2, 2 + N), a.slice(2 + N), Math.trunc(a[0]!), Math.trunc(a[1]!), this, asF32);
    return { name: "BLEU", verbose: bleuVerbose(s), ...s };
  }

  signatureFields(): [string, string][] {
    let smooth: string = this.smoothMethod;
    const def = SMOOTH_DEFAULTS[this.smoothMethod];
    if (def !== undefined) smooth += `[${pyFixed(this.smoothValue ?? def, 2)}]`;
    return [
      ["case", this.lowercase ? "lc" : "mixed"],
      ["eff", this.effectiveOrder ? "yes" : "no"],
      ["tok", this.tokenizer.signature],
      ["smooth", smooth],
    ];
  }
}

/**
 * chrF and chrF++ as sacreBLEU 2.x computes them (sacrebleu/metrics/chrf.py): character n-grams of orders
 * 1..charOrder (whitespace removed unless `whitespace`), for chrF++ also word n-grams 1..wordOrder of the words
 * with one leading or trailing ASCII punctuation mark split off; per segment `[hyp, ref, match]` counts per order
 * against the reference with the best F-score; the corpus score from the summed counts by the effective-order
 * average of precision and recall (sacreBLEU's default), or chrF++.py's epsilon smoothing (`epsSmoothing`).
 *
 * `fromStats(stats, f32)`: float32 statistics and NumPy 2 scalar arithmetic (sacreBLEU's bootstrap): every
 * operation with a float32 operand rounds to float32; Python floats and ints alone stay double.
 */
import type { Score } from "./format.ts";
import type { Metric } from "./metric.ts";
import { codePoints, pyLower, pySplit } from "./tokenizers.ts";

export interface ChrfOptions {
  charOrder?: number;
  /** 0: chrF (default); 2: chrF++. */
  wordOrder?: number;
  beta?: number;
  lowercase?: boolean;
  whitespace?: boolean;
  epsSmoothing?: boolean;
}

type Counter = Map<string, number>;

const PUNCTS = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");

function count(items: string[]): Counter {
  const c: Counter = new Map();
  for (const x of items) c.set(x, (c.get(x) ?? 0) + 1);
  return c;
}

function charNgrams(line: string, maxOrder: number, whitespace: boolean): Counter[] {
  const cps = codePoints(whitespace ? line : pySplit(line).join(""));
  const out: Counter[] = [];
  for (let n = 1; n <= maxOrder; n++) {
    const grams: string[] = [];
    for (let i = 0; i + n <= cps.length; i++) grams.push(cps.slice(i, i + n).join(""));
    out.push(count(grams));
  }
  return out;
}

const wordNgrams = (tokens: string[], n: number): Counter => {
  const grams: string[] = [];
  for (let i = 0; i + n <= tokens.length; i++) grams.push(tokens.slice(i, i + n).join(" "));
  return count(grams);
};

/** chrF++'s word split: one punctuation mark off the end, else off the start, of each word longer than one character. */
export function removePunctuation(sent: string): string[] {
  const out: string[] = [];
  for (const w of pySplit(sent)) {
    const cps = codePoints(w);
    if (cps.length === 1) out.push(w);
    else if (PUNCTS.has(cps.at(-1)!)) out.push(cps.slice(0, -1).join(""), cps.at(-1)!);
    else if (PUNCTS.has(cps[0]!)) out.push(cps[0]!, cps.slice(1).join(""));
    else out.push(w);
  }
  return out;
}

function matchStats(hyp: Counter, ref: Counter): [number, number, number] {
  let match = 0, hypCount = 0, refCount = 0;
  for (const [ng, c] of hyp) {
    hypCount += c;
    const r = ref.get(ng);
    if (r !== undefined) match += Math.min(c, r);
  }
  for (const c of ref.values()) refCount += c;
  return [ref.size > 0 ? hypCount : 0, refCount, match];
}

/** A number and whether NumPy holds it as a float32 scalar. */
type Num = [number, boolean];
const op = (a: Num, b: Num, f: (x: number, y: number) => number): Num => {
  const isF32 = a[1] || b[1];
  const v = f(a[0], b[0]);
  return [isF32 ? Math.fround(v) : v, isF32];
};
const mul = (a: Num, b: Num) => op(a, b, (x, y) => x * y);
const add = (a: Num, b: Num) => op(a, b, (x, y) => x + y);
const div = (a: Num, b: Num) => op(a, b, (x, y) => x / y);
const py = (x: number): Num => [x, false];

/** sacreBLEU's CHRF._compute_f_score. */
export function chrfFScore(stats: ArrayLike<number>, order: number, beta: number, epsSmoothing: boolean, asF32 = false): number {
  const eps = py(1e-16);
  let score: Num = py(0.0);
  let effectiveOrder = 0;
  const factor = py(beta ** 2);
  let avgPrec: Num = py(0.0), avgRec: Num = py(0.0);
  for (let i = 0; i < order; i++) {
    const nHyp: Num = [stats[3 * i]!, asF32], nRef: Num = [stats[3 * i + 1]!, asF32], nMatch: Num = [stats[3 * i + 2]!, asF32];
    const prec = nHyp[0] > 0 ? div(nMatch, nHyp) : eps;
    const rec = nRef[0] > 0 ? div(nMatch, nRef) : eps;
    const denom = add(mul(factor, prec), rec);
    score = add(score, denom[0] > 0 ? div(mul(mul(py(1 + factor[0]), prec), rec), denom) : eps);
    if (nHyp[0] > 0 && nRef[0] > 0) {
      avgPrec = add(avgPrec, prec);
      avgRec = add(avgRec, rec);
      effectiveOrder++;
    }
  }
  if (epsSmoothing) return div(mul(py(100), score), py(order))[0];
  if (effectiveOrder === 0) avgPrec = avgRec = py(0.0);
  else {
    avgPrec = div(avgPrec, py(effectiveOrder));
    avgRec = div(avgRec, py(effectiveOrder));
  }
  if (add(avgPrec, avgRec)[0] !== 0) {
    let s = mul(mul(py(1 + factor[0]), avgPrec), avgRec);
    s = div(s, add(mul(factor, avgPrec), avgRec));
    return mul(py(100), s)[0];
  }
  return 0.0;
}

export class Chrf implements Metric<Score, Counter[][]> {
  readonly kind = "chrf";
  readonly charOrder: number;
  readonly wordOrder: number;
  readonly beta: number;
  readonly lowercase: boolean;
  readonly whitespace: boolean;
  readonly epsSmoothing: boolean;

  constructor(o: ChrfOptions = {}) {
    this.charOrder = o.charOrder ?? 6;
    this.wordOrder = o.wordOrder ?? 0;
    this.beta = o.beta ?? 2;
    this.lowercase = o.lowercase ?? false;
    this.whitespace = o.whitespace ?? false;
    this.epsSmoothing = o.epsSmoothing ?? false;
  }

  get order(): number {
    return this.charOrder + this.wordOrder;
  }

  get statsLength(): number {
    return 3 * this.order;
  }

  /** `chrF2`, `chrF2++`. */
  get name(): string {
    return `chrF${this.beta}${"+".repeat(this.wordOrder)}`;
  }

  preprocess(s: string): string {
    return this.lowercase ? pyLower(s) : s;
  }

  private ngrams(line: string): Counter[] {
    const out = charNgrams(line, this.charOrder, this.whitespace);
    if (this.wordOrder > 0) {
      const words = removePunctuation(line);
      for (let n = 1; n <= this.wordOrder; n++) out.push(wordNgrams(words, n));
    }
    return out;
  }

  refInfo(refs: string[]): Counter[][] {
    return refs.map((r) => this.ngrams(r));
  }

  segmentStats(hyp: string, info: Counter[][]): number[] {
    const hypNgrams = this.ngrams(hyp);
    let best: number[] = [], bestF = -1.0;
    for (const ref of info) {
      const stats: number[] = [];
      for (let i = 0; i < hypNgrams.length && i < ref.length; i++) stats.push(...matchStats(hypNgrams[i]!, ref[i]!));
      const f = chrfFScore(stats, this.order, this.beta, this.epsSmoothing);
      if (f > bestF) {
        bestF = f;
        best = stats;
      }
    }
    return best;
  }

  fromStats(stats: ArrayLike<number>, asF32 = false): Score {
    return { name: this.name, score: chrfFScore(stats, this.order, this.beta, this.epsSmoothing, asF32), verbose: "" };
  }

  signatureFields(): [string, string][] {
    return [
      ["case", this.lowercase ? "lc" : "mixed"],
      ["eff", this.epsSmoothing ? "no" : "yes"],
      ["nc", String(this.charOrder)],
      ["nw", String(this.wordOrder)],
      ["space", this.whitespace ? "yes" : "no"],
    ];
  }
}

/**
 * How sacreBLEU prints a score, byte for byte: Python's `f"{x:.Nf}"` (correctly rounded, ties to even), the
 * `NAME|SIGNATURE = SCORE (μ = MEAN ± CI) VERBOSE` line, its JSON (`json.dumps(d, indent=1, ensure_ascii=False)`
 * with Python's float repr) and the alignment of several lines on their `=`.
 */

/** The sacreBLEU release whose scores, signatures and output these modules reproduce (the goldens' version). */
export const SACREBLEU_VERSION = "2.6.0";

/** Python's `f"{x:.{width}f}"`: correct rounding with ties to even (JavaScript's toFixed rounds ties up). */
export function pyFixed(x: number, width: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  const plain = x.toFixed(width);
  // A tie needs the exact binary value to end in a 5 at digit width+1; toFixed(100) shows it exactly enough.
  const exact = Math.abs(x).toFixed(Math.min(100, width + 40));
  const dot = exact.indexOf(".");
  const rest = exact.slice(dot + 1 + width);
  if (!/^50*$/.test(rest)) return plain;
  const kept = exact.slice(0, dot + 1 + width).replace(/\.$/, "");
  const last = kept.at(-1)!;
  if (Number(last) % 2 === 1) return plain; // toFixed rounded away from zero: to the even neighbour
  return (x < 0 ? "-" : "") + kept;
}

/** Python's `repr(float)`: shortest round-trip digits, `.0` for integral values, exponent below 1e-4 / from 1e16. */
export function pyFloatRepr(v: number): string {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
  if (v === 0) return Object.is(v, -0) ? "-0.0" : "0.0";
  const a = Math.abs(v);
  if (a < 1e-4 || a >= 1e16) {
    const [m, e] = v.toExponential().split("e") as [string, string];
    const n = Number(e);
    return `${m}e${n < 0 ? "-" : "+"}${String(Math.abs(n)).padStart(2, "0")}`;
  }
  const s = String(v);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/** A value of a JSON document written as Python's json.dumps(indent=1, ensure_ascii=False) writes it. */
export type PyJson = string | number | { float: number } | PyJson[] | { [k: string]: PyJson };

/** Python's `json.dumps(value, indent=1, ensure_ascii=False)`; `{ float: x }` is a Python float (`100.0`). */
export function pyJsonDumps(v: PyJson, level = 0): string {
  const pad = (n: number) => " ".repeat(n);
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") return String(v);
  if (Array.isArray(v)) {
    if (v.length === 0) return "[]";
    return `[\n${v.map((x) => pad(level + 1) + pyJsonDumps(x, level + 1)).join(",\n")}\n${pad(level)}]`;
  }
  if ("float" in v && Object.keys(v).length === 1 && typeof v.float === "number") return pyFloatRepr(v.float);
  const keys = Object.keys(v);
  if (keys.length === 0) return "{}";
  return `{\n${keys.map((k) => `${pad(level + 1)}${JSON.stringify(k)}: ${pyJsonDumps((v as Record<string, PyJson>)[k]!, level + 1)}`).join(",\n")}\n${pad(level)}}`;
}

/** One score as sacreBLEU's Score holds it. */
export interface Score {
  /** `BLEU`, `chrF2`, `chrF2++`. */
  name: string;
  score: number;
  /** BLEU's `P1/P2/P3/P4 (BP = … ratio = … hyp_len = … ref_len = …)`; empty for chrF. */
  verbose: string;
  /** Bootstrap mean and half-width of the 95% interval (`--ci`); absent otherwise. */
  ciMean?: number;
  ci?: number;
}

/** sacreBLEU's Score.format(width, score_only=False, signature): the text line. */
export function formatScore(s: Score, width: number, signature: string): string {
  let sc = pyFixed(s.score, width);
  if (s.ciMean !== undefined && s.ciMean > 0) sc += ` (μ = ${pyFixed(s.ciMean, width)} ± ${pyFixed(s.ci!, width)})`;
  let line = `${signature ? `${s.name}|${signature}` : s.name} = ${sc}`;
  if (s.verbose) line += ` ${s.verbose}`;
  return line;
}

/** The object sacreBLEU's Score.format(..., is_json=True) dumps. */
export function scoreJson(s: Score, width: number, signature: string): { [k: string]: PyJson } {
  const d: { [k: string]: PyJson } = { name: s.name, score: { float: Number(pyFixed(s.score, width)) }, signature };
  if (s.ciMean !== undefined && s.ciMean > 0) {
    const m = pyFixed(s.ciMean, width), c = pyFixed(s.ci!, width);
    d.confidence_mean = { float: Number(m) };
    d.confidence_var = { float: Number(c) };
    d.confidence = `μ = ${m} ± ${c}`;
  }
  if (s.verbose) d.verbose_score = s.verbose;
  for (const kv of signature.split("|")) {
    const i = kv.indexOf(":");
    d[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return d;
}

/** sacreBLEU's print_single_results for text: several lines right-aligned on their first `=`. */
export function alignLines(lines: string[]): string[] {
  if (lines.length <= 1) return lines;
  const lens = lines.map((l) => l.indexOf("=") - 1);
  const w = Math.max(...lens);
  return lines.map((l, i) => l.slice(0, lens[i]).padStart(w) + l.slice(lens[i]));
}

/** sacreBLEU's signature `nrefs:N|bs:…|seed:…|<metric fields>|version:…`. */
export function signature(nrefs: number | "var", fields: [string, string][], bootstrap?: { n: number; seed: number }): string {
  const pairs: [string, string][] = [["nrefs", String(nrefs)]];
  if (bootstrap) pairs.push(["bs", String(bootstrap.n)], ["seed", String(bootstrap.seed)]);
  pairs.push(...fields, ["version", SACREBLEU_VERSION]);
  return pairs.map(([k, v]) => `${k}:${v}`).join("|");
}

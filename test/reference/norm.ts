/**
 * float64 reference of the norm launchers (src/kernels/norm.ts), same names and io/option shapes; inputs are
 * Float64Array, outputs are returned, each with its per-element magnitude (the sum of |terms|) for tolerances.
 * x is [rows, d], w and b are [d], gout is [rows, d], stats is [rows, 2] = (mean, rstd) per row.
 *
 *   normForward     mean = mean_j x (layernorm) or 0 (rmsnorm), rstd = 1 / sqrt(mean_j (x - mean)^2 + eps),
 *                   xhat = (x - mean) * rstd, y = xhat * W + B with W = w (or 1 + w with unitOffset), B = b or 0.
 *   normDx          gw = gout * W; dx = rstd * (gw - [layernorm] mean_j gw - xhat * mean_j (gw * xhat)),
 *                   from the stats given (the forward's); with io.acc (the launcher's `accumulate`), acc + that.
 *   normParamGrads  dw = sum over rows of gout * xhat, db = sum over rows of gout.
 *   addRmsnormForward  sum = x + res, then normForward of sum (rmsnorm, no bias).
 */
import type { NormOptions } from "../../src/kernels/norm.ts";

export type { NormKind, NormOptions } from "../../src/kernels/norm.ts";

const wEff = (w: Float64Array, j: number, o: NormOptions) => (o.unitOffset ? 1 + w[j]! : w[j]!);

/** y [rows, d] with yMag = |xhat W| + |B|, and stats [rows, 2] = (mean, rstd), statsMag = (mean_j |x|, rstd). */
export function normForward(io: { x: Float64Array; w: Float64Array; b?: Float64Array }, o: NormOptions) {
  const { rows, d } = o;
  if (o.bias !== (io.b !== undefined)) throw new Error(`reference normForward: bias ${o.bias} but ${io.b ? "a" : "no"} bias`);
  const y = new Float64Array(rows * d);
  const yMag = new Float64Array(rows * d);
  const stats = new Float64Array(rows * 2);
  const statsMag = new Float64Array(rows * 2);
  for (let r = 0; r < rows; r++) {
    const x = io.x.subarray(r * d, (r + 1) * d);
    let mean = 0;
    let absMean = 0;
    if (o.kind === "layernorm") {
      for (let j = 0; j < d; j++) (mean += x[j]!), (absMean += Math.abs(x[j]!));
      mean /= d;
      absMean /= d;
    }
    let v = 0;
    for (let j = 0; j < d; j++) v += (x[j]! - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / d + o.eps);
    stats[2 * r] = mean;
    stats[2 * r + 1] = rstd;
    statsMag[2 * r] = absMean;
    statsMag[2 * r + 1] = rstd;
    for (let j = 0; j < d; j++) {
      const t = (x[j]! - mean) * rstd * wEff(io.w, j, o);
      const b = io.b ? io.b[j]! : 0;
      y[r * d + j] = t + b;
      yMag[r * d + j] = Math.abs(t) + Math.abs(b);
    }
  }
  return { y, yMag, stats, statsMag };
}

/** dx [rows, d] (+ io.acc), with dxMag = rstd (|gw| + [layernorm] mean_j |gw| + |xhat| mean_j |gw xhat|) (+ |acc|). */
export function normDx(io: { x: Float64Array; w: Float64Array; gout: Float64Array; stats: Float64Array; acc?: Float64Array }, o: NormOptions) {
  const { rows, d } = o;
  const dx = new Float64Array(rows * d);
  const dxMag = new Float64Array(rows * d);
  const center = o.kind === "layernorm";
  for (let r = 0; r < rows; r++) {
    const [mean, rstd] = [io.stats[2 * r]!, io.stats[2 * r + 1]!];
    let mgw = 0, mgwx = 0, mgwAbs = 0, mgwxAbs = 0;
    for (let j = 0; j < d; j++) {
      const xhat = (io.x[r * d + j]! - mean) * rstd;
      const gw = io.gout[r * d + j]! * wEff(io.w, j, o);
      mgw += gw / d;
      mgwx += (gw * xhat) / d;
      mgwAbs += Math.abs(gw) / d;
      mgwxAbs += Math.abs(gw * xhat) / d;
    }
    for (let j = 0; j < d; j++) {
      const xhat = (io.x[r * d + j]! - mean) * rstd;
      const gw = io.gout[r * d + j]! * wEff(io.w, j, o);
      const a = io.acc ? io.acc[r * d + j]! : 0;
      dx[r * d + j] = a + rstd * (gw - (center ? mgw : 0) - xhat * mgwx);
      dxMag[r * d + j] = Math.abs(a) + rstd * (Math.abs(gw) + (center ? mgwAbs : 0) + Math.abs(xhat) * mgwxAbs);
    }
  }
  return { dx, dxMag };
}

/** dw [d] and db [d] (db only with o.bias), with the sums of |terms|. */
export function normParamGrads(
  io: { x: Float64Array; gout: Float64Array; stats: Float64Array },
  o: NormOptions,
): { dw: Float64Array; dwMag: Float64Array; db?: Float64Array; dbMag?: Float64Array } {
  const { rows, d } = o;
  const [dw, dwMag, db, dbMag] = [0, 1, 2, 3].map(() => new Float64Array(d)) as [Float64Array, Float64Array, Float64Array, Float64Array];
  for (let r = 0; r < rows; r++) {
    const [mean, rstd] = [io.stats[2 * r]!, io.stats[2 * r + 1]!];
    for (let j = 0; j < d; j++) {
      const g = io.gout[r * d + j]!;
      const xhat = (io.x[r * d + j]! - mean) * rstd;
      dw[j] += g * xhat;
      dwMag[j] += Math.abs(g * xhat);
      db[j] += g;
      dbMag[j] += Math.abs(g);
    }
  }
  return o.bias ? { dw, dwMag, db, dbMag } : { dw, dwMag };
}

/** sum = x + res (with sumMag = |x| + |res|), then normForward of sum: y, yMag, stats, statsMag. */
export function addRmsnormForward(io: { x: Float64Array; res: Float64Array; w: Float64Array }, o: NormOptions) {
  if (o.kind !== "rmsnorm" || o.bias) throw new Error("reference addRmsnormForward: rmsnorm without a bias only");
  const sum = io.x.map((v, i) => v + io.res[i]!);
  const sumMag = io.x.map((v, i) => Math.abs(v) + Math.abs(io.res[i]!));
  return { sum, sumMag, ...normForward({ x: sum, w: io.w }, o) };
}

/**
 * float64 reference of the reduce launchers (src/kernels/reduce.ts), same names and io/option shapes; inputs
 * are Float64Array, outputs are returned (with the sum of |terms| where a tolerance needs a scale). Every
 * reduction views its input as [outer, n, inner] and its result as [outer, inner]:
 *
 *   reduceAxis    dst[o, j] = scale * sum_k src[o, k, j]  (dstMag = scale * sum_k |src[o, k, j]|), or with
 *                 combine "max" scale * max_k src[o, k, j], NaN when any term is NaN (torch.amax); n = 0 gives
 *                 0 for a sum and -Infinity for a max.
 *   reduceExpand  dst[o, k, j] = scale * src[o, j].
 *   maxBackward   dx[o, k, j] = gout[o, j] / count[o, j] where x[o, k, j] equals m[o, j] (NaN equals NaN), else
 *                 0; count = the number of such k (ties share the gradient evenly, as torch.amax).
 */
import type { ReduceOptions } from "../../src/kernels/reduce.ts";

export type { ReduceCombine, ReduceOptions } from "../../src/kernels/reduce.ts";

type Dims = { outer: number; n: number; inner: number };

export function reduceAxis(io: { src: Float64Array }, o: ReduceOptions) {
  const { outer, n, inner, scale } = o;
  const max = o.combine === "max";
  const dst = new Float64Array(outer * inner);
  const dstMag = new Float64Array(outer * inner);
  for (let a = 0; a < outer; a++)
    for (let j = 0; j < inner; j++) {
      let acc = max ? -Infinity : 0;
      let mag = 0;
      for (let k = 0; k < n; k++) {
        const v = io.src[(a * n + k) * inner + j]!;
        acc = max ? (Number.isNaN(v) || Number.isNaN(acc) ? NaN : Math.max(acc, v)) : acc + v;
        mag += Math.abs(v);
      }
      dst[a * inner + j] = scale * acc;
      dstMag[a * inner + j] = max ? Math.abs(scale * acc) : Math.abs(scale) * mag;
    }
  return { dst, dstMag };
}

export function reduceExpand(io: { src: Float64Array }, o: Dims & { scale: number }) {
  const { outer, n, inner, scale } = o;
  const dst = new Float64Array(outer * n * inner);
  for (let a = 0; a < outer; a++) for (let k = 0; k < n; k++) for (let j = 0; j < inner; j++) dst[(a * n + k) * inner + j] = scale * io.src[a * inner + j]!;
  return { dst };
}

export function maxBackward(io: { x: Float64Array; m: Float64Array; gout: Float64Array }, o: Dims) {
  const { outer, n, inner } = o;
  const dx = new Float64Array(outer * n * inner);
  for (let a = 0; a < outer; a++)
    for (let j = 0; j < inner; j++) {
      const m = io.m[a * inner + j]!;
      const hit = (k: number) => Object.is(io.x[(a * n + k) * inner + j], m) || io.x[(a * n + k) * inner + j] === m;
      let count = 0;
      for (let k = 0; k < n; k++) if (hit(k)) count++;
      for (let k = 0; k < n; k++) if (hit(k)) dx[(a * n + k) * inner + j] = io.gout[a * inner + j]! / count;
    }
  return { dx };
}

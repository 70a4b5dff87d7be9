/**
 * float64 reference of the rope launchers (src/kernels/rope.ts), same names and io/option shapes; pos is
 * Int32Array ([B, T], or [T] shared by the batch), invFreq and the data Float64Array, outputs returned. HF
 * LLaMA's rotate-half convention: for each (b, h, t) row of dh = 2 * half and i < half, with the float32 angle
 * a = fround(fround(pos) * invFreq[i]) (what the kernel computes) rotated by the float64 cos and sin:
 *
 *   ropeForward   out[i] = x[i] cos a - x[i + half] sin a,  out[i + half] = x[i + half] cos a + x[i] sin a,
 *                 x read in `layout`, out written in `outLayout`.
 *   ropeBackward  dx = gout rotated by -a, read in `outLayout`, written in `layout` (the transpose of forward).
 *
 * Each output's magnitude is |x[i]| + |x[i + half]|.
 */
import type { RopeDims, RopeLayout } from "../../src/kernels/rope.ts";

export type { RopeDims, RopeLayout } from "../../src/kernels/rope.ts";

/** Flat index of (b, h, t, k) in a layout. */
function at(l: RopeLayout, o: RopeDims, b: number, h: number, t: number, k: number): number {
  return l === "bhtd" ? ((b * o.h + h) * o.t + t) * o.dh + k : ((b * o.t + t) * o.h + h) * o.dh + k;
}

function rotate(X: Float64Array, pos: Int32Array, invFreq: Float64Array, o: RopeDims, from: RopeLayout, to: RopeLayout, dir: 1 | -1) {
  const half = o.dh / 2;
  const out = new Float64Array(X.length);
  const mag = new Float64Array(X.length);
  for (let b = 0; b < o.b; b++)
    for (let h = 0; h < o.h; h++)
      for (let t = 0; t < o.t; t++) {
        const p = pos[o.batchedPositions ? b * o.t + t : t]!;
        for (let i = 0; i < half; i++) {
          const a = Math.fround(Math.fround(p) * invFreq[i]!);
          const [c, s] = [Math.cos(a), dir * Math.sin(a)];
          const x1 = X[at(from, o, b, h, t, i)]!;
          const x2 = X[at(from, o, b, h, t, i + half)]!;
          const [o1, o2] = [at(to, o, b, h, t, i), at(to, o, b, h, t, i + half)];
          out[o1] = x1 * c - x2 * s;
          out[o2] = x2 * c + x1 * s;
          mag[o1] = mag[o2] = Math.abs(x1) + Math.abs(x2);
        }
      }
  return { out, mag };
}

export function ropeForward(io: { x: Float64Array; pos: Int32Array; invFreq: Float64Array }, o: RopeDims) {
  const { out, mag } = rotate(io.x, io.pos, io.invFreq, o, o.layout, o.outLayout, 1);
  return { out, outMag: mag };
}

export function ropeBackward(io: { gout: Float64Array; pos: Int32Array; invFreq: Float64Array }, o: RopeDims) {
  const { out, mag } = rotate(io.gout, io.pos, io.invFreq, o, o.outLayout, o.layout, -1);
  return { dx: out, dxMag: mag };
}

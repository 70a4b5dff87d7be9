/**
 * float64 reference of src/kernels/cast.ts: f32 ↔ f16 conversions and the f16 gradient accumulation, written in
 * float64 arithmetic on values (independent of the kernels' integer code on bits, and of src/io/half.ts).
 *
 *   f32ToF16({ x32 }, { n })        → { y16 }   y16[i] = roundHalf(x32[i])
 *   f16ToF32({ x16 }, { n })        → { y32 }   y32[i] = halfValue(x16[i])  (exact)
 *   accumulateF16({ src, dst }, { n }) → { dst } dst[i] = roundHalf(fround(halfValue(dst[i]) + halfValue(src[i])))
 *                                                (each half widened exactly, the sum rounded to f32, then to f16)
 * Halves go in as bit patterns (Uint16Array: every pattern, NaNs included, is an input) and come out as float64
 * values (−0 kept as −0; NaN as NaN).
 *
 * binary16: 1 sign bit, 5 exponent bits (bias 15), 10 fraction bits. A normal half is (1024 + m) · 2^(e − 25),
 * a subnormal m · 2^−24; e = 31 is ±inf (m = 0) or NaN. roundHalf(x): the half nearest x, ties to the even
 * fraction, the spacing being 2^−24 below 2^−14 and 2^(k − 10) in [2^k, 2^(k+1)); from 65520 (the midpoint
 * between the largest half, 65504, and 2^16) up it is ±inf. The rounding of every test that needs f16 values
 * (toHalf) comes from here.
 */

/** The float64 value of the half nearest x (round to nearest, ties to even); ±Infinity beyond; NaN stays NaN. */
export function roundHalf(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x; // NaN, ±inf, ±0
  const a = Math.abs(x);
  let k = Math.floor(Math.log2(a));
  if (2 ** k > a) k--;
  else if (2 ** (k + 1) <= a) k++;
  const ulp = 2 ** (Math.max(k, -14) - 10);
  const q = a / ulp; // exact: a division by a power of two
  const f = Math.floor(q);
  const rest = q - f;
  const r = rest > 0.5 || (rest === 0.5 && f % 2 === 1) ? f + 1 : f;
  const v = r * ulp > 65504 ? Infinity : r * ulp;
  return x < 0 ? -v : v;
}

/** Values rounded to f16 (round to nearest even), as float64. */
export function toHalf(a: ArrayLike<number>): Float64Array {
  return Float64Array.from(a, roundHalf);
}

/** The value of a half's bit pattern. */
export function halfValue(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (e === 0 ? m * 2 ** -24 : (1024 + m) * 2 ** (e - 25));
}

/** The bit pattern of a value that is a half (roundHalf's results); NaN gives the quiet NaN 0x7e00. */
export function halfBits(v: number): number {
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === Infinity) return sign | 0x7c00;
  if (a < 2 ** -14) return sign | (a * 2 ** 24);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const m = a * 2 ** (10 - e) - 1024;
  if (!Number.isInteger(m) || e > 15) throw new Error(`halfBits: ${v} is not a half`);
  return sign | ((e + 15) << 10) | m;
}

/** y16 = x32 rounded to f16. */
export function f32ToF16(io: { x32: ArrayLike<number> }, o: { n: number }): { y16: Float64Array } {
  const y16 = new Float64Array(o.n);
  for (let i = 0; i < o.n; i++) y16[i] = roundHalf(io.x32[i]!);
  return { y16 };
}

/** y32 = the values of the halves x16 (bit patterns). */
export function f16ToF32(io: { x16: Uint16Array }, o: { n: number }): { y32: Float64Array } {
  const y32 = new Float64Array(o.n);
  for (let i = 0; i < o.n; i++) y32[i] = halfValue(io.x16[i]!);
  return { y32 };
}

/** dst + src through f32, rounded to f16 (halves as bit patterns in, values out). */
export function accumulateF16(io: { src: Uint16Array; dst: Uint16Array }, o: { n: number }): { dst: Float64Array } {
  const dst = new Float64Array(o.n);
  for (let i = 0; i < o.n; i++) dst[i] = roundHalf(Math.fround(halfValue(io.dst[i]!) + halfValue(io.src[i]!)));
  return { dst };
}

/**
 * f32 bit patterns around every rounding boundary of the positive and negative halves: the exact midpoint between
 * each pair of neighbouring finite halves (an f32: halves have 11 significant bits) and one f32 ulp either side;
 * then ±0, ±inf, NaNs (quiet, signalling, negative), f32 subnormals, the largest finite f32, and the overflow
 * threshold 65520 (= 0x477ff000) with its neighbours.
 */
export function roundingBoundaries(): Uint32Array {
  const out: number[] = [];
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let h = 0; h < 0x7c00; h++) {
    f[0] = (halfValue(h) + halfValue(h + 1)) / 2;
    const mid = u[0]!;
    for (const b of [mid - 1, mid, mid + 1]) out.push(b, (b | 0x80000000) >>> 0);
  }
  out.push(0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffc00123, 0x00000001, 0x807fffff, 0x7f7fffff);
  out.push(0x477fefff, 0x477ff000, 0x477ff001, 0xc77ff000);
  return Uint32Array.from(out);
}

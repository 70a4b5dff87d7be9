/**
 * 16-bit float conversions, bit-exact and independent of the host's Float16Array support:
 *   - IEEE binary16 (safetensors F16): f16 → f32 is exact; f32 → f16 rounds to nearest, ties to even,
 *     including into and out of the subnormal range; overflow gives ±inf (65520 and above round to inf,
 *     as IEEE and PyTorch do).
 *   - bfloat16 (BF16): the top half of an f32. bf16 → f32 is exact (a shift); f32 → bf16 rounds to
 *     nearest, ties to even, like PyTorch's `.to(torch.bfloat16)`.
 * NaN stays NaN with its sign and the top bits of its payload (the quiet bit is set only where the kept
 * payload would be all zero, which would read as inf), so every f16/bf16 pattern survives
 * f16 → f32 → f16 (and bf16 → f32 → bf16) unchanged, NaN payloads included.
 * Bulk functions take and return typed arrays; f32 data is handled as bits (Uint32Array views), so no
 * value ever passes through a float64 that could canonicalize a NaN.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bits of `x` rounded to f32. */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

/** The f32 whose bits are `b`. */
export function bitsToF32(b: number): number {
  u32[0] = b;
  return f32[0]!;
}

// ---- binary16 -----------------------------------------------------------------------------------------

/** f32 bits → f16 bits, round to nearest even. */
export function f32BitsToF16Bits(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7c00 | (mant >>> 13 || 0x200); // inf; NaN keeps its top payload bits
  const e = exp - 112; // rebias 127 → 15
  if (e >= 0x1f) return sign | 0x7c00; // too large even before rounding
  if (e <= 0) {
    // Subnormal (or zero) result: value = M × 2^(exp-150) = (M >> (14 - e)) × 2^-24 with M the 24-bit
    // significand. Beyond a shift of 24 the value is below half the smallest subnormal: ±0.
    if (e < -10) return sign;
    const m24 = mant | 0x800000;
    const shift = 14 - e; // 14..24
    let h = m24 >>> shift;
    const rem = m24 & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) !== 0)) h++; // h may reach 0x400: the smallest normal, correctly encoded
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // a carry into the exponent is right, up to inf
  return sign | h;
}

/** f16 bits → the f32 value (exact). */
export function f16BitsToF32(h: number): number {
  return bitsToF32(f16BitsToF32Bits(h));
}

/** f16 bits → f32 bits (exact; NaN payloads shifted into place). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal: normalize. mant × 2^-24 with the leading 1 at bit p (0..9) → exponent p - 24.
  const p = 31 - Math.clz32(mant);
  return (sign | ((p - 24 + 127) << 23) | ((mant << (23 - p)) & 0x7fffff)) >>> 0;
}

/** f32 value → f16 bits. */
export function f32ToF16Bits(x: number): number {
  return f32BitsToF16Bits(f32Bits(x));
}

let f16Table: Uint32Array | undefined;
/** f32 bits of every f16 pattern (256 KiB, built on first use): bulk decoding is one lookup per element. */
function table(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32Bits(h);
  }
  return f16Table;
}

/**
 * f16 bits → f32 values. `out` (if given) must have the same length; `src` may alias the upper half of
 * `out`'s bytes (element i is read before any write reaches it), which lets a reader widen in place.
 */
export function f16ToF32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  checkLengths(src.length, out.length);
  const t = table();
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) o[i] = t[src[i]!]!;
  return out;
}

/** f32 values → f16 bits (round to nearest even). */
export function f32ToF16(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  checkLengths(src.length, out.length);
  const s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < s.length; i++) out[i] = f32BitsToF16Bits(s[i]!);
  return out;
}

// ---- bfloat16 -----------------------------------------------------------------------------------------

/** f32 bits → bf16 bits, round to nearest even; NaN keeps its sign and top payload bits. */
export function f32BitsToBf16Bits(b: number): number {
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return (b >>> 16) & 0x7f ? b >>> 16 : (b >>> 16) | 0x40;
  // b + 0x7fff + lsb < 2^32 for every non-NaN b (the largest is -inf, 0xff800000), so no wrap-around.
  return ((b >>> 0) + 0x7fff + ((b >>> 16) & 1)) >>> 16;
}

/** bf16 bits → the f32 value (exact). */
export function bf16BitsToF32(h: number): number {
  return bitsToF32((h << 16) >>> 0);
}

/** f32 value → bf16 bits. */
export function f32ToBf16Bits(x: number): number {
  return f32BitsToBf16Bits(f32Bits(x));
}

/** bf16 bits → f32 values (`src` may alias the upper half of `out`, as for f16ToF32). */
export function bf16ToF32(src: Uint16Array, out = new Float32Array(src.length)): Float32Array {
  checkLengths(src.length, out.length);
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) o[i] = src[i]! << 16;
  return out;
}

/** f32 values → bf16 bits (round to nearest even). */
export function f32ToBf16(src: Float32Array, out = new Uint16Array(src.length)): Uint16Array {
  checkLengths(src.length, out.length);
  const s = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < s.length; i++) out[i] = f32BitsToBf16Bits(s[i]!);
  return out;
}

function checkLengths(a: number, b: number): void {
  if (a !== b) throw new RangeError(`half-precision conversion: source has ${a} elements, destination ${b}`);
}

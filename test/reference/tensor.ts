/**
 * Reference of src/kernels/tensor.ts: a tensor's own storage work. Fills and copies move 32-bit words (given and
 * returned as Uint32Array, so any bit pattern, NaN payloads included, is compared exactly); accumulate is f32
 * arithmetic, returned in float64 (the exact sum: the device's correctly rounded f32 add is its Math.fround).
 *
 *   fillWord({ dst }, { word })         → { dst }   every word of dst (the whole pooled buffer) = word
 *   copyBytes({ src, dst }, { bytes })  → { dst }   dst[k] = src[k] for the bytes / 4 first words; the rest of dst unchanged
 *   accumulate({ src, dst }, { n })     → { dst }   dst[i] + src[i] for i < n
 * (The f16 accumulation is test/reference/cast.ts `accumulateF16`, beside its launcher.)
 */

/** dst (its current words) with every word set to `word`. */
export function fillWord(io: { dst: Uint32Array }, o: { word: number }): { dst: Uint32Array } {
  return { dst: new Uint32Array(io.dst.length).fill(o.word >>> 0) };
}

/** dst (its current words) with its first bytes / 4 words from src. */
export function copyBytes(io: { src: Uint32Array; dst: Uint32Array }, o: { bytes: number }): { dst: Uint32Array } {
  if (o.bytes % 4) throw new Error(`copyBytes: ${o.bytes} bytes is not a multiple of 4`);
  const dst = Uint32Array.from(io.dst);
  dst.set(io.src.subarray(0, o.bytes / 4));
  return { dst };
}

/** dst + src over n elements. */
export function accumulate(io: { src: Float64Array; dst: Float64Array }, o: { n: number }): { dst: Float64Array } {
  const dst = new Float64Array(o.n);
  for (let i = 0; i < o.n; i++) dst[i] = io.dst[i]! + io.src[i]!;
  return { dst };
}

/**
 * Reference of the random launchers (src/kernels/random.ts), same names and io/option shapes, outputs returned:
 * Philox4x32-10 written independently in BigInt, straight from the paper's round function (Salmon et al., SC'11;
 * it reproduces the Random123 known-answer vectors: test/tensor/random.test.ts), and float64 transforms of its
 * words. Element i of a launch is word (i % 4) of the block at counter + floor(i / 4) (a 128-bit add, wrapping)
 * under the 64-bit key; u(w) = (w >> 8) / 2^24.
 *
 *   philoxBits       out[i] = the word (u32)
 *   philoxUniform    out[i] = u(word)
 *   philoxNormal     out[i] = mean + std * z, Box-Muller on each block's word pairs (0, 1) and (2, 3):
 *                    r = sqrt(-2 ln(1 - u(w0))), theta = pi (2 u(w1) - 1), z = (r cos theta, r sin theta)
 *   dropoutForward   out[i] = fround(x[i] * (u(word) < 1 - p ? fround(1 / (1 - p)) : 0))  (p = 1: scale 0)
 *   dropoutBackward  dx[i] = the same with gout for x (the forward's mask, regenerated).
 */
import type { Philox, RandomOptions } from "../../src/kernels/random.ts";

export type { Philox, RandomOptions } from "../../src/kernels/random.ts";

const MASK32 = 0xffffffffn;
const MASK128 = (1n << 128n) - 1n;

/** One Philox4x32-10 block: 4 counter words and 2 key words (little word first) → 4 output words. */
export function philoxBig(counter: readonly bigint[], key: readonly bigint[]): bigint[] {
  const [M0, M1, W0, W1] = [0xd2511f53n, 0xcd9e8d57n, 0x9e3779b9n, 0xbb67ae85n];
  let c = [...counter];
  let k = [...key];
  for (let round = 0; round < 10; round++) {
    if (round > 0) k = [(k[0]! + W0) & MASK32, (k[1]! + W1) & MASK32];
    const p0 = M0 * c[0]!;
    const p1 = M1 * c[2]!;
    c = [(p1 >> 32n) ^ c[1]! ^ k[0]!, p1 & MASK32, (p0 >> 32n) ^ c[3]! ^ k[1]!, p0 & MASK32];
  }
  return c;
}

/** The words of a launch of n elements (a partial last block is generated whole, and cut). */
function words(o: RandomOptions, n = o.n): Uint32Array {
  const base = o.philox.counter.reduce((acc, w, j) => acc | (BigInt(w) << BigInt(32 * j)), 0n);
  const key = o.philox.key.map(BigInt);
  const out = new Uint32Array(n);
  for (let b = 0; 4 * b < n; b++) {
    const ctr = (base + BigInt(b)) & MASK128;
    const w = philoxBig([0n, 32n, 64n, 96n].map((s) => (ctr >> s) & MASK32), key);
    for (let j = 0; j < 4 && 4 * b + j < n; j++) out[4 * b + j] = Number(w[j]!);
  }
  return out;
}

/** The uniform a word gives: its top 24 bits over 2^24, in [0, 1). */
export const unit = (w: number) => (w >>> 8) / 2 ** 24;

export function philoxBits(_io: Record<string, never>, o: RandomOptions) {
  return { out: words(o) };
}

export function philoxUniform(_io: Record<string, never>, o: RandomOptions) {
  return { out: Float64Array.from(words(o), unit) };
}

export function philoxNormal(_io: Record<string, never>, o: RandomOptions & { mean: number; std: number }) {
  const w = words(o, Math.ceil(o.n / 4) * 4); // a partial last block still pairs whole
  const out = new Float64Array(o.n);
  for (let i = 0; i < o.n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - unit(w[i]!)));
    const theta = Math.PI * (2 * unit(w[i + 1]!) - 1);
    out[i] = o.mean + o.std * r * Math.cos(theta);
    if (i + 1 < o.n) out[i + 1] = o.mean + o.std * r * Math.sin(theta);
  }
  return { out };
}

function dropout(src: Float64Array, o: RandomOptions & { p: number }): Float64Array {
  const w = words(o);
  const scale = Math.fround(o.p === 1 ? 0 : 1 / (1 - o.p));
  return src.map((v, i) => Math.fround(v * (unit(w[i]!) < 1 - o.p ? scale : 0)));
}

export function dropoutForward(io: { x: Float64Array }, o: RandomOptions & { p: number }) {
  return { out: dropout(io.x, o) };
}

export function dropoutBackward(io: { gout: Float64Array }, o: RandomOptions & { p: number }) {
  return { dx: dropout(io.gout, o) };
}

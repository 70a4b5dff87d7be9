/**
 * Random-number state: a Generator is a 64-bit seed and a 64-bit offset, nothing else (the GPU side is the
 * counter-based Philox4x32-10 of kernels/random.wgsl, which keeps no state). Every random launch takes the
 * generator's current offset and advances it by one, so
 *   - the same seed replays exactly the same sequence of launches (runs repeat bit for bit);
 *   - each element's value depends only on (seed, offset, element index): not on the launch geometry, the
 *     device, or the tensor's other elements (drawing 10 or 10 000 values gives the same first 10);
 *   - different launches (offsets) are independent streams, each with 2^64 Philox blocks of its own.
 *
 * Mapping onto Philox (also in the kernel header): key = (seed_lo, seed_hi); block b of a launch uses
 * counter (b, 0, offset_lo, offset_hi) as a 128-bit little-word-first integer; element i is word i % 4 of
 * block i / 4.
 *
 * Checkpointing: `getState()` / `setState()` save and restore (seed, offset); `manualSeed` resets both.
 * A CPU Philox (`philox4x32_10`, same arithmetic as the kernel) serves host-side needs such as shuffling.
 */
import { TensorError } from "./shape.ts";

/** PyTorch's default_generator seed, for lack of a better constant. */
export const DEFAULT_SEED = 67280421310721n;

const U64 = (1n << 64n) - 1n;

export interface GeneratorState {
  seed: bigint;
  offset: bigint;
}

/** The Philox words one launch uses: key = the seed, counter base = (0, 0, offset_lo, offset_hi). */
export interface PhiloxLaunch {
  key: [number, number];
  counter: [number, number, number, number];
}

function toU64(what: string, v: number | bigint): bigint {
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) throw new TensorError(`${what} must be an integer (a number up to 2^53, or a bigint), got ${v}`);
    v = BigInt(v);
  }
  if (typeof v !== "bigint") throw new TensorError(`${what} must be an integer, got ${String(v)}`);
  return BigInt.asUintN(64, v); // negative seeds wrap, as torch.manual_seed does
}

export class Generator {
  private _seed: bigint;
  private _offset = 0n;

  constructor(seed: number | bigint = DEFAULT_SEED) {
    this._seed = toU64("Generator seed", seed);
  }

  /** Reset to `seed` (taken modulo 2^64) at offset 0. Returns this. */
  manualSeed(seed: number | bigint): this {
    this._seed = toU64("manualSeed", seed);
    this._offset = 0n;
    return this;
  }

  get seed(): bigint {
    return this._seed;
  }

  /** Launches drawn since the last seeding (the next launch's offset). */
  get offset(): bigint {
    return this._offset;
  }

  getState(): GeneratorState {
    return { seed: this._seed, offset: this._offset };
  }

  setState(s: GeneratorState): this {
    this._seed = toU64("setState seed", s.seed);
    this._offset = toU64("setState offset", s.offset);
    return this;
  }

  /** Take the current offset for one launch and advance past it. */
  nextLaunch(): PhiloxLaunch {
    const off = this._offset;
    this._offset = (this._offset + 1n) & U64;
    return philoxLaunch(this._seed, off);
  }
}

/** The Philox key and counter base of the launch at (seed, offset). */
export function philoxLaunch(seed: bigint, offset: bigint): PhiloxLaunch {
  const lo = (v: bigint) => Number(v & 0xffffffffn);
  const hi = (v: bigint) => Number((v >> 32n) & 0xffffffffn);
  return { key: [lo(seed), hi(seed)], counter: [0, 0, lo(offset), hi(offset)] };
}

/** The generator random ops use when none is passed. */
export const defaultGenerator = new Generator();

/** Seed the default generator (torch.manual_seed). */
export function manualSeed(seed: number | bigint): Generator {
  return defaultGenerator.manualSeed(seed);
}

// ---- CPU Philox4x32-10 (the kernel's arithmetic, in doubles that stay exact) ----------------------------

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High word of the 64-bit product of two u32, from 16-bit pieces (every partial sum < 2^53). */
function mulhi(a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const mid = ((al * bl) >>> 16) + ((al * bh) & 0xffff) + ((ah * bl) & 0xffff);
  return (ah * bh + Math.floor((al * bh) / 65536) + Math.floor((ah * bl) / 65536) + Math.floor(mid / 65536)) >>> 0;
}

/** Philox4x32-10 of one 128-bit counter (4 u32, little word first) under a 64-bit key (2 u32). */
export function philox4x32_10(counter: readonly number[], key: readonly number[]): [number, number, number, number] {
  let [c0, c1, c2, c3] = counter.map((v) => v >>> 0) as [number, number, number, number];
  let [k0, k1] = key.map((v) => v >>> 0) as [number, number];
  for (let r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0, c0), lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2), lo1 = Math.imul(M1, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return [c0, c1, c2, c3];
}

/**
 * mulberry32: the small seeded host PRNG (host-side sampling, shuffles, test inputs), its whole state one u32 in
 * the open so that it can be saved and restored (the data loader's resumable state).
 */
export class Mulberry32 {
  state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** mulberry32 as a function: uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  const g = new Mulberry32(seed);
  return () => g.next();
}

/**
 * One u32 seed from a seed (any safe integer) and small stream numbers (a generation row, a loader stream and
 * epoch): each part is folded in with murmur3's finalizer.
 */
export function mixSeed(seed: number, ...parts: number[]): number {
  const fmix = (h: number) => {
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  };
  let h = (seed ^ Math.floor(seed / 2 ** 32)) >>> 0;
  if (parts.length === 0) return fmix(h);
  for (const p of parts) h = fmix((h ^ Math.imul(p + 1, 0x9e3779b9)) >>> 0);
  return h;
}

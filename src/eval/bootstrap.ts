/**
 * sacreBLEU's bootstrap confidence interval (sacrebleu/significance.py `_bootstrap_resample`, Score.estimate_ci),
 * draw for draw: `np.random.default_rng(seed).choice(n, size=(resamples, n))` picks the segments of every
 * resample, the segment statistics are summed in float32, each resample is scored, and the interval is half the
 * distance between the 2.5% and 97.5% order statistics of the sorted scores (`n // 40` from each end), around their
 * mean.
 *
 * NumPy's generator is reproduced exactly: SeedSequence(seed) (O'Neill's seed_seq hash, pool of four 32-bit
 * words) → generate_state(4, uint64) → PCG64 (128-bit LCG, XSL-RR output; each 64-bit output serves two 32-bit
 * draws, low half first) → Generator.integers' bounded draws by Lemire's method with rejection.
 */

const MASK32 = 0xffffffff;
const imul = (a: number, b: number) => Math.imul(a, b) >>> 0;

/** numpy.random.SeedSequence(seed).generate_state(nWords, uint32) for a seed below 2^32 (no spawn key). */
export function seedSequenceState(seed: number, nWords: number): number[] {
  if (!Number.isInteger(seed) || seed < 0 || seed > MASK32) throw new RangeError(`seed must be an integer in [0, 2^32), got ${seed}`);
  const INIT_A = 0x43b0d7e5, MULT_A = 0x931e8875, INIT_B = 0x8b51f9dd, MULT_B = 0x58f38ded;
  const MIX_MULT_L = 0xca01f9dd, MIX_MULT_R = 0x4973f715;
  let hashConst = INIT_A;
  const hashmix = (value: number): number => {
    value = (value ^ hashConst) >>> 0;
    hashConst = imul(hashConst, MULT_A);
    value = imul(value, hashConst);
    return (value ^ (value >>> 16)) >>> 0;
  };
  const mix = (x: number, y: number): number => {
    const r = (imul(MIX_MULT_L, x) - imul(MIX_MULT_R, y)) >>> 0;
    return (r ^ (r >>> 16)) >>> 0;
  };
  const entropy = [seed >>> 0];
  const pool = [0, 0, 0, 0];
  for (let i = 0; i < pool.length; i++) pool[i] = hashmix(i < entropy.length ? entropy[i]! : 0);
  for (let src = 0; src < pool.length; src++)
    for (let dst = 0; dst < pool.length; dst++) if (src !== dst) pool[dst] = mix(pool[dst]!, hashmix(pool[src]!));
  const out: number[] = [];
  let h = INIT_B;
  for (let i = 0; i < nWords; i++) {
    let v = (pool[i % pool.length]! ^ h) >>> 0;
    h = imul(h, MULT_B);
    v = imul(v, h);
    out.push((v ^ (v >>> 16)) >>> 0);
  }
  return out;
}

const M128 = (1n << 128n) - 1n;
const M64 = (1n << 64n) - 1n;
const PCG_MULT = (0x2360ed051fc65da4n << 64n) | 0x4385df649fccf645n;

/** NumPy's PCG64 bit generator, seeded as `np.random.default_rng(seed)` seeds it. */
export class Pcg64 {
  private state = 0n;
  private inc = 0n;
  private spare: number | undefined;

  constructor(seed: number) {
    const w = seedSequenceState(seed, 8);
    // generate_state(4, uint64): little-endian pairs of 32-bit words; seed = (v0 << 64) | v1, inc = (v2 << 64) | v3
    const u64 = (i: number) => (BigInt(w[2 * i + 1]!) << 32n) | BigInt(w[2 * i]!);
    const initState = (u64(0) << 64n) | u64(1);
    const initSeq = (u64(2) << 64n) | u64(3);
    this.inc = ((initSeq << 1n) | 1n) & M128;
    this.step();
    this.state = (this.state + initState) & M128;
    this.step();
  }

  private step(): void {
    this.state = (this.state * PCG_MULT + this.inc) & M128;
  }

  /** The next 64-bit output (pcg_setseq_128_xsl_rr_64: advance, then output). */
  next64(): bigint {
    this.step();
    const s = this.state;
    const x = ((s >> 64n) ^ s) & M64;
    const rot = s >> 122n;
    return ((x >> rot) | (x << ((64n - rot) & 63n))) & M64;
  }

  /** The next 32-bit output: the low half of a 64-bit output, then its high half. */
  next32(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    const v = this.next64();
    this.spare = Number(v >> 32n);
    return Number(v & 0xffffffffn);
  }
}

/** `x * m` for 32-bit x and m: [high 32 bits, low 32 bits]. */
function mul32(x: number, m: number): [number, number] {
  const xl = x & 0xffff, xh = x >>> 16;
  const a = xl * m, b = xh * m; // both < 2^48: exact
  const bLow = (b % 65536) * 65536;
  const low = a + bLow; // < 2^49: exact
  const high = Math.floor(b / 65536) + Math.floor(low / 4294967296);
  return [high >>> 0, low % 4294967296];
}

/**
 * `np.random.default_rng(seed).choice(n, size=count)` (uniform, with replacement): n ≥ 1 and n < 2^32.
 * Lemire's bounded draw on 32-bit outputs, as numpy's random_bounded_uint64_fill does for ranges below 2^32.
 */
export function numpyChoice(seed: number, n: number, count: number): Uint32Array {
  if (!Number.isInteger(n) || n < 1 || n > MASK32) throw new RangeError(`choice: population must be in [1, 2^32), got ${n}`);
  const out = new Uint32Array(count);
  if (n === 1) return out;
  const rng = new Pcg64(seed);
  const threshold = (2 ** 32 - n) % n;
  for (let i = 0; i < count; i++) {
    let [hi, lo] = mul32(rng.next32(), n);
    if (lo < n) while (lo < threshold) [hi, lo] = mul32(rng.next32(), n);
    out[i] = hi;
  }
  return out;
}

export interface BootstrapResult {
  /** Mean of the resampled scores. */
  mean: number;
  /** Half the width of the 95% interval. */
  ci: number;
  /** The resampled scores, in draw order. */
  scores: number[];
}

/** Python's statistics.mean of floats: the exact sum, rounded once (Shewchuk's partials, as math.fsum). */
function exactMean(xs: number[]): number {
  const partials: number[] = [];
  for (let x of xs) {
    let i = 0;
    for (let y of partials) {
      if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x];
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo !== 0) partials[i++] = lo;
      x = hi;
    }
    partials.length = i;
    partials.push(x);
  }
  let sum = 0;
  for (let i = partials.length - 1; i >= 0; i--) sum += partials[i]!;
  return sum / xs.length;
}

/**
 * sacreBLEU's bootstrap for one system: `stats` are the segments' statistics, `score` turns summed float32
 * statistics into a score (`f32Score`: the score itself is a float32, as chrF's is; BLEU's is a Python float).
 */
export function bootstrapCI(
  stats: number[][],
  score: (summed: Float32Array) => number,
  o: { seed: number; resamples?: number; f32Score?: boolean },
): BootstrapResult {
  const B = o.resamples ?? 1000;
  const n = stats.length, k = stats[0]?.length ?? 0;
  const idx = numpyChoice(o.seed, n, B * n);
  const flat = new Float32Array(n * k);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) flat[i * k + j] = stats[i]![j]!;
  const scores: number[] = [];
  const sum = new Float32Array(k);
  for (let b = 0; b < B; b++) {
    sum.fill(0);
    for (let i = 0; i < n; i++) {
      const row = idx[b * n + i]! * k;
      for (let j = 0; j < k; j++) sum[j] = sum[j]! + flat[row + j]!; // float32 accumulation, row by row
    }
    scores.push(score(sum));
  }
  const sorted = [...scores].sort((a, b) => a - b);
  const lowerIdx = Math.floor(B / 40);
  const lower = sorted[lowerIdx]!, upper = sorted[B - lowerIdx - 1]!;
  const f = o.f32Score ? Math.fround : (x: number) => x;
  return { mean: f(exactMean(sorted)), ci: f(0.5 * f(upper - lower)), scores };
}

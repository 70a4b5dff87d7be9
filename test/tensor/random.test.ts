// Random ops: Philox4x32-10 against the Random123 known-answer vectors (GPU kernel, CPU port, and the
// independent BigInt reference of test/reference/random.ts); rand / randn / randomBits element by element against
// that reference at the Generator's (seed, offset); statistics of 1e5 samples (mean, variance, Kolmogorov-Smirnov,
// chi-square over bins, bit balance, correlation between launches); repeatability; dropout's mask, scaling and
// regenerated backward; and flat memory over a training-style loop. The launchers on partial blocks, carrying
// counters, p = 0 and 1 and a 2-D workgroup grid are rows of test/kernels/rows/random.ts.
import { describe, expect, test } from "bun:test";
import {
  dropout,
  philoxBlocks,
  rand,
  randn,
  randomBits,
} from "../../src/tensor/ops/random.ts";
import { defaultGenerator, Generator, manualSeed, philox4x32_10 } from "../../src/tensor/rng.ts";
import { noGrad, scope, Tensor } from "../../src/tensor/index.ts";
import { expectFlatMemory } from "../helpers.ts";
import * as ref from "../reference/random.ts";
import { expectClose, getGpu, rng, seedOf, uniform, upload } from "./helpers.ts";

// ---- the reference at a Generator's launch ----

/** The launch at (seed, offset), as src/tensor/rng.ts documents it: key = seed, counter = offset * 2^64. */
function launch(seed: bigint, offset: bigint, n: number): ref.RandomOptions {
  const w = (v: bigint, s: bigint) => Number((v >> s) & 0xffffffffn);
  return { n, philox: { key: [w(seed, 0n), w(seed, 32n)], counter: [0, 0, w(offset, 0n), w(offset, 32n)] } };
}
/** Raw words 0..n-1 of the launch (seed, offset). */
const refWords = (seed: bigint, offset: bigint, n: number) => Array.from(ref.philoxBits({}, launch(seed, offset, n)).out);
/** Standard normals 0..n-1 of the launch (seed, offset). */
const refNormals = (seed: bigint, offset: bigint, n: number) => Array.from(ref.philoxNormal({}, { ...launch(seed, offset, n), mean: 0, std: 1 }).out);
const { philoxBig, unit } = ref;

const hex = (ws: ArrayLike<number | bigint>) => Array.from(ws, (w) => w.toString(16).padStart(8, "0")).join(" ");
const words = (s: string) => s.split(" ").map((h) => parseInt(h, 16));

// Random123 tests/kat_vectors, "philox4x32 10" lines: counter, key, expected output.
const KAT: [string, string, string][] = [
  ["00000000 00000000 00000000 00000000", "00000000 00000000", "6627e8d5 e169c58d bc57ac4c 9b00dbd8"],
  ["ffffffff ffffffff ffffffff ffffffff", "ffffffff ffffffff", "408f276d 41c83b0e a20bc7c6 6d5451fd"],
  ["243f6a88 85a308d3 13198a2e 03707344", "a4093822 299f31d0", "d16cfe09 94fdcceb 5001e420 24126ea1"],
];

// ---- statistics helpers ----

function erfc(z: number): number {
  if (z < 0) return 2 - erfc(-z);
  if (z < 2) {
    let term = z, sum = z;
    for (let n = 1; n < 200 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= (-z * z) / n;
      sum += term / (2 * n + 1);
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  let t = z;
  for (let n = 300; n >= 1; n--) t = z + n / 2 / t;
  return Math.exp(-z * z) / Math.sqrt(Math.PI) / t;
}
const Phi = (x: number) => 0.5 * erfc(-x / Math.SQRT2);

function moments(x: ArrayLike<number>): { mean: number; variance: number } {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]!;
  const mean = s / x.length;
  let v = 0;
  for (let i = 0; i < x.length; i++) v += (x[i]! - mean) ** 2;
  return { mean, variance: v / (x.length - 1) };
}

/** Kolmogorov-Smirnov distance between the sample and a continuous CDF. */
function ks(x: ArrayLike<number>, cdf: (v: number) => number): number {
  const s = Float64Array.from(x).sort();
  let d = 0;
  for (let i = 0; i < s.length; i++) {
    const f = cdf(s[i]!);
    d = Math.max(d, (i + 1) / s.length - f, f - i / s.length);
  }
  return d;
}

/** Pearson chi-square of the sample's CDF values over `bins` equal-probability bins. */
function chiSquare(x: ArrayLike<number>, cdf: (v: number) => number, bins = 100): number {
  const count = new Float64Array(bins);
  for (let i = 0; i < x.length; i++) count[Math.min(bins - 1, Math.floor(cdf(x[i]!) * bins))]!++;
  const e = x.length / bins;
  return count.reduce((a, c) => a + (c - e) ** 2 / e, 0);
}
// Critical values at significance 1e-3 (the seeds are fixed, so a pass is stable; these catch bias).
const KS_CRIT = (n: number) => 1.95 / Math.sqrt(n);
const CHI2_99_CRIT = 148.2;

const N = 100_000;

describe("Philox4x32-10", () => {
  test("the BigInt reference and the CPU port reproduce the Random123 known-answer vectors", () => {
    for (const [c, k, want] of KAT) {
      expect(hex(philoxBig(words(c).map(BigInt), words(k).map(BigInt)))).toBe(want);
      expect(hex(philox4x32_10(words(c), words(k)))).toBe(want);
    }
  });

  test("the WGSL kernel reproduces the known-answer vectors, and counters carry across all 128 bits", async () => {
    const gpu = await getGpu();
    for (const [c, k, want] of KAT) {
      using t = philoxBlocks(gpu, 1, words(c), words(k));
      expect(hex(await t.data())).toBe(want);
    }
    // Counter ffffffff x4 plus one wraps to 0: block 1 under key 0 is the all-zero vector.
    using wrap = philoxBlocks(gpu, 2, words(KAT[1]![0]), [0, 0]);
    expect(hex((await wrap.data()).slice(4))).toBe(KAT[0]![2]);
    // Carry out of word 0 only: counter (ffffffff, 7, ...) + 1 = (0, 8, ...).
    const base = [0xffffffff, 7, 0x12345678, 0x9abcdef0];
    using c1 = philoxBlocks(gpu, 2, base, [3, 5]);
    expect(hex((await c1.data()).slice(4))).toBe(hex(philoxBig([0n, 8n, 0x12345678n, 0x9abcdef0n], [3n, 5n])));
  });

  test("the CPU port agrees with the BigInt reference on random counters and keys", () => {
    const r = rng(11);
    const u = () => Math.floor(r() * 2 ** 32);
    for (let i = 0; i < 300; i++) {
      const c = [u(), u(), u(), u()];
      const k = [u(), u()];
      expect(hex(philox4x32_10(c, k))).toBe(hex(philoxBig(c.map(BigInt), k.map(BigInt))));
    }
  });
});

describe("rand, randn, randomBits", () => {
  test("every element equals the reference at (seed, offset, index); odd sizes; 64-bit seeds and offsets", async () => {
    const gpu = await getGpu();
    for (const [seed, offset, shape] of [
      [0n, 0n, [1003]],
      [0xfedcba9876543210n, 5n, [3, 7, 11]],
      [12345n, 0x1_0000_0003n, [2, 259]],
    ] as [bigint, bigint, number[]][]) {
      const n = shape.reduce((a, b) => a * b, 1);
      const gen = new Generator(seed).setState({ seed, offset });
      using bits = randomBits(gpu, shape, gen);
      using u = rand(gpu, shape, gen);
      using z = randn(gpu, shape, gen);
      using zs = randn(gpu, shape, gen, { mean: 2, std: 0.5 });
      expect(gen.offset).toBe(offset + 4n);
      expect(u.shape).toEqual(shape);
      expect(bits.dtype).toBe("u32");
      expect(hex(await bits.data())).toBe(hex(refWords(seed, offset, n)));
      expect(Array.from(await u.toArray())).toEqual(refWords(seed, offset + 1n, n).map(unit));
      const zr = refNormals(seed, offset + 2n, n);
      expectClose(`randn ${seed}`, await z.toArray(), zr, { rtol: 1e-4, atol: 2e-6 });
      const zsr = refNormals(seed, offset + 3n, n).map((v) => 2 + 0.5 * v);
      expectClose(`randn(2, 0.5) ${seed}`, await zs.toArray(), zsr, { rtol: 1e-4, atol: 2e-6 });
    }
  });

  test("tiny radii (u1 within 2^-22 of 1) keep their relative precision; 8000 normals hold no NaN", async () => {
    // Box-Muller's radius sqrt(-2 ln u1) near u1 = 1: a GPU log's absolute error (2^-21 allowed by WGSL)
    // would swamp -ln u1 ~ 3e-7 there. Seed 817, block 74 has (w2 >> 8) = 5 (found with the CPU Philox).
    const gpu = await getGpu();
    using z = randn(gpu, [300], new Generator(817));
    const got = await z.toArray();
    const ref = refNormals(817n, 0n, 300);
    expect(refWords(817n, 0n, 300)[4 * 74 + 2]! >>> 8).toBe(5);
    expect(Math.hypot(ref[4 * 74 + 2]!, ref[4 * 74 + 3]!)).toBeLessThan(1e-3);
    expectClose("randn tiny radius", got.slice(4 * 74 + 2, 4 * 74 + 4), ref.slice(4 * 74 + 2, 4 * 74 + 4), { rtol: 1e-4, atol: 0 });
    using many = randn(gpu, [8000], new Generator(99));
    const m = await many.toArray();
    expect(m.some(Number.isNaN)).toBe(false);
    expectClose("randn 8000", m, refNormals(99n, 0n, 8000), { rtol: 1e-4, atol: 2e-6 });
  });

  test("1e5 uniforms: mean, variance, Kolmogorov-Smirnov and chi-square over 100 bins", async () => {
    const gpu = await getGpu();
    for (const seed of [1, 2, 3]) {
      using t = rand(gpu, [N], new Generator(seed));
      const x = await t.toArray();
      expect(Math.min(...x)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...x)).toBeLessThan(1);
      const m = moments(x);
      expect(Math.abs(m.mean - 0.5)).toBeLessThan(5 * Math.sqrt(1 / 12 / N));
      expect(Math.abs(m.variance - 1 / 12)).toBeLessThan(5 * Math.sqrt((1 / 80 - 1 / 144) / N));
      const cdf = (v: number) => Math.min(1, Math.max(0, v));
      expect(ks(x, cdf)).toBeLessThan(KS_CRIT(N));
      expect(chiSquare(x, cdf)).toBeLessThan(CHI2_99_CRIT);
    }
  });

  test("1e5 normals: mean, variance, kurtosis, Kolmogorov-Smirnov and chi-square against Phi; mean/std applied", async () => {
    const gpu = await getGpu();
    for (const seed of [4, 5]) {
      using t = randn(gpu, [N], new Generator(seed));
      const x = await t.toArray();
      const m = moments(x);
      expect(Math.abs(m.mean)).toBeLessThan(5 / Math.sqrt(N));
      expect(Math.abs(m.variance - 1)).toBeLessThan(5 * Math.sqrt(2 / N));
      const kurt = x.reduce((a, v) => a + v ** 4, 0) / N;
      expect(Math.abs(kurt - 3)).toBeLessThan(5 * Math.sqrt(96 / N));
      expect(Math.max(...x.map(Math.abs))).toBeLessThan(5.78);
      expect(ks(x, Phi)).toBeLessThan(KS_CRIT(N));
      expect(chiSquare(x, Phi)).toBeLessThan(CHI2_99_CRIT);
    }
    using s = randn(gpu, [N], new Generator(6), { mean: -3, std: 0.02 });
    const m = moments(await s.toArray());
    expect(Math.abs(m.mean + 3)).toBeLessThan((5 * 0.02) / Math.sqrt(N));
    expect(Math.abs(Math.sqrt(m.variance) / 0.02 - 1)).toBeLessThan(5 * Math.sqrt(0.5 / N));
  });

  test("raw bits: each of the 32 bit positions is set half the time; consecutive launches are uncorrelated", async () => {
    const gpu = await getGpu();
    const gen = new Generator(7);
    using b = randomBits(gpu, [N], gen);
    const w = await b.data();
    for (let bit = 0; bit < 32; bit++) {
      let ones = 0;
      for (let i = 0; i < N; i++) ones += (w[i]! >>> bit) & 1;
      expect(Math.abs(ones / N - 0.5)).toBeLessThan(5 * 0.5 / Math.sqrt(N));
    }
    using u1 = rand(gpu, [N], gen);
    using u2 = rand(gpu, [N], gen);
    const [a, c] = [await u1.toArray(), await u2.toArray()];
    const ma = moments(a), mc = moments(c);
    let cov = 0;
    for (let i = 0; i < N; i++) cov += (a[i]! - ma.mean) * (c[i]! - mc.mean);
    const corr = cov / (N - 1) / Math.sqrt(ma.variance * mc.variance);
    expect(Math.abs(corr)).toBeLessThan(5 / Math.sqrt(N));
  });

  test("repeatable: same seed gives the same values; each launch advances the offset; prefixes agree", async () => {
    const gpu = await getGpu();
    const g1 = new Generator(42);
    const g2 = new Generator(42);
    using a = rand(gpu, [3, 5], g1);
    using b = rand(gpu, [3, 5], g2);
    expect(Array.from(await a.toArray())).toEqual(Array.from(await b.toArray()));
    expect(g1.offset).toBe(1n);
    using c = rand(gpu, [3, 5], g1); // next offset: different values
    const [av, cv] = [await a.toArray(), await c.toArray()];
    expect(av.filter((v, i) => v === cv[i]).length).toBe(0);
    // Reseeding replays; a longer draw at the same (seed, offset) starts with the shorter one.
    g1.manualSeed(42);
    using d = rand(gpu, [1000], g1);
    expect(Array.from((await d.toArray()).slice(0, 15))).toEqual(Array.from(av));
    // Saved state replays from the middle.
    const st = g2.getState();
    using e1 = randn(gpu, [17], g2);
    g2.setState(st);
    using e2 = randn(gpu, [17], g2);
    expect(Array.from(await e1.toArray())).toEqual(Array.from(await e2.toArray()));
    // Different seeds differ.
    using f = rand(gpu, [3, 5], new Generator(43));
    const fv = await f.toArray();
    expect(fv.filter((v, i) => v === av[i]).length).toBe(0);
    // The default generator, seeded like torch.manual_seed.
    manualSeed(1234);
    using h1 = rand(gpu, [9]);
    manualSeed(1234);
    using h2 = rand(gpu, [9]);
    expect(defaultGenerator.offset).toBe(1n);
    expect(Array.from(await h1.toArray())).toEqual(Array.from(await h2.toArray()));
  });

  test("a 2-D grid of workgroups (x capped at 2) covers every element; empty shapes draw nothing", async () => {
    const gpu = await getGpu();
    await gpu.withPolicy({ grid: { maxX: 2 } }, async () => {
      using t = randomBits(gpu, [4 * 256 * 3 + 5], new Generator(8)); // 769 blocks: 4 workgroups on a 2x2 grid
      expect(hex(await t.data())).toBe(hex(refWords(8n, 0n, 4 * 256 * 3 + 5)));
    });
    using e = rand(gpu, [0, 3], new Generator(1));
    expect(e.size).toBe(0);
  });

  test("bad arguments fail at the call site", async () => {
    const gpu = await getGpu();
    expect(() => rand(gpu, [2, -1])).toThrow("rand: shape [2, -1]");
    expect(() => randn(gpu, [2], defaultGenerator, { std: -1 })).toThrow("randn: mean must be finite and std finite and >= 0");
    expect(() => new Generator(1.5)).toThrow("Generator seed must be an integer");
    expect(() => philoxBlocks(gpu, 1, [0, 0, 0], [0, 0])).toThrow("philoxBlocks: counter must be 4 and key 2 u32 words");
    expect(new Generator(-1n).seed).toBe(0xffffffffffffffffn); // negative seeds wrap modulo 2^64, as in torch
  });
});

describe("dropout", () => {
  /** The reference at (seed, offset): keep where the uniform of the word is < 1 - p; out = src * (keep ? scale : 0) in f32. */
  const refDropout = (src: Float64Array, p: number, seed: bigint, offset: bigint): number[] =>
    Array.from(ref.dropoutForward({ x: src }, { ...launch(seed, offset, src.length), p }).out);

  test("forward and backward use the same mask, regenerated from (seed, offset); nothing is saved", async () => {
    const gpu = await getGpu();
    for (const [p, shape] of [[0.3, [7, 131]], [0.9, [1001]], [0.5, [2, 3, 5]]] as [number, number[]][]) {
      const what = `dropout p=${p} ${JSON.stringify(shape)}`;
      const r = rng(seedOf(what));
      const n = shape.reduce((a, b) => a * b, 1);
      const X = uniform(r, n);
      const R = uniform(r, n);
      const gen = new Generator(777).setState({ seed: 777n, offset: 10n });
      const x = upload(gpu, X, shape, true);
      const y = dropout(x, p, gen);
      expect(y.gradFn!.savedCount).toBe(0);
      expect(Array.from(await y.toArray())).toEqual(refDropout(X, p, 777n, 10n));
      using other = rand(gpu, [5], gen); // the generator moves on before backward: the mask must not
      const Rt = upload(gpu, R, shape);
      y.backward(Rt);
      expect(Array.from(await x.grad!.toArray())).toEqual(refDropout(R, p, 777n, 10n));
      for (const t of [x, y, Rt]) t.release();
    }
  });

  test("1e5 elements: keeps a fraction 1 - p, each exactly where u < 1 - p (CPU Philox words)", async () => {
    const gpu = await getGpu();
    using x = Tensor.ones(gpu, [N]);
    for (const p of [0.1, 0.5, 0.75]) {
      using y = dropout(x, p, new Generator(3));
      const v = await y.toArray();
      const kept = v.filter((e) => e !== 0).length / N;
      expect(Math.abs(kept - (1 - p))).toBeLessThan(5 * Math.sqrt((p * (1 - p)) / N));
      expect(v.every((e) => e === 0 || e === Math.fround(1 / (1 - p)))).toBe(true);
      let wrong = 0;
      for (let b = 0; b < N / 4; b++) {
        const w = philox4x32_10([b, 0, 0, 0], [3, 0]);
        for (let j = 0; j < 4; j++) if ((v[4 * b + j] !== 0) !== unit(w[j]!) < 1 - p) wrong++;
      }
      expect(wrong).toBe(0);
    }
  });

  test("eval mode and p = 0 are the identity (a view, no draw); p = 1 zeroes values and gradients", async () => {
    const gpu = await getGpu();
    const X = [1, -2, 3.5, 0.25, 7];
    const gen = new Generator(1);
    for (const [p, training] of [[0.5, false], [0, true]] as [number, boolean][]) {
      using x = Tensor.fromArray(gpu, X, [5], { requiresGrad: true });
      using y = dropout(x, p, gen, training);
      expect(Array.from(await y.toArray())).toEqual(X);
      using g = Tensor.fromArray(gpu, [1, 2, 3, 4, 5]);
      y.backward(g);
      expect(Array.from(await x.grad!.toArray())).toEqual([1, 2, 3, 4, 5]);
    }
    expect(gen.offset).toBe(0n);
    using x = Tensor.fromArray(gpu, X, [5], { requiresGrad: true });
    using y = dropout(x, 1, gen);
    expect((await y.toArray()).every((v) => v === 0)).toBe(true); // -2 * 0 = -0, as in PyTorch
    using g = Tensor.fromArray(gpu, [1, 2, 3, 4, 5]);
    y.backward(g);
    expect((await x.grad!.toArray()).every((v) => v === 0)).toBe(true);
    // NaN stays NaN through a dropped element (x * mask * scale), as in PyTorch.
    using nan = Tensor.fromArray(gpu, [Number.NaN, Number.NaN]);
    using yn = dropout(nan, 1, gen);
    expect(Array.from(await yn.toArray()).every(Number.isNaN)).toBe(true);
  });

  test("bad arguments fail at the call site", async () => {
    const gpu = await getGpu();
    using x = Tensor.zeros(gpu, [3]);
    expect(() => dropout(x, 1.5)).toThrow("dropout: probability p must be in [0, 1], got 1.5");
    expect(() => dropout(x, Number.NaN)).toThrow("dropout: probability p must be in [0, 1]");
    using i = Tensor.fromArray(gpu, [1, 2, 3], [3], { dtype: "i32" });
    expect(() => dropout(i, 0.5)).toThrow("dropout: Tensor([3], i32) has dtype i32");
  });

  test("50 forward + backward steps with dropout keep live buffers and bytes flat", async () => {
    const gpu = await getGpu();
    const r = rng(9);
    const gen = new Generator(5);
    using x = upload(gpu, uniform(r, 6 * 37), [6, 37]);
    let w = upload(gpu, uniform(r, 37), [37], true);
    await expectFlatMemory(gpu, 50, () => {
      const loss = scope(() => dropout(x.mul(w), 0.2, gen).mul(randn(gpu, [6, 37], gen)).pow(2).mean());
      loss.backward();
      loss.release();
      const nw = scope(() => noGrad(() => w.sub(w.grad!.mulScalar(0.01))));
      w.release();
      w = nw.setRequiresGrad();
    });
    expect(gen.offset).toBe(100n);
    w.release();
  });
});

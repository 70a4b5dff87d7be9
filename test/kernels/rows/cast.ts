// f32ToF16, f16ToF32 and accumulateF16 (src/kernels/cast.ts) against test/reference/cast.ts, bit for bit:
//   f32ToF16: every f16 rounding boundary (each tie between neighbouring halves, and one f32 ulp either side, both
//     signs), ±0, ±inf, NaNs, f32 subnormals, the overflow threshold 65520; random values over the whole half
//     range on odd and even counts (an odd count's last high half is written +0);
//   f16ToF32: all 65536 half bit patterns (NaN keeps its sign and payload), odd counts; with `accumulate`, added
//     into random f32 contents (each half widened exactly, one f32 rounding per sum);
//   accumulateF16: random halves, ties to even, overflow to inf, inf + -inf, NaN, signed zeros, subnormals;
//   a 2-D grid of workgroups (policy grid.maxX 2) for each.
// Half outputs are poisoned with the f16 NaN pair 0x7e007e00 (an f32 NaN's low half would read as +0).
import type { Gpu, PooledBuffer } from "../../../src/gpu/index.ts";
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import { accumulateF16, f16ToF32, f32ToF16 } from "../../../src/kernels/cast.ts";
import * as R from "../../reference/cast.ts";
import { uniform } from "../../tensor/helpers.ts";
import type { Check, LauncherRow, RowIo } from "../harness.ts";

const GRID: PartialPolicy = { grid: { maxX: 2 } };
const EXACT = { rtol: 0, atol: 0 };

/** An output of n packed halves, every half a NaN. */
function output16(gpu: Gpu, io: RowIo, n: number): PooledBuffer {
  const b = io.output(Math.ceil(n / 2));
  gpu.fillBits(b, 0x7e007e00);
  return b;
}

/** The 2 * ceil(n / 2) halves of a packed buffer. */
async function read16(io: RowIo, b: PooledBuffer, n: number): Promise<Uint16Array> {
  const w = await io.read(b, Math.ceil(n / 2));
  return new Uint16Array(w.buffer, w.byteOffset, 2 * w.length);
}

const pack = (halves: Uint16Array) => new Uint32Array(Uint16Array.from({ length: 2 * Math.ceil(halves.length / 2) }, (_, i) => halves[i] ?? 0).buffer);
const f32Of = (bits: Uint32Array) => new Float32Array(bits.buffer, bits.byteOffset, bits.length);

/**
 * Halves read back against reference values: the values (NaN where NaN), and the bits (what the values fix, the
 * sign of a zero, and a NaN as the quiet 0x7e00, with the sign `nanSign(i)`, or either sign where that is not
 * defined: the sign of a NaN made by f32 arithmetic is the device's choice).
 */
function halfChecks(got: Uint16Array, ref: Float64Array, nanSign?: (i: number) => number): Check[] {
  const n = ref.length;
  const bits = got.subarray(0, n);
  const nan = (i: number) => Number.isNaN(ref[i]!);
  return [
    { what: "values", got: Float64Array.from(bits, R.halfValue), ref, opts: EXACT },
    {
      what: "bits",
      got: nanSign ? bits : Uint16Array.from(bits, (b, i) => (nan(i) ? b & 0x7fff : b)),
      ref: Float64Array.from(ref, (v, i) => R.halfBits(v) | (nan(i) && nanSign ? nanSign(i) << 15 : 0)),
      opts: EXACT,
    },
  ];
}

/** n f32 values spread over the whole half range (subnormals to overflow), random signs. */
function spread(r: () => number, n: number): Uint32Array {
  const v = Float32Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1) * 2 ** (-26 + 44 * r()));
  return new Uint32Array(v.buffer);
}

function f32ToF16Row(what: string, make: (r: () => number) => Uint32Array, variant?: PartialPolicy): LauncherRow {
  return {
    family: "cast",
    name: `cast f32ToF16 ${what}${variant ? " grid.maxX=2" : ""}`,
    variant,
    async run(gpu, io, r) {
      const bits = make(r);
      const n = bits.length;
      const y16 = output16(gpu, io, n);
      f32ToF16(gpu, { x32: io.input(bits), y16 }, { n });
      const got = await read16(io, y16, n);
      const ref = R.f32ToF16({ x32: f32Of(bits) }, { n }).y16;
      const checks = halfChecks(got, ref, (i) => bits[i]! >>> 31);
      if (n % 2) checks.push({ what: "padding (the last word's high half)", got: [got[n]!], ref: [0], opts: EXACT });
      return checks;
    },
  };
}

function f16ToF32Row(what: string, make: (r: () => number) => Uint16Array, variant?: PartialPolicy): LauncherRow {
  return {
    family: "cast",
    name: `cast f16ToF32 ${what}${variant ? " grid.maxX=2" : ""}`,
    variant,
    async run(gpu, io, r) {
      const halves = make(r);
      const n = halves.length;
      const y32 = io.output(n);
      f16ToF32(gpu, { x16: io.input(pack(halves)), y32 }, { n });
      const got = await io.read(y32, n);
      const gotBits = new Uint32Array(got.buffer, got.byteOffset, n);
      const ref = R.f16ToF32({ x16: halves }, { n }).y32;
      // Signs (of zeros, and of NaNs: the input's) and NaN payloads (the half's 10 fraction bits, shifted up).
      const sign = Float64Array.from(ref, (v, i) => (Number.isNaN(v) ? halves[i]! >>> 15 : v < 0 || Object.is(v, -0) ? 1 : 0));
      const nan = [...ref.keys()].filter((i) => Number.isNaN(ref[i]!));
      return [
        { what: "values", got, ref, opts: EXACT },
        { what: "signs", got: Float64Array.from(gotBits, (b) => b >>> 31), ref: sign, opts: EXACT },
        { what: "NaN payloads", got: nan.map((i) => (gotBits[i]! >>> 13) & 0x3ff), ref: nan.map((i) => halves[i]! & 0x3ff), opts: EXACT },
      ];
    },
  };
}

function f16ToF32AccumulateRow(n: number, variant?: PartialPolicy): LauncherRow {
  return {
    family: "cast",
    name: `cast f16ToF32 accumulate n=${n}${variant ? " grid.maxX=2" : ""}`,
    variant,
    async run(gpu, io, r) {
      const halves = randomHalves(r, n);
      const prior = Float32Array.from(uniform(r, n, -3, 3)); // not poisoned: the sum reads it
      const y32 = io.input(prior);
      f16ToF32(gpu, { x16: io.input(pack(halves)), y32 }, { n, accumulate: true });
      const got = await io.read(y32, n);
      const widened = R.f16ToF32({ x16: halves }, { n }).y32;
      const ref = Float64Array.from(widened, (v, i) => Math.fround(prior[i]! + v)); // one f32 rounding
      return [{ what: "y32 + widened x16", got, ref, opts: EXACT }];
    },
  };
}

/** Random halves in [-2, 2) (as bit patterns). */
const randomHalves = (r: () => number, n: number) => Uint16Array.from(R.toHalf(uniform(r, n, -2, 2)), R.halfBits);

/** Pairs (dst, src) whose f16 sum is a special case. */
const SPECIAL_SUMS: [number, number][] = [
  [40000, 40000], // overflow: a true inf
  [1, 2 ** -11], // a tie: rounds to even, 1
  [1, 3 * 2 ** -11], // rounds up: 1 + 2^-9
  [65504, 16], // 65520, the overflow threshold: inf
  [65504, -65504],
  [Infinity, -Infinity], // NaN
  [NaN, 1],
  [-0, -0], // -0
  [-0, 0], // +0
  [2 ** -24, 2 ** -24], // subnormals
  [-(2 ** -14), 2 ** -24],
  [Infinity, 1],
  [-Infinity, -65504],
];

function accumulateF16Row(what: string, n: number, special: boolean, variant?: PartialPolicy): LauncherRow {
  return {
    family: "cast",
    name: `cast accumulateF16 ${what}${variant ? " grid.maxX=2" : ""}`,
    variant,
    async run(gpu, io, r) {
      const dstH = randomHalves(r, n);
      const srcH = randomHalves(r, n);
      if (special)
        SPECIAL_SUMS.forEach(([d, s], k) => {
          dstH[k] = R.halfBits(d);
          srcH[k] = R.halfBits(s);
        });
      const dst = io.input(pack(dstH));
      accumulateF16(gpu, { src: io.input(pack(srcH)), dst }, { n });
      const got = await read16(io, dst, n);
      const ref = R.accumulateF16({ src: srcH, dst: dstH }, { n }).dst;
      return halfChecks(got, ref);
    },
  };
}

export const rows: LauncherRow[] = [
  f32ToF16Row("every rounding boundary, subnormals, overflow, NaN", () => R.roundingBoundaries()),
  ...[1, 3, 15, 258, 257].map((n) => f32ToF16Row(`n=${n} over the half range`, (r) => spread(r, n))),
  f32ToF16Row("n=2051 over the half range", (r) => spread(r, 2051), GRID), // 1026 words: 5 workgroups
  f16ToF32Row("all 65536 bit patterns", () => Uint16Array.from({ length: 65536 }, (_, i) => i)),
  ...[1, 3, 7].map((n) => f16ToF32Row(`n=${n}`, (r) => randomHalves(r, n))),
  f16ToF32Row("n=1101", (r) => randomHalves(r, 1101), GRID),
  ...[1, 7, 258].map((n) => f16ToF32AccumulateRow(n)),
  f16ToF32AccumulateRow(1101, GRID),
  accumulateF16Row("specials (ties, overflow, NaN, signed zeros, subnormals)", SPECIAL_SUMS.length, true),
  ...[1, 7, 258, 301].map((n) => accumulateF16Row(`n=${n}`, n, n > SPECIAL_SUMS.length)),
  accumulateF16Row("n=2051", 2051, true, GRID),
];

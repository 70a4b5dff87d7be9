// f16 and bf16 conversions: exhaustive over every 16-bit pattern, every rounding boundary of f16 checked
// against the host's Math.f16round (an independent IEEE implementation), bf16 rounding against a float64
// nearest-value reference, a 1-in-997 scan of all 2^32 f32 patterns for both, and PyTorch's own
// conversions (tools/make_safetensors_fixture.py) bit for bit.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  bf16BitsToF32,
  bf16ToF32,
  bitsToF32,
  f16BitsToF32,
  f16BitsToF32Bits,
  f16ToF32,
  f32BitsToBf16Bits,
  f32BitsToF16Bits,
  f32Bits,
  f32ToBf16,
  f32ToBf16Bits,
  f32ToF16,
  f32ToF16Bits,
} from "../../src/io/half.ts";

const expected = JSON.parse(readFileSync(join(import.meta.dir, "../fixtures/io/tiny.expected.json"), "utf8")) as {
  conversions: { f32_to_bf16: [number, number][]; f32_to_f16: [number, number][] };
};

// The host's binary16 (JavaScriptCore's Float16Array / Math.f16round) as the oracle.
const oracle16 = new Float16Array(1);
const oracle16Bits = new Uint16Array(oracle16.buffer);
function hostF16Bits(x: number): number {
  oracle16[0] = x;
  return oracle16Bits[0]!;
}
function hostF16Value(h: number): number {
  oracle16Bits[0] = h;
  return oracle16[0]!;
}

const isNaN16 = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isNaNBf16 = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
const hex = (x: number, w = 4) => `0x${x.toString(16).padStart(w, "0")}`;

describe("f16", () => {
  test("every f16 pattern decodes to the host's value, and survives f16 → f32 → f16 bit for bit", () => {
    for (let h = 0; h < 65536; h++) {
      const v = f16BitsToF32(h);
      if (isNaN16(h)) expect(Number.isNaN(v)).toBe(true);
      else if (!Object.is(v, hostF16Value(h))) throw new Error(`f16 ${hex(h)} decodes to ${v}, host says ${hostF16Value(h)}`);
      const back = f32BitsToF16Bits(f16BitsToF32Bits(h));
      if (back !== h) throw new Error(`f16 ${hex(h)} → f32 ${hex(f16BitsToF32Bits(h), 8)} → f16 ${hex(back)}`);
    }
  });

  test("rounding at every boundary between adjacent f16 values matches IEEE round-to-nearest-even", () => {
    // For each pair of adjacent finite f16 values (and the last one and the overflow threshold): the exact
    // midpoint (a tie), one f32 ulp either side, and the values themselves, both signs.
    let checked = 0;
    for (let h = 0; h < 0x7c00; h++) {
      const lo = f16BitsToF32(h);
      const hi = h + 1 === 0x7c00 ? 65536 : f16BitsToF32(h + 1); // 65536 = where the next value would be
      const mid = (lo + hi) / 2; // exact in f32: f16 has 11 significant bits
      const mb = f32Bits(mid);
      for (const x of [lo, mid, bitsToF32(mb - 1), bitsToF32(mb + 1), hi === 65536 ? 65504 : hi]) {
        for (const s of [x, -x]) {
          const got = f32ToF16Bits(s);
          const want = hostF16Bits(s);
          if (got !== want) throw new Error(`f32 ${s} (${hex(f32Bits(s), 8)}): got f16 ${hex(got)}, want ${hex(want)}`);
          checked++;
        }
      }
    }
    expect(checked).toBe(0x7c00 * 10);
  });

  test("a 1-in-997 scan of all 2^32 f32 patterns matches the host (NaN stays NaN)", () => {
    for (let b = 0; b < 2 ** 32; b += 997) {
      const got = f32BitsToF16Bits(b);
      const x = bitsToF32(b);
      if (Number.isNaN(x)) {
        if (!isNaN16(got) || (got & 0x8000) !== ((b >>> 16) & 0x8000)) throw new Error(`NaN ${hex(b, 8)} → ${hex(got)}`);
      } else if (got !== hostF16Bits(x)) throw new Error(`f32 ${hex(b, 8)} (${x}): got ${hex(got)}, want ${hex(hostF16Bits(x))}`);
    }
  });

  test("edges: overflow, subnormals, signed zeros, NaN", () => {
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65519.996)).toBe(0x7bff); // just below the tie with 65536
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // the tie rounds to even: inf
    expect(f32ToF16Bits(-1e6)).toBe(0xfc00);
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // half of it: tie to even (0)
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002); // 1.5 × smallest: tie to even (2)
    expect(f32ToF16Bits(2 ** -25 * 1.0000001)).toBe(0x0001);
    expect(f32ToF16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // the largest subnormal rounds up to the smallest normal
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f32ToF16Bits(Infinity)).toBe(0x7c00);
    expect(f32ToF16Bits(Number.NaN)).toBe(0x7e00);
    expect(f32BitsToF16Bits(0xffc00001)).toBe(0xfe00); // sign kept
    expect(f32BitsToF16Bits(0x7f800001)).toBe(0x7e00); // payload only in dropped bits: quiet bit keeps it a NaN
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x03ff)).toBe(2 ** -14 - 2 ** -24);
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
  });

  test("PyTorch's float32 → float16 conversions, bit for bit", () => {
    const cases = expected.conversions.f32_to_f16;
    expect(cases.length).toBeGreaterThan(300);
    for (const [b, want] of cases) {
      const got = f32BitsToF16Bits(b);
      if (Number.isNaN(bitsToF32(b)) && isNaN16(got) && isNaN16(want)) continue;
      if (got !== want) throw new Error(`f32 ${hex(b, 8)} (${bitsToF32(b)}): got ${hex(got)}, torch ${hex(want)}`);
    }
  });

  test("bulk conversions equal the scalar ones, on subarrays too", () => {
    const h = new Uint16Array(70000);
    for (let i = 0; i < h.length; i++) h[i] = (i * 7919) & 0xffff;
    const f = f16ToF32(h.subarray(3));
    for (let i = 0; i < f.length; i++) {
      const w = f16BitsToF32(h[i + 3]!);
      if (!Object.is(f[i], w) && !(Number.isNaN(f[i]!) && Number.isNaN(w))) throw new Error(`element ${i}`);
    }
    const back = f32ToF16(f);
    expect(back).toEqual(h.subarray(3));
    expect(() => f16ToF32(h, new Float32Array(3))).toThrow(/70000 elements, destination 3/);
  });
});

describe("bf16", () => {
  /** The value of bf16 pattern k, with the pattern after the largest finite one standing for 2^128. */
  const valueOf = (k: number) => ((k & 0x7fff) === 0x7f80 ? (k & 0x8000 ? -(2 ** 128) : 2 ** 128) : bf16BitsToF32(k));
  /** Nearest bf16 by float64 distance (exact for f32 inputs), ties to the even pattern. */
  function refBf16(b: number): number {
    const lo = b >>> 16; // truncation: toward zero
    if ((b & 0xffff) === 0) return lo;
    const hi = lo + 1; // away from zero (same sign)
    const x = bitsToF32(b);
    const dl = Math.abs(x - valueOf(lo));
    const dh = Math.abs(valueOf(hi) - x);
    return dl < dh ? lo : dh < dl ? hi : lo & 1 ? hi : lo;
  }

  test("every bf16 pattern survives bf16 → f32 → bf16 bit for bit, and decodes exactly", () => {
    for (let h = 0; h < 65536; h++) {
      const back = f32BitsToBf16Bits(f32Bits(bf16BitsToF32(h)));
      const viaBits = f32BitsToBf16Bits((h << 16) >>> 0);
      if (viaBits !== h) throw new Error(`bf16 ${hex(h)} → ${hex(viaBits)}`);
      if (!isNaNBf16(h) && back !== h) throw new Error(`bf16 ${hex(h)} → value → ${hex(back)}`);
    }
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(bf16BitsToF32(0x7f7f)).toBe(3.3895313892515355e38);
  });

  test("a 1-in-997 scan of all 2^32 f32 patterns rounds to nearest even (float64 reference)", () => {
    for (let b = 0; b < 2 ** 32; b += 997) {
      const got = f32BitsToBf16Bits(b);
      if (Number.isNaN(bitsToF32(b))) {
        if (!isNaNBf16(got) || got >>> 15 !== b >>> 31) throw new Error(`NaN ${hex(b, 8)} → ${hex(got)}`);
        continue;
      }
      const want = refBf16(b);
      if (got !== want) throw new Error(`f32 ${hex(b, 8)} (${bitsToF32(b)}): got ${hex(got)}, want ${hex(want)}`);
    }
  });

  test("ties, overflow, subnormals, NaN", () => {
    expect(f32BitsToBf16Bits(0x3f808000)).toBe(0x3f80); // tie, even stays
    expect(f32BitsToBf16Bits(0x3f818000)).toBe(0x3f82); // tie, odd rounds up
    expect(f32BitsToBf16Bits(0x3f808001)).toBe(0x3f81);
    expect(f32BitsToBf16Bits(0x3f807fff)).toBe(0x3f80);
    expect(f32BitsToBf16Bits(0x7f7f8000)).toBe(0x7f80); // tie above the largest finite (odd): inf
    expect(f32BitsToBf16Bits(0x7f7f7fff)).toBe(0x7f7f);
    expect(f32BitsToBf16Bits(0xff7fffff)).toBe(0xff80); // -max f32 → -inf
    expect(f32BitsToBf16Bits(0x00008000)).toBe(0x0000); // subnormal tie to even
    expect(f32BitsToBf16Bits(0x00018000)).toBe(0x0002);
    expect(f32ToBf16Bits(Number.NaN)).toBe(0x7fc0);
    expect(f32BitsToBf16Bits(0x7f800001)).toBe(0x7fc0); // payload only in dropped bits: quiet bit keeps it a NaN
    expect(f32BitsToBf16Bits(0xffa00000)).toBe(0xffa0); // signalling NaN keeps its payload
    expect(f32ToBf16Bits(-0)).toBe(0x8000);
    expect(f32ToBf16Bits(Infinity)).toBe(0x7f80);
  });

  test("PyTorch's float32 → bfloat16 conversions, bit for bit", () => {
    const cases = expected.conversions.f32_to_bf16;
    expect(cases.length).toBeGreaterThan(300);
    for (const [b, want] of cases) {
      const got = f32BitsToBf16Bits(b);
      // NaN: torch 1.13's vectorized CPU path writes 0xffff, its scalar path 0x7fc0; any NaN is right.
      if (Number.isNaN(bitsToF32(b)) && isNaNBf16(got) && isNaNBf16(want)) continue;
      if (got !== want) throw new Error(`f32 ${hex(b, 8)} (${bitsToF32(b)}): got ${hex(got)}, torch ${hex(want)}`);
    }
  });

  test("bulk conversions equal the scalar ones", () => {
    const f = new Float32Array(5000);
    for (let i = 0; i < f.length; i++) f[i] = Math.sin(i) * 10 ** ((i % 60) - 30);
    const b = f32ToBf16(f);
    for (let i = 0; i < f.length; i++) expect(b[i]).toBe(f32ToBf16Bits(f[i]!));
    const back = bf16ToF32(b);
    for (let i = 0; i < f.length; i++) expect(back[i]).toBe(bf16BitsToF32(b[i]!));
  });
});

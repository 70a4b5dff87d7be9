// cast (f32 <-> f16, src/tensor/ops/cast.ts) through the op: bit-exact against src/io/half.ts (an independent
// bit-level conversion, itself checked against PyTorch in test/io/half.test.ts) on a sample of rounding boundaries
// and specials, shapes kept; f16 -> f32 -> f16 is the identity on all 65536 patterns; host-packed odd counts;
// gradients cast back to the input's dtype; same-dtype casts as views; errors; PyTorch goldens (torch's .half()
// bits); memory flat; and the float64 reference (test/reference/cast.ts) against half.ts on every boundary and
// every half. The kernels on every rounding boundary, all 65536 halves, odd counts, the f16 accumulation and a
// 2-D workgroup grid are launcher rows: test/kernels/rows/cast.ts.
// Casts move halves as packed u32 words, so they need no shader-f16 and run on every device.
import { describe, expect, test } from "bun:test";
import { f16BitsToF32, f16BitsToF32Bits, f32BitsToF16Bits } from "../../src/io/half.ts";
import { add, scope, Tensor, TensorError } from "../../src/tensor/index.ts";
import { cast, float, half } from "../../src/tensor/ops/cast.ts";
import { halfBits, halfValue, roundHalf, roundingBoundaries } from "../reference/cast.ts";
import { expectFlatMemory } from "../helpers.ts";
import { loadGoldens } from "./goldens.ts";
import { accumulates, dispatchNames, getGpu, rng, seedOf, uniform } from "./helpers.ts";

const SLOW = 120_000;

/** Upload f16 bit patterns unchanged. */
function f16FromBits(gpu: Awaited<ReturnType<typeof getGpu>>, bits: Uint16Array, requiresGrad = false): Tensor {
  return Tensor.fromArray(gpu, new Float16Array(bits.buffer, bits.byteOffset, bits.length), [bits.length], { dtype: "f16", requiresGrad });
}

async function bits16(t: Tensor): Promise<Uint16Array> {
  const d = await t.data();
  expect(d).toBeInstanceOf(Float16Array);
  return new Uint16Array(d.buffer, d.byteOffset, d.length);
}

async function bits32(t: Tensor): Promise<Uint32Array> {
  const d = await t.data();
  expect(d).toBeInstanceOf(Float32Array);
  return new Uint32Array(d.buffer, d.byteOffset, d.length);
}

const isNaN16 = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;

/** Compare half bit patterns: equal, or both NaN (the kernel writes torch's quiet 0x7e00, half.ts keeps payloads). */
function expectHalfBits(what: string, got: Uint16Array, src: Uint32Array): void {
  let bad = 0;
  let first = "";
  for (let i = 0; i < src.length; i++) {
    const want = f32BitsToF16Bits(src[i]!);
    const ok = isNaN16(want) ? isNaN16(got[i]!) && (got[i]! & 0x8000) === (want & 0x8000) : got[i] === want;
    if (!ok && !bad++) first = `[${i}] f32 0x${src[i]!.toString(16)}: got 0x${got[i]!.toString(16)}, expected 0x${want.toString(16)}`;
  }
  if (bad) throw new Error(`${what}: ${bad} of ${src.length} wrong; first ${first}`);
}

/** A sample of f32 patterns: each tie around a few halves (subnormal, normal, the largest) and its neighbours, and the specials. */
function samplePatterns(): Uint32Array {
  const all = roundingBoundaries();
  const pick = [0x0000, 0x0001, 0x03ff, 0x3c00, 0x3c01, 0x7bfe]; // ties after these halves (6 patterns each)
  const out = pick.flatMap((h) => Array.from(all.subarray(6 * h, 6 * h + 6)));
  return Uint32Array.from([...out, ...all.subarray(6 * 0x7c00)]); // + the specials
}

describe("cast f32 -> f16", () => {
  test("bit-exact through the op on a sample of ties, subnormals, overflow and NaN; the shape is kept", async () => {
    const gpu = await getGpu();
    const src = samplePatterns();
    const x = Tensor.fromArray(gpu, new Float32Array(src.buffer), [2, src.length / 2]); // a view: NaN payloads kept
    const y = cast(x, "f16");
    expect(y.dtype).toBe("f16");
    expect(y.shape).toEqual(x.shape);
    expectHalfBits("sample", await bits16(y), src);
    x.release();
    y.release();
  }, SLOW);
});

describe("cast f16 -> f32", () => {
  test("f16 -> f32 -> f16 is the identity on all 65536 half bit patterns (NaN stays NaN)", async () => {
    const gpu = await getGpu();
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const x = f16FromBits(gpu, all);
    const y = cast(x, "f32");
    expect(y.dtype).toBe("f32");
    const z = cast(y, "f16");
    const back = await bits16(z);
    for (let i = 0; i < 65536; i++) if (!(back[i] === i || (isNaN16(i) && isNaN16(back[i]!)))) throw new Error(`round trip of 0x${i.toString(16)} gave 0x${back[i]!.toString(16)}`);
    for (const t of [x, y, z]) t.release();
  }, SLOW);

  test("odd counts: element 2k + 1 comes from the high half of word k", async () => {
    const gpu = await getGpu();
    for (const n of [1, 3, 7]) {
      const vals = Array.from({ length: n }, (_, i) => (i + 1) * (i % 2 ? -0.5 : 1.25));
      const x = Tensor.fromArray(gpu, vals, [n], { dtype: "f16" });
      const y = float(x);
      expect(Array.from(await y.toArray())).toEqual(vals);
      x.release();
      y.release();
    }
  }, SLOW);
});

describe("the float64 reference", () => {
  test("agrees with src/io/half.ts on every rounding boundary and on every half", () => {
    const src = roundingBoundaries();
    const f = new Float32Array(src.buffer);
    for (let i = 0; i < src.length; i++) {
      const want = f32BitsToF16Bits(src[i]!);
      const v = roundHalf(f[i]!);
      const ok = isNaN16(want) ? Number.isNaN(v) : halfBits(v) === want && Object.is(v, f16BitsToF32(want));
      if (!ok) throw new Error(`f32 0x${src[i]!.toString(16)}: roundHalf gave ${v}, half.ts 0x${want.toString(16)}`);
    }
    for (let h = 0; h < 65536; h++) {
      const v = halfValue(h);
      const ok = isNaN16(h) ? Number.isNaN(v) : Object.is(v, f16BitsToF32(h)) && halfBits(v) === h;
      if (!ok) throw new Error(`half 0x${h.toString(16)}: halfValue gave ${v}`);
    }
  });
});

describe("cast autograd", () => {
  test("f32 -> f16: the f16 upstream gradient comes back exactly as f32", async () => {
    const gpu = await getGpu();
    const r = rng(seedOf("cast grad 32"));
    const x = Tensor.fromArray(gpu, Float32Array.from(uniform(r, 9)), [3, 3], { requiresGrad: true });
    const y = cast(x, "f16");
    expect(y.requiresGrad).toBe(true);
    expect(y.gradFn?.op).toBe("cast");
    const gv = Float16Array.from(uniform(r, 9, -4, 4));
    const g = Tensor.fromArray(gpu, gv, [3, 3], { dtype: "f16" });
    y.backward(g);
    expect(x.grad!.dtype).toBe("f32");
    expect(Array.from(await x.grad!.toArray())).toEqual(Array.from(gv));
    for (const t of [x, y, g]) t.release();
  }, SLOW);

  test("f16 -> f32: the f32 upstream gradient is rounded to f16 like torch's .half()", async () => {
    const gpu = await getGpu();
    const r = rng(seedOf("cast grad 16"));
    const x = Tensor.fromArray(gpu, uniform(r, 7), [7], { dtype: "f16", requiresGrad: true });
    const y = cast(x, "f32");
    const gv = Float32Array.from(uniform(r, 7, -1e5, 1e5)); // some beyond the f16 range: inf
    gv[0] = 1e-7;
    const g = Tensor.fromArray(gpu, gv, [7]);
    y.backward(g);
    expect(x.grad!.dtype).toBe("f16");
    expectHalfBits("grad", await bits16(x.grad!), new Uint32Array(gv.buffer));
    for (const t of [x, y, g]) t.release();
  }, SLOW);

  test("an f16 gradient is widened and added into the f32 gradient its input already has, in one pass", async () => {
    // h feeds three half() casts (autocast casts a norm's output once per projection): y = Σ float(half(h)).
    // Each rule gets R rounded to f16 (float's backward); the first widening makes the pending gradient, the next
    // two add into it (cast.f16_to_f32.accumulate), no grad.accumulate; a second backward adds all three into .grad.
    const gpu = await getGpu();
    const r = rng(seedOf("cast accumulates"));
    const n = 301;
    const h = Tensor.fromArray(gpu, Float32Array.from(uniform(r, n, -2, 2)), [n], { requiresGrad: true });
    const R = Float32Array.from(uniform(r, n, -3, 3));
    const v = Float64Array.from(R, (x) => roundHalf(x)); // each rule's gradient, widened exactly
    const once = Float64Array.from(v, (x) => Math.fround(Math.fround(x + x) + x));
    const pass = async () => {
      const y = scope(() => add(add(float(half(h)), float(half(h))), float(half(h))));
      const g = Tensor.fromArray(gpu, R, [n]);
      const names = dispatchNames(gpu, () => y.backward(g));
      y.release();
      g.release();
      return names;
    };
    const first = await pass();
    expect(accumulates(first)).toBe(0);
    expect(first.filter((x) => x === "cast.f16_to_f32.accumulate").length).toBe(2);
    expect(Array.from(await h.grad!.toArray())).toEqual(Array.from(once));
    const second = await pass(); // into the leaf's .grad: all three add
    expect(accumulates(second)).toBe(0);
    expect(second.filter((x) => x === "cast.f16_to_f32.accumulate").length).toBe(3);
    const twice = Float64Array.from(once, (x, i) => Math.fround(Math.fround(Math.fround(x + v[i]!) + v[i]!) + v[i]!));
    expect(Array.from(await h.grad!.toArray())).toEqual(Array.from(twice));
    h.release();
  }, SLOW);

  test("a cast to the same dtype is a view (no copy) whose gradient passes through", async () => {
    const gpu = await getGpu();
    const x = Tensor.fromArray(gpu, [1, 2, 3], [3], { requiresGrad: true });
    const y = cast(x, "f32");
    expect(y.storage).toBe(x.storage);
    y.backward(Tensor.fromArray(gpu, [4, 5, 6], [3]));
    expect(Array.from(await x.grad!.toArray())).toEqual([4, 5, 6]);
    x.release();
    y.release();
    const h = Tensor.fromArray(gpu, [1.5], [1], { dtype: "f16" });
    const h2 = half(h);
    expect(h2.storage).toBe(h.storage);
    expect(h2.dtype).toBe("f16");
    h.release();
    h2.release();
  }, SLOW);

  test("casts other than f32 <-> f16 throw naming the op", async () => {
    const gpu = await getGpu();
    const i = Tensor.fromArray(gpu, [1, 2], [2], { dtype: "i32" });
    expect(() => cast(i, "f32")).toThrow(TensorError);
    expect(() => cast(i, "f16")).toThrow(/cast: Tensor\(\[2\], i32\)/);
    const x = Tensor.fromArray(gpu, [1, 2], [2]);
    expect(() => cast(x, "u32")).toThrow(/only f32 <-> f16/);
    i.release();
    x.release();
  }, SLOW);

  test("memory stays flat over 50 forward + backward round trips", async () => {
    const gpu = await getGpu();
    const x = Tensor.fromArray(gpu, Float32Array.from(uniform(rng(5), 33)), [3, 11], { requiresGrad: true });
    const g = Tensor.fromArray(gpu, Float32Array.from(uniform(rng(6), 33)), [3, 11]);
    await expectFlatMemory(gpu, 50, () => {
      scope(() => {
        const y = float(half(x));
        y.backward(g);
      });
      x.zeroGrad();
    });
    x.release();
    g.release();
  }, SLOW);
});

describe("PyTorch goldens", () => {
  test("torch's .half() bits, and .float() of them (tools/goldens/amp.py)", async () => {
    const gpu = await getGpu();
    const c = loadGoldens("amp").find((k) => k.params.op === "cast")!;
    const x = Tensor.fromArray(gpu, c.inputs.x!.data, c.inputs.x!.shape);
    const h = half(x);
    const want = c.outputs.bits!.data.map((b) => b & 0xffff);
    expect(Array.from(await bits16(h))).toEqual(want);
    // .float() of those halves is exact: the f32 with the same value.
    const back = float(h);
    expect(Array.from(await bits32(back))).toEqual(want.map(f16BitsToF32Bits));
    for (const t of [x, h, back]) t.release();
  }, SLOW);
});

// Decode attention over a KV cache (src/tensor/ops/attention_decode.ts): through the op against the float64
// explicit-softmax reference of test/reference/attention_decode.ts with the op's defaults, a [B, S] key mask on
// a cache with spare (NaN-poisoned) rows, and forced splits; rows that see no key (0, never NaN); equal to
// `attention` when the queries are the whole sequence; refuses inputs that require grad; shape errors; flat
// memory over a decode loop. The launcher on Tq in {1, 3}, Tk up to 40, Hq/Hkv in {2/2, 4/2, 4/1}, Dh in
// {8, 16, 64}, causal with a cache offset or not, several split counts and small tiles is a table:
// test/kernels/rows/attention_decode.ts.
import { describe, expect, test } from "bun:test";
import { attention } from "../../src/tensor/ops/attention.ts";
import { attentionDecode, type DecodeAttentionOptions } from "../../src/tensor/ops/attention_decode.ts";
import { noGrad, scope, Tensor } from "../../src/tensor/index.ts";
import { expectFlatMemory } from "../helpers.ts";
import { attentionDecodeForward as refDecode } from "../reference/attention_decode.ts";
import { expectClose, getGpu, rng, seedOf, uniform, upload } from "./helpers.ts";

interface Case {
  B: number;
  Hq: number;
  Hkv: number;
  Tq: number;
  Tk: number;
  /** Rows allocated per kv head (>= Tk); rows past Tk stay NaN. */
  S: number;
  Dh: number;
  causal?: boolean;
  /** Default Tk - Tq. */
  offset?: number;
  pad?: boolean;
  splits?: number;
  blocks?: DecodeAttentionOptions["blocks"];
}

const label = (c: Case) =>
  `B${c.B} H${c.Hq}/${c.Hkv} Tq${c.Tq} Tk${c.Tk} S${c.S} Dh${c.Dh}${c.causal === false ? " full" : ""}` +
  `${c.offset !== undefined ? ` offset${c.offset}` : ""}${c.pad ? " pad" : ""}${c.splits ? ` splits${c.splits}` : ""}${c.blocks ? ` ${JSON.stringify(c.blocks)}` : ""}`;

/** Cache-sized k/v [B, Hkv, S, Dh] with rows >= Tk NaN (never to be read). */
function cacheData(r: () => number, c: Case): Float64Array {
  const x = uniform(r, c.B * c.Hkv * c.S * c.Dh, -1, 1);
  for (let bh = 0; bh < c.B * c.Hkv; bh++) x.fill(Number.NaN, (bh * c.S + c.Tk) * c.Dh, (bh + 1) * c.S * c.Dh);
  return x;
}

/** Key mask [B, S]: row b pads its first b + 1 slots (left padding) and one slot in the middle. */
function padMask(c: Case): Float64Array {
  const m = new Float64Array(c.B * c.S).fill(1);
  for (let b = 0; b < c.B; b++) {
    for (let j = 0; j <= b && j < c.Tk; j++) m[b * c.S + j] = 0;
    if (c.Tk > 6) m[b * c.S + Math.floor(c.Tk / 2)] = 0;
  }
  return m;
}

async function check(c: Case): Promise<void> {
  const gpu = await getGpu();
  const r = rng(seedOf(label(c)));
  const Q = uniform(r, c.B * c.Hq * c.Tq * c.Dh, -2, 2);
  const K = cacheData(r, c);
  const V = cacheData(r, c);
  const M = c.pad ? padMask(c) : undefined;
  const scale = 1 / Math.sqrt(c.Dh);
  const o = { ...c, offset: c.offset ?? c.Tk - c.Tq, causal: c.causal ?? true, scale, maskStride: c.S };
  const ref = refDecode({ q: Q, k: K, v: V, mask: M }, o);
  const got = await scope(() => {
    const [q, k, v] = [upload(gpu, Q, [c.B, c.Hq, c.Tq, c.Dh]), upload(gpu, K, [c.B, c.Hkv, c.S, c.Dh]), upload(gpu, V, [c.B, c.Hkv, c.S, c.Dh])];
    const mask = M ? upload(gpu, M, [c.B, c.S]) : undefined;
    return attentionDecode(q, k, v, { keyLength: c.Tk, offset: c.offset, causal: c.causal, keyPaddingMask: mask, splits: c.splits, blocks: c.blocks });
  }).toArray();
  expectClose(label(c), got, ref.out, { rtol: 1e-3, atol: 1e-5, mag: ref.outMag });
}

describe("attentionDecode vs float64", () => {
  // The op's defaults (keyLength, offset = Tk - Tq, causal, scale) and a [B, S] mask on a cache with spare rows,
  // with and without forced splits. The launcher's shapes, splits and tiles: test/kernels/rows/attention_decode.ts.
  const cases: Case[] = [
    { B: 2, Hq: 4, Hkv: 1, Tq: 3, Tk: 40, S: 45, Dh: 16, pad: true },
    { B: 2, Hq: 2, Hkv: 1, Tq: 3, Tk: 20, S: 24, Dh: 8, causal: false, pad: true },
    { B: 2, Hq: 2, Hkv: 2, Tq: 3, Tk: 20, S: 20, Dh: 8, offset: 9, pad: true, splits: 2, blocks: { cols: 4 } },
  ];
  for (const c of cases) test(label(c), () => check(c));

  test("a row that sees no key gives 0, with and without splits", async () => {
    // Batch row 1 pads every slot up to Tk: its queries see nothing.
    const gpu = await getGpu();
    const [B, H, Tq, Tk, Dh] = [2, 2, 1, 12, 8];
    const r = rng(5);
    const maskData = new Float32Array(B * Tk).fill(1).fill(0, Tk);
    for (const splits of [1, 3]) {
      const out = await scope(() => {
        const q = Tensor.fromArray(gpu, Float32Array.from(uniform(r, B * H * Tq * Dh)), [B, H, Tq, Dh]);
        const kv = Tensor.fromArray(gpu, Float32Array.from(uniform(r, B * H * Tk * Dh)), [B, H, Tk, Dh]);
        return attentionDecode(q, kv, kv, { keyPaddingMask: Tensor.fromArray(gpu, maskData, [B, Tk]), splits, blocks: { cols: 4 } });
      }).toArray();
      expect(out.every(Number.isFinite)).toBe(true);
      expect(out.subarray(H * Tq * Dh).every((x) => x === 0)).toBe(true);
      expect(out.subarray(0, H * Tq * Dh).some((x) => x !== 0)).toBe(true);
    }
  });
});

describe("attentionDecode vs attention", () => {
  test("queries = the whole sequence (Tq = Tk = S, offset 0): the training kernel's output", async () => {
    const gpu = await getGpu();
    const [B, Hq, Hkv, T, Dh] = [2, 4, 2, 13, 16];
    const r = rng(11);
    const mask = new Float32Array(B * T).fill(1).fill(0, T, T + 3); // row 1 left-padded by 3
    const [a, d] = await scope(() => {
      const q = Tensor.fromArray(gpu, Float32Array.from(uniform(r, B * Hq * T * Dh)), [B, Hq, T, Dh]);
      const k = Tensor.fromArray(gpu, Float32Array.from(uniform(r, B * Hkv * T * Dh)), [B, Hkv, T, Dh]);
      const v = Tensor.fromArray(gpu, Float32Array.from(uniform(r, B * Hkv * T * Dh)), [B, Hkv, T, Dh]);
      const m = Tensor.fromArray(gpu, mask, [B, T]);
      return [attention(q, k, v, { keyPaddingMask: m }), attentionDecode(q, k, v, { keyPaddingMask: m })];
    });
    const [x, y] = [await a.toArray(), await d.toArray()];
    let err = 0;
    for (let i = 0; i < x.length; i++) err = Math.max(err, Math.abs(x[i]! - y[i]!));
    expect(err).toBeLessThan(1e-6);
    a.release();
    d.release();
  });
});

describe("attentionDecode checks", () => {
  test("refuses inputs that require grad; shape errors name the op and the shapes", async () => {
    const gpu = await getGpu();
    const live = gpu.memory().liveBuffers;
    scope(() => {
      const q = Tensor.zeros(gpu, [1, 4, 1, 8]);
      const k = Tensor.zeros(gpu, [1, 2, 6, 8]);
      const leaf = Tensor.zeros(gpu, [1, 4, 1, 8], { requiresGrad: true });
      expect(() => attentionDecode(leaf, k, k)).toThrow(/attentionDecode: q requires grad, but decode attention has no backward .*noGrad\(\)/);
      expect(() => noGrad(() => attentionDecode(leaf, k, k))).toThrow(/q requires grad/); // a leaf keeps its flag under noGrad
      expect(() => attentionDecode(q, Tensor.zeros(gpu, [1, 3, 6, 8]), Tensor.zeros(gpu, [1, 3, 6, 8]))).toThrow(
        /attentionDecode: query heads \(4\) must be a multiple of key\/value heads \(3\) \(q \[1, 4, 1, 8\], k \[1, 3, 6, 8\]/,
      );
      expect(() => attentionDecode(q, k, Tensor.zeros(gpu, [1, 2, 5, 8]))).toThrow(/k and v must have the same shape/);
      expect(() => attentionDecode(q, Tensor.zeros(gpu, [2, 2, 6, 8]), Tensor.zeros(gpu, [2, 2, 6, 8]))).toThrow(/must match q in batch and head dim/);
      expect(() => attentionDecode(q, k, k, { keyLength: 7 })).toThrow(/keyLength 7 must be an integer in \[0, 6\]/);
      expect(() => attentionDecode(q, k, k, { keyLength: 3, offset: -1 })).toThrow(/offset -1 must be an integer >= 0/);
      expect(() => attentionDecode(q, k, k, { keyLength: 5, keyPaddingMask: Tensor.ones(gpu, [1, 4]) })).toThrow(/keyPaddingMask must be \[B, M\] with B = 1 and M >= keyLength 5/);
      expect(() => attentionDecode(q, k, k, { splits: 0 })).toThrow(/splits 0 must be an integer/);
      const q6 = Tensor.zeros(gpu, [1, 2, 1, 6]);
      const k6 = Tensor.zeros(gpu, [1, 2, 3, 6]);
      expect(() => attentionDecode(q6, k6, k6)).toThrow(/head dim 6 must be a multiple of 4/);
    });
    await gpu.sync();
    expect(gpu.memory().liveBuffers).toBe(live);
  });

  test("memory stays flat over a decode loop (splits and no splits)", async () => {
    const gpu = await getGpu();
    const [B, Hq, Hkv, S, Dh] = [2, 4, 2, 32, 16];
    const r = rng(3);
    const k = Tensor.fromArray(gpu, Float32Array.from(uniform(r, B * Hkv * S * Dh)), [B, Hkv, S, Dh]);
    const mask = Tensor.ones(gpu, [B, S]);
    await expectFlatMemory(gpu, 24, (it) => {
      scope(() => {
        const q = Tensor.fromArray(gpu, Float32Array.from(uniform(r, B * Hq * Dh)), [B, Hq, 1, Dh]);
        attentionDecode(q, k, k, { keyLength: it + 1, keyPaddingMask: mask, splits: it % 2 ? 2 : 1, blocks: { cols: 4 } });
      });
    }, { sameBindings: false }); // every step a longer key range: new binding ranges by design
    k.release();
    mask.release();
  });
});

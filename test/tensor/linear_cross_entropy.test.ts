// linear_cross_entropy (src/tensor/ops/loss.ts): the cross-entropy of h · wᵀ computed chunk by chunk over the
// vocabulary, against crossEntropy(linear(h, w)) on the device and against the float64 reference
// (test/reference/linear_cross_entropy.ts, checked here by central differences; the launchers on their own are rows of
// test/kernels/rows/linear_cross_entropy.ts): values and the gradients wrt h and w with ignored rows, a vocabulary
// that is not a multiple of the chunk, a chunk of 1 column, a chunk at least the vocabulary, a chunk rounded up to
// the storage-offset alignment (D · 4 not a multiple of 256), GPU targets, large logits; PyTorch's all-ignored
// semantics, invalid targets, NaN in h or w exactly where the unchunked ops put it, f16 operands (autocast), the
// memory claim (the pool's peak stays below the [N, V] f32 logits), call-site errors and a memory-flat loop.
// Fresh tensors are NaN.
import { describe, expect, test } from "bun:test";
import { cast, crossEntropy, linear, linearCrossEntropy, linearCrossEntropyChunk, scope, Tensor } from "../../src/tensor/index.ts";
import * as ref from "../reference/linear_cross_entropy.ts";
import { expectFlatMemory } from "../helpers.ts";
import { centralDiff, expectClose, getGpu, rng, seedOf, uniform, upload } from "./helpers.ts";

/** Targets for N rows of V classes: random classes, every `ignoreEvery`-th row ignored. */
function makeTargets(r: () => number, N: number, V: number, ignore: number, ignoreEvery: number): Int32Array {
  const t = new Int32Array(N);
  for (let i = 0; i < N; i++) {
    const ignored = ignoreEvery > 0 && i % ignoreEvery === 1;
    t[i] = ignored ? ignore : Math.floor(r() * V);
    if (!ignored && t[i] === ignore) t[i] = (ignore + 1) % V;
  }
  return t;
}

/** max |got - want| <= tol · max |want| (NaN exactly where want is NaN). */
function expectNear(what: string, got: Float32Array, want: Float32Array, tol: number): void {
  let scale = 0;
  for (const v of want) if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v));
  expectClose(what, got, want, { atol: tol * scale, rtol: 0 });
}

interface Case {
  N: number;
  D: number;
  V: number;
  chunk?: number;
  ignore?: number;
  ignoreEvery?: number;
  onGpu?: boolean;
  /** w scale: logits about ±(scale · sqrt(D) / 3). */
  wScale?: number;
  /** Also compare with the float64 reference (small cases). */
  f64?: boolean;
}

/** The op against crossEntropy(linear(h, w)) (loss 1e-5 relative, gradients 1e-5 of their max) and float64. */
async function check(c: Case): Promise<void> {
  const gpu = await getGpu();
  const ignore = c.ignore ?? -100;
  const what = `linear_cross_entropy(h [${c.N}, ${c.D}], w [${c.V}, ${c.D}], chunk ${c.chunk ?? "default"}, ignore ${ignore} every ${c.ignoreEvery ?? 0}${c.onGpu ? ", GPU targets" : ""})`;
  const r = rng(seedOf(what));
  const H = uniform(r, c.N * c.D);
  const W = uniform(r, c.V * c.D, -(c.wScale ?? 1), c.wScale ?? 1);
  const T = makeTargets(r, c.N, c.V, ignore, c.ignoreEvery ?? 0);
  const gs = Math.fround(0.5 + r());
  const [h1, w1, h2, w2] = [upload(gpu, H, [c.N, c.D], true), upload(gpu, W, [c.V, c.D], true), upload(gpu, H, [c.N, c.D], true), upload(gpu, W, [c.V, c.D], true)];
  const t = c.onGpu ? Tensor.fromArray(gpu, T, [c.N], { dtype: "i32" }) : null;
  const g = Tensor.fromArray(gpu, [gs], []);
  const got = linearCrossEntropy(h1, w1, t ?? T, { ignoreIndex: ignore, chunk: c.chunk });
  expect(got.shape).toEqual([]);
  got.backward(g);
  const want = scope(() => crossEntropy(linear(h2, w2), t ?? T, { ignoreIndex: ignore }));
  want.backward(g);
  try {
    const [lg, lw] = [await got.item(), await want.item()];
    expectClose(`${what} loss vs crossEntropy(linear)`, [lg], [lw], { rtol: 1e-5, atol: 0 });
    const [dh1, dw1, dh2, dw2] = await Promise.all([h1.grad!.toArray(), w1.grad!.toArray(), h2.grad!.toArray(), w2.grad!.toArray()]);
    expectNear(`${what} dh vs crossEntropy(linear)`, dh1, dh2, 1e-5);
    expectNear(`${what} dw vs crossEntropy(linear)`, dw1, dw2, 1e-5);
    if (c.f64) {
      const f = ref.linearCrossEntropy({ h: H, w: W, targets: T, dloss: [gs] }, { N: c.N, D: c.D, V: c.V, ignoreIndex: ignore });
      expectClose(`${what} loss vs float64`, [lg], f.loss, { rtol: 1e-5 });
      expectClose(`${what} dh vs float64`, dh1, f.dh, { mag: f.dhMag });
      expectClose(`${what} dw vs float64`, dw1, f.dw, { mag: f.dwMag });
    }
  } finally {
    for (const x of [h1, w1, h2, w2, t, g, got, want]) x?.release();
  }
}

/** Run `f` on fresh leaves h [N, D] and w [V, D] from H and W: the loss and both gradients, then release. */
async function lossAndGrads(H: Float64Array, W: Float64Array, N: number, D: number, V: number, f: (h: Tensor, w: Tensor) => Tensor) {
  const gpu = await getGpu();
  const [h, w] = [upload(gpu, H, [N, D], true), upload(gpu, W, [V, D], true)];
  try {
    const loss = scope(() => f(h, w));
    loss.backward();
    const dtype = loss.dtype;
    const value = await loss.item();
    loss.release();
    return { loss: value, dtype, dh: await h.grad!.toArray(), dw: await w.grad!.toArray() };
  } finally {
    h.release();
    w.release();
  }
}

const F16 = (await getGpu()).features.has("shader-f16");

describe("linear_cross_entropy", () => {
  test("the float64 reference's gradients match central differences", () => {
    const r = rng(7);
    const [N, D, V] = [4, 3, 6];
    const H = uniform(r, N * D, -2, 2);
    const W = uniform(r, V * D, -2, 2);
    const T = [1, -100, 5, 0];
    const o = { N, D, V, ignoreIndex: -100 };
    const f = ref.linearCrossEntropy({ h: H, w: W, targets: T, dloss: [1] }, o);
    const lossOf = (h: Float64Array, w: Float64Array) => ref.linearCrossEntropy({ h, w, targets: T, dloss: [1] }, o).loss[0]!;
    expectClose("dh", f.dh, centralDiff((h) => lossOf(h, W), Float64Array.from(H)), { rtol: 1e-6, atol: 1e-8 });
    expectClose("dw", f.dw, centralDiff((w) => lossOf(H, w), Float64Array.from(W)), { rtol: 1e-6, atol: 1e-8 });
    // The chunked statistics merge to the unchunked ones: three chunks of 2 columns.
    let stats: Float64Array | null = null;
    for (let c0 = 0; c0 < V; c0 += 2) {
      const logits = new Float64Array(N * 2).map((_, i) => f.logits[Math.floor(i / 2) * V + c0 + (i % 2)]!);
      stats = ref.lceChunkStats({ logits, targets: T, stats }, { rows: N, cols: 2, col0: c0, vocab: V, ignoreIndex: -100, first: c0 === 0 }).stats;
    }
    expectClose("chunked loss", ref.lceMean({ targets: T, stats: stats! }, { rows: N, vocab: V, ignoreIndex: -100 }).loss, f.loss, { rtol: 1e-12 });
  });

  test("against crossEntropy(linear) and float64: chunks not dividing V, 1 column, >= V, default, unaligned", async () => {
    await check({ N: 13, D: 64, V: 300, chunk: 64, ignoreEvery: 3, f64: true }); // 5 chunks, the last of 44
    await check({ N: 5, D: 64, V: 37, chunk: 1, ignoreEvery: 2, f64: true }); // one column per chunk
    await check({ N: 7, D: 16, V: 50, chunk: 1000, ignoreEvery: 3, f64: true }); // one chunk
    await check({ N: 9, D: 32, V: 200, ignoreEvery: 4, f64: true }); // the default chunk
    await check({ N: 9, D: 33, V: 257, chunk: 17, ignoreEvery: 3, f64: true }); // 17 rounded up to 64 columns
    await check({ N: 64, D: 64, V: 5000, chunk: 1024, ignoreEvery: 5 }); // 5 chunks of 1024, the last of 904
  });

  test("ignoreIndex inside the vocabulary, GPU targets, more rows than a workgroup, large logits", async () => {
    await check({ N: 8, D: 16, V: 40, chunk: 16, ignore: 0, ignoreEvery: 2, onGpu: true, f64: true });
    await check({ N: 300, D: 8, V: 70, chunk: 32, ignoreEvery: 7, onGpu: true });
    await check({ N: 6, D: 16, V: 90, chunk: 32, ignoreEvery: 3, wScale: 60, f64: true }); // logits about ±80
  });

  test("retainGraph: a second backward (which must recompute the last chunk too) adds the same gradients", async () => {
    const gpu = await getGpu();
    const r = rng(31);
    const [N, D, V] = [5, 16, 50];
    const T = makeTargets(r, N, V, -100, 3);
    for (const chunk of [16, 64]) {
      using h = upload(gpu, uniform(r, N * D), [N, D], true);
      using w = upload(gpu, uniform(r, V * D), [V, D], true);
      using loss = linearCrossEntropy(h, w, T, { chunk });
      loss.backward({ retainGraph: true });
      const [dh1, dw1] = [await h.grad!.toArray(), await w.grad!.toArray()];
      loss.backward();
      expectNear(`chunk ${chunk}: dh twice`, await h.grad!.toArray(), dh1.map((v) => 2 * v), 1e-6);
      expectNear(`chunk ${chunk}: dw twice`, await w.grad!.toArray(), dw1.map((v) => 2 * v), 1e-6);
    }
  });

  test("the default chunk: N · chunk f32 within 64 MiB, a multiple of 256, at least 1024, at most V", () => {
    expect(linearCrossEntropyChunk(512, 128256)).toBe(32768);
    expect(linearCrossEntropyChunk(512 * 3, 128256)).toBe(10752);
    expect(linearCrossEntropyChunk(256, 1000)).toBe(1000);
    expect(linearCrossEntropyChunk(1 << 20, 128256)).toBe(1024);
    expect(linearCrossEntropyChunk(1 << 20, 128256, 2 ** 27)).toBe(32); // one binding of 128 MiB
    for (const N of [1, 100, 512, 4096]) expect(N * linearCrossEntropyChunk(N, 1e6) * 4).toBeLessThanOrEqual(64 * 2 ** 20);
  });

  test("every target ignored, or no rows: NaN loss and zero gradients, as PyTorch 1.13", async () => {
    const gpu = await getGpu();
    for (const N of [3, 0]) {
      using h = upload(gpu, uniform(rng(N), N * 4), [N, 4], true);
      using w = upload(gpu, uniform(rng(9), 5 * 4), [5, 4], true);
      using loss = linearCrossEntropy(h, w, new Array<number>(N).fill(-100), { chunk: 2 });
      expect(await loss.item()).toBeNaN();
      loss.backward();
      expect([...(await h.grad!.toArray())]).toEqual(new Array<number>(N * 4).fill(0));
      expect([...(await w.grad!.toArray())]).toEqual(new Array<number>(5 * 4).fill(0));
    }
  });

  test("invalid targets: host data raises at the call site; GPU targets give NaN where crossEntropy(linear) does", async () => {
    const gpu = await getGpu();
    using h = upload(gpu, uniform(rng(2), 3 * 8), [3, 8], true);
    using w = upload(gpu, uniform(rng(3), 5 * 8), [5, 8], true);
    expect(() => linearCrossEntropy(h, w, [1, 5, 0])).toThrow("linear_cross_entropy: target 5 at index 1 is out of range [0, 5) (ignoreIndex -100)");
    expect(() => linearCrossEntropy(h, w, [1, 0.5, 0])).toThrow("target 0.5 at index 1");
    using t = Tensor.fromArray(gpu, [1, 5, 0], [3], { dtype: "i32" });
    using loss = linearCrossEntropy(h, w, t, { chunk: 2 });
    expect(await loss.item()).toBeNaN();
    loss.backward();
    const [dh, dw] = [await h.grad!.toArray(), await w.grad!.toArray()];
    h.zeroGrad();
    w.zeroGrad();
    using want = crossEntropy(linear(h, w), t);
    want.backward();
    expectClose("dh", dh, await h.grad!.toArray());
    expectClose("dw", dw, await w.grad!.toArray());
    expect(dh.slice(8, 16).every(Number.isNaN)).toBe(true); // the invalid row
    expect([...dh.slice(0, 8), ...dh.slice(16)].every(Number.isFinite)).toBe(true);
  });

  test("NaN in h or w: NaN exactly where crossEntropy(linear) has it (loss and both gradients)", async () => {
    const gpu = await getGpu();
    const [N, D, V] = [6, 8, 40];
    const T = [3, -100, 17, 39, -100, 0];
    // A NaN in a kept row of h, in an ignored row of h, in one weight (a whole logit column).
    for (const [where, at] of [["h", 2 * D + 3], ["h", 1 * D + 5], ["w", 21 * D + 1]] as const) {
      const r = rng(seedOf(`${where}${at}`));
      const H = uniform(r, N * D);
      const W = uniform(r, V * D);
      (where === "h" ? H : W)[at] = NaN;
      const got = await lossAndGrads(H, W, N, D, V, (h, w) => linearCrossEntropy(h, w, T, { chunk: 16 }));
      const want = await lossAndGrads(H, W, N, D, V, (h, w) => crossEntropy(linear(h, w), T));
      const label = `NaN in ${where}[${at}]`;
      expectClose(`${label}: loss`, [got.loss], [want.loss], { rtol: 1e-5 });
      expectNear(`${label}: dh`, got.dh, want.dh, 1e-5);
      expectNear(`${label}: dw`, got.dw, want.dw, 1e-5);
      const nans = (a: Float32Array) => a.filter(Number.isNaN).length;
      expect(nans(got.dw), label).toBeGreaterThan(0);
      if (at === 2 * D + 3 || where === "w") expect(got.loss, label).toBeNaN();
      else expect(Number.isFinite(got.loss), label).toBe(true); // a NaN in an ignored row leaves the loss finite
    }
  });

  test.skipIf(!F16)("f16 operands (autocast): as crossEntropy(linear(f16, f16 → f32))", async () => {
    const gpu = await getGpu();
    const [N, D, V] = [24, 64, 700];
    const r = rng(11);
    const [H, W] = [uniform(r, N * D), uniform(r, V * D)];
    const T = makeTargets(r, N, V, -100, 4);
    const got = await lossAndGrads(H, W, N, D, V, (h, w) => linearCrossEntropy(cast(h, "f16"), cast(w, "f16"), T, { chunk: 256 }));
    const want = await lossAndGrads(H, W, N, D, V, (h, w) => crossEntropy(linear(cast(h, "f16"), cast(w, "f16"), null, { outDtype: "f32" }), T));
    expect(got.dtype).toBe("f32");
    expectClose("f16 loss", [got.loss], [want.loss], { rtol: 1e-5 });
    // The gradients are rounded to f16 once each way (a different f32 summation order may flip the last bit).
    expectNear("f16 dh", got.dh, want.dh, 2e-3);
    expectNear("f16 dw", got.dw, want.dw, 2e-3);
    const f = ref.linearCrossEntropy({ h: H, w: W, targets: T, dloss: [1] }, { N, D, V, ignoreIndex: -100 });
    expectClose("f16 loss vs float64", [got.loss], f.loss, { rtol: 2e-3 });
  });

  test("memory: forward + backward peak below the [N, V] f32 logits (N 256, V 32768, D 64)", async () => {
    const gpu = await getGpu();
    const [N, D, V, chunk] = [256, 64, 32768, 4096];
    const r = rng(5);
    const T = makeTargets(r, N, V, -100, 9);
    const h = upload(gpu, uniform(r, N * D), [N, D], true);
    const w = upload(gpu, uniform(r, V * D, -0.1, 0.1), [V, D], true);
    const peakOf = async (f: () => Tensor): Promise<{ extra: number; loss: number }> => {
      await gpu.sync();
      const base = gpu.memory().liveBytes;
      gpu.pool.resetPeak();
      const loss = f();
      loss.backward();
      const value = await loss.item();
      const extra = gpu.memory().peakBytes - base;
      loss.release();
      h.zeroGrad();
      w.zeroGrad();
      return { extra, loss: value };
    };
    const chunked = await peakOf(() => linearCrossEntropy(h, w, T, { chunk }));
    const full = await peakOf(() => scope(() => crossEntropy(linear(h, w), T)));
    const logitsBytes = N * V * 4;
    const MiB = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
    console.log(`linear_cross_entropy [${N}, ${D}] x [${V}, ${D}]: peak extra ${MiB(chunked.extra)} (chunk ${chunk}); crossEntropy(linear): ${MiB(full.extra)}; the logits alone ${MiB(logitsBytes)}`);
    expect(chunked.loss).toBeCloseTo(full.loss, 4);
    expect(chunked.extra).toBeLessThan(logitsBytes);
    // What it holds: dh and dw (the gradients themselves), one [N, chunk] buffer, dh's f32 partial sum, O(N).
    expect(chunked.extra).toBeLessThan(1.25 * (V * D * 4 + 2 * N * D * 4 + N * chunk * 4) + 2 ** 20);
    expect(full.extra).toBeGreaterThanOrEqual(2 * logitsBytes); // the logits and their gradient at once
    h.release();
    w.release();
  });

  test("shape and dtype errors name the op and the shapes", async () => {
    const gpu = await getGpu();
    using h = Tensor.zeros(gpu, [3, 4]);
    using w = Tensor.zeros(gpu, [5, 4]);
    using w3 = Tensor.zeros(gpu, [5, 3]);
    using hi = Tensor.zeros(gpu, [3, 4], { dtype: "i32" });
    using t4 = Tensor.fromArray(gpu, [0, 0, 0, 0], [4], { dtype: "i32" });
    expect(() => linearCrossEntropy(h, w3, [0, 0, 0])).toThrow("linear_cross_entropy: needs h [N, D] and w [V, D] (w is [out, in], as linear's), got h [3, 4] and w [5, 3]");
    expect(() => linearCrossEntropy(hi, w, [0, 0, 0])).toThrow("linear_cross_entropy: Tensor([3, 4], i32) has dtype i32; h and w must be f32, or both f16");
    expect(() => linearCrossEntropy(h, w, t4)).toThrow("linear_cross_entropy: targets [4] do not match h [3, 4] (expected [3])");
    expect(() => linearCrossEntropy(h, w, [0, 0])).toThrow("linear_cross_entropy: 2 targets do not match h [3, 4] (expected 3)");
    expect(() => linearCrossEntropy(h, w, [0, 0, 0], { chunk: 0 })).toThrow("linear_cross_entropy: chunk must be a positive integer, got 0");
    expect(() => linearCrossEntropy(h, w, [0, 0, 0], { ignoreIndex: 0.5 })).toThrow("linear_cross_entropy: ignoreIndex must be an i32 integer, got 0.5");
  });

  test("a training-style loop keeps memory flat", async () => {
    const gpu = await getGpu();
    const r = rng(3);
    using h = upload(gpu, uniform(r, 16 * 32), [16, 32], true);
    using w = upload(gpu, uniform(r, 100 * 32), [100, 32], true);
    using t = Tensor.fromArray(gpu, makeTargets(r, 16, 100, -100, 3), [16], { dtype: "i32" });
    const host = makeTargets(r, 16, 100, -100, 4);
    const { start, end } = await expectFlatMemory(gpu, 20, (it) => {
      const loss = linearCrossEntropy(h, w, it % 2 ? t : host, { chunk: 24 });
      loss.backward();
      loss.release();
      h.zeroGrad();
      w.zeroGrad();
    });
    expect(end.liveBytes).toBe(start.liveBytes);
  });
});

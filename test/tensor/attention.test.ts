// Attention (src/tensor/ops/attention.ts), fused and unfused: forward and dq/dk/dv through the op against the
// explicit-softmax float64 reference of test/reference/attention.ts (itself checked by central differences)
// over T in {1, 5, 17, 64}, Dh in {8, 16, 64}, Hq/Hkv in {2/2, 4/2, 4/1}, B in {1, 2}, causal or not, no / left /
// right key padding, in both layouts ([B, H, T, Dh] and "bthd" [B, T, H, Dh]: the reference's bhtd arrays are
// transposed on the host going in and coming out); against the PyTorch goldens; odd block sizes; rows with no visible key (0, never NaN); no T x T buffer at T = 512; flat memory
// over a training-style loop; shape errors. Every fresh tensor starts as NaN. The fused kernels' launchers
// on their own are rows of test/kernels/rows/attention.ts (the unfused softmax's of rows/softmax.ts).
import { describe, expect, test } from "bun:test";
import { attention, type AttentionBlocks, type AttentionLayout } from "../../src/tensor/ops/attention.ts";
import { noGrad, scope, Tensor } from "../../src/tensor/index.ts";
import { attentionBackward as refBackward, attentionForward as refForward, paddingMask, swap12, type AttentionDims, type Padding } from "../reference/attention.ts";
import { loadGoldens } from "./goldens.ts";
import { centralDiff, expectClose, getGpu, numel, rng, seedOf, uniform, upload } from "./helpers.ts";

type Dims = AttentionDims;

/**
 * The float64 reference (test/reference/attention.ts): the forward, then the backward of sum(out * G) from the
 * reference forward's out and lse.
 */
function reference(Q: Float64Array, K: Float64Array, V: Float64Array, G: Float64Array, d: Dims, causal: boolean, mask: Float64Array | undefined, scale: number) {
  const o = { ...d, causal, scale };
  const f = refForward({ q: Q, k: K, v: V, mask }, o);
  return { ...f, ...refBackward({ q: Q, k: K, v: V, mask, out: f.out, lse: f.lse, dout: G }, o) };
}


interface Case {
  d: Dims;
  causal: boolean;
  pad: Padding;
  scale?: number;
  blocks?: Partial<AttentionBlocks>;
  /** q, k, v and out as [B, H, T, Dh] (default) or [B, T, H, Dh]. */
  layout?: AttentionLayout;
}

const name = (c: Case) =>
  `B${c.d.B} H${c.d.Hq}/${c.d.Hkv} T${c.d.T} Dh${c.d.Dh} ${c.causal ? "causal" : "full"} pad=${c.pad}` +
  (c.scale !== undefined ? ` scale=${c.scale}` : "") +
  (c.blocks ? ` blocks=${JSON.stringify(c.blocks)}` : "") +
  (c.layout ? ` ${c.layout}` : "");

const LAYOUTS: readonly AttentionLayout[] = ["bhtd", "bthd"];

/** Host data [B, H, T, Dh] to `layout` and back, and the shape in `layout`. */
function layoutOf(layout: AttentionLayout, B: number, T: number, Dh: number) {
  const bthd = layout === "bthd";
  return {
    shape: (H: number) => (bthd ? [B, T, H, Dh] : [B, H, T, Dh]),
    to: (x: Float64Array, H: number) => (bthd ? swap12(x, [B, H, T, Dh]) : x),
    from: (x: ArrayLike<number>, H: number) => (bthd ? swap12(x, [B, T, H, Dh]) : x),
  };
}

/** Run one case on the GPU (forward, then backward of sum(out * G)) and compare with the reference. */
async function check(c: Case): Promise<void> {
  const gpu = await getGpu();
  const { d } = c;
  const what = name(c);
  const r = rng(seedOf(what));
  const qShape = [d.B, d.Hq, d.T, d.Dh];
  const kShape = [d.B, d.Hkv, d.T, d.Dh];
  const Q = uniform(r, numel(qShape), -2, 2); // wide enough that softmax rows are far from uniform
  const K = uniform(r, numel(kShape), -2, 2);
  const V = uniform(r, numel(kShape));
  const G = uniform(r, numel(qShape));
  const M = paddingMask(d.B, d.T, c.pad);
  const scale = c.scale ?? 1 / Math.sqrt(d.Dh);
  const ref = reference(Q, K, V, G, d, c.causal, M, scale);

  // Uploaded (and read back) in the case's layout; the reference works in [B, H, T, Dh].
  const L = layoutOf(c.layout ?? "bhtd", d.B, d.T, d.Dh);
  const [q, k, v] = [upload(gpu, L.to(Q, d.Hq), L.shape(d.Hq), true), upload(gpu, L.to(K, d.Hkv), L.shape(d.Hkv), true), upload(gpu, L.to(V, d.Hkv), L.shape(d.Hkv), true)];
  const mask = M && upload(gpu, M, [d.B, d.T]);
  const g = upload(gpu, L.to(G, d.Hq), L.shape(d.Hq));
  const out = attention(q, k, v, { causal: c.causal, keyPaddingMask: mask, scale: c.scale, blocks: c.blocks, layout: c.layout });
  expect(out.shape).toEqual(L.shape(d.Hq));
  const tol = { rtol: 1e-3, atol: 1e-6 };
  expectClose(`${what} forward`, L.from(await out.toArray(), d.Hq), ref.out, { ...tol, mag: ref.outMag });
  out.backward(g);
  expectClose(`${what} dq`, L.from(await q.grad!.toArray(), d.Hq), ref.dq, { ...tol, mag: ref.dqMag });
  expectClose(`${what} dk`, L.from(await k.grad!.toArray(), d.Hkv), ref.dk, { ...tol, mag: ref.dkMag });
  expectClose(`${what} dv`, L.from(await v.grad!.toArray(), d.Hkv), ref.dv, { ...tol, mag: ref.dvMag });
  for (const t of [q, k, v, g, out, mask]) t?.release();
}

/** Tests that compile new pipelines: a cold compile on lavapipe takes about 1 s per kernel specialization. */
const COMPILES = 120_000;

const HEADS: [number, number][] = [
  [2, 2],
  [4, 2],
  [4, 1],
];

// flash: the fused kernels (kernels/attention.wgsl); unfused: matmul + masked softmax + matmul, what CPU
// adapters run for T >= 128 (the device's `policy.attention`, src/gpu/policy.ts). Both are held to the same references.
const KERNELS = ["flash", "unfused"] as const;

describe("attention", () => {
  test("the float64 reference's gradients match central differences (GQA, causal, padding, an empty row)", () => {
    const d: Dims = { B: 2, Hq: 2, Hkv: 1, T: 4, Dh: 3 };
    const r = rng(11);
    const n = numel([d.B, d.Hq, d.T, d.Dh]);
    const nk = numel([d.B, d.Hkv, d.T, d.Dh]);
    const [Q, K, V, G] = [uniform(r, n, -2, 2), uniform(r, nk, -2, 2), uniform(r, nk), uniform(r, n)];
    const M = Float64Array.of(1, 1, 1, 0, 0, 1, 1, 1); // batch 1, query 0: no visible key under causal
    const ref = reference(Q, K, V, G, d, true, M, 0.7);
    expect(ref.hasKey.filter((x) => !x).length).toBe(d.Hq);
    const loss = (q: Float64Array, k: Float64Array, v: Float64Array) => reference(q, k, v, G, d, true, M, 0.7).out.reduce((a, o, i) => a + o * G[i]!, 0);
    const tol = { rtol: 1e-6, atol: 1e-8 };
    expectClose("dq", ref.dq, centralDiff((x) => loss(x, K, V), Q.slice()), tol);
    expectClose("dk", ref.dk, centralDiff((x) => loss(Q, x, V), K.slice()), tol);
    expectClose("dv", ref.dv, centralDiff((x) => loss(Q, K, x), V.slice()), tol);
  });

  // Every (T, Dh) pair, cycling heads and batch over them, each with every causal x padding combination.
  for (const kernel of KERNELS)
  [1, 5, 17, 64].forEach((T, ti) =>
    test(`${kernel}, T=${T}: forward, dq, dk, dv for Dh 8/16/64, causal or not, no/left/right padding, both layouts`, async () => {
      const gpu = await getGpu();
      await gpu.withPolicy({ attention: { kernel } }, async () => {
        for (const [di, Dh] of [8, 16, 64].entries()) {
          const [Hq, Hkv] = HEADS[(ti + di) % 3]!;
          const B = 1 + ((ti + di) % 2);
          for (const layout of LAYOUTS)
            for (const causal of [true, false])
              for (const pad of ["none", "left", "right"] as Padding[]) await check({ d: { B, Hq, Hkv, T, Dh }, causal, pad, layout });
        }
      });
    }, COMPILES),
  );

  test("block sizes that divide nothing: lanes with unequal or no columns, 1-query tiles, 256-wide workgroups", async () => {
    // Dh 8 = 2 vec4 over 3 lanes: lane 2 owns none; tiles of 5 queries and 7 keys.
    await check({ d: { B: 2, Hq: 4, Hkv: 2, T: 17, Dh: 8 }, causal: true, pad: "left", blocks: { bq: 5, bk: 7, tpr: 3 } });
    // Dh 16 = 4 vec4 over 3 lanes (2, 1, 1 each); one query per forward/dQ workgroup, one per dK/dV tile.
    await check({ d: { B: 1, Hq: 4, Hkv: 1, T: 23, Dh: 16 }, causal: false, pad: "right", scale: 0.5, blocks: { bq: 1, bk: 3, tpr: 3 } });
    // 32 x 8 lanes = 256 invocations, tiles of 2 keys; in dK/dV 2 x 8 = 16 invocations load 32-query tiles.
    await check({ d: { B: 2, Hq: 2, Hkv: 2, T: 64, Dh: 64 }, causal: true, pad: "right", blocks: { bq: 32, bk: 2, tpr: 8 } });
    // The same in [B, T, H, Dh]: strided tile rows across tiles that straddle heads' rows, GQA 4:2 and 4:1.
    await check({ d: { B: 2, Hq: 4, Hkv: 2, T: 17, Dh: 8 }, causal: true, pad: "left", blocks: { bq: 5, bk: 7, tpr: 3 }, layout: "bthd" });
    await check({ d: { B: 1, Hq: 4, Hkv: 1, T: 23, Dh: 16 }, causal: false, pad: "right", scale: 0.5, blocks: { bq: 1, bk: 3, tpr: 3 }, layout: "bthd" });
    await check({ d: { B: 2, Hq: 4, Hkv: 2, T: 37, Dh: 64 }, causal: true, pad: "left", blocks: { bq: 32, bk: 2, tpr: 8 }, layout: "bthd" });
  }, COMPILES);

  // The unfused path in [B, T, H, Dh] (it transposes around its matmuls) at T >= 128, where CPU adapters choose it.
  for (const kernel of KERNELS)
    test(`${kernel}: T = 130, GQA 4:2, causal with left padding, [B, T, H, Dh]`, async () => {
      const gpu = await getGpu();
      await gpu.withPolicy({ attention: { kernel } }, () => check({ d: { B: 2, Hq: 4, Hkv: 2, T: 130, Dh: 16 }, causal: true, pad: "left", layout: "bthd" }));
    }, COMPILES);

  test("Dh = 256 (Gemma) fits by shrinking the tiles to the device's workgroup memory", async () => {
    await check({ d: { B: 1, Hq: 2, Hkv: 1, T: 19, Dh: 256 }, causal: true, pad: "right" });
    await check({ d: { B: 1, Hq: 2, Hkv: 1, T: 19, Dh: 256 }, causal: true, pad: "right", layout: "bthd" });
  }, COMPILES);

  for (const kernel of KERNELS)
  test(`${kernel}: a query row with no visible key gives 0 and zero gradients, never NaN`, async () => {
    const gpu = await getGpu();
    await gpu.withPolicy({ attention: { kernel } }, async () => {
      const d: Dims = { B: 2, Hq: 2, Hkv: 1, T: 5, Dh: 8 };
      const r = rng(3);
      const qShape = [d.B, d.Hq, d.T, d.Dh];
      const kShape = [d.B, d.Hkv, d.T, d.Dh];
      // batch 0: left padding of 3 (queries 0-2 see nothing under causal); batch 1: every key padded.
      const M = Float64Array.of(0, 0, 0, 1, 1, 0, 0, 0, 0, 0);
      for (const causal of [true, false]) {
        const [Q, K, V, G] = [uniform(r, numel(qShape)), uniform(r, numel(kShape)), uniform(r, numel(kShape)), uniform(r, numel(qShape))];
        const ref = reference(Q, K, V, G, d, causal, M, 1 / Math.sqrt(d.Dh));
        const [q, k, v, g, mask] = [upload(gpu, Q, qShape, true), upload(gpu, K, kShape, true), upload(gpu, V, kShape, true), upload(gpu, G, qShape), upload(gpu, M, [d.B, d.T])];
        const out = attention(q, k, v, { causal, keyPaddingMask: mask });
        out.backward(g);
        const [o, dq, dk, dv] = await Promise.all([out.toArray(), q.grad!.toArray(), k.grad!.toArray(), v.grad!.toArray()]);
        for (const x of [o, dq, dk, dv]) expect(x.some(Number.isNaN)).toBe(false);
        ref.hasKey.forEach((has, row) => {
          if (has) return;
          for (let c = 0; c < d.Dh; c++) {
            expect(o[row * d.Dh + c]).toBe(0);
            expect(dq[row * d.Dh + c]).toBe(0);
          }
        });
        expect(ref.hasKey.filter((x) => !x).length).toBe(causal ? 2 * 3 + 2 * 5 : 2 * 5);
        expectClose("masked rows: forward", o, ref.out, { rtol: 1e-3, mag: ref.outMag });
        expectClose("masked rows: dk", dk, ref.dk, { rtol: 1e-3, mag: ref.dkMag });
        expectClose("masked rows: dv", dv, ref.dv, { rtol: 1e-3, mag: ref.dvMag });
        for (const t of [q, k, v, g, mask, out]) t.release();
      }
    });
  });

  for (const kernel of KERNELS)
  test(`${kernel}: matches the PyTorch goldens (explicit float64 math) on rows that see a key`, async () => {
    const gpu = await getGpu();
    await gpu.withPolicy({ attention: { kernel } }, async () => {
      for (const gc of loadGoldens("attention")) {
        const [B, Hq, T, Dh] = gc.inputs.q!.shape as [number, number, number, number];
        const d: Dims = { B, Hq, Hkv: gc.inputs.k!.shape[1]!, T, Dh };
        const causal = gc.params.causal as boolean;
        const scale = (gc.params.scale as number | undefined) ?? 1 / Math.sqrt(Dh);
        const f64 = (n: string, src = gc.inputs) => Float64Array.from(src[n]!.data);
        const M = gc.inputs.mask && f64("mask");
        // The float64 reference on the same inputs supplies the rows with keys and the error scales.
        const ref = reference(f64("q"), f64("k"), f64("v"), f64("out", gc.upstream), d, causal, M, scale);
        const t = (n: string, grad = false) => upload(gpu, f64(n), gc.inputs[n]!.shape, grad);
        const [q, k, v, mask] = [t("q", true), t("k", true), t("v", true), M && t("mask")];
        const g = upload(gpu, f64("out", gc.upstream), gc.upstream.out!.shape);
        const out = attention(q, k, v, { causal, keyPaddingMask: mask, scale: gc.params.scale as number | undefined });
        out.backward(g);
        const rows = (x: ArrayLike<number>) => Array.from(x).filter((_, e) => ref.hasKey[Math.floor(e / Dh)]);
        const tol = { rtol: 1e-3, atol: 1e-6 };
        expectClose(`${gc.name} out`, rows(await out.toArray()), rows(gc.outputs.out!.data), { ...tol, mag: rows(ref.outMag) });
        expectClose(`${gc.name} dq`, await q.grad!.toArray(), gc.grads.q!.data, { ...tol, mag: ref.dqMag });
        expectClose(`${gc.name} dk`, await k.grad!.toArray(), gc.grads.k!.data, { ...tol, mag: ref.dkMag });
        expectClose(`${gc.name} dv`, await v.grad!.toArray(), gc.grads.v!.data, { ...tol, mag: ref.dvMag });
        for (const x of [q, k, v, g, out, mask]) x?.release();
      }
    });
  });

  test("only the inputs that require grad get one", async () => {
    const gpu = await getGpu();
    const r = rng(8);
    const shape = [1, 2, 6, 8];
    const [Q, K, V, G] = [uniform(r, 96), uniform(r, 96), uniform(r, 96), uniform(r, 96)];
    const d: Dims = { B: 1, Hq: 2, Hkv: 2, T: 6, Dh: 8 };
    const ref = reference(Q, K, V, G, d, true, undefined, 1 / Math.sqrt(8));
    for (const needs of [[true, false, false], [false, true, false], [false, false, true], [false, true, true]]) {
      const [q, k, v] = [Q, K, V].map((x, i) => upload(gpu, x, shape, needs[i]));
      using g = upload(gpu, G, shape);
      using out = attention(q!, k!, v!);
      out.backward(g);
      const grads = [q!.grad, k!.grad, v!.grad];
      for (const [i, want] of [ref.dq, ref.dk, ref.dv].entries()) {
        if (!needs[i]) expect(grads[i]).toBeNull();
        else expectClose(`needs ${needs} grad ${i}`, await grads[i]!.toArray(), want, { rtol: 1e-3 });
      }
      for (const t of [q, k, v]) t!.release();
    }
  });

  test("flash, T = 512: forward and backward each grow memory by less than one head's T*T*4-byte score matrix", async () => {
    const gpu = await getGpu();
    await gpu.withPolicy({ attention: { kernel: "flash" } }, async () => {
      const T = 512;
      const r = rng(5);
      const [qShape, kShape] = [[1, 2, T, 16], [1, 1, T, 16]];
      const [q, k, v] = [qShape, kShape, kShape].map((s) => upload(gpu, uniform(r, numel(s)), s, true)) as [Tensor, Tensor, Tensor];
      const g = upload(gpu, uniform(r, numel(qShape)), qShape);
      const mask = upload(gpu, paddingMask(1, T, "left")!, [1, T]);
      await gpu.sync();
      const base = gpu.memory().liveBytes;
      gpu.pool.resetPeak();
      const out = attention(q, k, v, { keyPaddingMask: mask });
      const fwdPeak = gpu.memory().peakBytes - base;
      const afterFwd = gpu.memory().liveBytes;
      gpu.pool.resetPeak();
      out.backward(g);
      const bwdPeak = gpu.memory().peakBytes - afterFwd;
      await gpu.sync();
      expect(fwdPeak).toBeGreaterThan(0); // out and lse
      expect(fwdPeak).toBeLessThan(T * T * 4);
      expect(bwdPeak).toBeGreaterThan(0); // stats and the gradients
      expect(bwdPeak).toBeLessThan(T * T * 4);
      expect(Number.isFinite((await q.grad!.toArray())[0]!)).toBe(true);
      for (const t of [q, k, v, g, mask, out]) t.release();
    });
  });

  for (const kernel of KERNELS)
  test(`${kernel}: 50 steps of forward + backward keep live buffers and bytes flat`, async () => {
    const gpu = await getGpu();
    await gpu.withPolicy({ attention: { kernel } }, async () => {
      const r = rng(6);
      const [qShape, kShape] = [[2, 4, 33, 16], [2, 2, 33, 16]];
      const [q, k, v] = [qShape, kShape, kShape].map((s) => upload(gpu, uniform(r, numel(s)), s, true)) as [Tensor, Tensor, Tensor];
      const g = upload(gpu, uniform(r, numel(qShape)), qShape);
      const mask = upload(gpu, paddingMask(2, 33, "right")!, [2, 33]);
      await gpu.sync();
      const start = gpu.memory();
      let warm = start;
      for (let it = 0; it < 50; it++) {
        scope(() => attention(q, k, v, { keyPaddingMask: mask }).backward(g));
        for (const t of [q, k, v]) t.zeroGrad();
        if (it === 4) {
          await gpu.sync();
          warm = gpu.memory();
        }
      }
      await gpu.sync();
      const end = gpu.memory();
      expect(end.liveBuffers).toBe(warm.liveBuffers);
      expect(end.liveBytes).toBe(warm.liveBytes);
      expect(end.created).toBe(warm.created); // the pool served every step from its cache
      expect(end.liveBytes).toBe(start.liveBytes);
      for (const t of [q, k, v, g, mask]) t.release();
    });
  });

  test("no autograd record under noGrad or without inputs that require grad", async () => {
    const gpu = await getGpu();
    using q = Tensor.ones(gpu, [1, 1, 3, 8], { requiresGrad: true });
    using k = Tensor.ones(gpu, [1, 1, 3, 8]);
    using a = noGrad(() => attention(q, k, k));
    expect(a.requiresGrad).toBe(false);
    using b = attention(k, k, k);
    expect(b.gradFn).toBeNull();
    expectClose("uniform attention", await b.toArray(), new Array(24).fill(1));
  });

  test("bad shapes, dtypes and block sizes fail at the call site, naming the op and the shapes", async () => {
    const gpu = await getGpu();
    using q = Tensor.zeros(gpu, [2, 4, 5, 8]);
    using k = Tensor.zeros(gpu, [2, 2, 5, 8]);
    using k3 = Tensor.zeros(gpu, [2, 3, 5, 8]);
    using k6 = Tensor.zeros(gpu, [2, 2, 6, 8]);
    using q3 = Tensor.zeros(gpu, [2, 4, 5, 6]);
    using flat = Tensor.zeros(gpu, [8, 5, 8]);
    using m = Tensor.ones(gpu, [2, 6]);
    using mi = Tensor.fromArray(gpu, new Array(10).fill(1), [2, 5], { dtype: "i32" });
    expect(() => attention(flat, k, k)).toThrow("attention: q, k and v must be 4-D [B, heads, T, Dh] (q [8, 5, 8], k [2, 2, 5, 8], v [2, 2, 5, 8])");
    expect(() => attention(flat, k, k, { layout: "bthd" })).toThrow("attention: q, k and v must be 4-D [B, T, heads, Dh]");
    // [2, 4, 5, 8] read as [B, T, H, Dh] has T = 4 and 5 query heads; k [2, 2, 5, 8] has T = 2.
    expect(() => attention(q, k, k, { layout: "bthd" })).toThrow("attention: k and v must match q in batch, sequence length and head dim");
    expect(() => attention(q, k, k, { layout: "bhdt" as never })).toThrow('attention: layout must be "bhtd" or "bthd", got bhdt');
    expect(() => attention(q, k3, k3)).toThrow("attention: query heads (4) must be a multiple of key/value heads (3)");
    expect(() => attention(q, k6, k6)).toThrow("attention: k and v must match q in batch, sequence length and head dim");
    expect(() => attention(q, k, k6)).toThrow("attention: k and v must have the same shape");
    expect(() => attention(q3, q3, q3)).toThrow("attention: head dim 6 must be a multiple of 4");
    expect(() => attention(q, k, k, { keyPaddingMask: m })).toThrow("attention: keyPaddingMask must be [B, T] = [2, 5] (q [2, 4, 5, 8], k [2, 2, 5, 8], v [2, 2, 5, 8], keyPaddingMask [2, 6])");
    expect(() => attention(q, k, k, { keyPaddingMask: mi })).toThrow("attention: Tensor([2, 5], i32) has dtype i32");
    expect(() => attention(q, k, k, { blocks: { bq: 0 } })).toThrow("attention: block size bq=0 must be a positive integer");
    expect(() => attention(q, k, k, { blocks: { bk: 4096 } })).toThrow("attention: fwd tiles");
  });
});

// cross_entropy (with ignoreIndex), masked_mean, l2_normalize and the cosine-similarity matrix: forward and
// input gradients through the ops against the float64 references of test/reference/loss.ts (their gradients
// checked here by central differences; the launchers on their own are rows of test/kernels/rows/loss.ts), on
// sizes shorter and longer than the 256-wide workgroup (rows of 1, 7, 300, 5000), large logits (+-80), the
// PyTorch goldens, PyTorch 1.13's all-ignored semantics (NaN loss, zero gradient), invalid targets (host:
// TensorError; GPU: NaN), shape errors at the call site, and a memory-flat loop. Fresh tensors are NaN.
import { describe, expect, test } from "bun:test";
import { scope, Tensor } from "../../src/tensor/index.ts";
import { checkTargets, cosineSimilarityMatrix, crossEntropy, l2Normalize, maskedMean } from "../../src/tensor/ops/loss.ts";
import * as ref from "../reference/loss.ts";
import { loadGoldens } from "./goldens.ts";
import { expectFlatMemory } from "../helpers.ts";
import { centralDiff, expectClose, getGpu, rng, seedOf, uniform, upload } from "./helpers.ts";

// ---- the float64 references (test/reference/loss.ts), as the op tests call them ---------------------------

/** Mean cross-entropy, its gradient wrt the logits (times upstream gs), and per-element |terms| scale. */
function refCrossEntropy(X: Float64Array, T: ArrayLike<number>, V: number, ignore: number, gs = 1) {
  const o = { rows: T.length, classes: V, ignoreIndex: ignore };
  const f = ref.crossEntropyForward({ logits: X, targets: T }, o);
  const b = ref.crossEntropyBackward({ logits: X, targets: T, stats: f.stats, dloss: [gs] }, o);
  return { loss: f.loss[0]!, grad: b.dlogits, mag: b.dlogitsMag };
}

/** Rows of x / max(||x||, eps), and the gradient for upstream G. */
function refL2(X: Float64Array, n: number, G: Float64Array | null, eps = 1e-12) {
  const o = { rows: X.length / n, n, eps };
  const b = ref.l2NormalizeBackward({ x: X, dy: G ?? new Float64Array(X.length) }, o);
  return { y: ref.l2NormalizeForward({ x: X }, o).y, grad: b.dx, mag: b.dxMag };
}

/** out [N, M] = l2(A) l2(B)ᵀ and the gradients wrt A and B for upstream G [N, M]. */
function refCosine(A: Float64Array, B: Float64Array, N: number, M: number, D: number, G: Float64Array) {
  const r = ref.cosineSimilarityMatrix({ a: A, b: B, dout: G }, { N, M, D });
  return { out: r.out, ga: r.da, gb: r.db, magA: r.daMag, magB: r.dbMag };
}

/** Masked mean of X [B, T, D] by mask [B, T], and its gradient for upstream G [B, D]. */
function refMaskedMean(X: Float64Array, Mk: ArrayLike<number>, B: number, T: number, D: number, G: Float64Array) {
  const mask = Float64Array.from(Mk);
  const f = ref.maskedMeanForward({ x: X, mask }, { B, T, D });
  return { out: f.out, mag: f.outMag, grad: ref.maskedMeanBackward({ dout: G, mask, inv: f.inv }, { B, T, D }).dx };
}

// ---- cross-entropy ------------------------------------------------------------------------------------

/** Targets for N rows of V classes: random classes, every `ignoreEvery`-th row ignored. */
function makeTargets(r: () => number, N: number, V: number, ignore: number, ignoreEvery: number): Int32Array {
  const t = new Int32Array(N);
  for (let i = 0; i < N; i++) {
    t[i] = ignoreEvery && i % ignoreEvery === 1 ? ignore : Math.floor(r() * V);
    if (t[i] === ignore && !(ignoreEvery && i % ignoreEvery === 1)) t[i] = (ignore + 1) % V;
  }
  return t;
}

async function checkCE(N: number, V: number, o: { ignore?: number; ignoreEvery?: number; lo?: number; hi?: number; onGpu?: boolean } = {}): Promise<void> {
  const gpu = await getGpu();
  const ignore = o.ignore ?? -100;
  const what = `cross_entropy([${N}, ${V}], ignore ${ignore} every ${o.ignoreEvery ?? 0}, logits in [${o.lo ?? -3}, ${o.hi ?? 3}], targets on ${o.onGpu ? "GPU" : "host"})`;
  const r = rng(seedOf(what));
  const X = uniform(r, N * V, o.lo ?? -3, o.hi ?? 3);
  const T = makeTargets(r, N, V, ignore, o.ignoreEvery ?? 0);
  const gs = Math.fround(0.5 + r());
  const ref = refCrossEntropy(X, T, V, ignore, gs);
  const x = upload(gpu, X, [N, V], true);
  const t = o.onGpu ? Tensor.fromArray(gpu, T, [N], { dtype: "i32" }) : null;
  const loss = crossEntropy(x, t ?? T, { ignoreIndex: ignore });
  expect(loss.shape).toEqual([]);
  expectClose(`${what} loss`, [await loss.item()], [ref.loss]);
  const g = Tensor.fromArray(gpu, [gs], []);
  loss.backward(g);
  expectClose(`${what} grad`, await x.grad!.toArray(), ref.grad, { mag: ref.mag });
  for (const v of [x, loss, g, t]) v?.release();
}

describe("cross_entropy", () => {
  test("forward and gradient against float64: rows of 1 to 5000 classes, ignored rows, targets on host or GPU", async () => {
    await checkCE(1, 1);
    await checkCE(6, 7, { ignoreEvery: 3 });
    await checkCE(5, 300, { ignoreEvery: 2, onGpu: true });
    await checkCE(3, 5000, { ignoreEvery: 3 });
    await checkCE(300, 11, { ignoreEvery: 7, onGpu: true }); // more rows than a workgroup (the mean)
    await checkCE(8, 13, { ignore: 0, ignoreEvery: 2 }); // an ignoreIndex inside [0, V)
    await checkCE(4, 37, { ignore: 5, ignoreEvery: 2, onGpu: true });
  });

  test("stable for large logits (+-80)", async () => {
    await checkCE(4, 37, { lo: -80, hi: 80, ignoreEvery: 3 });
    await checkCE(2, 5000, { lo: -80, hi: 80 });
  });

  test("a 2-D grid of row workgroups (x capped at 2) covers every row", async () => {
    const gpu = await getGpu();
    await gpu.withPolicy({ grid: { maxX: 2 } }, async () => {
      await checkCE(7, 9, { ignoreEvery: 3 });
    });
  });

  test("every target ignored, or no rows: NaN loss and zero gradient, as PyTorch 1.13", async () => {
    // torch 1.13: F.cross_entropy(x, torch.tensor([-100, -100, -100])) is nan; x.grad is all zeros.
    const gpu = await getGpu();
    for (const [N, V] of [[3, 5], [0, 4]] as const) {
      using x = upload(gpu, uniform(rng(N), N * V), [N, V], true);
      using loss = crossEntropy(x, new Array<number>(N).fill(-100));
      expect(Number.isNaN(await loss.item())).toBe(true);
      loss.backward();
      expect([...(await x.grad!.toArray())]).toEqual(new Array<number>(N * V).fill(0));
    }
  });

  test("invalid targets: host data raises at the call site; GPU targets give NaN (and checkTargets raises)", async () => {
    const gpu = await getGpu();
    using x = upload(gpu, uniform(rng(2), 3 * 5), [3, 5], true);
    expect(() => crossEntropy(x, [1, 5, 0])).toThrow("cross_entropy: target 5 at index 1 is out of range [0, 5) (ignoreIndex -100)");
    expect(() => crossEntropy(x, [1, -1, 0])).toThrow("target -1 at index 1 is out of range");
    expect(() => crossEntropy(x, [1, 0.5, 0])).toThrow("target 0.5 at index 1");
    expect(() => crossEntropy(x, [0, -100, 7], { ignoreIndex: 7 })).toThrow("target -100 at index 1 is out of range [0, 5) (ignoreIndex 7)");
    using t = Tensor.fromArray(gpu, [1, 5, 0], [3], { dtype: "i32" });
    using loss = crossEntropy(x, t);
    expect(Number.isNaN(await loss.item())).toBe(true);
    loss.backward();
    const gx = await x.grad!.toArray();
    expect(gx.slice(5, 10).every(Number.isNaN)).toBe(true); // the invalid row
    expect([...gx.slice(0, 5), ...gx.slice(10)].every(Number.isFinite)).toBe(true);
    await expect(checkTargets(t, 5)).rejects.toThrow("cross_entropy: target 5 at index 1 is out of range [0, 5)");
    using ok = Tensor.fromArray(gpu, [1, -100, 4], [3], { dtype: "i32" });
    await checkTargets(ok, 5);
  });

  test("shape and dtype errors name the op and the shapes", async () => {
    const gpu = await getGpu();
    using x = Tensor.zeros(gpu, [3, 5]);
    using x3 = Tensor.zeros(gpu, [2, 3, 5]);
    using tf = Tensor.zeros(gpu, [3]);
    using t4 = Tensor.fromArray(gpu, [0, 0, 0, 0], [4], { dtype: "i32" });
    expect(() => crossEntropy(x3, [0, 0])).toThrow("cross_entropy: logits must be [N, V], got [2, 3, 5]");
    expect(() => crossEntropy(x, tf)).toThrow("cross_entropy: targets Tensor([3], f32) must have dtype i32");
    expect(() => crossEntropy(x, t4)).toThrow("cross_entropy: targets [4] do not match logits [3, 5] (expected [3])");
    expect(() => crossEntropy(x, [0, 0])).toThrow("cross_entropy: 2 targets do not match logits [3, 5] (expected 3)");
    expect(() => crossEntropy(x, [0, 0, 0], { ignoreIndex: 0.5 })).toThrow("cross_entropy: ignoreIndex must be an i32 integer");
  });

  test("the float64 reference gradient matches central differences", () => {
    const r = rng(12);
    const X = uniform(r, 3 * 4, -2, 2);
    const T = [2, -100, 0];
    const f = (x: Float64Array) => refCrossEntropy(x, T, 4, -100).loss;
    expectClose("cross-entropy reference gradient", refCrossEntropy(X, T, 4, -100).grad, centralDiff(f, X), { rtol: 1e-6, atol: 1e-8 });
  });
});

// ---- masked mean --------------------------------------------------------------------------------------

async function checkMaskedMean(B: number, T: number, D: number): Promise<void> {
  const gpu = await getGpu();
  const what = `masked_mean([${B}, ${T}, ${D}])`;
  const r = rng(seedOf(what));
  const X = uniform(r, B * T * D);
  const Mk = new Float32Array(B * T).map(() => (r() < 0.6 ? 1 : 0));
  if (B > 1) Mk.fill(0, T, 2 * T); // row 1: an empty mask
  const Xg = Float32Array.from(X);
  for (let i = 0; i < Xg.length; i++) if (!Mk[Math.floor(i / D)]) Xg[i] = Number.NaN; // garbage where masked out
  const G = uniform(r, B * D);
  const ref = refMaskedMean(X, Mk, B, T, D, G);
  const x = Tensor.fromArray(gpu, Xg, [B, T, D], { requiresGrad: true });
  const m = Tensor.fromArray(gpu, Mk, [B, T], { requiresGrad: true });
  const y = maskedMean(x, m);
  expect(y.shape).toEqual([B, D]);
  expectClose(`${what} forward`, await y.toArray(), ref.out, { mag: ref.mag });
  const g = upload(gpu, G, [B, D]);
  y.backward(g);
  expectClose(`${what} grad`, await x.grad!.toArray(), ref.grad);
  expect(m.grad).toBeNull(); // the mask is a constant
  for (const t of [x, m, y, g]) t.release();
}

describe("masked_mean", () => {
  test("forward and gradient against float64, empty mask rows give zeros, masked-out NaN never leaks", async () => {
    await checkMaskedMean(1, 1, 1);
    await checkMaskedMean(3, 5, 7);
    await checkMaskedMean(2, 9, 300);
    await checkMaskedMean(4, 30, 70); // 280 outputs: two workgroups
  });

  test("shape errors name the op and the shapes", async () => {
    const gpu = await getGpu();
    using x = Tensor.zeros(gpu, [2, 3, 4]);
    using m = Tensor.zeros(gpu, [2, 4]);
    using x2 = Tensor.zeros(gpu, [2, 3]);
    expect(() => maskedMean(x, m)).toThrow("masked_mean: x must be [B, T, D] and mask [B, T]; got x [2, 3, 4] and mask [2, 4]");
    expect(() => maskedMean(x2, x2)).toThrow("masked_mean: x must be [B, T, D] and mask [B, T]; got x [2, 3] and mask [2, 3]");
  });
});

// ---- l2_normalize and the cosine matrix ---------------------------------------------------------------

async function checkL2(rows: number, n: number, special = false): Promise<void> {
  const gpu = await getGpu();
  const what = `l2_normalize([${rows}, ${n}]${special ? ", zero and tiny rows" : ""})`;
  const r = rng(seedOf(what));
  const X = uniform(r, rows * n, -2, 2);
  if (special) {
    X.fill(0, 0, n); // norm 0
    X.fill(Math.fround(1e-15), n, 2 * n); // norm < eps = 1e-12
    X.fill(Math.fround(1e-10), 2 * n, 3 * n); // norm > eps, tiny
  }
  const G = uniform(r, X.length);
  const ref = refL2(X, n, G);
  const x = upload(gpu, X, [rows, n], true);
  const y = l2Normalize(x);
  expectClose(`${what} forward`, await y.toArray(), ref.y);
  const g = upload(gpu, G, [rows, n]);
  y.backward(g);
  expectClose(`${what} grad`, await x.grad!.toArray(), ref.grad, { mag: ref.mag });
  for (const t of [x, y, g]) t.release();
}

async function checkCosine(N: number, M: number, D: number, same = false, needs: [boolean, boolean] = [true, true]): Promise<void> {
  const gpu = await getGpu();
  const what = `cosine_similarity_matrix([${N}, ${D}], [${M}, ${D}]${same ? ", b = a" : ""}, needs ${needs})`;
  const r = rng(seedOf(what));
  const A = uniform(r, N * D);
  if (N > 2) A.fill(0, D, 2 * D); // a zero row: similarity 0
  const B = same ? A : uniform(r, M * D);
  const G = uniform(r, N * M);
  const ref = refCosine(A, B, N, M, D, G);
  const a = upload(gpu, A, [N, D], needs[0]);
  const b = same ? a : upload(gpu, B, [M, D], needs[1]);
  const out = cosineSimilarityMatrix(a, b);
  expect(out.shape).toEqual([N, M]);
  expectClose(`${what} forward`, await out.toArray(), ref.out);
  const g = upload(gpu, G, [N, M]);
  out.backward(g);
  if (same) {
    const both = ref.ga.map((v, i) => v + ref.gb[i]!);
    expectClose(`${what} grad`, await a.grad!.toArray(), both, { mag: ref.magA.map((v, i) => v + ref.magB[i]!) });
  } else {
    if (needs[0]) expectClose(`${what} grad a`, await a.grad!.toArray(), ref.ga, { mag: ref.magA });
    else expect(a.grad).toBeNull();
    if (needs[1]) expectClose(`${what} grad b`, await b.grad!.toArray(), ref.gb, { mag: ref.magB });
    else expect(b.grad).toBeNull();
  }
  for (const t of new Set([a, b, out, g])) t.release();
}

describe("l2_normalize and cosine_similarity_matrix", () => {
  test("l2_normalize: forward and gradient on rows of 1 to 5000, zero and tiny rows", async () => {
    await checkL2(3, 1);
    await checkL2(4, 7);
    await checkL2(3, 300);
    await checkL2(2, 5000);
    await checkL2(4, 9, true);
  });

  test("cosine_similarity_matrix: forward and both gradients", async () => {
    await checkCosine(5, 3, 7);
    await checkCosine(4, 6, 300);
    await checkCosine(1, 1, 1);
    await checkCosine(6, 6, 33, true); // a · aᵀ: both gradients land on a
    await checkCosine(3, 4, 5, false, [false, true]);
    await checkCosine(3, 4, 5, false, [true, false]);
  });

  test("shape errors name the op and the shapes", async () => {
    const gpu = await getGpu();
    using a = Tensor.zeros(gpu, [2, 3]);
    using b = Tensor.zeros(gpu, [2, 4]);
    using c = Tensor.zeros(gpu, [3]);
    expect(() => cosineSimilarityMatrix(a, b)).toThrow("cosine_similarity_matrix: expected a [N, D] and b [M, D]; got [2, 3] and [2, 4]");
    expect(() => cosineSimilarityMatrix(a, c)).toThrow("cosine_similarity_matrix: expected a [N, D] and b [M, D]; got [2, 3] and [3]");
    expect(() => l2Normalize(a, -1)).toThrow("l2_normalize: eps must be finite and >= 0, got -1");
  });

  test("the float64 reference gradients match central differences (l2_normalize, the cosine matrix, masked_mean)", () => {
    const r = rng(13);
    const [Bm, Tm, Dm] = [2, 3, 2];
    const Xm = uniform(r, Bm * Tm * Dm);
    const Mk = Float64Array.of(1, 0, 1, 0, 0, 0); // row 1: an empty mask
    const Gm = uniform(r, Bm * Dm);
    const fm = (x: Float64Array) => refMaskedMean(x, Mk, Bm, Tm, Dm, Gm).out.reduce((s, y, i) => s + y * Gm[i]!, 0);
    expectClose("masked mean reference gradient", refMaskedMean(Xm, Mk, Bm, Tm, Dm, Gm).grad, centralDiff(fm, Xm), { rtol: 1e-6, atol: 1e-8 });
    const X = uniform(r, 2 * 5, -2, 2);
    const G = uniform(r, 2 * 5);
    const f = (x: Float64Array) => refL2(x, 5, null).y.reduce((s, y, i) => s + y * G[i]!, 0);
    expectClose("l2 reference gradient", refL2(X, 5, G).grad, centralDiff(f, X), { rtol: 1e-6, atol: 1e-8 });
    const [N, M, D] = [3, 2, 4];
    const A = uniform(r, N * D), B = uniform(r, M * D), Gc = uniform(r, N * M);
    const ref = refCosine(A, B, N, M, D, Gc);
    const fa = (a: Float64Array) => refCosine(a, B, N, M, D, Gc).out.reduce((s, y, i) => s + y * Gc[i]!, 0);
    const fb = (b: Float64Array) => refCosine(A, b, N, M, D, Gc).out.reduce((s, y, i) => s + y * Gc[i]!, 0);
    expectClose("cosine reference gradient a", ref.ga, centralDiff(fa, A), { rtol: 1e-6, atol: 1e-8 });
    expectClose("cosine reference gradient b", ref.gb, centralDiff(fb, B), { rtol: 1e-6, atol: 1e-8 });
  });
});

// ---- PyTorch goldens and memory -----------------------------------------------------------------------

describe("losses against PyTorch and over a training loop", () => {
  test("every case of the PyTorch golden fixture", async () => {
    const gpu = await getGpu();
    const cases = loadGoldens("loss");
    expect(cases.length).toBe(10);
    for (const c of cases) {
      const f32 = (name: string, grad = true) => Tensor.fromArray(gpu, c.inputs[name]!.data, c.inputs[name]!.shape, { requiresGrad: grad });
      const ins: Tensor[] = [];
      let out: Tensor;
      /** Per input: its name, the tensor, and the float64 reference's |terms| scale for its gradient. */
      let grads: [string, Tensor, Float64Array | undefined][];
      const F64 = (name: string) => Float64Array.from(name === "upstream" ? c.upstream.out!.data : c.inputs[name]!.data);
      switch (c.params.op) {
        case "cross_entropy": {
          const x = f32("logits");
          const t = Tensor.fromArray(gpu, c.inputs.target!.data, c.inputs.target!.shape, { dtype: "i32" });
          ins.push(x, t);
          const loss = crossEntropy(x, t, { ignoreIndex: c.params.ignoreIndex as number });
          out = loss.reshape(1); // the fixture stores the loss as [1]
          loss.release();
          const [N, V] = x.shape as [number, number];
          const ref = refCrossEntropy(F64("logits"), c.inputs.target!.data, V, c.params.ignoreIndex as number, c.upstream.out!.data[0]);
          expect(N).toBe(c.inputs.target!.data.length);
          grads = [["logits", x, ref.mag]];
          break;
        }
        case "masked_mean": {
          const x = f32("x");
          const m = f32("mask", false);
          ins.push(x, m);
          out = maskedMean(x, m);
          grads = [["x", x, undefined]];
          break;
        }
        case "l2_normalize": {
          const x = f32("x");
          ins.push(x);
          out = l2Normalize(x);
          grads = [["x", x, refL2(F64("x"), x.shape[1]!, F64("upstream")).mag]];
          break;
        }
        case "cosine_similarity_matrix": {
          const [a, b] = [f32("a"), f32("b")];
          ins.push(a, b);
          out = cosineSimilarityMatrix(a, b);
          const [N, D] = a.shape as [number, number];
          const ref = refCosine(F64("a"), F64("b"), N, b.shape[0]!, D, F64("upstream"));
          grads = [["a", a, ref.magA], ["b", b, ref.magB]];
          break;
        }
        default:
          throw new Error(`unknown golden op ${c.params.op}`);
      }
      expect(out.shape).toEqual(c.outputs.out!.shape);
      expectClose(`${c.name} forward`, await out.toArray(), c.outputs.out!.data);
      const g = Tensor.fromArray(gpu, c.upstream.out!.data, c.upstream.out!.shape);
      out.backward(g);
      for (const [name, t, mag] of grads) expectClose(`${c.name} grad ${name}`, await t.grad!.toArray(), c.grads[name]!.data, { mag });
      for (const t of [...ins, out, g]) t.release();
    }
  });

  test("50 forward + backward steps of all four keep live buffers and bytes flat", async () => {
    const gpu = await getGpu();
    const r = rng(21);
    const [B, T, D, V] = [3, 6, 40, 50];
    const h = upload(gpu, uniform(r, B * T * D), [B, T, D], true);
    const mask = Tensor.fromArray(gpu, [1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0], [B, T]);
    const logits = upload(gpu, uniform(r, B * T * V), [B * T, V], true);
    const targets = Tensor.fromArray(gpu, makeTargets(r, B * T, V, -100, 4), [B * T], { dtype: "i32" });
    const hostTargets = makeTargets(r, B * T, V, -100, 3);
    const { start, end } = await expectFlatMemory(gpu, 50, (it) => {
      const loss = scope(() => {
        const pooled = maskedMean(h, mask);
        const sim = cosineSimilarityMatrix(pooled, pooled).sum();
        const ce = crossEntropy(logits, it % 2 ? targets : hostTargets);
        return sim.add(ce).add(l2Normalize(logits).sum());
      });
      loss.backward();
      loss.release();
      h.zeroGrad();
      logits.zeroGrad();
    });
    expect(end.liveBuffers).toBe(start.liveBuffers);
    expect(end.liveBytes).toBe(start.liveBytes);
    for (const t of [h, mask, logits, targets]) t.release();
  });
});

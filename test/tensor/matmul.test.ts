// matmul (NN, NT, TN, TT; 2-D, batched, a 2-D operand shared by a batch) and linear (with and without
// bias, any leading dimensions): forward and every input's gradient (the op's backward rule) against the
// float64 reference of test/reference/matmul.ts (plain loops over the stored layouts), on every kernel (direct
// with 4 and 8 rows per invocation, tiled, tiled128, subgroup where the device has 8-lane subgroups),
// with shapes that are and are not multiples of 4 / the block sizes; against PyTorch goldens; errors
// naming the op and shapes; memory flat over repeated forward+backward. Fresh tensors are NaN-poisoned.
// In-place accumulation: operands that already have a .grad (random) get the product added into it by the backward's
// own product (the same tensor, G0 + grad, no grad.accumulate dispatch) on every kernel and layout, except where the
// gradient is a batch sum (then the engine's sum, as before); linear's x and w likewise, f32 and f16.
// The launcher itself (every kernel x layout x shape, bias, f16) is a table: test/kernels/rows/matmul.ts.
import { describe, expect, test } from "bun:test";
import { noGrad, scope, Tensor } from "../../src/tensor/index.ts";
import { linear, matmul } from "../../src/tensor/ops/matmul.ts";
import { loadGoldens, type GoldenTensor } from "./goldens.ts";
import { expectFlatMemory } from "../helpers.ts";
import { matmulProduct as refProduct, matmulProductBackward as refProductBackward, matmulProblemOf, type MatmulProblem } from "../reference/matmul.ts";
import { centralDiff, dispatchNames, expectClose, getGpu, MATMUL_KERNELS as KERNELS, matmulKernelRuns, numel, rng, seedOf, uniform, upload, type Shape } from "./helpers.ts";
import { SHAPES_2D } from "../kernels/rows/matmul.ts";

const GPU = await getGpu();

// First compiles of pipelines on a loaded CPU Vulkan driver can take seconds: explicit per-test timeouts.
const SLOW = 120_000;

const stored = (s: Shape, t: boolean): number[] => (t ? [...s.slice(0, -2), s[s.length - 1]!, s[s.length - 2]!] : [...s]);

const TOL = { rtol: 1e-4, atol: 1e-6 }; // relative to the sum of |terms| of each element


/** A random prior .grad for `t` (not poisoned: it is an input), and its float64 values as the tensor holds them. */
function priorGrad(r: () => number, t: Tensor): { tensor: Tensor; values: Float64Array } {
  const values = Float64Array.from(new Float32Array(uniform(r, t.size)));
  t.grad = upload(t.gpu, values, t.shape);
  return { tensor: t.grad, values };
}

/** grad = prior + g: the expected values and magnitudes after accumulation. */
const plus = (prior: Float64Array, g: Float64Array, mag: Float64Array) => ({ values: prior.map((v, i) => v + g[i]!), mag: mag.map((m, i) => m + Math.abs(prior[i]!)) });

/**
 * matmul forward and both gradients against the float64 reference. `accumulate`: a and b already have a random
 * .grad, which must be the same tensor afterwards holding prior + gradient, added by the product itself (no
 * grad.accumulate) unless the gradient is a batch sum (a shared 2-D operand that cannot fold the batch).
 */
async function checkMatmul(aShape: Shape, bShape: Shape, tA: boolean, tB: boolean, accumulate = false): Promise<void> {
  const gpu = await getGpu();
  const what = `matmul${tA ? "T" : "N"}${tB ? "T" : "N"} ${JSON.stringify(aShape)} ${JSON.stringify(bShape)} (${gpu.policy.matmul.kernel}/${gpu.policy.matmul.tm})${accumulate ? " accumulate" : ""}`;
  const r = rng(seedOf(what));
  const A = uniform(r, numel(aShape));
  const B = uniform(r, numel(bShape));
  const { pr, shape } = matmulProblemOf(aShape, bShape, tA, tB);
  const ref = refProduct({ a: A, b: B }, pr);
  const R = uniform(r, ref.c.length);
  const grads = refProductBackward({ a: A, b: B, dc: R }, pr);
  const a = upload(gpu, A, aShape, true);
  const b = upload(gpu, B, bShape, true);
  const out = matmul(a, b, { transA: tA, transB: tB });
  expect(out.shape).toEqual(shape);
  expectClose(`${what} forward`, await out.toArray(), ref.c, { ...TOL, mag: ref.cMag });
  const Rt = upload(gpu, R, shape);
  const [pa, pb] = accumulate ? [priorGrad(r, a), priorGrad(r, b)] : [];
  const names = dispatchNames(gpu, () => out.backward(Rt));
  expect(a.grad!.shape).toEqual([...aShape]);
  expect(b.grad!.shape).toEqual([...bShape]);
  const da = pa ? plus(pa.values, grads.da, grads.daMag) : { values: grads.da, mag: grads.daMag };
  const db = pb ? plus(pb.values, grads.db, grads.dbMag) : { values: grads.db, mag: grads.dbMag };
  expectClose(`${what} grad a`, await a.grad!.toArray(), da.values, { ...TOL, mag: da.mag });
  expectClose(`${what} grad b`, await b.grad!.toArray(), db.values, { ...TOL, mag: db.mag });
  if (pa && pb) {
    expect(a.grad).toBe(pa.tensor);
    expect(b.grad).toBe(pb.tensor);
    // Batch sums (sumFirst) still go through the engine's sum: a shared a always, a shared b when a is transposed.
    const sums = Number(aShape.length === 2 && bShape.length > 2) + Number(bShape.length === 2 && aShape.length > 2 && tA);
    expect(names.filter((n) => n === "grad.accumulate").length, what).toBe(sums);
  }
  for (const t of [a, b, out, Rt]) t.release();
}

const VARIANTS: [boolean, boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

// [M, N, K] of op(a) [M, K] · op(b) [K, N].

function shapes(M: number, N: number, K: number, tA: boolean, tB: boolean, batchA: Shape = [], batchB: Shape = []): [number[], number[]] {
  return [stored([...batchA, M, K], tA), stored([...batchB, K, N], tB)];
}

describe("matmul", () => {
  for (const kc of KERNELS)
    test.skipIf(!matmulKernelRuns(GPU, kc))(`2-D, every variant, ${kc.kernel} kernel (${kc.tm} rows per invocation)`, async () => {
      await GPU.withPolicy({ matmul: kc }, async () => {
        for (const [M, N, K] of SHAPES_2D) for (const [tA, tB] of VARIANTS) await checkMatmul(...shapes(M, N, K, tA, tB), tA, tB);
      });
    }, SLOW);

  for (const kc of KERNELS)
    test.skipIf(!matmulKernelRuns(GPU, kc))(`batched and shared-operand batches, every variant, ${kc.kernel} kernel (${kc.tm} rows per invocation)`, async () => {
      await GPU.withPolicy({ matmul: kc }, async () => {
        for (const [tA, tB] of VARIANTS) {
          await checkMatmul(...shapes(3, 9, 7, tA, tB, [5], [5]), tA, tB); // [5, 3, 7] x [5, 7, 9]
          await checkMatmul(...shapes(4, 8, 12, tA, tB, [2, 3], [2, 3]), tA, tB); // vec4 paths with batch offsets
          await checkMatmul(...shapes(5, 6, 7, tA, tB, [2, 3], []), tA, tB); // 2-D b shared: weight gradient summed
          await checkMatmul(...shapes(5, 6, 7, tA, tB, [], [4]), tA, tB); // 2-D a shared
          await checkMatmul(...shapes(8, 4, 4, tA, tB, [3], []), tA, tB); // shared and vec4
        }
      });
    }, SLOW);

  for (const kc of KERNELS)
    test.skipIf(!matmulKernelRuns(GPU, kc))(`gradients added into an existing .grad by the product itself, every variant, ${kc.kernel} kernel (${kc.tm} rows per invocation)`, async () => {
      await GPU.withPolicy({ matmul: kc }, async () => {
        for (const [tA, tB] of VARIANTS) {
          await checkMatmul(...shapes(37, 29, 20, tA, tB), tA, tB, true); // partial blocks everywhere
          await checkMatmul(...shapes(20, 36, 16, tA, tB), tA, tB, true); // vec4 paths
          await checkMatmul(...shapes(6, 5, 7, tA, tB), tA, tB, true); // K tail of 3
          await checkMatmul(...shapes(4, 8, 12, tA, tB, [2, 3], [2, 3]), tA, tB, true); // batched
          await checkMatmul(...shapes(5, 6, 7, tA, tB, [2, 3], []), tA, tB, true); // shared b: folded (one product) or summed
          await checkMatmul(...shapes(5, 6, 7, tA, tB, [], [4]), tA, tB, true); // shared a: summed, the engine adds
        }
      });
    }, SLOW);

  test("a batch larger than one dispatch runs as several (batch0 offsets); another workgroup shape", async () => {
    await GPU.withPolicy({ matmul: { kernel: "direct", tm: 4, maxBatch: 2 } }, async () => {
      for (const [tA, tB] of VARIANTS) {
        await checkMatmul(...shapes(3, 5, 6, tA, tB, [5], [5]), tA, tB);
        await checkMatmul(...shapes(3, 5, 6, tA, tB, [5], []), tA, tB);
      }
    });
    await GPU.withPolicy({ matmul: { kernel: "direct", tm: 4, wgx: 16, wgy: 2 } }, () => checkMatmul(...shapes(37, 70, 9, false, false, [2], [2]), false, false));
  }, SLOW);

  test("only the operand that requires grad gets one; a node saves only the other operand", async () => {
    const gpu = await getGpu();
    using a = Tensor.ones(gpu, [3, 4], { requiresGrad: true });
    using b = Tensor.ones(gpu, [4, 2]);
    using c = matmul(a, b);
    expect(c.gradFn!.savedCount).toBe(1);
    c.backward(Tensor.ones(gpu, [3, 2]));
    expect(b.grad).toBeNull();
    expect(Array.from(await a.grad!.toArray())).toEqual(new Array(12).fill(2));
  });

  test("mismatched shapes fail at the call site, naming the op and both shapes", async () => {
    const gpu = await getGpu();
    using a = Tensor.zeros(gpu, [2, 3]);
    using b = Tensor.zeros(gpu, [4, 5]);
    expect(() => matmul(a, b)).toThrow("matmul: inner dimensions differ: a [2, 3] and b [4, 5] (K = 3 vs 4)");
    expect(() => matmul(a, b, { transA: true, transB: true })).toThrow(
      "matmul: inner dimensions differ: a [2, 3] (transposed) and b [4, 5] (transposed) (K = 2 vs 5)",
    );
    using a3 = Tensor.zeros(gpu, [2, 2, 3]);
    using b3 = Tensor.zeros(gpu, [3, 3, 4]);
    expect(() => matmul(a3, b3)).toThrow("matmul: batch dimensions differ: a [2, 2, 3] and b [3, 3, 4] (they must be equal, or one operand 2-D)");
    using v = Tensor.zeros(gpu, [3]);
    expect(() => matmul(a, v)).toThrow("matmul: needs operands of rank >= 2 (matrices or batches of them), got a [2, 3] and b [3]");
    using i = Tensor.fromArray(gpu, [1, 2, 3, 4, 5, 6], [3, 2], { dtype: "i32" });
    expect(() => matmul(a, i)).toThrow("matmul: Tensor([3, 2], i32) has dtype i32");
  });

  test("the float64 reference gradients match central differences", () => {
    const r = rng(11);
    for (const [tA, tB] of VARIANTS) {
      const [aShape, bShape] = shapes(2, 3, 4, tA, tB, [2], []);
      const { pr } = matmulProblemOf(aShape, bShape, tA, tB);
      const A = uniform(r, numel(aShape));
      const B = uniform(r, numel(bShape));
      const bias = uniform(r, 3);
      const R = uniform(r, 2 * 2 * 3);
      const ref = refProductBackward({ a: A, b: B, dc: R }, pr);
      const loss = (x: Float64Array, y: Float64Array, z: Float64Array) => refProduct({ a: x, b: y, bias: z }, pr).c.reduce((s, v, i) => s + v * R[i]!, 0);
      expectClose("d/da", ref.da, centralDiff((x) => loss(x, B, bias), A), { rtol: 1e-6, atol: 1e-8 });
      expectClose("d/db", ref.db, centralDiff((y) => loss(A, y, bias), B), { rtol: 1e-6, atol: 1e-8 });
      expectClose("d/dbias", ref.dbias, centralDiff((z) => loss(A, B, z), bias), { rtol: 1e-6, atol: 1e-8 });
    }
  });
});

// ---- linear ----

/** linear forward and every gradient against float64; `accumulate`: onto random prior .grads, as checkMatmul. */
async function checkLinear(xShape: Shape, nOut: number, withBias: boolean, accumulate = false): Promise<void> {
  const gpu = await getGpu();
  const nIn = xShape[xShape.length - 1]!;
  const what = `linear x ${JSON.stringify(xShape)} w [${nOut}, ${nIn}]${withBias ? " + bias" : ""} (${gpu.policy.matmul.kernel}/${gpu.policy.matmul.tm})${accumulate ? " accumulate" : ""}`;
  const r = rng(seedOf(what));
  const X = uniform(r, numel(xShape));
  const W = uniform(r, nOut * nIn);
  const Bv = uniform(r, nOut);
  const rows = numel(xShape) / nIn;
  // linear = x2 [rows, in] · wᵀ (+ bias): the matmul reference with transB.
  const pr: MatmulProblem = { M: rows, N: nOut, K: nIn, batch: 1, sharedA: false, sharedB: false, transA: false, transB: true };
  const ref = refProduct({ a: X, b: W, bias: withBias ? Bv : undefined }, pr);
  const R = uniform(r, ref.c.length);
  const grads = refProductBackward({ a: X, b: W, dc: R }, pr);
  const x = upload(gpu, X, xShape, true);
  const w = upload(gpu, W, [nOut, nIn], true);
  const bias = withBias ? upload(gpu, Bv, [nOut], true) : null;
  const y = linear(x, w, bias);
  const yShape = [...xShape.slice(0, -1), nOut];
  expect(y.shape).toEqual(yShape);
  expectClose(`${what} forward`, await y.toArray(), ref.c, { ...TOL, mag: ref.cMag });
  const Rt = upload(gpu, R, yShape);
  const [px, pw, pb] = accumulate ? [priorGrad(r, x), priorGrad(r, w), bias ? priorGrad(r, bias) : undefined] : [];
  const names = dispatchNames(gpu, () => y.backward(Rt));
  expect(x.grad!.shape).toEqual([...xShape]);
  const dx = px ? plus(px.values, grads.da, grads.daMag) : { values: grads.da, mag: grads.daMag };
  const dw = pw ? plus(pw.values, grads.db, grads.dbMag) : { values: grads.db, mag: grads.dbMag };
  const db = pb ? plus(pb.values, grads.dbias, grads.dbiasMag) : { values: grads.dbias, mag: grads.dbiasMag };
  expectClose(`${what} grad x`, await x.grad!.toArray(), dx.values, { ...TOL, mag: dx.mag });
  expectClose(`${what} grad w`, await w.grad!.toArray(), dw.values, { ...TOL, mag: dw.mag });
  if (bias) expectClose(`${what} grad bias`, await bias.grad!.toArray(), db.values, { ...TOL, mag: db.mag });
  if (px && pw) {
    expect(x.grad).toBe(px.tensor);
    expect(w.grad).toBe(pw.tensor);
    if (pb) expect(bias!.grad).toBe(pb.tensor);
    // x and w: added by grad_x / grad_w themselves; the bias's sum over rows goes through the engine's sum.
    expect(names.filter((n) => n === "grad.accumulate").length, what).toBe(bias ? 1 : 0);
  }
  for (const t of [x, w, y, Rt, bias]) t?.release();
}

describe("linear", () => {
  for (const kc of KERNELS)
    test.skipIf(!matmulKernelRuns(GPU, kc))(`x [..., in] · wᵀ (+ bias), ${kc.kernel} kernel (${kc.tm} rows per invocation)`, async () => {
      await GPU.withPolicy({ matmul: kc }, async () => {
        for (const withBias of [true, false]) {
          await checkLinear([2, 3, 10], 7, withBias); // leading dims, nothing aligned
          await checkLinear([5, 16], 12, withBias); // vec4 loads and stores
          await checkLinear([9], 5, withBias); // rank-1 x
          await checkLinear([37, 20], 29, withBias);
          await checkLinear([4, 300], 3, withBias); // long K
        }
      });
    }, SLOW);

  for (const kc of KERNELS)
    test.skipIf(!matmulKernelRuns(GPU, kc))(`gradients added into an existing .grad of x and w, ${kc.kernel} kernel (${kc.tm} rows per invocation)`, async () => {
      await GPU.withPolicy({ matmul: kc }, async () => {
        await checkLinear([2, 3, 10], 7, true, true); // leading dims, nothing aligned, a bias (summed by the engine)
        await checkLinear([5, 16], 12, false, true); // vec4 loads and stores
        await checkLinear([37, 20], 29, false, true);
      });
    }, SLOW);

  test.skipIf(!GPU.features.has("shader-f16"))("f16: x and w's f16 .grad accumulate in the f16 product (one rounding), on every kernel", async () => {
    for (const kc of KERNELS.filter((k) => matmulKernelRuns(GPU, k)))
      await GPU.withPolicy({ matmul: kc }, async () => {
        const what = `linear f16 accumulate (${kc.kernel}/${kc.tm})`;
        const r = rng(seedOf(what));
        const [rows, nIn, nOut] = [9, 13, 6];
        const half = (n: number) => Float64Array.from(new Float16Array(uniform(r, n)));
        const [X, W, R, GX, GW] = [half(rows * nIn), half(nOut * nIn), half(rows * nOut), half(rows * nIn), half(nOut * nIn)];
        const x = Tensor.fromArray(GPU, X, [rows, nIn], { dtype: "f16", requiresGrad: true });
        const w = Tensor.fromArray(GPU, W, [nOut, nIn], { dtype: "f16", requiresGrad: true });
        const gx = (x.grad = Tensor.fromArray(GPU, GX, [rows, nIn], { dtype: "f16" }));
        const gw = (w.grad = Tensor.fromArray(GPU, GW, [nOut, nIn], { dtype: "f16" }));
        const y = linear(x, w);
        const Rt = Tensor.fromArray(GPU, R, [rows, nOut], { dtype: "f16" });
        const names = dispatchNames(GPU, () => y.backward(Rt));
        const pr: MatmulProblem = { M: rows, N: nOut, K: nIn, batch: 1, sharedA: false, sharedB: false, transA: false, transB: true };
        const g = refProductBackward({ a: X, b: W, dc: R }, pr);
        const dx = plus(GX, g.da, g.daMag);
        const dw = plus(GW, g.db, g.dbMag);
        expect(x.grad).toBe(gx);
        expect(w.grad).toBe(gw);
        expect(x.grad!.dtype).toBe("f16");
        expectClose(`${what} grad x`, await x.grad!.toArray(), dx.values, { rtol: 2e-3, atol: 1e-7, mag: dx.mag });
        expectClose(`${what} grad w`, await w.grad!.toArray(), dw.values, { rtol: 2e-3, atol: 1e-7, mag: dw.mag });
        expect(names.filter((n) => n.startsWith("grad.accumulate")).length, what).toBe(0);
        for (const t of [x, w, y, Rt]) t.release();
      });
  }, SLOW);

  test("bad shapes fail at the call site, naming the op and the shapes", async () => {
    const gpu = await getGpu();
    using x = Tensor.zeros(gpu, [2, 5]);
    using w = Tensor.zeros(gpu, [3, 4]);
    using w5 = Tensor.zeros(gpu, [3, 5]);
    using b = Tensor.zeros(gpu, [4]);
    expect(() => linear(x, w)).toThrow("linear: x's last dimension must equal w's in-features (w is [out, in]), got x [2, 5], w [3, 4]");
    expect(() => linear(x, w5, b)).toThrow("linear: bias must be [out] = [3], got x [2, 5], w [3, 5], bias [4]");
    expect(() => linear(x, b)).toThrow("linear: needs x [..., in] and w [out, in], got x [2, 5], w [4]");
  });
});

// ---- PyTorch goldens ----

describe("PyTorch goldens", () => {
  const cases = loadGoldens("matmul");
  const dataOf = (t: GoldenTensor) => Float64Array.from(t.data);
  for (const kc of KERNELS)
    test.skipIf(!matmulKernelRuns(GPU, kc))(`${cases.length} cases from tools/goldens/matmul.py, ${kc.kernel} kernel (${kc.tm} rows per invocation)`, async () => {
      await GPU.withPolicy({ matmul: kc }, async () => {
        const gpu = await getGpu();
        for (const c of cases) {
          const ins = Object.fromEntries(Object.entries(c.inputs).map(([k, t]) => [k, upload(gpu, dataOf(t), t.shape, true)]));
          const out =
            c.params.op === "linear"
              ? linear(ins.x!, ins.w!, ins.bias)
              : matmul(ins.a!, ins.b!, { transA: c.params.transA as boolean, transB: c.params.transB as boolean });
          const want = c.outputs.out!;
          expect(out.shape).toEqual(want.shape);
          // Magnitude per element for the relative tolerance: the largest |value| in the tensor.
          const mag = (d: ArrayLike<number>) => new Float64Array(d.length).fill(Math.max(...Array.from(d, Math.abs)));
          expectClose(`${c.name} forward`, await out.toArray(), want.data, { ...TOL, mag: mag(want.data) });
          const up = upload(gpu, dataOf(c.upstream.out!), want.shape);
          out.backward(up);
          for (const [k, g] of Object.entries(c.grads))
            expectClose(`${c.name} grad ${k}`, await ins[k]!.grad!.toArray(), g.data, { ...TOL, mag: mag(g.data) });
          for (const t of [...Object.values(ins), out, up]) t.release();
        }
      });
    }, SLOW);
});

// ---- memory ----

test("memory stays flat over 50 forward+backward iterations of matmul and linear", async () => {
  const gpu = await getGpu();
  await gpu.sync();
  const start = gpu.memory();
  const r = rng(5);
  const x = upload(gpu, uniform(r, 2 * 3 * 6), [2, 3, 6], true);
  const w = upload(gpu, uniform(r, 5 * 6), [5, 6], true);
  const bias = upload(gpu, uniform(r, 5), [5], true);
  const m = upload(gpu, uniform(r, 2 * 4 * 3), [2, 4, 3], true);
  await expectFlatMemory(gpu, 50, () => {
    const loss = scope(() => {
      const h = linear(x, w, bias); // [2, 3, 5]
      const y = matmul(m, h); // [2, 4, 5]
      const z = matmul(y, w); // shared 2-D b: [2, 4, 6]
      return matmul(z, x, { transB: true }).sum(); // [2, 4, 3]
    });
    loss.backward();
    loss.release();
    noGrad(() => [x, w, bias, m].forEach((t) => t.zeroGrad()));
  });
  for (const t of [x, w, bias, m]) t.release();
  await gpu.sync();
  expect(gpu.memory().liveBuffers).toBe(start.liveBuffers);
  expect(gpu.memory().liveBytes).toBe(start.liveBytes);
}, SLOW);

// rmsnorm (LLaMA; Gemma's 1 + w) and layernorm (with and without bias): forward and every input's gradient
// against a float64 reference (itself checked by central differences) on row lengths 1, 7, 300 and 4096,
// against PyTorch goldens (tools/goldens/norm.py), with ragged row chunks in the parameter gradient, a 2-D
// workgroup grid, determinism, call-site errors and flat memory over a training-like loop.
import { describe, expect, test } from "bun:test";
import { scope, Tensor } from "../../src/tensor/index.ts";
import { layernorm, rmsnorm } from "../../src/tensor/ops/norm.ts";
import { loadGoldens } from "./goldens.ts";
import { expectFlatMemory } from "../helpers.ts";
import { centralDiff, expectClose, getGpu, numel, rng, seedOf, uniform, upload, type Shape } from "./helpers.ts";

/** Per-test limit: the first test of a file compiles its pipelines, slow on a loaded CPU Vulkan driver. */
const SLOW = 60_000;

type Kind = "rmsnorm" | "rmsnorm_unit" | "layernorm" | "layernorm_nobias";
const KINDS: Kind[] = ["rmsnorm", "rmsnorm_unit", "layernorm", "layernorm_nobias"];
const center = (k: Kind) => k.startsWith("layernorm");
const hasBias = (k: Kind) => k === "layernorm";
const defaultEps = (k: Kind) => (center(k) ? 1e-5 : 1e-6);

interface Ref {
  y: Float64Array;
  yMag: Float64Array;
  dx: Float64Array;
  dxMag: Float64Array;
  dw: Float64Array;
  dwMag: Float64Array;
  db: Float64Array;
  dbMag: Float64Array;
}

/** float64 forward, and the analytic gradients of sum(y * R); each with the sum of |terms| per element. */
function refNorm(k: Kind, X: Float64Array, d: number, W: Float64Array, B: Float64Array | null, eps: number, R: Float64Array): Ref {
  const rows = X.length / d;
  const z = () => new Float64Array(X.length);
  const [y, yMag, dx, dxMag] = [z(), z(), z(), z()];
  const [dw, dwMag, db, dbMag] = [1, 2, 3, 4].map(() => new Float64Array(d)) as [Float64Array, Float64Array, Float64Array, Float64Array];
  const wEff = (j: number) => (k === "rmsnorm_unit" ? 1 + W[j]! : W[j]!);
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    let mean = 0;
    if (center(k)) {
      for (let j = 0; j < d; j++) mean += X[o + j]!;
      mean /= d;
    }
    let v = 0;
    for (let j = 0; j < d; j++) v += (X[o + j]! - mean) ** 2;
    const rstd = 1 / Math.sqrt(v / d + eps);
    let mgw = 0, mgwx = 0, mgwAbs = 0, mgwxAbs = 0;
    for (let j = 0; j < d; j++) {
      const xhat = (X[o + j]! - mean) * rstd;
      const b = B ? B[j]! : 0;
      y[o + j] = xhat * wEff(j) + b;
      yMag[o + j] = Math.abs(xhat * wEff(j)) + Math.abs(b);
      const gw = R[o + j]! * wEff(j);
      mgw += gw / d;
      mgwx += (gw * xhat) / d;
      mgwAbs += Math.abs(gw) / d;
      mgwxAbs += Math.abs(gw * xhat) / d;
      dw[j] += R[o + j]! * xhat;
      dwMag[j] += Math.abs(R[o + j]! * xhat);
      db[j] += R[o + j]!;
      dbMag[j] += Math.abs(R[o + j]!);
    }
    for (let j = 0; j < d; j++) {
      const xhat = (X[o + j]! - mean) * rstd;
      const gw = R[o + j]! * wEff(j);
      const c = center(k) ? mgw : 0;
      dx[o + j] = rstd * (gw - c - xhat * mgwx);
      dxMag[o + j] = rstd * (Math.abs(gw) + (center(k) ? mgwAbs : 0) + Math.abs(xhat) * mgwxAbs);
    }
  }
  return { y, yMag, dx, dxMag, dw, dwMag, db, dbMag };
}

function apply(k: Kind, x: Tensor, w: Tensor, b: Tensor | null, eps: number): Tensor {
  if (center(k)) return layernorm(x, w, b, eps);
  return rmsnorm(x, w, { eps, addUnitOffset: k === "rmsnorm_unit" });
}

/** Which of x, weight, bias require grad. */
type Needs = [boolean, boolean, boolean];

async function check(k: Kind, shape: Shape, needs: Needs = [true, true, true], eps = defaultEps(k)): Promise<void> {
  const gpu = await getGpu();
  const what = `${k} ${JSON.stringify(shape)} needs ${needs}`;
  const r = rng(seedOf(what));
  const d = shape[shape.length - 1]!;
  const X = uniform(r, numel(shape), -2, 2.5);
  const W = uniform(r, d, 0.5, 1.5);
  const B = hasBias(k) ? uniform(r, d) : null;
  const R = uniform(r, numel(shape));
  const ref = refNorm(k, X, d, W, B, eps, R);
  const x = upload(gpu, X, shape, needs[0]);
  const w = upload(gpu, W, [d], needs[1]);
  const b = B ? upload(gpu, B, [d], needs[2]) : null;
  const y = apply(k, x, w, b, eps);
  expect(y.shape).toEqual([...shape]);
  expectClose(`${what} forward`, await y.toArray(), ref.y, { mag: ref.yMag });
  if (needs[0] || needs[1] || (b && needs[2])) {
    const Rt = upload(gpu, R, shape);
    y.backward(Rt);
    Rt.release();
    if (needs[0]) expectClose(`${what} dx`, await x.grad!.toArray(), ref.dx, { mag: ref.dxMag });
    else expect(x.grad).toBeNull();
    if (needs[1]) expectClose(`${what} dweight`, await w.grad!.toArray(), ref.dw, { mag: ref.dwMag });
    else expect(w.grad).toBeNull();
    if (b && needs[2]) expectClose(`${what} dbias`, await b.grad!.toArray(), ref.db, { mag: ref.dbMag });
    else if (b) expect(b.grad).toBeNull();
  }
  for (const t of [x, w, b, y]) t?.release();
}

// Up to 256 rows the parameter gradient is one pass; [300, 5] takes the chunked two-pass path by default.
const SHAPES: Shape[] = [[7], [3, 7], [5, 1], [2, 3, 300], [2, 4096], [37, 13], [300, 5]];

describe("norms", () => {
  for (const k of KINDS)
    test(`${k}: forward and gradients against float64, row lengths 1, 7, 13, 300, 4096`, async () => {
      for (const s of SHAPES) await check(k, s);
    }, SLOW);

  test("only the inputs that require grad get one", async () => {
    for (const k of KINDS)
      for (const needs of [[true, false, false], [false, true, false], [false, false, true], [false, true, true]] as Needs[])
        await check(k, [4, 9], needs);
  }, SLOW);

  test("eps: a large eps (and eps 0 on rows away from zero) as the reference computes it", async () => {
    await check("rmsnorm", [3, 20], undefined, 0.5);
    await check("layernorm", [3, 20], undefined, 2);
    await check("rmsnorm", [3, 20], undefined, 0);
  }, SLOW);

  test("the parameter gradient over ragged row chunks, and over the most chunks", async () => {
    const gpu = await getGpu();
    // singlePassRows 0: the default sums up to 256 rows in one pass (the shapes above).
    await gpu.withPolicy({ norm: { singlePassRows: 0, minChunk: 4 } }, async () => {
      await check("layernorm", [37, 13]); // 37 rows: chunks of 4, the last of 1
      await check("rmsnorm_unit", [37, 13]);
    });
    await gpu.withPolicy({ norm: { singlePassRows: 0, minChunk: 1, maxChunks: 5 } }, () => check("layernorm", [37, 13])); // 5 chunks of 8, the last of 5
    await gpu.withPolicy({ norm: { singlePassRows: 0, minChunk: 1, maxChunks: 1000 } }, () => check("rmsnorm", [37, 13])); // one row per chunk
  }, SLOW);

  test("a 2-D grid of workgroups (x capped at 2) covers every row and column", async () => {
    const gpu = await getGpu();
    await gpu.withPolicy({ grid: { maxX: 2 } }, async () => {
      await check("layernorm", [5, 300]); // 5 row-workgroups on a 2x3 grid, one idle; 300 columns
      await check("rmsnorm", [7, 3]);
    });
  }, SLOW);

  test("backward is deterministic: two runs give bit-identical gradients", async () => {
    const gpu = await getGpu();
    const r = rng(11);
    const x = upload(gpu, uniform(r, 200 * 33), [200, 33], true);
    const w = upload(gpu, uniform(r, 33), [33], true);
    const b = upload(gpu, uniform(r, 33), [33], true);
    const R = upload(gpu, uniform(r, 200 * 33), [200, 33]);
    const runs: Float32Array[][] = [];
    for (let i = 0; i < 2; i++) {
      const y = layernorm(x, w, b);
      y.backward(R);
      runs.push([await x.grad!.toArray(), await w.grad!.toArray(), await b.grad!.toArray()]);
      for (const t of [y, x, w, b]) t.zeroGrad();
      y.release();
    }
    for (let i = 0; i < 3; i++) expect(Buffer.from(runs[0]![i]!.buffer).equals(Buffer.from(runs[1]![i]!.buffer))).toBe(true);
    for (const t of [x, w, b, R]) t.release();
  }, SLOW);

  test("matches the PyTorch goldens (HF LlamaRMSNorm, GemmaRMSNorm, F.layer_norm)", async () => {
    const gpu = await getGpu();
    for (const c of loadGoldens("norm")) {
      const k = c.params.op as Kind;
      const eps = c.params.eps as number;
      const data = (name: string) => Float64Array.from(c.inputs[name]!.data);
      const up = Float64Array.from(c.upstream.out!.data);
      const d = c.inputs.weight!.shape[0]!;
      // The float64 reference agrees with PyTorch to float64 rounding, and supplies the tolerance scales.
      const ref = refNorm(k, data("x"), d, data("weight"), c.inputs.bias ? data("bias") : null, eps, up);
      expectClose(`${c.name} reference forward`, ref.y, c.outputs.out!.data, { rtol: 1e-6, atol: 1e-6 });
      expectClose(`${c.name} reference dx`, ref.dx, c.grads.x!.data, { rtol: 1e-6, atol: 1e-6 });
      const T = (name: string) => Tensor.fromArray(gpu, c.inputs[name]!.data, c.inputs[name]!.shape, { requiresGrad: true });
      const x = T("x");
      const w = T("weight");
      const b = c.inputs.bias ? T("bias") : null;
      const y = apply(k, x, w, b, eps);
      expectClose(`${c.name} forward`, await y.toArray(), c.outputs.out!.data, { mag: ref.yMag });
      const upt = Tensor.fromArray(gpu, c.upstream.out!.data, c.upstream.out!.shape);
      y.backward(upt);
      expectClose(`${c.name} grad x`, await x.grad!.toArray(), c.grads.x!.data, { mag: ref.dxMag });
      expectClose(`${c.name} grad weight`, await w.grad!.toArray(), c.grads.weight!.data, { mag: ref.dwMag });
      if (b) expectClose(`${c.name} grad bias`, await b.grad!.toArray(), c.grads.bias!.data, { mag: ref.dbMag });
      for (const t of [x, w, b, y, upt]) t?.release();
    }
  }, SLOW);

  test("the float64 reference gradients match central differences", () => {
    const r = rng(3);
    for (const k of KINDS)
      for (const d of [1, 2, 5]) {
        const rows = 3;
        const X = uniform(r, rows * d, -2, 2);
        const W = uniform(r, d, 0.5, 1.5);
        const B = hasBias(k) ? uniform(r, d) : null;
        const R = uniform(r, rows * d);
        const eps = 0.01; // keeps d = 1 well conditioned for differencing
        const loss = (Xv: Float64Array, Wv: Float64Array, Bv: Float64Array | null) => refNorm(k, Xv, d, Wv, Bv, eps, R).y.reduce((a, v, i) => a + v * R[i]!, 0);
        const ref = refNorm(k, X, d, W, B, eps, R);
        expectClose(`${k} d=${d} dx`, ref.dx, centralDiff((v) => loss(v, W, B), X), { rtol: 1e-6, atol: 1e-7 });
        expectClose(`${k} d=${d} dw`, ref.dw, centralDiff((v) => loss(X, v, B), W), { rtol: 1e-6, atol: 1e-7 });
        if (B) expectClose(`${k} d=${d} db`, ref.db, centralDiff((v) => loss(X, W, v), B), { rtol: 1e-6, atol: 1e-7 });
      }
  }, SLOW);

  test("bad shapes and options fail at the call site, naming the op and the shapes", async () => {
    const gpu = await getGpu();
    using x = Tensor.zeros(gpu, [2, 3, 4]);
    using w3 = Tensor.zeros(gpu, [3]);
    using w4 = Tensor.zeros(gpu, [4]);
    using w44 = Tensor.zeros(gpu, [4, 4]);
    expect(() => rmsnorm(x, w3)).toThrow("rmsnorm: weight [3] does not match the last dimension of x [2, 3, 4] (expected [4])");
    expect(() => layernorm(x, w4, w3)).toThrow("layernorm: bias [3] does not match the last dimension of x [2, 3, 4] (expected [4])");
    expect(() => layernorm(x, w44)).toThrow("layernorm: weight [4, 4] does not match");
    expect(() => rmsnorm(x, w4, { eps: -1 })).toThrow("rmsnorm: eps must be finite and >= 0, got -1");
    using s = Tensor.zeros(gpu, []);
    expect(() => rmsnorm(s, w4)).toThrow("rmsnorm: x must have at least one dimension");
    using e = Tensor.zeros(gpu, [3, 0]);
    using w0 = Tensor.zeros(gpu, [0]);
    expect(() => layernorm(e, w0)).toThrow("layernorm: cannot normalize over an empty last dimension (x [3, 0])");
    using i = Tensor.fromArray(gpu, [1, 2, 3, 4], [4], { dtype: "i32" });
    expect(() => rmsnorm(x, i)).toThrow("rmsnorm: Tensor([4], i32) has dtype i32");
    // zero rows: an empty result, and zero gradients
    using z = Tensor.zeros(gpu, [0, 4], { requiresGrad: true });
    using wz = Tensor.ones(gpu, [4], { requiresGrad: true });
    using yz = rmsnorm(z, wz);
    expect(yz.shape).toEqual([0, 4]);
    yz.sum().backward();
    expect([...(await wz.grad!.toArray())]).toEqual([0, 0, 0, 0]);
  }, SLOW);

  test("50 steps of forward + backward keep live buffers and bytes flat", async () => {
    const gpu = await getGpu();
    const r = rng(5);
    const x = upload(gpu, uniform(r, 6 * 40), [2, 3, 40], true);
    const w1 = upload(gpu, uniform(r, 40), [40], true);
    const w2 = upload(gpu, uniform(r, 40), [40], true);
    const b2 = upload(gpu, uniform(r, 40), [40], true);
    const { start, end } = await expectFlatMemory(gpu, 50, (it) => {
      const loss = scope(() => layernorm(rmsnorm(x, w1, { addUnitOffset: it % 2 === 1 }), w2, b2).mul(x).sum());
      loss.backward();
      loss.release();
      for (const t of [x, w1, w2, b2]) t.zeroGrad();
    });
    expect(end.liveBuffers).toBe(start.liveBuffers);
    for (const t of [x, w1, w2, b2]) t.release();
  }, SLOW);
});

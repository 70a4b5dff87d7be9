// rmsnorm (LLaMA; Gemma's 1 + w) and layernorm (with and without bias) as ops: forward and every input's gradient
// through autograd against the float64 reference of test/reference/norm.ts (itself checked here by central
// differences), only the inputs that require grad getting one, eps reaching the kernels, PyTorch goldens
// (tools/goldens/norm.py), determinism, call-site errors and flat memory over a training-like loop; dx added by the
// dx kernel into a .grad x already has (random prior; the same tensor after, no grad.accumulate). The launchers
// on every row length (1, 7, 13, 300, 4096), row-reduction variant, ragged parameter-gradient chunk and a 2-D
// workgroup grid are rows of test/kernels/rows/norm.ts.
// addRmsnorm (the residual add fused into RMSNorm): sum and out forward, and dx, dr, dweight through autograd with a
// gradient arriving at both outputs (d sum_total = g_sum + rmsnorm dx), or at out only, with sum's own gradient arriving
// first (the dx kernel adds into it: no grad.accumulate, as in the LLaMA layer) or last (the engine sums); the same
// values as add then rmsnorm; call-site errors; flat memory.
import { describe, expect, test } from "bun:test";
import { add, mul, scope, sum as sumAll, Tensor } from "../../src/tensor/index.ts";
import { addRmsnorm, layernorm, rmsnorm } from "../../src/tensor/ops/norm.ts";
import { loadGoldens } from "./goldens.ts";
import { expectFlatMemory } from "../helpers.ts";
import * as ref from "../reference/norm.ts";
import type { NormOptions } from "../reference/norm.ts";
import { accumulates, centralDiff, dispatchNames, expectClose, getGpu, numel, rng, seedOf, uniform, upload, type Shape } from "./helpers.ts";

/** Per-test limit: the first test of a file compiles its pipelines, slow on a loaded CPU Vulkan driver. */
const SLOW = 60_000;

type Kind = "rmsnorm" | "rmsnorm_unit" | "layernorm" | "layernorm_nobias";
const KINDS: Kind[] = ["rmsnorm", "rmsnorm_unit", "layernorm", "layernorm_nobias"];
const center = (k: Kind) => k.startsWith("layernorm");
const hasBias = (k: Kind) => k === "layernorm";
const defaultEps = (k: Kind) => (center(k) ? 1e-5 : 1e-6);

/** The launchers' float64 reference composed as the op runs them: forward, then the gradients of sum(y * R). */
function refNorm(k: Kind, X: Float64Array, d: number, W: Float64Array, B: Float64Array | null, eps: number, R: Float64Array) {
  const o: NormOptions = { rows: X.length / d, d, eps, kind: center(k) ? "layernorm" : "rmsnorm", unitOffset: k === "rmsnorm_unit", bias: B !== null };
  const fwd = ref.normForward({ x: X, w: W, b: B ?? undefined }, o);
  const { dx, dxMag } = ref.normDx({ x: X, w: W, gout: R, stats: fwd.stats }, o);
  const { dw, dwMag, db = new Float64Array(d), dbMag = new Float64Array(d) } = ref.normParamGrads({ x: X, gout: R, stats: fwd.stats }, o);
  return { y: fwd.y, yMag: fwd.yMag, dx, dxMag, dw, dwMag, db, dbMag };
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

// Leading dimensions folded into rows; [300, 5] takes the chunked two-pass parameter gradient by default.
const SHAPES: Shape[] = [[7], [2, 3, 300], [300, 5]];

describe("norms", () => {
  for (const k of KINDS)
    test(`${k}: forward and gradients through autograd against float64`, async () => {
      for (const s of SHAPES) await check(k, s);
    }, SLOW);

  for (const k of KINDS)
    test(`${k}: dx added into the .grad x already has, by the dx kernel`, async () => {
      const gpu = await getGpu();
      for (const shape of [[3, 7], [2, 3, 300]] as Shape[]) {
        const what = `${k} ${JSON.stringify(shape)} accumulate`;
        const r = rng(seedOf(what));
        const d = shape[shape.length - 1]!;
        const [X, W, B, R] = [uniform(r, numel(shape), -2, 2.5), uniform(r, d, 0.5, 1.5), hasBias(k) ? uniform(r, d) : null, uniform(r, numel(shape))];
        const G0 = Float64Array.from(new Float32Array(uniform(r, numel(shape))));
        const want = refNorm(k, X, d, W, B, defaultEps(k), R);
        const x = upload(gpu, X, shape, true);
        const prior = (x.grad = upload(gpu, G0, shape));
        const w = upload(gpu, W, [d], true);
        const b = B ? upload(gpu, B, [d], true) : null;
        const y = apply(k, x, w, b, defaultEps(k));
        const Rt = upload(gpu, R, shape);
        const names = dispatchNames(gpu, () => y.backward(Rt));
        expect(accumulates(names), what).toBe(0);
        expect(x.grad).toBe(prior);
        expectClose(`${what} dx`, await x.grad!.toArray(), G0.map((v, i) => v + want.dx[i]!), { mag: want.dxMag.map((m, i) => m + Math.abs(G0[i]!)) });
        expectClose(`${what} dweight`, await w.grad!.toArray(), want.dw, { mag: want.dwMag });
        for (const t of [x, w, b, y, Rt]) t?.release();
      }
    }, SLOW);

  test("only the inputs that require grad get one", async () => {
    for (const k of KINDS)
      for (const needs of [[true, false, false], [false, true, false], [false, false, true], [false, true, true]] as Needs[])
        await check(k, [4, 9], needs);
  }, SLOW);

  test("eps reaches the kernels (rmsnorm's option, layernorm's argument)", async () => {
    await check("rmsnorm", [3, 20], undefined, 0.5);
    await check("layernorm", [3, 20], undefined, 2);
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

/** addRmsnorm's float64 reference: the forward, and the gradients of sum(out * R) + sum(sum * S) (S null: out only). */
function refAddNorm(unit: boolean, X: Float64Array, Rs: Float64Array, d: number, W: Float64Array, eps: number, R: Float64Array, S: Float64Array | null) {
  const o: NormOptions = { rows: X.length / d, d, eps, kind: "rmsnorm", unitOffset: unit, bias: false };
  const fwd = ref.addRmsnormForward({ x: X, res: Rs, w: W }, o);
  const { dx, dxMag } = ref.normDx({ x: fwd.sum, w: W, gout: R, stats: fwd.stats }, o);
  const { dw, dwMag } = ref.normParamGrads({ x: fwd.sum, gout: R, stats: fwd.stats }, o);
  if (S) for (let i = 0; i < dx.length; i++) (dx[i] += S[i]!), (dxMag[i] += Math.abs(S[i]!));
  return { ...fwd, dx, dxMag, dw, dwMag };
}

/**
 * addRmsnorm's outputs and gradients against float64. `outFirst`: the loss adds sum's part before out's, so out's
 * rule (rmsnorm) runs first and the engine sums sum's gradients; by default sum's own gradient arrives first (as in
 * the LLaMA layer) and the dx kernel adds into it: no grad.accumulate either way for a gradient at both outputs.
 */
async function checkAdd(unit: boolean, shape: Shape, o: { needs?: Needs; sumGrad?: boolean; eps?: number; outFirst?: boolean } = {}): Promise<void> {
  const gpu = await getGpu();
  const needs = o.needs ?? [true, true, true]; // x, r, weight
  const eps = o.eps ?? 1e-6;
  const sumGrad = o.sumGrad ?? true;
  const what = `addRmsnorm${unit ? " unit offset" : ""} ${JSON.stringify(shape)} needs ${needs} sum grad ${sumGrad}${o.outFirst ? " out first" : ""}`;
  const r = rng(seedOf(what));
  const d = shape[shape.length - 1]!;
  const n = numel(shape);
  const [X, Rs, W, R, S] = [uniform(r, n, -2, 2.5), uniform(r, n, -1.5, 1.5), uniform(r, d, 0.5, 1.5), uniform(r, n), uniform(r, n)];
  const want = refAddNorm(unit, X, Rs, d, W, eps, R, sumGrad ? S : null);
  const x = upload(gpu, X, shape, needs[0]);
  const res = upload(gpu, Rs, shape, needs[1]);
  const w = upload(gpu, W, [d], needs[2]);
  const [Rt, St] = [upload(gpu, R, shape), upload(gpu, S, shape)];
  const { sum, out } = addRmsnorm(x, res, w, { eps, addUnitOffset: unit });
  expect(sum.shape).toEqual([...shape]);
  expect(out.shape).toEqual([...shape]);
  expectClose(`${what} sum`, await sum.toArray(), want.sum, { mag: want.sumMag });
  expectClose(`${what} out`, await out.toArray(), want.y, { mag: want.yMag });
  // add(a, b) runs b's rule first: sum's part second means sum's gradient arrives before out's rule runs.
  const loss = scope(() => {
    const [po, ps] = [sumAll(mul(out, Rt)), sumAll(mul(sum, St))];
    if (!sumGrad) return po;
    return o.outFirst ? add(ps, po) : add(po, ps);
  });
  const names = dispatchNames(gpu, () => loss.backward());
  if (sumGrad) expect(accumulates(names), what).toBe(o.outFirst ? 1 : 0);
  for (const [t, name] of [[x, "dx"], [res, "dr"]] as const)
    if (t.requiresGrad) expectClose(`${what} ${name}`, await t.grad!.toArray(), want.dx, { mag: want.dxMag });
    else expect(t.grad).toBeNull();
  if (needs[2]) expectClose(`${what} dweight`, await w.grad!.toArray(), want.dw, { mag: want.dwMag });
  else expect(w.grad).toBeNull();
  for (const t of [x, res, w, Rt, St, sum, out, loss]) t.release();
}

describe("addRmsnorm", () => {
  for (const unit of [false, true])
    test(`${unit ? "Gemma's unit offset" : "LLaMA"}: sum, out and every gradient against float64, both outputs used`, async () => {
      for (const s of [[7], [2, 3, 300], [300, 5], [4, 256], [3, 64]]) await checkAdd(unit, s);
    }, SLOW);

  test("a gradient at out only; only the inputs that require grad get one; eps", async () => {
    await checkAdd(false, [4, 9], { sumGrad: false });
    for (const needs of [[true, false, false], [false, true, false], [false, false, true], [true, true, false]] as Needs[]) await checkAdd(true, [4, 9], { needs });
    await checkAdd(false, [3, 20], { eps: 0.5 });
  }, SLOW);

  test("out's gradient arriving first: the engine sums sum's gradients (one grad.accumulate), the same values", async () => {
    for (const unit of [false, true]) for (const s of [[7], [2, 3, 300], [300, 5]]) await checkAdd(unit, s, { outFirst: true });
  }, SLOW);

  test("the same values as add then rmsnorm, forward and gradients", async () => {
    const gpu = await getGpu();
    const r = rng(21);
    const shape = [6, 40];
    const [X, Rs, W, R, S] = [uniform(r, 240), uniform(r, 240), uniform(r, 40, 0.5, 1.5), uniform(r, 240), uniform(r, 240)];
    const run = async (fused: boolean) => {
      using x = upload(gpu, X, shape, true);
      using res = upload(gpu, Rs, shape, true);
      using w = upload(gpu, W, [40], true);
      using Rt = upload(gpu, R, shape);
      using St = upload(gpu, S, shape);
      const outs = scope(() => {
        const { sum, out } = fused ? addRmsnorm(x, res, w) : (() => {
          const s = add(x, res);
          return { sum: s, out: rmsnorm(s, w) };
        })();
        const loss = add(sumAll(mul(out, Rt)), sumAll(mul(sum, St)));
        return { sum, out, loss };
      });
      outs.loss.backward();
      const got = [await outs.sum.toArray(), await outs.out.toArray(), await x.grad!.toArray(), await res.grad!.toArray(), await w.grad!.toArray()];
      for (const t of Object.values(outs)) t.release();
      return got;
    };
    const [a, b] = [await run(true), await run(false)];
    for (let k = 0; k < 5; k++) expectClose(`fused vs unfused ${["sum", "out", "dx", "dr", "dw"][k]}`, a[k]!, b[k]!, { rtol: 1e-6, atol: 1e-7 });
  }, SLOW);

  test("call-site errors, and flat memory over 30 steps", async () => {
    const gpu = await getGpu();
    using x = Tensor.zeros(gpu, [2, 4]);
    using r3 = Tensor.zeros(gpu, [2, 3]);
    using w4 = Tensor.zeros(gpu, [4]);
    using w3 = Tensor.zeros(gpu, [3]);
    expect(() => addRmsnorm(x, r3, w4)).toThrow("addRmsnorm: x [2, 4] and r [2, 3] must have the same shape");
    expect(() => addRmsnorm(x, x, w3)).toThrow("addRmsnorm: weight [3] does not match the last dimension of x [2, 4] (expected [4])");
    expect(() => addRmsnorm(x, x, w4, { eps: Number.NaN })).toThrow("addRmsnorm: eps must be finite and >= 0, got NaN");
    const r = rng(5);
    const a = upload(gpu, uniform(r, 120), [3, 40], true);
    const b = upload(gpu, uniform(r, 120), [3, 40], true);
    const w = upload(gpu, uniform(r, 40), [40], true);
    const { start, end } = await expectFlatMemory(gpu, 30, () => {
      const loss = scope(() => {
        const { sum, out } = addRmsnorm(a, b, w);
        return add(sumAll(mul(out, a)), sumAll(sum));
      });
      loss.backward();
      loss.release();
      for (const t of [a, b, w]) t.zeroGrad();
    });
    expect(end.liveBuffers).toBe(start.liveBuffers);
    for (const t of [a, b, w]) t.release();
  }, SLOW);
});

// The row kernels move rows in vec4s when d % 4 == 0 (kernels/norm.wgsl, define VEC) and in f32 otherwise: short rows
// of both kinds through the ops, forward and every gradient (the dx kernel accumulating into sum's gradient included).
describe("vec4 and scalar rows", () => {
  const ROWS: Shape[] = [[5, 4], [3, 12], [2, 36], [3, 6], [2, 2, 10]];
  for (const k of KINDS)
    test(`${k}: d = 4, 12, 36 (vec4) and 6, 10 (f32) against float64`, async () => {
      for (const s of ROWS) await check(k, s);
    }, SLOW);

  test("addRmsnorm: d = 4, 12, 36 (vec4) and 6, 10 (f32) against float64", async () => {
    for (const unit of [false, true]) for (const s of ROWS) await checkAdd(unit, s);
  }, SLOW);
});

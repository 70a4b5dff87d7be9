// rope as an op: HF LLaMA's rotate-half rotary embedding. Against HF's float32 math (goldens from
// tools/goldens/rope.py): inv_freq bit for bit, cos/sin (read back by rotating unit vectors) and the rotation to
// about one float32 ulp, the gradient too; through autograd against the float64 reference of
// test/reference/rope.ts (rotation by the float64 sin/cos of the same f32 angle; its backward checked here by
// central differences) for each layout pair, [T] and [B, T] positions given on the host or as an i32 tensor;
// call-site errors; invFreq overrides; flat memory. ropePair (q and k in one dispatch each way: an op with two
// outputs) the same way, with either output unused, both feeding one op, an output reshaped, backward started at
// the second output, and flat memory. The launchers on odd half sizes, dh up to 128, large and
// negative positions and a 2-D workgroup grid are rows of test/kernels/rows/rope.ts.
import { describe, expect, test } from "bun:test";
import { scope, Tensor } from "../../src/tensor/index.ts";
import { rope, ropeInvFreq, ropePair, type RopeLayout } from "../../src/tensor/ops/rope.ts";
import { loadGoldens } from "./goldens.ts";
import { expectFlatMemory } from "../helpers.ts";
import * as ref from "../reference/rope.ts";
import type { RopeDims } from "../reference/rope.ts";
import { centralDiff, expectClose, getGpu, rng, seedOf, uniform, upload } from "./helpers.ts";

/** Per-test limit: the first test of a file compiles its pipelines, slow on a loaded CPU Vulkan driver. */
const SLOW = 60_000;

interface Case {
  b: number;
  h: number;
  t: number;
  dh: number;
  theta?: number;
  layout?: RopeLayout;
  outLayout?: RopeLayout;
  /** Positions [B, T] (per batch) or [T] (shared); default [T] = 0..T-1. */
  pos?: number[];
  gpuPositions?: boolean;
}

/** The reference's options for a case: x in `layout`, out in `outLayout`, [T] or [B, T] positions. */
function dims(c: Case, pos: readonly number[]): RopeDims {
  const layout = c.layout ?? "bhtd";
  return { b: c.b, h: c.h, t: c.t, dh: c.dh, layout, outLayout: c.outLayout ?? layout, batchedPositions: pos.length !== c.t };
}

async function check(c: Case): Promise<void> {
  const gpu = await getGpu();
  const layout = c.layout ?? "bhtd";
  const outLayout = c.outLayout ?? layout;
  const what = `rope ${JSON.stringify(c)}`;
  const r = rng(seedOf(what));
  const shape = (l: RopeLayout) => (l === "bhtd" ? [c.b, c.h, c.t, c.dh] : [c.b, c.t, c.h, c.dh]);
  const n = c.b * c.h * c.t * c.dh;
  const X = uniform(r, n);
  const pos = c.pos ?? Array.from({ length: c.t }, (_, i) => i);
  const o = dims(c, pos);
  const io = { pos: Int32Array.from(pos), invFreq: Float64Array.from(ropeInvFreq(c.dh, c.theta ?? 10000)) };
  const fwd = ref.ropeForward({ x: X, ...io }, o);
  const x = upload(gpu, X, shape(layout), true);
  const posT = c.gpuPositions ? Tensor.fromArray(gpu, pos, pos.length === c.t ? [c.t] : [c.b, c.t], { dtype: "i32" }) : null;
  const y = rope(x, posT ?? pos, { theta: c.theta, layout, outLayout });
  expect(y.shape).toEqual(shape(outLayout));
  // Relative to |x1| + |x2|: our sin/cos are within ~1 ulp of the exact ones.
  expectClose(`${what} forward`, await y.toArray(), fwd.out, { rtol: 5e-7, atol: 0, mag: fwd.outMag });
  const R = uniform(r, n);
  const Rt = upload(gpu, R, shape(outLayout));
  y.backward(Rt);
  const bwd = ref.ropeBackward({ gout: R, ...io }, o);
  expectClose(`${what} dx`, await x.grad!.toArray(), bwd.dx, { rtol: 5e-7, atol: 0, mag: bwd.dxMag });
  for (const t of [x, posT, y, Rt]) t?.release();
}

describe("rope", () => {
  test("forward and gradient against float64, every layout pair", async () => {
    for (const [layout, outLayout] of [["bhtd", "bhtd"], ["bthd", "bthd"], ["bthd", "bhtd"], ["bhtd", "bthd"]] as const)
      await check({ b: 2, h: 3, t: 5, dh: 8, layout, outLayout });
  }, SLOW);

  test("[B, T] and [T] positions, given on the host or as an i32 tensor; Dh up to 128", async () => {
    const bt = [5, 6, 7, 8, 0, 1, 2, 100];
    for (const gpuPositions of [false, true]) {
      await check({ b: 2, h: 2, t: 4, dh: 16, pos: bt, gpuPositions });
      await check({ b: 2, h: 2, t: 4, dh: 16, pos: [9, 3, 0, 4000], gpuPositions, layout: "bthd", outLayout: "bhtd" });
      await check({ b: 1, h: 3, t: 3, dh: 128, pos: [0, 17, 8191], gpuPositions, theta: 500000 });
    }
  }, SLOW);

  test("matches HF's float32 math: inv_freq bit for bit, cos/sin and the rotation to ~1 ulp", async () => {
    const gpu = await getGpu();
    let worst = 0;
    for (const c of loadGoldens("rope").filter((c) => !c.params.survey)) {
      const [b, h, t, dh] = c.inputs.x!.shape as [number, number, number, number];
      const theta = c.params.theta as number;
      const posData = c.inputs.positions!.data;
      expect([...ropeInvFreq(dh, theta)]).toEqual(c.outputs.inv_freq!.data);

      // cos and sin, as the kernel computes them: rotate x = (1, 0) pairs into (cos, sin).
      const unit = new Float32Array(b * t * dh).map((_, k) => (k % dh < dh / 2 ? 1 : 0));
      using u = Tensor.fromArray(gpu, unit, [b, 1, t, dh]);
      using pb = Tensor.fromArray(gpu, posData, [b, t], { dtype: "i32" });
      using cs = rope(u, pb, { theta });
      const got = await cs.toArray();
      const [hfCos, hfSin] = [c.outputs.cos!.data, c.outputs.sin!.data];
      for (let k = 0; k < got.length; k++) {
        const row = Math.floor(k / dh) * dh;
        const i = k % (dh / 2);
        const ref = k % dh < dh / 2 ? hfCos[row + i]! : hfSin[row + i]!;
        worst = Math.max(worst, Math.abs(got[k]! - ref));
      }
      expect(worst).toBeLessThanOrEqual(1.2e-7); // one float32 ulp of values in [0.5, 1)

      const x = Tensor.fromArray(gpu, c.inputs.x!.data, [b, h, t, dh], { requiresGrad: true });
      // [T] positions where every batch row has the same ones, [B, T] otherwise; and host positions.
      const same = posData.every((p, k) => p === posData[k % t]);
      const y = rope(x, same ? posData.slice(0, t) : posData, { theta });
      const X = c.inputs.x!.data;
      const mag = X.map((_, k) => Math.abs(X[k]!) + Math.abs(X[k % dh < dh / 2 ? k + dh / 2 : k - dh / 2]!));
      expectClose(`${c.name} forward vs HF float32`, await y.toArray(), c.outputs.out!.data, { rtol: 3e-7, atol: 0, mag });
      const up = Tensor.fromArray(gpu, c.upstream.out!.data, c.upstream.out!.shape);
      y.backward(up);
      const U = c.upstream.out!.data;
      const umag = U.map((_, k) => Math.abs(U[k]!) + Math.abs(U[k % dh < dh / 2 ? k + dh / 2 : k - dh / 2]!));
      expectClose(`${c.name} grad x vs HF float32 autograd`, await x.grad!.toArray(), c.grads.x!.data, { rtol: 3e-7, atol: 0, mag: umag });
      for (const tt of [x, y, up]) tt.release();
    }
    console.log(`rope: largest |cos/sin - HF float32| = ${worst.toExponential(2)}`);
  }, SLOW);

  test("inv_freq over common (Dh, theta): within 1 ulp of torch's float32 everywhere, mostly bit-equal", () => {
    const survey = loadGoldens("rope").find((c) => c.params.survey)!;
    let equal = 0;
    let total = 0;
    for (const [key, hf] of Object.entries(survey.outputs)) {
      const [dh, theta] = key.split("/").map(Number) as [number, number];
      const ours = ropeInvFreq(dh, theta);
      expect(ours.length).toBe(hf.data.length);
      hf.data.forEach((v, i) => {
        const ulp = 2 ** (Math.floor(Math.log2(v)) - 23);
        expect(Math.abs(ours[i]! - v)).toBeLessThanOrEqual(ulp);
        equal += ours[i] === v ? 1 : 0;
        total++;
      });
    }
    // ours is the correctly rounded float32 value; torch's CPU pow is a 1-ulp one (about 1% differ).
    expect(equal / total).toBeGreaterThan(0.95);
    console.log(`rope: inv_freq bit-equal to torch for ${equal} of ${total} (Dh, theta, i)`);
  }, SLOW);

  test("the float64 reference backward is the transpose of its forward (central differences)", () => {
    const o: RopeDims = { b: 1, h: 2, t: 3, dh: 6, layout: "bthd", outLayout: "bhtd", batchedPositions: false };
    const r = rng(4);
    const X = uniform(r, 36);
    const R = uniform(r, 36);
    const io = { pos: Int32Array.from([3, 1000, 7]), invFreq: Float64Array.from(ropeInvFreq(6)) };
    const loss = (v: Float64Array) => ref.ropeForward({ x: v, ...io }, o).out.reduce((a, y, k) => a + y * R[k]!, 0);
    expectClose("d loss / dx", ref.ropeBackward({ gout: R, ...io }, o).dx, centralDiff(loss, X), { rtol: 1e-7, atol: 1e-8 });
  }, SLOW);

  test("bad arguments fail at the call site, naming the op and the shapes", async () => {
    const gpu = await getGpu();
    using x = Tensor.zeros(gpu, [2, 3, 4, 8]);
    expect(() => rope(x, [0, 1, 2])).toThrow("rope: 3 positions for x [2, 3, 4, 8] (bhtd); expected T = 4 or B*T = 8");
    expect(() => rope(x, [0, 1, 2, 3], { layout: "bthd" })).toThrow("rope: 4 positions for x [2, 3, 4, 8] (bthd); expected T = 3 or B*T = 6");
    using odd = Tensor.zeros(gpu, [1, 1, 2, 5]);
    expect(() => rope(odd, [0, 1])).toThrow("rope: the head dimension must be even, got [1, 1, 2, 5] (Dh = 5)");
    using x3 = Tensor.zeros(gpu, [3, 4, 8]);
    expect(() => rope(x3, [0, 1, 2, 3])).toThrow("rope: x must be [B, H, T, Dh], got [3, 4, 8]");
    using pf = Tensor.zeros(gpu, [4]);
    expect(() => rope(x, pf)).toThrow("rope: positions must be int32, got Tensor([4], f32)");
    using p3 = Tensor.fromArray(gpu, [0, 1, 2, 3, 4, 5], [3, 2], { dtype: "i32" });
    expect(() => rope(x, p3)).toThrow("rope: positions [3, 2] must be [T] or [B, T] = [4] or [2, 4] for x [2, 3, 4, 8] (bhtd)");
    expect(() => rope(x, [0, 1, 2, 2 ** 21])).toThrow("rope: position 2097152 at index 3 must be an integer with |position * inv_freq| < 2^21");
    expect(() => rope(x, [0, 1, 2.5, 3])).toThrow("rope: position 2.5 at index 2");
    expect(() => rope(x, [0, 1, 2, 3], { theta: 0 })).toThrow("rope: theta must be finite and > 0, got 0");
    expect(() => rope(x, [0, 1, 2, 3], { invFreq: [1, 2] })).toThrow("rope: invFreq has 2 values; Dh = 8 needs 4");
    expect(() => rope(x, [0, 1, 2, 3], { layout: "bhdt" as RopeLayout })).toThrow('rope: layout must be "bhtd" or "bthd", got bhdt');
  }, SLOW);

  test("invFreq overrides theta's frequencies (rope scaling)", async () => {
    const gpu = await getGpu();
    using x = Tensor.fromArray(gpu, [1, 1, 0, 0], [1, 1, 1, 4]);
    using y = rope(x, [2], { invFreq: [0.25, Math.PI / 4] });
    const got = await y.toArray();
    expectClose("rotation by 0.5 and pi/2 rad", got, [Math.cos(0.5), Math.cos(Math.fround(Math.PI / 4) * 2), Math.sin(0.5), Math.sin(Math.fround(Math.PI / 4) * 2)], { rtol: 0, atol: 2e-7 });
  }, SLOW);

  test("50 steps of forward + backward keep live buffers and bytes flat", async () => {
    const gpu = await getGpu();
    const r = rng(5);
    const x = upload(gpu, uniform(r, 2 * 5 * 3 * 8), [2, 5, 3, 8], true);
    const posT = Tensor.fromArray(gpu, [0, 1, 2, 3, 4, 7, 8, 9, 10, 11], [2, 5], { dtype: "i32" });
    const { start, end } = await expectFlatMemory(gpu, 50, () => {
      const loss = scope(() => {
        const q = rope(x, posT, { layout: "bthd", outLayout: "bhtd" });
        return rope(q, [0, 1, 2, 3, 4]).mul(q).sum();
      });
      loss.backward();
      loss.release();
      x.zeroGrad();
    });
    expect(end.liveBuffers).toBe(start.liveBuffers);
    for (const t of [x, posT]) t.release();
  }, SLOW);
  test("invFreq given as a device tensor gives the same bits as the host array", async () => {
    const gpu = await getGpu();
    const r = rng(41);
    const x = upload(gpu, uniform(r, 2 * 3 * 5 * 8), [2, 3, 5, 8]);
    const inv = ropeInvFreq(8, 500000);
    const invT = Tensor.fromArray(gpu, inv, [4]);
    const a = rope(x, [0, 1, 2, 3, 4], { invFreq: inv });
    const b = rope(x, [0, 1, 2, 3, 4], { invFreq: invT });
    expect(Array.from(await b.toArray())).toEqual(Array.from(await a.toArray()));
    expect(() => rope(x, [0, 1, 2, 3, 4], { invFreq: Tensor.fromArray(gpu, [1, 2], [2]) })).toThrow("rope: invFreq has 2 values; Dh = 8 needs 4");
    for (const t of [x, invT, a, b]) t.release();
  });
});

describe("ropePair: q and k in one dispatch (two outputs of one autograd node)", () => {
  const shape = (l: RopeLayout, b: number, h: number, t: number, dh: number) => (l === "bhtd" ? [b, h, t, dh] : [b, t, h, dh]);

  /** Both tensors' forward and gradients against float64, with `use` choosing which outputs reach the loss. */
  async function checkPair(b: number, hq: number, hk: number, t: number, dh: number, layout: RopeLayout, outLayout: RopeLayout, use: "both" | "q" | "k", pos: number[]) {
    const gpu = await getGpu();
    const what = `ropePair b ${b} h ${hq}/${hk} t ${t} dh ${dh} ${layout}->${outLayout} uses ${use}`;
    const r = rng(seedOf(what));
    const [nq, nk] = [b * hq * t * dh, b * hk * t * dh];
    const [Q, K, RQ, RK] = [uniform(r, nq), uniform(r, nk), uniform(r, nq), uniform(r, nk)];
    const io = { pos: Int32Array.from(pos), invFreq: Float64Array.from(ropeInvFreq(dh)) };
    const o = (h: number): RopeDims => ({ b, h, t, dh, layout, outLayout, batchedPositions: pos.length !== t });
    const q = upload(gpu, Q, shape(layout, b, hq, t, dh), true);
    const k = upload(gpu, K, shape(layout, b, hk, t, dh), true);
    const [yq, yk] = ropePair(q, k, pos, { layout, outLayout });
    expect(yq.shape).toEqual(shape(outLayout, b, hq, t, dh));
    expect(yk.shape).toEqual(shape(outLayout, b, hk, t, dh));
    const fq = ref.ropeForward({ x: Q, ...io }, o(hq));
    const fk = ref.ropeForward({ x: K, ...io }, o(hk));
    expectClose(`${what} q`, await yq.toArray(), fq.out, { rtol: 5e-7, atol: 0, mag: fq.outMag });
    expectClose(`${what} k`, await yk.toArray(), fk.out, { rtol: 5e-7, atol: 0, mag: fk.outMag });
    const rq = upload(gpu, RQ, yq.shape);
    const rk = upload(gpu, RK, yk.shape);
    const loss = scope(() => {
      const lq = yq.mul(rq).sum();
      const lk = yk.mul(rk).sum();
      return use === "both" ? lq.add(lk) : use === "q" ? lq : lk;
    });
    loss.backward();
    const zero = (n: number) => new Float64Array(n);
    const bq = use === "k" ? { dx: zero(nq), dxMag: zero(nq).fill(1) } : ref.ropeBackward({ gout: RQ, ...io }, o(hq));
    const bk = use === "q" ? { dx: zero(nk), dxMag: zero(nk).fill(1) } : ref.ropeBackward({ gout: RK, ...io }, o(hk));
    expectClose(`${what} dq`, await q.grad!.toArray(), bq.dx, { rtol: 5e-7, atol: 0, mag: bq.dxMag });
    expectClose(`${what} dk`, await k.grad!.toArray(), bk.dx, { rtol: 5e-7, atol: 0, mag: bk.dxMag });
    for (const x of [q, k, yq, yk, rq, rk, loss]) x.release();
  }

  test("forward and both gradients against float64, every layout pair, GQA (fewer k heads) and more k heads", async () => {
    for (const [layout, outLayout] of [["bhtd", "bhtd"], ["bthd", "bthd"], ["bthd", "bhtd"], ["bhtd", "bthd"]] as const) {
      await checkPair(2, 4, 2, 5, 8, layout, outLayout, "both", [0, 1, 2, 3, 4]);
      await checkPair(1, 1, 3, 6, 6, layout, outLayout, "both", [7, 0, 3, 100, 2, 9]);
    }
    await checkPair(2, 2, 1, 3, 16, "bthd", "bhtd", "both", [5, 6, 7, 0, 1, 4000]); // [B, T] positions
  }, SLOW);

  test("an output that reaches no loss gets a zero gradient; the other's is exact", async () => {
    await checkPair(2, 3, 1, 4, 8, "bthd", "bhtd", "q", [0, 1, 2, 3]);
    await checkPair(2, 3, 1, 4, 8, "bthd", "bhtd", "k", [0, 1, 2, 3]);
  }, SLOW);

  test("both outputs in one op, an output reshaped, and backward started at the second output", async () => {
    const gpu = await getGpu();
    const r = rng(77);
    const [B, H, T, D] = [1, 2, 3, 4];
    const n = B * H * T * D;
    const pos = [0, 5, 9];
    const io = { pos: Int32Array.from(pos), invFreq: Float64Array.from(ropeInvFreq(D)) };
    const o: RopeDims = { b: B, h: H, t: T, dh: D, layout: "bhtd", outLayout: "bhtd", batchedPositions: false };
    const [Q, K, R] = [uniform(r, n), uniform(r, n), uniform(r, n)];
    const q = upload(gpu, Q, [B, H, T, D], true);
    const k = upload(gpu, K, [B, H, T, D], true);
    // loss = sum(rope(q) * rope(k) * R): dq = rope^T(rope(k) * R), dk = rope^T(rope(q) * R).
    const [yq, yk] = ropePair(q, k, pos);
    const loss = scope(() => yq.mul(yk).reshape(n).mul(upload(gpu, R, [n])).sum());
    loss.backward({ retainGraph: true });
    const fq = ref.ropeForward({ x: Q, ...io }, o).out;
    const fk = ref.ropeForward({ x: K, ...io }, o).out;
    const bq = ref.ropeBackward({ gout: fk.map((v, i) => v * R[i]!), ...io }, o);
    const bk = ref.ropeBackward({ gout: fq.map((v, i) => v * R[i]!), ...io }, o);
    expectClose("dq (both outputs in one mul)", await q.grad!.toArray(), bq.dx, { rtol: 2e-6, atol: 1e-7 });
    expectClose("dk (both outputs in one mul)", await k.grad!.toArray(), bk.dx, { rtol: 2e-6, atol: 1e-7 });
    q.zeroGrad();
    k.zeroGrad();
    // Backward from the second output itself, through a reshape of it.
    const flat = yk.reshape(B, H * T * D);
    flat.backward(upload(gpu, R, [B, H * T * D]));
    // q's output got no gradient: as torch does (materialized zeros), the rule runs and q's gradient is zeros.
    expect(Array.from(await q.grad!.toArray(), Math.abs)).toEqual(new Array(n).fill(0));
    const bk2 = ref.ropeBackward({ gout: R, ...io }, o);
    expectClose("dk from the second output", await k.grad!.toArray(), bk2.dx, { rtol: 5e-7, atol: 0, mag: bk2.dxMag });
    for (const x of [q, k, yq, yk, loss, flat]) x.release();
  }, SLOW);

  test("bad arguments name ropePair and the shapes", async () => {
    const gpu = await getGpu();
    using q = Tensor.zeros(gpu, [2, 3, 4, 8]);
    using k = Tensor.zeros(gpu, [2, 1, 5, 8]);
    expect(() => ropePair(q, k, [0, 1, 2, 3])).toThrow("ropePair: q [2, 3, 4, 8] and k [2, 1, 5, 8] must have the same B, T and Dh (bhtd)");
    using k3 = Tensor.zeros(gpu, [2, 4, 8]);
    expect(() => ropePair(q, k3, [0, 1, 2, 3])).toThrow("ropePair: x must be [B, H, T, Dh], got [2, 4, 8]");
    expect(() => ropePair(q, q, [0, 1, 2])).toThrow("ropePair: 3 positions for x [2, 3, 4, 8] (bhtd); expected T = 4 or B*T = 8");
  }, SLOW);

  test("50 steps of forward + backward keep live buffers and bytes flat", async () => {
    const gpu = await getGpu();
    const r = rng(6);
    const q = upload(gpu, uniform(r, 2 * 5 * 4 * 8), [2, 5, 4, 8], true);
    const k = upload(gpu, uniform(r, 2 * 5 * 2 * 8), [2, 5, 2, 8], true);
    const posT = Tensor.fromArray(gpu, [0, 1, 2, 3, 4], [5], { dtype: "i32" });
    const { end, start } = await expectFlatMemory(gpu, 50, () => {
      const loss = scope(() => {
        const [a, b] = ropePair(q, k, posT, { layout: "bthd", outLayout: "bhtd" });
        return a.sum().add(b.mul(b).sum());
      });
      loss.backward();
      loss.release();
      q.zeroGrad();
      k.zeroGrad();
    });
    expect(end.liveBuffers).toBe(start.liveBuffers);
    for (const t of [q, k, posT]) t.release();
  }, SLOW);
});

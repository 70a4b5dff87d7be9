// AdamW through the optimizer: parameters of sizes that are not multiples of the workgroup, over several steps with
// some gradients null (skipped: per-parameter step counts), against the float64 update of test/reference/optim.ts
// driven with each parameter's own state; parameter groups; the dispatch/upload budget of a step, checkpoints
// (stateDict / loadStateDict and their shape check), release, and argument errors. The kernel on every size class,
// several hyperparameter sets and a 2-D workgroup grid is a launcher row: test/kernels/rows/optim.ts.
import { describe, expect, test } from "bun:test";
import { AdamW, ADAMW_DEFAULTS, type AdamWOptions } from "../../src/optim/index.ts";
import { Tensor } from "../../src/tensor/index.ts";
import { RefAdamW } from "../reference/optim.ts";
import { expectClose, getGpu, numel, rng, seedOf, uniform, upload, type Shape } from "../tensor/helpers.ts";

const SHAPES: Shape[] = [[37], [3, 101], [1], [2, 3, 5], [300]];

/** Give p the gradient G (f32-rounded), or none. */
function setGrad(p: Tensor, G: Float64Array | null): void {
  p.zeroGrad();
  if (G) p.grad = upload(p.gpu, G, p.shape);
}

describe("AdamW", () => {
  test("matches a float64 reference over 6 steps, with null gradients skipped and per-parameter step counts", async () => {
    const gpu = await getGpu();
    const r = rng(seedOf("adamw f64"));
    const o: AdamWOptions = { lr: 0.02, betas: [0.85, 0.99], eps: 1e-6, weightDecay: 0.3 };
    const P = SHAPES.map((s) => uniform(r, numel(s)));
    const params = P.map((x, i) => upload(gpu, x, SHAPES[i]!, true));
    const refs = P.map((x) => new RefAdamW(Float64Array.from(x), o));
    const opt = new AdamW(params, o);
    for (let s = 0; s < 6; s++) {
      params.forEach((p, i) => {
        // Parameter 1 has no gradient at steps 0 and 3, parameter 3 none before step 2.
        const none = (i === 1 && (s === 0 || s === 3)) || (i === 3 && s < 2);
        const G = none ? null : uniform(r, p.size, -2, 2);
        setGrad(p, G);
        if (G) refs[i]!.step(G);
      });
      opt.step();
      for (let i = 0; i < params.length; i++) {
        expectClose(`step ${s} param ${i}`, await params[i]!.toArray(), refs[i]!.p);
        expect(opt.stateOf(params[i]!)?.step ?? 0).toBe(refs[i]!.t);
      }
    }
    for (let i = 0; i < params.length; i++) {
      const st = opt.stateOf(params[i]!)!;
      expectClose(`exp_avg ${i}`, await st.tensors.exp_avg!.toArray(), refs[i]!.m);
      expectClose(`exp_avg_sq ${i}`, await st.tensors.exp_avg_sq!.toArray(), refs[i]!.v);
    }
    opt.release();
    for (const p of params) p.release();
  });

  test("a parameter whose grad is null is left untouched (no decay) and gets no state, like torch", async () => {
    const gpu = await getGpu();
    const X = Float32Array.from([0.5, -1.5, 2, 3, -4]);
    using a = Tensor.fromArray(gpu, X, [5], { requiresGrad: true });
    using b = Tensor.fromArray(gpu, X, [5], { requiresGrad: true });
    const opt = new AdamW([a, b], { weightDecay: 0.5, lr: 0.1 });
    b.grad = Tensor.ones(gpu, [5]);
    opt.step();
    opt.step();
    expect(Array.from(await a.toArray())).toEqual(Array.from(X)); // bit-identical
    expect(opt.stateOf(a)).toBeUndefined();
    expect(opt.stateOf(b)!.step).toBe(2);
    expect(await b.toArray()).not.toEqual(X);
    opt.release();
  });

  test("parameter groups: per-group overrides (no weight decay for one group), schedules scale each group's lr", async () => {
    const gpu = await getGpu();
    const r = rng(seedOf("adamw groups"));
    const W = uniform(r, 40);
    const B = uniform(r, 9);
    using w = upload(gpu, W, [5, 8], true);
    using b = upload(gpu, B, [9], true);
    const opt = new AdamW([{ params: { w } }, { params: { b }, weightDecay: 0, lr: 0.05 }], { lr: 0.01, weightDecay: 0.2 });
    expect(opt.groups.map((g) => g.options.weightDecay)).toEqual([0.2, 0]);
    expect(opt.groups.map((g) => g.names)).toEqual([["w"], ["b"]]);
    opt.setLrFactor(0.5);
    expect(opt.groups.map((g) => g.options.lr)).toEqual([0.005, 0.025]);
    const rw = new RefAdamW(Float64Array.from(W), { ...ADAMW_DEFAULTS, lr: 0.005, weightDecay: 0.2 });
    const rb = new RefAdamW(Float64Array.from(B), { ...ADAMW_DEFAULTS, lr: 0.025, weightDecay: 0 });
    for (let s = 0; s < 3; s++) {
      const [GW, GB] = [uniform(r, 40), uniform(r, 9)];
      setGrad(w, GW);
      setGrad(b, GB);
      rw.step(GW);
      rb.step(GB);
      opt.step();
    }
    expectClose("w", await w.toArray(), rw.p);
    expectClose("b", await b.toArray(), rb.p);
    opt.release();
  });

  test("a step is a few multi-tensor dispatches for all parameters with a gradient, and uploads nothing", async () => {
    const gpu = await getGpu();
    const params = SHAPES.map((s) => Tensor.ones(gpu, s, { requiresGrad: true }));
    const opt = new AdamW(params);
    params.forEach((p, i) => i !== 2 && (p.grad = Tensor.ones(gpu, p.shape)));
    const s0 = gpu.queue.stats();
    opt.step(); // first step: also zero-fills m and v (dispatches, not uploads)
    const s1 = gpu.queue.stats();
    for (let k = 0; k < 5; k++) opt.step();
    const s2 = gpu.queue.stats();
    expect(s1.uploads - s0.uploads).toBe(0);
    expect(s2.uploads - s1.uploads).toBe(0);
    // Sizes 37, 303, 30 (f32 units) and 300 (vec4 units): one dispatch each kind, on any device (>= 3 slots).
    expect(s2.dispatches - s1.dispatches).toBe(5 * 2);
    await gpu.sync();
    opt.release();
    for (const p of params) p.release();
  });

  test("stateDict / loadStateDict: resuming from host arrays continues bit-identically", async () => {
    const gpu = await getGpu();
    const r = rng(seedOf("adamw checkpoint"));
    const W = uniform(r, 21);
    const B = uniform(r, 4);
    const make = () => ({ w: upload(gpu, W, [3, 7], true), b: upload(gpu, B, [4], true) });
    const a = make();
    const optA = new AdamW(a, { lr: 0.03, weightDecay: 0.1 });
    const grads = Array.from({ length: 5 }, () => [uniform(r, 21), uniform(r, 4)] as const);
    const run = (ps: { w: Tensor; b: Tensor }, opt: AdamW, s: number) => {
      setGrad(ps.w, grads[s]![0]);
      setGrad(ps.b, s === 1 ? null : grads[s]![1]);
      opt.step();
    };
    for (let s = 0; s < 3; s++) run(a, optA, s);
    const sd = await optA.stateDict();
    expect(sd.kind).toBe("AdamW");
    expect(Object.keys(sd.state).sort()).toEqual(["b", "w"]);
    expect(sd.state.w!.step).toBe(3);
    expect(sd.state.b!.step).toBe(2);
    expect(sd.state.w!.shape).toEqual([3, 7]);
    expect(sd.state.w!.tensors.exp_avg).toBeInstanceOf(Float32Array);
    expect(sd.groups[0]!.options).toMatchObject({ lr: 0.03, weightDecay: 0.1, betas: [0.9, 0.999] });

    // A second model at the same parameter values, a fresh optimizer with other hyperparameters: load.
    const b = { w: Tensor.fromArray(gpu, await a.w.toArray(), [3, 7], { requiresGrad: true }), b: Tensor.fromArray(gpu, await a.b.toArray(), [4], { requiresGrad: true }) };
    const optB = new AdamW(b, { lr: 1 });
    optB.loadStateDict(sd);
    expect(optB.groups[0]!.options.lr).toBe(0.03);
    for (let s = 3; s < 5; s++) {
      run(a, optA, s);
      run(b, optB, s);
    }
    expect(Array.from(await b.w.toArray())).toEqual(Array.from(await a.w.toArray()));
    expect(Array.from(await b.b.toArray())).toEqual(Array.from(await a.b.toArray()));
    expect(optB.stateOf(b.b)!.step).toBe(4);

    // Mismatches are refused before anything changes, naming the parameter.
    using wrong = Tensor.zeros(gpu, [7, 3], { requiresGrad: true });
    const optC = new AdamW({ w: wrong, b: b.b });
    expect(() => optC.loadStateDict(sd)).toThrow("AdamW.loadStateDict: parameter 'w' has shape [7, 3] but its checkpoint state [3, 7]");
    expect(optC.stateOf(b.b)).toBeUndefined();
    const optD = new AdamW({ w: b.w, bias: b.b });
    expect(() => optD.loadStateDict(sd)).toThrow("group 0 holds parameters [w, b] in the checkpoint but [w, bias] here");
    const bad = structuredClone(sd);
    bad.state.b!.tensors.exp_avg = new Float32Array(3);
    expect(() => optB.loadStateDict(bad)).toThrow("state 'exp_avg' of parameter 'b' has 3 values; the parameter [4] has 4");
    for (const o of [optA, optB, optC, optD]) o.release();
    for (const t of [a.w, a.b, b.w, b.b]) t.release();
  });

  test("release() frees m and v; the optimizer refuses to step afterwards", async () => {
    const gpu = await getGpu();
    using p = Tensor.ones(gpu, [33], { requiresGrad: true });
    p.grad = Tensor.ones(gpu, [33]);
    const before = gpu.memory().liveBuffers;
    const opt = new AdamW([p]);
    opt.step();
    expect(gpu.memory().liveBuffers).toBe(before + 2);
    opt.release();
    expect(gpu.memory().liveBuffers).toBe(before);
    expect(() => opt.step()).toThrow("AdamW: this optimizer was released");
    opt.release(); // idempotent
  });

  test("bad arguments fail at the call site with torch's checks, naming the parameter", async () => {
    const gpu = await getGpu();
    using p = Tensor.ones(gpu, [3], { requiresGrad: true });
    using q = Tensor.ones(gpu, [2], { requiresGrad: true });
    expect(() => new AdamW([p], { betas: [1, 0.9] })).toThrow("AdamW: invalid beta parameter at index 0: 1");
    expect(() => new AdamW([p], { lr: -1 })).toThrow("AdamW: invalid learning rate -1");
    expect(() => new AdamW([p], { weightDecay: -0.1 })).toThrow("invalid weight_decay value: -0.1");
    expect(() => new AdamW([])).toThrow("AdamW: got an empty parameter list");
    expect(() => new AdamW([{ params: [p] }, { params: [q, p] }])).toThrow("AdamW: parameter '2' appears more than once (also as '0')");
    using nonLeaf = p.mulScalar(2);
    expect(() => new AdamW({ h: nonLeaf })).toThrow("AdamW: parameter 'h' (Tensor([3], f32, grad_fn=mul_scalar)) is not a leaf");
    const opt = new AdamW({ w: p });
    p.grad = Tensor.ones(gpu, [1, 3]);
    expect(() => opt.step()).toThrow("AdamW.step: parameter 'w' has shape [3] but its gradient [1, 3]");
    opt.release();
  });
});

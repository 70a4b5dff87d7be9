// GradScaler (src/optim/grad_scaler.ts) against torch.cuda.amp.GradScaler's semantics:
//   - defaults and scale(loss): loss * 2^16, gradients scaled through backward;
//   - unscale_: gradients divided on the GPU, bit-exact with torch's f32(1 / f64(scale)) multiplier, also over more
//     gradients than one dispatch takes (mixed sizes, an inf in the last one; the kernel on
//     odd sizes, injected infs and a 2-D workgroup grid is a launcher row: test/kernels/rows/grad_scaler.ts);
//   - an injected inf or NaN in one gradient of several: step() skips the optimizer (parameters unchanged bit
//     for bit, no optimizer state created), update() halves the scale and resets the growth tracker;
//   - a clean step equals the optimizer stepping on the unscaled gradients, bit for bit;
//   - growth after growthInterval clean steps, never to an f32 inf;
//   - a 60-step run of random overflows with non-power-of-two factors against a float64 simulation of torch's
//     update rule (aten/src/ATen/native/cuda/AmpKernels.cu, amp_update_scale_cuda_kernel: on found_inf,
//     scale = float(scale * backoff) and tracker = 0; else tracker + 1, and on reaching growth_interval
//     scale = float(scale * growth) if finite, tracker = 0);
//   - two optimizers: each skips on its own flag, the scale backs off if either overflowed;
//   - stateDict / loadStateDict with torch's keys; torch's misuse errors; a disabled scaler is a pass-through;
//   - memory flat over 50 scaled steps (the per-step flag is released by update()).
import { describe, expect, test } from "bun:test";
import { AdamW, clipGradNorm, GradScaler, SGD } from "../../src/optim/index.ts";
import { debug, scope, Tensor, TensorError } from "../../src/tensor/index.ts";
import { expectFlatMemory } from "../helpers.ts";
import { unscaleGrads } from "../reference/grad_scaler.ts";
import { getGpu, rng, seedOf, uniform } from "../tensor/helpers.ts";

const SLOW = 120_000;
const gpu = await getGpu();

const param = (data: ArrayLike<number>) => Tensor.fromArray(gpu, data, [data.length], { requiresGrad: true });
const grad = (data: ArrayLike<number>) => Tensor.fromArray(gpu, data, [data.length]);
/** Replace p's gradient (releasing the old one). */
const setGrad = (p: Tensor, data: ArrayLike<number>) => {
  p.zeroGrad();
  p.grad = grad(data);
};
const bitsOf = async (t: Tensor) => Array.from(new Uint32Array((await t.toArray()).buffer));

describe("GradScaler", () => {
  test("torch's defaults; scale(loss) multiplies the loss and, through backward, the gradients", async () => {
    const s = new GradScaler();
    expect(s.getScale()).toBe(65536);
    expect(s.getGrowthTracker()).toBe(0);
    expect(s.stateDict()).toEqual({ scale: 65536, growth_factor: 2, backoff_factor: 0.5, growth_interval: 2000, _growth_tracker: 0 });
    const w = param([0.5, -2, 3]);
    const x = Tensor.fromArray(gpu, [1, 2, 3], [3]);
    const loss = scope(() => w.mul(x).sum());
    const scaled = s.scale(loss);
    expect(await scaled.item()).toBe(Math.fround(0.5 - 4 + 9) * 65536);
    scaled.backward();
    expect(Array.from(await w.grad!.toArray())).toEqual([65536, 131072, 196608]);
    const [l2, l3] = s.scale([loss, loss]);
    expect(await l3!.item()).toBe(5.5 * 65536);
    for (const t of [w, x, loss, scaled, l2!, l3!]) t.release();
  });

  test("unscale_ divides every gradient on the GPU by f32(1 / scale), bit-exact; null grads are skipped", async () => {
    const r = rng(seedOf("unscale"));
    const s = new GradScaler({ initScale: 3 }); // not a power of two: 1/3 rounds
    const [p1, p2, p3] = [param([0, 0, 0, 0, 0]), param([0, 0, 0]), param([0])];
    const opt = new SGD([p1, p2, p3], { lr: 0.1 });
    const g1 = Float32Array.from(uniform(r, 5, -1e4, 1e4));
    const g2 = Float32Array.from(uniform(r, 3, -1e-3, 1e-3));
    setGrad(p1, g1);
    setGrad(p2, g2);
    s.unscale_(opt);
    const ref = unscaleGrads({ grads: [g1, g2] }, { sizes: [5, 3], invScale: Math.fround(1 / 3) }); // torch's f32(1 / f64(3))
    expect(Array.from(await p1.grad!.toArray())).toEqual(Array.from(Float32Array.from(ref.grads[0]!)));
    expect(Array.from(await p2.grad!.toArray())).toEqual(Array.from(Float32Array.from(ref.grads[1]!)));
    expect(p3.grad).toBeNull();
    expect(await s.step(opt)).toBe(true);
    s.update();
    opt.release();
    for (const t of [p1, p2, p3]) t.release();
  });

  test("unscale_ over 12 gradients of mixed sizes (more than one dispatch takes): bit-exact, an inf in the last raises the flag", async () => {
    const r = rng(seedOf("unscale many"));
    const sizes = [1, 3, 4, 5, 1023, 4097, 8, 257, 12, 7, 64, 2];
    const s = new GradScaler({ initScale: 3 });
    const ps = sizes.map((n) => param(new Float32Array(n)));
    const opt = new SGD(ps, { lr: 0.1 });
    for (const inject of [false, true]) {
      const G = sizes.map((n, j) => Float32Array.from(uniform(r, n, -(10 ** (j % 4)), 10 ** (j % 4))));
      if (inject) G[11]![1] = Infinity;
      ps.forEach((p, j) => setGrad(p, G[j]!));
      const d0 = gpu.queue.stats().dispatches;
      s.unscale_(opt);
      // The flag's poison fill (tests), the reset, then the gradients in dispatches of up to 8 (fewer where the
      // device allows fewer bindings).
      expect(gpu.queue.stats().dispatches - d0).toBe((debug.poison ? 1 : 0) + 1 + Math.ceil(sizes.length / Math.min(8, gpu.limits.maxStorageBuffersPerShaderStage - 1)));
      const ref = unscaleGrads({ grads: G }, { sizes, invScale: Math.fround(1 / 3) });
      for (let j = 0; j < sizes.length; j++) expect(Array.from(await ps[j]!.grad!.toArray())).toEqual(Array.from(Float32Array.from(ref.grads[j]!)));
      expect(await s.step(opt)).toBe(!inject);
      s.update();
    }
    opt.release();
    for (const t of ps) t.release();
  });

  for (const bad of [Infinity, -Infinity, NaN])
    test(`an injected ${bad} in one gradient: step skipped, parameters bit-exact, scale halved, tracker reset`, async () => {
      const s = new GradScaler({ growthInterval: 3 });
      const p1 = param([0.25, -1.5, 3]);
      const p2 = param([1, 2, 3, 4, 5, 6, 7]);
      const opt = new AdamW([p1, p2], { lr: 0.1 });
      // Two clean steps first, so the growth tracker has something to reset.
      for (let i = 0; i < 2; i++) {
        setGrad(p1, [1, 2, 3]);
        setGrad(p2, [1, 1, 1, 1, 1, 1, 1]);
        expect(await s.step(opt)).toBe(true);
        s.update();
        opt.zeroGrad();
      }
      expect(s.getGrowthTracker()).toBe(2);
      const before = [await bitsOf(p1), await bitsOf(p2)];
      const stepsBefore = opt.stateOf(p1)!.step;
      const mBefore = await bitsOf(opt.stateOf(p2)!.tensors.exp_avg!);
      setGrad(p1, [1, 2, 3]);
      setGrad(p2, [1, 1, 1, 1, bad, 1, 1]);
      expect(await s.step(opt)).toBe(false);
      s.update();
      expect([await bitsOf(p1), await bitsOf(p2)]).toEqual(before);
      expect(opt.stateOf(p1)!.step).toBe(stepsBefore);
      expect(await bitsOf(opt.stateOf(p2)!.tensors.exp_avg!)).toEqual(mBefore);
      expect(s.getScale()).toBe(32768);
      expect(s.getGrowthTracker()).toBe(0);
      opt.release();
      p1.release();
      p2.release();
    });

  test("a skipped first step creates no optimizer state; a clean step equals stepping on the unscaled gradients", async () => {
    const s = new GradScaler();
    const p = param([0.5, 1, -1]);
    const q = param([0.5, 1, -1]); // the same optimizer stepped directly on the unscaled gradients
    const opt = new AdamW([p], { lr: 0.01 });
    const ref = new AdamW([q], { lr: 0.01 });
    setGrad(p, [NaN, 0, 0]);
    expect(await s.step(opt)).toBe(false);
    expect(opt.stateOf(p)).toBeUndefined();
    s.update();
    opt.zeroGrad();
    const g = [0.125, -3, 7e-5];
    setGrad(p, g.map((v) => v * s.getScale()));
    setGrad(q, g);
    expect(await s.step(opt)).toBe(true);
    ref.step();
    s.update();
    expect(await bitsOf(p)).toEqual(await bitsOf(q));
    expect(opt.stateOf(p)!.step).toBe(1);
    opt.release();
    ref.release();
    p.release();
    q.release();
  });

  test("growth after growthInterval clean steps; never to an f32 infinity", async () => {
    const p = param([1]);
    const opt = new SGD([p], { lr: 0 });
    const s = new GradScaler({ growthInterval: 3 });
    const scales: number[] = [];
    for (let i = 0; i < 7; i++) {
      setGrad(p, [1]);
      await s.step(opt);
      s.update();
      scales.push(s.getScale());
    }
    expect(scales).toEqual([65536, 65536, 131072, 131072, 131072, 262144, 262144]);
    const big = new GradScaler({ initScale: 2 ** 127, growthInterval: 1 });
    setGrad(p, [1]);
    await big.step(opt);
    big.update();
    expect(big.getScale()).toBe(2 ** 127);
    expect(big.getGrowthTracker()).toBe(0);
    opt.release();
    p.release();
  });

  test("60 steps of random overflows with factors 3 and 0.3 match a float64 simulation of torch's update rule", async () => {
    const r = rng(seedOf("torch update rule"));
    const opts = { initScale: 1000.5, growthFactor: 3, backoffFactor: 0.3, growthInterval: 4 };
    // torch: scale is a float32 tensor, the factors are doubles, amp_update_scale_cuda_kernel stores float(scale * factor).
    const sim = { scale: new Float32Array([opts.initScale]), tracker: 0 };
    const simulate = (foundInf: boolean) => {
      if (foundInf) {
        sim.scale[0] = sim.scale[0]! * opts.backoffFactor;
        sim.tracker = 0;
      } else {
        const successful = sim.tracker + 1;
        if (successful === opts.growthInterval) {
          const grown = new Float32Array([sim.scale[0]! * opts.growthFactor])[0]!;
          if (Number.isFinite(grown)) sim.scale[0] = grown;
          sim.tracker = 0;
        } else sim.tracker = successful;
      }
    };
    const s = new GradScaler(opts);
    const p = param([0, 0, 0]);
    const opt = new SGD([p], { lr: 1 });
    let expectP = [0, 0, 0];
    let grew = 0;
    let backedOff = 0;
    for (let i = 0; i < 60; i++) {
      const overflow = r() < 0.2;
      const scale = s.getScale();
      expect(scale).toBe(sim.scale[0]!);
      const g = [1, 2, 3].map((v) => v * scale);
      if (overflow) g[Math.floor(r() * 3)] = r() < 0.5 ? Infinity : NaN;
      setGrad(p, g);
      expect(await s.step(opt)).toBe(!overflow);
      if (!overflow) expectP = expectP.map((v, k) => Math.fround(v - Math.fround(Math.fround(g[k]!) * Math.fround(1 / scale))));
      s.update();
      opt.zeroGrad();
      simulate(overflow);
      if (s.getScale() > scale) grew++;
      if (s.getScale() < scale) backedOff++;
      expect(s.getGrowthTracker()).toBe(sim.tracker);
    }
    expect(s.getScale()).toBe(sim.scale[0]!);
    expect(grew).toBeGreaterThan(1);
    expect(backedOff).toBeGreaterThan(1);
    expect(Array.from(await p.toArray())).toEqual(expectP);
    opt.release();
    p.release();
  }, SLOW);

  test("two optimizers: each skips on its own flag; the scale backs off when either overflowed", async () => {
    const s = new GradScaler();
    const a = param([1, 1]);
    const b = param([1, 1]);
    const oa = new SGD([a], { lr: 1 });
    const ob = new SGD([b], { lr: 1 });
    setGrad(a, [65536, 65536]);
    setGrad(b, [Infinity, 0]);
    s.unscale_(oa);
    expect(await s.step(oa)).toBe(true);
    expect(await s.step(ob)).toBe(false);
    s.update();
    expect(Array.from(await a.toArray())).toEqual([0, 0]);
    expect(Array.from(await b.toArray())).toEqual([1, 1]);
    expect(s.getScale()).toBe(32768);
    for (const o of [oa, ob]) o.release();
    a.release();
    b.release();
  });

  test("unscale_ before clipGradNorm clips the true gradients (the HF Trainer order)", async () => {
    const s = new GradScaler();
    const p = param([0, 0]);
    const opt = new SGD([p], { lr: 1 });
    setGrad(p, [3 * 65536, 4 * 65536]);
    s.unscale_(opt);
    const norm = clipGradNorm([p], 1);
    expect(await norm.item()).toBeCloseTo(5, 5);
    expect(await s.step(opt)).toBe(true);
    s.update();
    const v = await p.toArray();
    expect(v[0]).toBeCloseTo(-0.6, 5);
    expect(v[1]).toBeCloseTo(-0.8, 5);
    norm.release();
    opt.release();
    p.release();
  });

  test("stateDict / loadStateDict carry scale and growth tracker (torch's keys); a restored scaler continues identically", async () => {
    const p = param([1]);
    const opt = new SGD([p], { lr: 0 });
    const a = new GradScaler({ growthInterval: 3, growthFactor: 4 });
    for (const bad of [false, true, false, false]) {
      setGrad(p, [bad ? Infinity : 1]);
      await a.step(opt);
      a.update();
    }
    const sd = a.stateDict();
    expect(sd).toEqual({ scale: 32768, growth_factor: 4, backoff_factor: 0.5, growth_interval: 3, _growth_tracker: 2 });
    const b = new GradScaler();
    b.loadStateDict(JSON.parse(JSON.stringify(sd)));
    expect(b.stateDict()).toEqual(sd);
    for (const sc of [a, b]) {
      setGrad(p, [1]);
      await sc.step(opt);
      sc.update();
    }
    expect(b.getScale()).toBe(a.getScale());
    expect(a.getScale()).toBe(131072);
    expect(() => b.loadStateDict({})).toThrow(/state dict is empty/);
    expect(() => b.loadStateDict({ ...sd, growth_interval: 0 })).toThrow(TensorError);
    expect(() => b.loadStateDict({ ...sd, scale: undefined })).toThrow(/'scale' is missing/);
    expect(b.stateDict()).toEqual({ ...sd, scale: 131072, _growth_tracker: 0 });
    opt.release();
    p.release();
  });

  test("torch's misuse errors; invalid options; f16 gradients refused", async () => {
    expect(() => new GradScaler({ growthFactor: 1 })).toThrow(/growthFactor/);
    expect(() => new GradScaler({ backoffFactor: 1 })).toThrow(/backoffFactor/);
    expect(() => new GradScaler({ growthInterval: 0.5 })).toThrow(/growthInterval/);
    const s = new GradScaler();
    const p = param([1]);
    const opt = new SGD([p], { lr: 0 });
    expect(() => s.update()).toThrow(/No inf checks were recorded/);
    setGrad(p, [1]);
    s.unscale_(opt);
    expect(() => s.unscale_(opt)).toThrow(/already been called/);
    expect(() => s.update()).toThrow(/not step\(\)ped/);
    await s.step(opt);
    await expect(s.step(opt)).rejects.toThrow(/step\(\) has already been called/);
    expect(() => s.unscale_(opt)).toThrow(/after step/);
    s.update();
    p.zeroGrad();
    p.grad = Tensor.fromArray(gpu, [1], [1], { dtype: "f16" });
    expect(() => s.unscale_(opt)).toThrow(/Attempting to unscale FP16 gradients/);
    s.update(1024); // a new scale needs no inf check
    expect(s.getScale()).toBe(1024);
    opt.release();
    p.release();
  });

  test("a disabled scaler is a pass-through", async () => {
    const s = new GradScaler({ enabled: false });
    const p = param([1]);
    const opt = new SGD([p], { lr: 1 });
    const l = Tensor.fromArray(gpu, [2], []);
    expect(s.scale(l)).toBe(l);
    expect(s.getScale()).toBe(1);
    setGrad(p, [Infinity]);
    expect(await s.step(opt)).toBe(true);
    s.update();
    expect(await p.item()).toBe(-Infinity);
    expect(s.stateDict()).toEqual({});
    opt.release();
    p.release();
    l.release();
  });

  test("memory stays flat over 50 scaled steps", async () => {
    const s = new GradScaler({ growthInterval: 7 });
    const w = param([0.5, -0.25, 1]);
    const x = Tensor.fromArray(gpu, [1, 2, 3], [3]);
    const opt = new AdamW([w], { lr: 1e-3 });
    await expectFlatMemory(gpu, 50, async (it) => {
      scope(() => s.scale(w.mul(x).sum()).backward());
      if (it % 9 === 8) {
        setGrad(w, [1, Infinity, 1]);
      }
      await s.step(opt);
      s.update();
      opt.zeroGrad();
    }, { warmup: 10 }); // warm-up covers one overflow step (it = 8), whose bindings differ from the others'
    opt.release();
    w.release();
    x.release();
  }, SLOW);
});

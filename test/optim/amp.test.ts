// Mixed-precision training end to end (skipped without shader-f16): a 2-layer tanh MLP keeps f32 master
// weights; each step casts them to f16, runs both linear layers in f16 (f32 accumulation), casts the
// activations to f32 for tanh and the loss, backpropagates the scaled loss (f16 gradients through the
// products, cast back to f32 at the masters), and steps AdamW on the masters through a GradScaler.
//   - AMP tracks the same model trained in f32 (per-step losses within 0.5% while both fall);
//   - over 80 steps the loss falls, live GPU memory stays flat (before and after), and an overflow injected mid-training (the
//     scaled loss multiplied by 2^30, so the f16 gradients overflow to inf in backward) is caught: that step
//     is skipped with every master weight and AdamW state bit-exact, the scale halves, training goes on.
import { describe, expect, test } from "bun:test";
import { AdamW, GradScaler, type AdamWOptions } from "../../src/optim/index.ts";
import { scope, Tensor } from "../../src/tensor/index.ts";
import { cast } from "../../src/tensor/ops/cast.ts";
import { linear } from "../../src/tensor/ops/matmul.ts";
import { expectFlatMemory } from "../helpers.ts";
import { getGpu, rng, uniform } from "../tensor/helpers.ts";

const SLOW = 120_000;
const gpu = await getGpu();
const testF16 = gpu.features.has("shader-f16") ? test : test.skip;

const [N, D, H, K] = [24, 5, 13, 3];
const OPTS: AdamWOptions = { lr: 0.02, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 };

function data() {
  const r = rng(777);
  const X = uniform(r, N * D);
  const Y = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    const x = (i: number) => X[n * D + i]!;
    Y[n * K] = Math.fround(Math.sin(2 * x(0)) * x(1));
    Y[n * K + 1] = Math.fround(x(2) * x(3) - 0.5 * x(4));
    Y[n * K + 2] = Math.fround(Math.cos(x(0) + x(4)));
  }
  const init = { w1: uniform(r, H * D, -0.6, 0.6), b1: uniform(r, H, -0.1, 0.1), w2: uniform(r, K * H, -0.4, 0.4), b2: uniform(r, K, -0.1, 0.1) };
  return { X, Y, init };
}

type Params = { w1: Tensor; b1: Tensor; w2: Tensor; b2: Tensor };

function setup() {
  const { X, Y, init } = data();
  const x = Tensor.fromArray(gpu, X, [N, D]);
  const y = Tensor.fromArray(gpu, Y, [N, K]);
  const p: Params = {
    w1: Tensor.fromArray(gpu, init.w1, [H, D], { requiresGrad: true }),
    b1: Tensor.fromArray(gpu, init.b1, [H], { requiresGrad: true }),
    w2: Tensor.fromArray(gpu, init.w2, [K, H], { requiresGrad: true }),
    b2: Tensor.fromArray(gpu, init.b2, [K], { requiresGrad: true }),
  };
  return { x, y, p, release: () => [x, y, ...Object.values(p)].forEach((t) => t.release()) };
}

/** mean((linear(tanh(linear(x, w1, b1)), w2, b2) - y)^2), the products in f16 when `amp`. */
function lossOf(x: Tensor, y: Tensor, p: Params, amp: boolean): Tensor {
  return scope(() => {
    const lo = (t: Tensor) => (amp ? cast(t, "f16") : t);
    const hi = (t: Tensor) => (amp ? cast(t, "f32") : t);
    const h = hi(linear(lo(x), lo(p.w1), lo(p.b1))).tanh();
    const out = hi(linear(lo(h), lo(p.w2), lo(p.b2)));
    const e = out.sub(y);
    return e.mul(e).mean();
  });
}

describe("AMP training", () => {
  testF16("f16 compute with f32 masters tracks the same model trained in f32", async () => {
    const runs: number[][] = [];
    for (const amp of [false, true]) {
      const { x, y, p, release } = setup();
      const opt = new AdamW(p, OPTS);
      const scaler = new GradScaler({ enabled: amp });
      const losses: number[] = [];
      for (let it = 0; it < 30; it++) {
        const loss = lossOf(x, y, p, amp);
        scope(() => scaler.scale(loss).backward());
        if (amp) for (const t of Object.values(p)) expect(t.grad!.dtype).toBe("f32");
        expect(await scaler.step(opt)).toBe(true);
        scaler.update();
        opt.zeroGrad();
        losses.push(await loss.item());
        loss.release();
      }
      for (const t of Object.values(p)) expect(t.dtype).toBe("f32");
      runs.push(losses);
      opt.release();
      release();
    }
    const [f32, amp] = runs as [number[], number[]];
    expect(f32[29]!).toBeLessThan(f32[0]! / 2);
    for (let i = 0; i < 30; i++) expect(Math.abs(amp[i]! - f32[i]!)).toBeLessThan(0.005 * f32[i]!);
  }, SLOW);

  testF16("over 80 steps the loss falls, memory stays flat, and an injected overflow is skipped exactly", async () => {
    const { x, y, p, release } = setup();
    const opt = new AdamW(p, OPTS);
    const scaler = new GradScaler({ growthInterval: 10 });
    const INJECT = 40;
    const losses: number[] = [];
    const stepped: boolean[] = [];
    const scales: number[] = [];
    const bits = async (t: Tensor) => Array.from(new Uint32Array((await t.toArray()).buffer));
    /** The bits of every master weight and AdamW state, read one at a time (one staging buffer). */
    const snapshot = async () => {
      const out: number[][] = [];
      for (const t of Object.values(p)) {
        const st = opt.stateOf(t)!.tensors;
        for (const u of [t, st.exp_avg!, st.exp_avg_sq!]) out.push(await bits(u));
      }
      return out;
    };
    const step = async (it: number) => {
      const loss = lossOf(x, y, p, true);
      scope(() => {
        const scaled = scaler.scale(loss);
        // The injected overflow: 2^30 more scale makes the f16 gradients overflow to inf in backward.
        (it === INJECT ? scaled.mulScalar(2 ** 30) : scaled).backward();
      });
      scales.push(scaler.getScale());
      stepped.push(await scaler.step(opt));
      scaler.update();
      opt.zeroGrad();
      losses.push(await loss.item());
      loss.release();
    };
    // Memory is flat before the injection and after it (the injection step itself reads every tensor back
    // for the bit-exact check, which creates staging buffers; it is outside both windows).
    const first = await expectFlatMemory(gpu, INJECT, step, { warmup: 10 });
    const before = await snapshot();
    await step(INJECT);
    expect(await snapshot()).toEqual(before);
    const second = await expectFlatMemory(gpu, 80 - INJECT - 1, (i) => step(INJECT + 1 + i), { warmup: 5 });
    expect(second.end.liveBuffers).toBe(first.end.liveBuffers);
    expect(second.end.liveBytes).toBe(first.end.liveBytes);
    expect(stepped[INJECT]).toBe(false);
    expect(scales[INJECT + 1]).toBe(scales[INJECT]! / 2);
    expect(stepped.filter((s) => !s).length).toBe(1); // no other step overflowed on this seed
    // Every AdamW step count equals the number of steps actually taken.
    for (const t of Object.values(p)) expect(opt.stateOf(t)!.step).toBe(79);
    // Growth resumed after the backoff: growthInterval 10 clean steps doubled it again.
    expect(scales[INJECT + 11]).toBe(scales[INJECT]!);
    expect(scaler.getScale()).toBe(scales[INJECT]! * 4); // and twice more by step 80 (the first 40 grew it 2^4)
    expect(scales[INJECT]).toBe(2 ** 20);
    expect(losses[79]!).toBeLessThan(losses[0]! / 3);
    expect(losses[INJECT + 1]).toBe(losses[INJECT]!); // a skipped step leaves the model as it was
    opt.release();
    release();
  }, SLOW);
});

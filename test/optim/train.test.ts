// End to end: a 2-layer tanh MLP built from broadcasting mul + sum(axis) (no matmul needed) trains with
// clipGradNorm + AdamW + a cosine warmup schedule, the way an HF Trainer step runs. Its first steps match a
// float64 CPU re-implementation of the whole loop (forward, backward, clipping, AdamW, schedule); over 100
// steps the loss falls and live GPU memory stays flat.
import { describe, expect, test } from "bun:test";
import { AdamW, clipGradNorm, getCosineScheduleWithWarmup, LambdaLR, type AdamWOptions } from "../../src/optim/index.ts";
import { scope, type Tensor } from "../../src/tensor/index.ts";
import { expectFlatMemory } from "../helpers.ts";
import { adamw as adamw64, clipGradNorm as clipGradNorm64 } from "../reference/optim.ts";
import { expectClose, getGpu, rng, uniform, upload } from "../tensor/helpers.ts";

const [N, D, H, K] = [16, 3, 9, 2];
const OPTS: AdamWOptions = { lr: 0.05, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 };
const MAX_NORM = 1.0;
const schedule = getCosineScheduleWithWarmup({ numWarmupSteps: 5, numTrainingSteps: 100 });

function data() {
  const r = rng(1234);
  const X = uniform(r, N * D);
  const Y = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    const [a, b, c] = [X[n * D]!, X[n * D + 1]!, X[n * D + 2]!];
    Y[n * K] = Math.fround(Math.sin(2 * a) * b);
    Y[n * K + 1] = Math.fround(a * c - 0.5 * b);
  }
  const init = { w1: uniform(r, D * H), b1: uniform(r, H, -0.1, 0.1), w2: uniform(r, H * K, -0.5, 0.5), b2: uniform(r, K, -0.1, 0.1) };
  return { X, Y, init };
}

type Params = { w1: Tensor; b1: Tensor; w2: Tensor; b2: Tensor };

/** mean((tanh(x @ w1 + b1) @ w2 + b2 - y)^2), with x @ w as sum over axis 1 of x[N, D, 1] * w[D, H]. */
function lossOf(x: Tensor, y: Tensor, p: Params): Tensor {
  return scope(() => {
    const h = x.reshape(N, D, 1).mul(p.w1).sum(1).add(p.b1).tanh();
    const out = h.reshape(N, H, 1).mul(p.w2).sum(1).add(p.b2);
    const e = out.sub(y);
    return e.mul(e).mean();
  });
}

/** The same training loop in float64 on the CPU: returns the loss before each of `steps` steps. */
function referenceLosses(steps: number): number[] {
  const { X, Y, init } = data();
  const P = { w1: Float64Array.from(init.w1), b1: Float64Array.from(init.b1), w2: Float64Array.from(init.w2), b2: Float64Array.from(init.b2) };
  const keys = ["w1", "b1", "w2", "b2"] as const;
  const M = Object.fromEntries(keys.map((k) => [k, new Float64Array(P[k].length)])) as Record<(typeof keys)[number], Float64Array>;
  const V = Object.fromEntries(keys.map((k) => [k, new Float64Array(P[k].length)])) as Record<(typeof keys)[number], Float64Array>;
  const losses: number[] = [];
  for (let t = 1; t <= steps; t++) {
    const h = new Float64Array(N * H);
    const dO = new Float64Array(N * K);
    let loss = 0;
    for (let n = 0; n < N; n++) {
      for (let j = 0; j < H; j++) {
        let a = P.b1[j]!;
        for (let i = 0; i < D; i++) a += X[n * D + i]! * P.w1[i * H + j]!;
        h[n * H + j] = Math.tanh(a);
      }
      for (let k = 0; k < K; k++) {
        let o = P.b2[k]!;
        for (let j = 0; j < H; j++) o += h[n * H + j]! * P.w2[j * K + k]!;
        const e = o - Y[n * K + k]!;
        loss += (e * e) / (N * K);
        dO[n * K + k] = (2 * e) / (N * K);
      }
    }
    losses.push(loss);
    const G = { w1: new Float64Array(D * H), b1: new Float64Array(H), w2: new Float64Array(H * K), b2: new Float64Array(K) };
    for (let n = 0; n < N; n++)
      for (let j = 0; j < H; j++) {
        let dh = 0;
        for (let k = 0; k < K; k++) {
          G.w2[j * K + k]! += h[n * H + j]! * dO[n * K + k]!;
          dh += dO[n * K + k]! * P.w2[j * K + k]!;
        }
        const da = dh * (1 - h[n * H + j]! ** 2);
        G.b1[j]! += da;
        for (let i = 0; i < D; i++) G.w1[i * H + j]! += X[n * D + i]! * da;
      }
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) G.b2[k]! += dO[n * K + k]!;
    // clip_grad_norm_, then AdamW at lr * schedule(t - 1) (test/reference/optim.ts).
    const clipped = clipGradNorm64({ grads: keys.map((k) => G[k]) }, { sizes: keys.map((k) => G[k].length), maxNorm: MAX_NORM }).grads;
    const lr = OPTS.lr * schedule(t - 1);
    keys.forEach((k, j) => {
      const o = { n: P[k].length, lr, beta1: OPTS.betas[0], beta2: OPTS.betas[1], eps: OPTS.eps, weightDecay: OPTS.weightDecay, step: t };
      ({ p: P[k], m: M[k], v: V[k] } = adamw64({ p: P[k], g: clipped[j]!, m: M[k], v: V[k] }, o));
    });
  }
  return losses;
}

describe("training a 2-layer MLP", () => {
  test("clip + AdamW + cosine schedule: matches float64 for 8 steps, the loss falls over 100, memory stays flat", async () => {
    const gpu = await getGpu();
    const { X, Y, init } = data();
    const x = upload(gpu, X, [N, D]);
    const y = upload(gpu, Y, [N, K]);
    const p: Params = { w1: upload(gpu, init.w1, [D, H], true), b1: upload(gpu, init.b1, [H], true), w2: upload(gpu, init.w2, [H, K], true), b2: upload(gpu, init.b2, [K], true) };
    const opt = new AdamW(p, OPTS);
    const sched = new LambdaLR(opt, schedule);
    const ref = referenceLosses(8);
    const losses: number[] = [];
    // Live buffers, live bytes and created buffers stay flat from step 10 on: every step served from the pool's cache.
    await expectFlatMemory(
      gpu,
      100,
      async (it) => {
        const loss = lossOf(x, y, p);
        loss.backward();
        const norm = clipGradNorm(Object.values(p), MAX_NORM);
        opt.step();
        opt.zeroGrad();
        sched.step();
        if (it < ref.length || it % 10 === 0 || it === 99) losses[it] = await loss.item();
        loss.release();
        norm.release();
      },
      { warmup: 10 },
    );
    expectClose("first losses vs float64", losses.slice(0, ref.length), ref, { rtol: 1e-3 });
    const [first, last] = [losses[0]!, losses[99]!];
    expect(last).toBeLessThan(0.2 * first);
    for (let k = 10; k < 100; k += 10) expect(losses[k]!).toBeLessThan(losses[k - 10]!);
    opt.release();
    for (const t of [x, y, ...Object.values(p)]) t.release();
  }, 30_000); // ~7000 small dispatches (half of them NaN poison fills): about 5 s on lavapipe
});

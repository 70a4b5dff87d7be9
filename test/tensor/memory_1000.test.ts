// Memory over a long training run: a tiny model built from the real ops (linear with and without bias,
// rmsnorm, silu, add, crossEntropy = log-softmax + NLL) trained with AdamW for 1000 forward + backward + optimizer steps. After a 10-step warm-up the
// pool's live buffers, live bytes and created-buffer count must not move, and the loss must fall: a leak of
// one buffer per step anywhere in forward, backward, gradient accumulation or the optimizer fails it.
import { describe, expect, test } from "bun:test";
import { AdamW } from "../../src/optim/index.ts";
import { add, crossEntropy, debug, linear, rmsnorm, scope, silu, Tensor } from "../../src/tensor/index.ts";
import { expectFlatMemory, getGpu, rng } from "../helpers.ts";

const STEPS = 1000;
const [N, DIN, D, H, C] = [24, 10, 12, 20, 5]; // samples, input features, width, hidden, classes

describe("1000 training steps", () => {
  test("live buffers and bytes stay flat after warm-up, and the loss falls", async () => {
    const gpu = await getGpu();
    // 1000 steps of ~35 tiny dispatches each: NaN poisoning would add more, and memory is what is checked here.
    const poison = debug.poison;
    debug.poison = false;
    try {
      const r = rng(1000);
      const init = (n: number, scale: number) => Float32Array.from({ length: n }, () => scale * (2 * r() - 1));
      const param = (shape: number[], scale: number) => Tensor.fromArray(gpu, init(shape.reduce((a, b) => a * b, 1), scale), shape, { requiresGrad: true });
      const p = {
        wIn: param([D, DIN], 0.5),
        norm1: Tensor.ones(gpu, [D], { requiresGrad: true }),
        w1: param([H, D], 0.4),
        b1: param([H], 0.1),
        w2: param([D, H], 0.3),
        wOut: param([C, D], 0.4),
      };
      // A learnable task: the classes a fixed random linear teacher assigns to random inputs.
      const X = init(N * DIN, 1);
      const teacher = init(C * DIN, 1);
      const labels = Int32Array.from({ length: N }, (_, n) => {
        let best = 0;
        let bestV = -Infinity;
        for (let c = 0; c < C; c++) {
          let v = 0;
          for (let i = 0; i < DIN; i++) v += X[n * DIN + i]! * teacher[c * DIN + i]!;
          if (v > bestV) [best, bestV] = [c, v];
        }
        return best;
      });
      const x = Tensor.fromArray(gpu, X, [N, DIN]);
      const y = Tensor.fromArray(gpu, labels, [N], { dtype: "i32" });
      const opt = new AdamW(p, { lr: 2e-3, weightDecay: 0.01 });

      /** h = x Wᵢₙᵀ; h += W2 silu(W1 rmsnorm(h) + b1); loss = crossEntropy(h Wₒᵤₜᵀ, y). */
      const lossOf = () =>
        scope(() => {
          const h = linear(x, p.wIn);
          const h2 = add(h, linear(silu(linear(rmsnorm(h, p.norm1), p.w1, p.b1)), p.w2));
          return crossEntropy(linear(h2, p.wOut), y);
        });

      const losses: number[] = [];
      const t0 = performance.now();
      const { start, warm, end } = await expectFlatMemory(
        gpu,
        STEPS,
        async (it) => {
          const loss = lossOf();
          loss.backward();
          opt.step();
          opt.zeroGrad();
          if (it % 100 === 0 || it === STEPS - 1) losses.push(await loss.item());
          loss.release();
        },
        { warmup: 10 },
      );
      const ms = performance.now() - t0;
      console.log(`${STEPS} steps in ${(ms / 1000).toFixed(1)} s; loss ${losses.map((l) => l.toFixed(3)).join(" → ")}; live ${warm.liveBuffers} buffers / ${warm.liveBytes} B`);
      // Warm-up only adds the optimizer state: AdamW's two arenas (exp_avg and exp_avg_sq, each holding every
      // parameter's slice: src/optim/adamw.ts); nothing else survives a step.
      const stateElements = Object.values(p).reduce((n, t) => n + t.size, 0);
      expect(warm.liveBuffers - start.liveBuffers).toBe(2);
      expect(warm.liveBytes - start.liveBytes).toBeGreaterThanOrEqual(2 * 4 * stateElements);
      expect(end.liveBuffers).toBe(warm.liveBuffers);
      expect(end.liveBytes).toBe(warm.liveBytes);
      const [first, last] = [losses[0]!, losses[losses.length - 1]!];
      expect(first).toBeGreaterThan(1); // about ln 5 at the start
      expect(losses[1]!).toBeLessThan(0.5 * first); // after 100 steps
      expect(last).toBeLessThan(0.05 * first);

      opt.release();
      for (const t of [x, y, ...Object.values(p)]) t.release();
      await gpu.sync();
      expect(gpu.memory().liveBuffers).toBe(start.liveBuffers - Object.keys(p).length - 2);
    } finally {
      debug.poison = poison;
    }
  }, 60_000); // about 10 s on lavapipe (2 cores), ~35k dispatches
});

// LR schedules against values worked out by hand from HF transformers' lr_lambda definitions
// (transformers/src/transformers/optimization.py), at chosen steps: the tests hold numbers, not a second copy of
// the formulas, so a wrong formula cannot agree with itself.
//   constant_with_warmup(s; w)          s / max(1, w) while s < w, then 1
//   linear_with_warmup(s; w, t)         warmup as above, then max(0, (t - s) / max(1, t - w))
//   cosine_with_warmup(s; w, t, c=0.5)  warmup as above, then max(0, (1 + cos(2π c p)) / 2), p = (s - w) / max(1, t - w)
// And LambdaLR's bookkeeping as HF Trainer uses it: the lr of optimizer step k is initial_lr * lr_lambda(k).
import { describe, expect, test } from "bun:test";
import {
  AdamW,
  getConstantSchedule,
  getConstantScheduleWithWarmup,
  getCosineScheduleWithWarmup,
  getLinearScheduleWithWarmup,
  LambdaLR,
} from "../../src/optim/index.ts";
import { Tensor } from "../../src/tensor/index.ts";
import { getGpu } from "../tensor/helpers.ts";

/** Expect f(step) for each [step, value], to 1e-12 (the values below are exact fractions or cosines of known angles). */
function expectAt(f: (s: number) => number, table: [number, number][]): void {
  for (const [step, want] of table) expect({ step, lr: f(step) }).toEqual({ step, lr: expect.closeTo(want, 12) });
}

const COS18 = 0.9510565162951535; // cos(π/10)
const COS36 = 0.8090169943749475; // cos(π/5)
const COS54 = 0.5877852522924731; // cos(3π/10)

describe("LR schedules (HF transformers)", () => {
  test("get_constant_schedule_with_warmup", () => {
    expectAt(getConstantScheduleWithWarmup({ numWarmupSteps: 4 }), [[0, 0], [1, 0.25], [2, 0.5], [3, 0.75], [4, 1], [5, 1], [100, 1]]);
    expectAt(getConstantScheduleWithWarmup({ numWarmupSteps: 0 }), [[0, 1], [1, 1], [50, 1]]);
    expectAt(getConstantScheduleWithWarmup({ numWarmupSteps: 1 }), [[0, 0], [1, 1]]);
    expect(getConstantSchedule()(17)).toBe(1);
  });

  test("get_linear_schedule_with_warmup: warmup, decay to 0 at numTrainingSteps, 0 after", () => {
    // w 3, t 10: warmup thirds, then (10 - s) / 7.
    expectAt(getLinearScheduleWithWarmup({ numWarmupSteps: 3, numTrainingSteps: 10 }), [
      [0, 0], [1, 1 / 3], [2, 2 / 3], [3, 1], [4, 6 / 7], [5, 5 / 7], [8, 2 / 7], [9, 1 / 7], [10, 0], [11, 0], [120, 0],
    ]);
    expectAt(getLinearScheduleWithWarmup({ numWarmupSteps: 4, numTrainingSteps: 12 }), [[0, 0], [2, 0.5], [4, 1], [8, 0.5], [12, 0], [20, 0]]);
    // No warmup: 1 at step 0. Warmup as long as training: the ramp, then 0 (max(1, t - w) guards the 0/0).
    expectAt(getLinearScheduleWithWarmup({ numWarmupSteps: 0, numTrainingSteps: 10 }), [[0, 1], [5, 0.5], [10, 0]]);
    expectAt(getLinearScheduleWithWarmup({ numWarmupSteps: 10, numTrainingSteps: 10 }), [[5, 0.5], [9, 0.9], [10, 0], [11, 0]]);
    expectAt(getLinearScheduleWithWarmup({ numWarmupSteps: 0, numTrainingSteps: 0 }), [[0, 0], [3, 0]]);
    expectAt(getLinearScheduleWithWarmup({ numWarmupSteps: 1, numTrainingSteps: 1 }), [[0, 0], [1, 0]]);
  });

  test("get_cosine_schedule_with_warmup: num_cycles 0.5 by default, and other cycle counts", () => {
    // w 2, t 12, half a cycle: p = (s - 2) / 10, (1 + cos(π p)) / 2.
    const f = getCosineScheduleWithWarmup({ numWarmupSteps: 2, numTrainingSteps: 12 });
    // Past t the half cycle goes on rising: p 1.1, (1 + cos(1.1 π)) / 2 = (1 - cos(π/10)) / 2.
    expectAt(f, [[0, 0], [1, 0.5], [2, 1], [4, (1 + COS36) / 2], [7, 0.5], [9, (1 - COS54) / 2], [12, 0], [13, (1 - COS18) / 2]]);
    // One whole cycle without warmup, t 8: down to 0 at the middle and back up to 1 at t.
    expectAt(getCosineScheduleWithWarmup({ numWarmupSteps: 0, numTrainingSteps: 8, numCycles: 1 }), [[0, 1], [2, 0.5], [4, 0], [6, 0.5], [8, 1]]);
    // 2.25 cycles over t 8 (w 0): p = s / 8, angle 4.5 π p: s 4 → 2.25 π (cos √2/2), s 8 → 4.5 π (cos 0).
    expectAt(getCosineScheduleWithWarmup({ numWarmupSteps: 0, numTrainingSteps: 8, numCycles: 2.25 }), [[0, 1], [4, (1 + Math.SQRT1_2) / 2], [8, 0.5]]);
  });

  test("LambdaLR: lambda(0) at construction, one factor per optimizer step, per-group initial lrs, checkpoint", async () => {
    const gpu = await getGpu();
    using a = Tensor.ones(gpu, [2], { requiresGrad: true });
    using b = Tensor.ones(gpu, [2], { requiresGrad: true });
    const opt = new AdamW([{ params: [a] }, { params: [b], lr: 0.5 }], { lr: 0.1 });
    const f = getLinearScheduleWithWarmup({ numWarmupSteps: 2, numTrainingSteps: 6 });
    const sched = new LambdaLR(opt, f);
    const seen: number[][] = [];
    for (let k = 0; k < 7; k++) {
      seen.push(opt.groups.map((g) => g.options.lr)); // what optimizer step k would use
      sched.step();
    }
    const want = [0, 1, 2, 3, 4, 5, 6].map((k) => [0.1 * f(k), 0.5 * f(k)]);
    expect(seen).toEqual(want);
    const sd = sched.stateDict();
    const again = new LambdaLR(opt, f);
    expect(opt.groups[0]!.options.lr).toBe(0);
    again.loadStateDict(sd);
    expect(opt.groups.map((g) => g.options.lr)).toEqual([0.1 * f(7), 0.5 * f(7)]);
    expect(() => getLinearScheduleWithWarmup({ numWarmupSteps: -1, numTrainingSteps: 3 })).toThrow("numWarmupSteps must be an integer >= 0");
    opt.release();
  });
});

// LR schedules against HF transformers' lr_lambda formulas (transformers/src/transformers/optimization.py),
// written out below as the reference: get_constant_schedule_with_warmup, get_linear_schedule_with_warmup,
// get_cosine_schedule_with_warmup (num_cycles = 0.5 by default). And LambdaLR's bookkeeping as HF Trainer
// uses it: the lr of optimizer step k is initial_lr * lr_lambda(k).
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

// ---- HF's lr_lambda bodies, transcribed from optimization.py (Python float semantics = JS numbers) ----

/** HF _get_constant_schedule_with_warmup_lr_lambda(current_step, *, num_warmup_steps). */
function hfConstantWithWarmup(current_step: number, num_warmup_steps: number): number {
  if (current_step < num_warmup_steps) return current_step / Math.max(1.0, num_warmup_steps);
  return 1.0;
}

/** HF _get_linear_schedule_with_warmup_lr_lambda(current_step, *, num_warmup_steps, num_training_steps). */
function hfLinearWithWarmup(current_step: number, num_warmup_steps: number, num_training_steps: number): number {
  if (current_step < num_warmup_steps) return current_step / Math.max(1, num_warmup_steps);
  return Math.max(0.0, (num_training_steps - current_step) / Math.max(1, num_training_steps - num_warmup_steps));
}

/** HF _get_cosine_schedule_with_warmup_lr_lambda(current_step, *, num_warmup_steps, num_training_steps, num_cycles). */
function hfCosineWithWarmup(current_step: number, num_warmup_steps: number, num_training_steps: number, num_cycles = 0.5): number {
  if (current_step < num_warmup_steps) return current_step / Math.max(1, num_warmup_steps);
  const progress = (current_step - num_warmup_steps) / Math.max(1, num_training_steps - num_warmup_steps);
  return Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * num_cycles * 2.0 * progress)));
}

const CONFIGS: [number, number][] = [
  [0, 10], // no warmup
  [3, 10],
  [10, 10], // warmup as long as training
  [7, 100],
  [1, 1],
  [0, 0], // degenerate: HF's max(1, ...) guards
];

describe("LR schedules (HF transformers)", () => {
  test("get_constant_schedule_with_warmup", () => {
    for (const [w] of CONFIGS) {
      const f = getConstantScheduleWithWarmup({ numWarmupSteps: w });
      for (let s = 0; s <= 120; s++) expect(f(s)).toBe(hfConstantWithWarmup(s, w));
    }
    expect(getConstantSchedule()(17)).toBe(1);
  });

  test("get_linear_schedule_with_warmup: warmup, decay to 0 at numTrainingSteps, 0 after", () => {
    for (const [w, t] of CONFIGS) {
      const f = getLinearScheduleWithWarmup({ numWarmupSteps: w, numTrainingSteps: t });
      for (let s = 0; s <= 120; s++) expect(f(s)).toBe(hfLinearWithWarmup(s, w, t));
    }
    const f = getLinearScheduleWithWarmup({ numWarmupSteps: 4, numTrainingSteps: 12 });
    expect([0, 2, 4, 8, 12, 20].map(f)).toEqual([0, 0.5, 1, 0.5, 0, 0]);
  });

  test("get_cosine_schedule_with_warmup: num_cycles 0.5 by default, and other cycle counts", () => {
    for (const cycles of [undefined, 0.5, 1, 2.25])
      for (const [w, t] of CONFIGS) {
        const f = getCosineScheduleWithWarmup({ numWarmupSteps: w, numTrainingSteps: t, numCycles: cycles });
        for (let s = 0; s <= 120; s++) expect(f(s)).toBe(hfCosineWithWarmup(s, w, t, cycles));
      }
    const f = getCosineScheduleWithWarmup({ numWarmupSteps: 2, numTrainingSteps: 12 });
    expect(f(1)).toBe(0.5);
    expect(f(2)).toBe(1);
    expect(f(7)).toBeCloseTo(0.5, 12); // half way through the decay
    expect(f(12)).toBeCloseTo(0, 12);
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

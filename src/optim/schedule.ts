/**
 * Learning-rate schedules as HF transformers defines them (transformers/optimization.py): each is a plain
 * function of the step returning a multiplier of the base lr (HF's `lr_lambda`, which HF wraps in torch's
 * LambdaLR). The lr of optimizer step k (0-based: the number of steps taken before it) is
 * `initialLr * schedule(k)`, exactly what HF Trainer applies (LambdaLR sets lambda(0) at construction and
 * advances after every optimizer step). Apply it with `optimizer.setLrFactor(schedule(k))` before step k,
 * or let `LambdaLR` below do the bookkeeping.
 */
import { TensorError } from "../tensor/shape.ts";

export type LrSchedule = (step: number) => number;

function checkSteps(what: string, o: { numWarmupSteps: number; numTrainingSteps?: number }): void {
  if (!Number.isInteger(o.numWarmupSteps) || o.numWarmupSteps < 0) throw new TensorError(`${what}: numWarmupSteps must be an integer >= 0, got ${o.numWarmupSteps}`);
  if (o.numTrainingSteps !== undefined && (!Number.isInteger(o.numTrainingSteps) || o.numTrainingSteps < 0))
    throw new TensorError(`${what}: numTrainingSteps must be an integer >= 0, got ${o.numTrainingSteps}`);
}

/** Linear warmup from 0 to 1 over numWarmupSteps (the rate at step k is k / warmup). */
const warmup = (step: number, numWarmupSteps: number) => step / Math.max(1, numWarmupSteps);

/** HF get_constant_schedule: 1 at every step. */
export function getConstantSchedule(): LrSchedule {
  return () => 1;
}

/** HF get_constant_schedule_with_warmup: linear warmup, then 1. */
export function getConstantScheduleWithWarmup(o: { numWarmupSteps: number }): LrSchedule {
  checkSteps("getConstantScheduleWithWarmup", o);
  return (step) => (step < o.numWarmupSteps ? warmup(step, o.numWarmupSteps) : 1);
}

/** HF get_linear_schedule_with_warmup: linear warmup, then linear decay to 0 at numTrainingSteps (0 after). */
export function getLinearScheduleWithWarmup(o: { numWarmupSteps: number; numTrainingSteps: number }): LrSchedule {
  checkSteps("getLinearScheduleWithWarmup", o);
  return (step) =>
    step < o.numWarmupSteps ? warmup(step, o.numWarmupSteps) : Math.max(0, (o.numTrainingSteps - step) / Math.max(1, o.numTrainingSteps - o.numWarmupSteps));
}

/**
 * HF get_cosine_schedule_with_warmup: linear warmup, then 0.5 * (1 + cos(pi * numCycles * 2 * progress)),
 * progress running 0 → 1 from the end of warmup to numTrainingSteps; numCycles 0.5 (the default) decays to 0
 * at numTrainingSteps. Clamped at 0.
 */
export function getCosineScheduleWithWarmup(o: { numWarmupSteps: number; numTrainingSteps: number; numCycles?: number }): LrSchedule {
  checkSteps("getCosineScheduleWithWarmup", o);
  const cycles = o.numCycles ?? 0.5;
  return (step) => {
    if (step < o.numWarmupSteps) return warmup(step, o.numWarmupSteps);
    const progress = (step - o.numWarmupSteps) / Math.max(1, o.numTrainingSteps - o.numWarmupSteps);
    return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
  };
}

/** What a LambdaLR scales: any optimizer (src/optim/optimizer.ts). */
export interface LrScalable {
  setLrFactor(factor: number): void;
}

/**
 * torch's LambdaLR, as HF uses it: construction applies schedule(0); `step()` (call it after each
 * optimizer step) advances to the next step's factor.
 */
export class LambdaLR {
  /** Steps taken so far (torch's last_epoch). */
  lastStep = 0;

  constructor(
    readonly optimizer: LrScalable,
    readonly schedule: LrSchedule,
  ) {
    optimizer.setLrFactor(schedule(0));
  }

  step(): void {
    this.lastStep++;
    this.optimizer.setLrFactor(this.schedule(this.lastStep));
  }

  /** The factor in force now. */
  get factor(): number {
    return this.schedule(this.lastStep);
  }

  stateDict(): { lastStep: number } {
    return { lastStep: this.lastStep };
  }

  loadStateDict(sd: { lastStep: number }): void {
    if (!Number.isInteger(sd.lastStep) || sd.lastStep < 0) throw new TensorError(`LambdaLR.loadStateDict: invalid lastStep ${sd.lastStep}`);
    this.lastStep = sd.lastStep;
    this.optimizer.setLrFactor(this.schedule(this.lastStep));
  }
}

// Optimizers (the layer above src/tensor): AdamW, SGD, gradient-norm clipping, HF learning-rate schedules.
export { Optimizer, type OptimizerStateDict, type ParamGroup, type ParamState, type ParamsInput, type GroupSpec, type NamedParams } from "./optimizer.ts";
export { AdamW, ADAMW_DEFAULTS, type AdamWOptions } from "./adamw.ts";
export { SGD, SGD_DEFAULTS, type SGDOptions } from "./sgd.ts";
export { clipGradNorm } from "./clip.ts";
export {
  getConstantSchedule,
  getConstantScheduleWithWarmup,
  getCosineScheduleWithWarmup,
  getLinearScheduleWithWarmup,
  LambdaLR,
  type LrSchedule,
  type LrScalable,
} from "./schedule.ts";
export { GradScaler, GRAD_SCALER_DEFAULTS, type GradScalerOptions, type GradScalerStateDict } from "./grad_scaler.ts";

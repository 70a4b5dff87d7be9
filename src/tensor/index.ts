// The tensor/autograd layer: import from here (it installs the op methods on Tensor, and registers the ops'
// autotuners with the GPU layer: `gpu.tune()` / `Gpu.open({ tune: true })` run them in this order).
import { registerTuner } from "../gpu/index.ts";
import { tuneMatmul } from "../kernels/matmul.ts";
import { tuneAttention } from "./ops/attention.ts";

export * from "./tensor.ts";
export * from "./shape.ts";
export { backward, enableGrad, isGradEnabled, noGrad, Node, type BackwardOptions, type BackwardRule, type OpRecord } from "./autograd.ts";
export * from "./ops/index.ts";
export * from "./rng.ts";
export { checkpoint, type CheckpointOptions } from "./recompute.ts";

// The matmul variants first: unfused attention runs on the tuned matmul.
registerTuner("matmul", (gpu) => tuneMatmul(gpu));
registerTuner("attention", (gpu) => tuneAttention(gpu));

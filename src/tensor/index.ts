// The tensor/autograd layer: import from here (it installs the op methods on Tensor).
export * from "./tensor.ts";
export * from "./shape.ts";
export { backward, enableGrad, isGradEnabled, noGrad, Node, type BackwardOptions, type BackwardRule, type OpRecord } from "./autograd.ts";
export * from "./ops/index.ts";
export * from "./rng.ts";
export { checkpoint, type CheckpointOptions } from "./checkpoint.ts";

// Public API of the package. Layers, bottom up: gpu (runtime) → tensor/autograd → optim → nn → align → cli;
// io (checkpoints) and data (tokenizers, shards) stand beside nn.
export * from "./gpu/index.ts";
export { selfTest, type SelfTest } from "./gpu/selftest.ts";
export * from "./tensor/index.ts";
export * as optim from "./optim/index.ts";
export * as io from "./io/index.ts";
export * as nn from "./nn/index.ts";
export * as data from "./data/index.ts";

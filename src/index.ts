// Public API of the package. Layers, bottom up: gpu (runtime) → tensor/autograd → nn → align → cli.
export * from "./gpu/index.ts";
export { selfTest, type SelfTest } from "./gpu/selftest.ts";

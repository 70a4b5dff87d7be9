/** Inputs for the cases: seeded, generated on the GPU where an op can (randn), on the host otherwise. */
import type { Gpu, PooledBuffer } from "../../src/gpu/index.ts";
import { f32BitsToF16Bits } from "../../src/io/half.ts";
import { Generator, randn, Tensor, type DType } from "../../src/tensor/index.ts";

const gen = new Generator(1234);

/** Standard-normal f32 tensor (Philox on the GPU), optionally requiring grad. */
export function normal(gpu: Gpu, shape: number[], opts: { std?: number; requiresGrad?: boolean } = {}): Tensor {
  const t = randn(gpu, shape, gen, { std: opts.std ?? 1 });
  if (opts.requiresGrad) t.setRequiresGrad(true);
  return t;
}

/** Uniform values in [-0.5, 0.5) from a fixed LCG. */
export function hostUniform(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

export function randomBuffer(gpu: Gpu, n: number, seed: number): PooledBuffer {
  return gpu.upload(hostUniform(n, seed));
}

/** A tensor of `dtype` with uniform values: f16 is written as raw binary16 bits (no op involved). */
export function uniform(gpu: Gpu, shape: number[], dtype: DType, seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const f = hostUniform(n, seed);
  if (dtype === "f32") return Tensor.fromArray(gpu, f, shape);
  if (dtype !== "f16") throw new Error(`uniform: ${dtype} not supported`);
  const t = Tensor.empty(gpu, shape, { dtype: "f16" });
  const bits = new Uint16Array(n + (n & 1)); // writes are whole 4-byte words
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < n; i++) bits[i] = f32BitsToF16Bits(u[i]!);
  gpu.write(t.buffer, bits);
  return t;
}

/** n integer ids in [0, v) (a fixed LCG), as host data. */
export function ids(n: number, v: number, seed: number): Int32Array {
  const a = new Int32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    a[i] = s % v;
  }
  return a;
}

/**
 * Random tensors and dropout on the GPU: counter-based Philox4x32-10 (launchers: src/kernels/random.ts), driven by a
 * Generator (src/tensor/rng.ts: a seed and an offset that each launch advances by one). Every value depends
 * only on (seed, offset, element index), so runs repeat exactly.
 *
 *   rand(gpu, shape, gen?)                  uniform [0, 1), 24 random bits per value
 *   randn(gpu, shape, gen?, {mean, std})    normal, Box-Muller
 *   randomBits(gpu, shape, gen?)            raw Philox words (u32)
 *   philoxBlocks(gpu, blocks, counter, key) raw Philox at an explicit counter/key (known-answer tests)
 *   dropout(x, p, gen?, training?)          x * mask / (1 - p), mask ~ Bernoulli(1 - p)
 *
 * Dropout stores no mask: its autograd node keeps only the launch's (seed, offset) and the backward
 * re-runs the same kernel entry on the upstream gradient, which regenerates the identical mask (the keep
 * test is an integer comparison of 24 random bits with ceil((1 - p) 2^24), i.e. u < 1 - p exactly for the
 * u in [0, 1) rand() would give, so it is the same in both passes). Nothing is saved, so a training step's dropout layers cost no memory between forward and
 * backward. Eval mode (training = false) and p = 0 return a view of x and draw no offset; p = 1 gives
 * zeros (and zero gradients), as PyTorch does.
 */
import type { Gpu } from "../../gpu/index.ts";
import { dropoutBackward, dropoutForward, dropoutThreshold, philoxBits, philoxNormal, philoxUniform } from "../../kernels/random.ts";
import { attach } from "../autograd.ts";
import { defaultGenerator, Generator, type PhiloxLaunch } from "../rng.ts";
import { checkShape, TensorError, type Shape } from "../shape.ts";
import { checkOperands, Tensor } from "../tensor.ts";

export { dropoutThreshold };

function checkGen(op: string, gen: Generator): Generator {
  if (!(gen instanceof Generator)) throw new TensorError(`${op}: expected a Generator, got ${String(gen)}`);
  return gen;
}

/** Uniform values in [0, 1): the top 24 bits of each Philox word times 2^-24 (exactly representable). */
export function rand(gpu: Gpu, shape: Shape, gen: Generator = defaultGenerator): Tensor {
  checkShape(shape, "rand: shape");
  const l = checkGen("rand", gen).nextLaunch();
  const out = Tensor.empty(gpu, shape);
  philoxUniform(gpu, { out: out.buffer }, { n: out.size, philox: l });
  return out;
}

/** Normal values, mean + std * z with z standard normal (Box-Muller; |z| <= 5.77). */
export function randn(gpu: Gpu, shape: Shape, gen: Generator = defaultGenerator, opts: { mean?: number; std?: number } = {}): Tensor {
  checkShape(shape, "randn: shape");
  const mean = opts.mean ?? 0;
  const std = opts.std ?? 1;
  if (!Number.isFinite(mean) || !Number.isFinite(std) || std < 0)
    throw new TensorError(`randn: mean must be finite and std finite and >= 0, got mean=${mean}, std=${std}`);
  const l = checkGen("randn", gen).nextLaunch();
  const out = Tensor.empty(gpu, shape);
  philoxNormal(gpu, { out: out.buffer }, { n: out.size, philox: l, mean, std });
  return out;
}

/** Raw Philox words, a u32 tensor (same element mapping as rand). */
export function randomBits(gpu: Gpu, shape: Shape, gen: Generator = defaultGenerator): Tensor {
  checkShape(shape, "randomBits: shape");
  const l = checkGen("randomBits", gen).nextLaunch();
  const out = Tensor.empty(gpu, shape, { dtype: "u32" });
  philoxBits(gpu, { out: out.buffer }, { n: out.size, philox: l });
  return out;
}

/**
 * Philox4x32-10 of `blocks` consecutive counters starting at `counter` (4 u32, little word first; a 128-bit
 * increment per block) under `key` (2 u32): a u32 tensor of 4 * blocks words. For known-answer tests.
 */
export function philoxBlocks(gpu: Gpu, blocks: number, counter: readonly number[], key: readonly number[]): Tensor {
  const u32 = (v: number) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
  if (counter.length !== 4 || key.length !== 2 || !counter.every(u32) || !key.every(u32))
    throw new TensorError(`philoxBlocks: counter must be 4 and key 2 u32 words, got [${counter}] and [${key}]`);
  const out = Tensor.empty(gpu, [blocks * 4], { dtype: "u32" });
  const philox = { counter: [...counter] as PhiloxLaunch["counter"], key: [...key] as PhiloxLaunch["key"] };
  philoxBits(gpu, { out: out.buffer }, { n: out.size, philox, name: "philox_blocks" });
  return out;
}

/**
 * Inverted dropout: each element is kept with probability 1 - p and scaled by 1 / (1 - p), else zeroed
 * (x * mask * scale, so NaN stays NaN as in PyTorch). `training = false` or p = 0: a view of x (identity
 * gradient), no random draw. The backward regenerates the mask from the same seed and offset.
 */
export function dropout(x: Tensor, p = 0.5, gen: Generator = defaultGenerator, training = true): Tensor {
  const gpu = checkOperands("dropout", x);
  if (typeof p !== "number" || !(p >= 0 && p <= 1)) throw new TensorError(`dropout: probability p must be in [0, 1], got ${p}`);
  checkGen("dropout", gen);
  if (!training || p === 0) return x.reshape(x.shape);
  const l = gen.nextLaunch();
  const out = Tensor.empty(gpu, x.shape);
  dropoutForward(gpu, { x: x.buffer, out: out.buffer }, { n: out.size, philox: l, p });
  return attach(out, {
    op: "dropout",
    inputs: [x],
    backward: (g) => {
      const dx = Tensor.empty(g.gpu, g.shape);
      dropoutBackward(g.gpu, { gout: g.buffer, dx: dx.buffer }, { n: dx.size, philox: l, p });
      return [dx];
    },
  });
}

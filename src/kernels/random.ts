/**
 * Launchers of kernels/random.wgsl: counter-based Philox4x32-10. Element i of a launch takes word (i % 4) of
 * the Philox block at counter + i / 4 (a 128-bit add) under the 64-bit key, so each value depends only on
 * (counter, key, i). One invocation per block of 4 elements; n < 2^32 elements.
 *
 *   philoxBits      out[i] = the raw Philox word (u32)
 *   philoxUniform   out[i] = (word >> 8) * 2^-24, uniform in [0, 1) with 24 random bits (exact in f32)
 *   philoxNormal    out[i] = mean + std * z, z ~ N(0, 1) by Box-Muller on a block's word pairs (|z| <= 5.77)
 *   dropoutForward  out[i] = x[i] * (keep ? 1 / (1 - p) : 0), keep = (word >> 8) < dropoutThreshold(p), i.e.
 *                   u < 1 - p for the u philoxUniform draws from the same word (p = 1: all zero)
 *   dropoutBackward dx[i] = gout[i] * the same factor: the same entry at the same (counter, key) regenerates
 *                   the forward's mask, so none is stored.
 *
 * A multiply, not a select: NaN and Inf propagate through dropped elements as in PyTorch (x * mask * scale).
 */
import randomSrc from "../../kernels/random.wgsl" with { type: "text" };
import { defineKernel, grid1d, TensorError, type Binding, type Gpu } from "../gpu/index.ts";

export const RANDOM = defineKernel("kernels/random.wgsl", randomSrc);

/** Where a launch's Philox stream starts: a 128-bit counter base (4 u32, little word first) and a 64-bit key (2 u32). */
export interface Philox {
  counter: readonly [number, number, number, number];
  key: readonly [number, number];
}

export interface RandomOptions {
  /** Elements to write. */
  n: number;
  philox: Philox;
}

type Entry = "random_bits" | "rand_uniform" | "rand_normal" | "dropout";

/** Record one random.wgsl launch writing n elements, one invocation per block of 4. */
function launch(gpu: Gpu, entry: Entry, name: string, bindings: Record<string, Binding>, o: RandomOptions, e: { thr?: number; scale?: number; shift?: number } = {}): void {
  const n = o.n;
  if (n === 0) return;
  if (n > 0xffffffff) throw new TensorError(`${name}: ${n} elements exceed the kernel's 2^32 limit`);
  const g = grid1d(gpu, Math.ceil(n / 4));
  const [c0, c1, c2, c3] = o.philox.counter;
  const [k0, k1] = o.philox.key;
  gpu.dispatch(RANDOM, entry, bindings, g.workgroups, {
    params: { n, row: g.row, c0, c1, c2, c3, k0, k1, thr: e.thr ?? 0, scale: e.scale ?? 1, shift: e.shift ?? 0 },
    name,
  });
}

/** out [n] u32 = raw Philox words. `name`: the dispatch's name (default "random_bits"). */
export function philoxBits(gpu: Gpu, io: { out: Binding }, o: RandomOptions & { name?: string }): void {
  launch(gpu, "random_bits", o.name ?? "random_bits", { bits_out: io.out }, o);
}

/** out [n] f32 uniform in [0, 1). */
export function philoxUniform(gpu: Gpu, io: { out: Binding }, o: RandomOptions): void {
  launch(gpu, "rand_uniform", "rand", { out: io.out }, o);
}

/** out [n] f32 = mean + std * z, z standard normal. */
export function philoxNormal(gpu: Gpu, io: { out: Binding }, o: RandomOptions & { mean: number; std: number }): void {
  launch(gpu, "rand_normal", "randn", { out: io.out }, o, { scale: o.std, shift: o.mean });
}

/**
 * The 24-bit keep threshold of dropout with drop probability p: keep iff (word >> 8) < threshold, which is
 * exactly "u < 1 - p" for the u that rand() would draw from the same word (as PyTorch's mask).
 */
export function dropoutThreshold(p: number): number {
  return Math.ceil((1 - p) * 2 ** 24);
}

const dropoutParams = (p: number) => ({ thr: dropoutThreshold(p), scale: p === 1 ? 0 : 1 / (1 - p) });

/** out [n] = x * mask / (1 - p), the mask drawn from the Philox stream; 0 <= p <= 1. */
export function dropoutForward(gpu: Gpu, io: { x: Binding; out: Binding }, o: RandomOptions & { p: number }): void {
  launch(gpu, "dropout", "dropout", { out: io.out, src: io.x }, o, dropoutParams(o.p));
}

/** dx [n] = gout * the forward's mask / (1 - p), with the forward's philox and p. */
export function dropoutBackward(gpu: Gpu, io: { gout: Binding; dx: Binding }, o: RandomOptions & { p: number }): void {
  launch(gpu, "dropout", "dropout.backward", { out: io.dx, src: io.gout }, o, dropoutParams(o.p));
}

/**
 * Launchers of a tensor's own storage work: fills, copies, and the in-place gradient accumulation autograd
 * runs (kernels/tensor.wgsl). Every buffer is a flat pooled storage; sizes are in elements unless named bytes.
 *
 *   fillWord(gpu, { dst }, { word })          dst[k] = word for every 32-bit word k of the pooled buffer (its
 *                                              whole class size, a multiple of 16 bytes): zeros/ones/full and the
 *                                              NaN poison of `debug.poison`. The runtime's `fill_bits`
 *                                              (kernels/copy.wgsl, `gpu.fillBits`), in order with other commands.
 *   copyBytes(gpu, { src, dst }, { bytes })   dst[0 .. bytes) = src[0 .. bytes), bytes a multiple of 4: one
 *                                              buffer-to-buffer copy (no kernel); `clone`.
 *   accumulate(gpu, { src, dst }, { n })      dst[i] += src[i] for i < n, f32, in place (kernels/tensor.wgsl
 *                                              `accumulate`): autograd summing a gradient into another or into
 *                                              `.grad`. In vec4 units when n % 4 == 0 (src/gpu/grid.ts `elementwise`).
 *
 * The f16 counterpart of `accumulate` lives with the casts (src/kernels/cast.ts `accumulateF16`: it shares
 * cast.wgsl's bit-exact conversions).
 */
import tensorSrc from "../../kernels/tensor.wgsl" with { type: "text" };
import { defineKernel, elementwise, type Binding, type Gpu, type PooledBuffer } from "../gpu/index.ts";

export const TENSOR_KERNELS = defineKernel("kernels/tensor.wgsl", tensorSrc);

/** Fill the whole pooled buffer `dst` with the 32-bit `word` (an f32's bits, two packed halves, an integer). */
export function fillWord(gpu: Gpu, io: { dst: PooledBuffer }, o: { word: number }): void {
  gpu.fillBits(io.dst, o.word);
}

/** Copy the first `bytes` bytes (a multiple of 4) of `src` into `dst`. */
export function copyBytes(gpu: Gpu, io: { src: PooledBuffer; dst: PooledBuffer }, o: { bytes: number }): void {
  if (o.bytes) gpu.copy(io.src, io.dst, o.bytes);
}

/** dst += src over n f32 elements, in place (distinct buffers). */
export function accumulate(gpu: Gpu, io: { src: Binding; dst: Binding }, o: { n: number }): void {
  if (!o.n) return;
  const e = elementwise(gpu, o.n);
  gpu.dispatch(TENSOR_KERNELS, "accumulate", { src: io.src, dst: io.dst }, e.workgroups, {
    params: { n: e.units, row: e.row, value: 0 },
    defines: e.defines,
    name: "grad.accumulate",
  });
}

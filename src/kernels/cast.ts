/**
 * Launchers of kernels/cast.wgsl: f32 ↔ f16 conversions bit-exact with PyTorch's `.half()` / `.float()` on
 * any device (integer code on the bits: round to nearest even, subnormals kept, |x| >= 65520 → ±inf,
 * NaN → NaN), and the f16 gradient accumulation autograd runs. Halves travel packed two per u32 word
 * (element i in the low half of word i / 2 when i is even), so no launcher needs the `shader-f16` feature.
 *
 *   f32ToF16(gpu, { x32, y16 }, { n })       y16[i] = half(x32[i]), i < n; one invocation per output word
 *                                             (ceil(n / 2)); an odd n's last high half is written +0.
 *   f16ToF32(gpu, { x16, y32 }, { n })       y32[i] = float(x16[i]), exact; one invocation per element.
 *   accumulateF16(gpu, { src, dst }, { n })  dst[i] = half(float(dst[i]) + float(src[i])), i < n, in place: each
 *                                             half widened exactly, added in f32, rounded back as f32ToF16
 *                                             does (an overflow is a true inf, which the GradScaler sees).
 *
 * All stream over contiguous words on the 2-D grid of src/gpu/grid.ts (`grid1d`), 256 per workgroup. n < 2^32.
 */
import castSrc from "../../kernels/cast.wgsl" with { type: "text" };
import { defineKernel, grid1d, type Binding, type Gpu } from "../gpu/index.ts";

export const CAST = defineKernel("kernels/cast.wgsl", castSrc);

/** y16 (n packed halves) = x32 (n f32), rounded to nearest even. */
export function f32ToF16(gpu: Gpu, io: { x32: Binding; y16: Binding }, o: { n: number }): void {
  if (!o.n) return;
  const words = Math.ceil(o.n / 2);
  const g = grid1d(gpu, words);
  gpu.dispatch(CAST, "f32_to_f16", { x32: io.x32, y16: io.y16 }, g.workgroups, { params: { n: o.n, words, row: g.row }, name: "cast.f32_to_f16" });
}

/** y32 (n f32) = x16 (n packed halves), exactly; with `accumulate`, y32 += x16 (widened exactly, added in f32). */
export function f16ToF32(gpu: Gpu, io: { x16: Binding; y32: Binding }, o: { n: number; accumulate?: boolean }): void {
  if (!o.n) return;
  const words = o.n;
  const g = grid1d(gpu, words);
  gpu.dispatch(CAST, "f16_to_f32", { x16: io.x16, y32: io.y32 }, g.workgroups, {
    params: { n: o.n, words, row: g.row },
    defines: o.accumulate ? { Y_ADD: "y32[i] + v" } : undefined,
    name: o.accumulate ? "cast.f16_to_f32.accumulate" : "cast.f16_to_f32",
  });
}

/** dst += src over n packed halves, in place (distinct buffers), through f32 with one rounding per element. */
export function accumulateF16(gpu: Gpu, io: { src: Binding; dst: Binding }, o: { n: number }): void {
  if (!o.n) return;
  const words = Math.ceil(o.n / 2);
  const g = grid1d(gpu, words);
  gpu.dispatch(CAST, "accumulate_f16", { x16: io.src, y16: io.dst }, g.workgroups, {
    params: { n: o.n, words, row: g.row },
    name: "grad.accumulate",
  });
}

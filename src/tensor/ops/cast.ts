/**
 * Dtype casts: `cast(x, dtype)` between f32 and f16 (torch's `.half()` / `.float()` / `.to(dtype)`).
 * Kernels: kernels/cast.wgsl, integer code on the bits, so results are bit-exact with PyTorch on any device
 * (round to nearest even, subnormals kept, |x| >= 65520 → ±inf, NaN → NaN).
 *
 * Backward: the gradient is cast back to the input's dtype (f16 → f32 is exact; f32 → f16 rounds, as in
 * torch). Casting to the tensor's own dtype returns a view (no copy), like torch's `.to()`, whose gradient
 * passes through unchanged.
 *
 * f16 needs the device feature `shader-f16` only for kernels that compute in f16; these kernels move halves
 * as packed u32 words, so casts work on every device.
 */
import castSrc from "../../../kernels/cast.wgsl" with { type: "text" };
import { defineKernel, type PooledBuffer } from "../../gpu/index.ts";
import { attach } from "../autograd.ts";
import { TensorError } from "../shape.ts";
import { grid1d, Tensor, type DType } from "../tensor.ts";

export const CAST = defineKernel("kernels/cast.wgsl", castSrc);

const FLOAT: readonly DType[] = ["f32", "f16"];

/** The conversion itself, no autograd. */
function convert(x: Tensor, dtype: DType): Tensor {
  const gpu = x.gpu;
  const out = Tensor.empty(gpu, x.shape, { dtype });
  const n = x.size;
  if (n === 0) return out;
  const toHalf = dtype === "f16";
  const words = toHalf ? Math.ceil(n / 2) : n;
  const g = grid1d(gpu, words);
  const bindings: Record<string, PooledBuffer> = toHalf ? { x32: x.buffer, y16: out.buffer } : { x16: x.buffer, y32: out.buffer };
  gpu.dispatch(CAST, toHalf ? "f32_to_f16" : "f16_to_f32", bindings, g.workgroups, {
    params: { n, words, row: g.row },
    name: `cast.${x.dtype}_to_${dtype}`,
  });
  return out;
}

/** x converted to `dtype` (f32 ↔ f16); x itself as a view when it already has that dtype. */
export function cast(x: Tensor, dtype: DType): Tensor {
  x.assertLive();
  if (!FLOAT.includes(x.dtype) || !FLOAT.includes(dtype))
    throw new TensorError(`cast: ${x} to ${dtype}: only f32 <-> f16 casts are supported`);
  const from = x.dtype;
  const out = from === dtype ? x.detach() : convert(x, dtype);
  return attach(out, {
    op: "cast",
    inputs: [x],
    backward: (g) => [g.dtype === from ? g.detach() : convert(g, from)], // rules run under noGrad
  });
}

/** cast(x, "f16"): torch's `.half()`. */
export const half = (x: Tensor): Tensor => cast(x, "f16");
/** cast(x, "f32"): torch's `.float()`. */
export const float = (x: Tensor): Tensor => cast(x, "f32");

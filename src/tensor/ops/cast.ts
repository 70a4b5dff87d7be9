/**
 * Dtype casts: `cast(x, dtype)` between f32 and f16 (torch's `.half()` / `.float()` / `.to(dtype)`), bit-exact
 * with PyTorch on any device. Launchers: src/kernels/cast.ts (kernels/cast.wgsl).
 *
 * Backward: the gradient is cast back to the input's dtype (f16 → f32 is exact; f32 → f16 rounds, as in
 * torch); an f16 gradient of an f32 input that already has a gradient (autocast: h cast once per projection
 * that reads it) is widened and added into it in the same pass (the engine's `acc`, src/tensor/autograd.ts).
 * Casting to the tensor's own dtype returns a view (no copy), like torch's `.to()`, whose gradient passes
 * through unchanged.
 */
import { f16ToF32, f32ToF16 } from "../../kernels/cast.ts";
import { attach } from "../autograd.ts";
import { TensorError } from "../shape.ts";
import { Tensor, type DType } from "../tensor.ts";

const FLOAT: readonly DType[] = ["f32", "f16"];

/** The conversion itself, no autograd. */
function convert(x: Tensor, dtype: DType): Tensor {
  const out = Tensor.empty(x.gpu, x.shape, { dtype });
  if (dtype === "f16") f32ToF16(x.gpu, { x32: x.buffer, y16: out.buffer }, { n: x.size });
  else f16ToF32(x.gpu, { x16: x.buffer, y32: out.buffer }, { n: x.size });
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
    backward: (g, _, __, [acc]) => {
      // rules run under noGrad
      if (g.dtype === from) return [g.detach()];
      if (acc && from === "f32" && acc.dtype === "f32") {
        f16ToF32(g.gpu, { x16: g.buffer, y32: acc.buffer }, { n: g.size, accumulate: true });
        return [acc];
      }
      return [convert(g, from)];
    },
  });
}

/** cast(x, "f16"): torch's `.half()`. */
export const half = (x: Tensor): Tensor => cast(x, "f16");
/** cast(x, "f32"): torch's `.float()`. */
export const float = (x: Tensor): Tensor => cast(x, "f32");

/**
 * Launcher of kernels/grad_scaler.wgsl: torch's _amp_foreach_non_finite_check_and_unscale_ for the GradScaler
 * (src/optim/grad_scaler.ts).
 *
 *   unscaleGrads(gpu, { grads, foundInf }, { sizes, invScale })
 *       foundInf[0] (u32) = 1 if any element of any gradient g_j (sizes[j] f32 elements) is inf or NaN, else 0
 *       (tested on the bits: WGSL lets compilers assume finite math); then g_j ← g_j · invScale in place (left
 *       alone when invScale == 1, as torch does). One `reset_flag` dispatch, then `unscale` over up to 8 non-empty
 *       gradients per dispatch (as many as the device's maxStorageBuffersPerShaderStage allows beside the flag;
 *       the slots of kernels/grad_scaler.wgsl), all into the same flag; only an invocation that sees a non-finite
 *       value touches it (an atomic store), so clean steps cost no atomics. 256 per workgroup; n < 2^32.
 * The slot bookkeeping (params, defines, bindings, the limit) is src/kernels/slots.ts, shared with src/kernels/optim.ts.
 */
import scalerSrc from "../../kernels/grad_scaler.wgsl" with { type: "text" };
import { defineKernel, GpuError, grid1d, NAN, type Binding, type Gpu } from "../gpu/index.ts";
import { SLOTS, slotBindings, slotDefines, slotParams, slotsFor } from "./slots.ts";

export const GRAD_SCALER = defineKernel("kernels/grad_scaler.wgsl", scalerSrc, [NAN, SLOTS]);

/** Clear the flag, then unscale every gradient in place and raise the flag on any inf/NaN. */
export function unscaleGrads(gpu: Gpu, io: { grads: readonly Binding[]; foundInf: Binding }, o: { sizes: readonly number[]; invScale: number }): void {
  if (io.grads.length !== o.sizes.length) throw new GpuError(`unscaleGrads: ${io.grads.length} gradients but ${o.sizes.length} sizes`);
  const k = slotsFor(gpu, 1, 1, "unscaleGrads");
  gpu.dispatch(GRAD_SCALER, "reset_flag", { found_inf: io.foundInf }, 1, { params: { ...GRAD_SCALER.zeroParams, inv_scale: 1 }, name: "GradScaler.reset" });
  const live = o.sizes.flatMap((n, i) => (n ? [i] : []));
  for (let c = 0; c < live.length; c += k) {
    const chunk = live.slice(c, c + k);
    const units = chunk.map((i) => o.sizes[i]!);
    const { params, total } = slotParams(GRAD_SCALER.zeroParams, units, units.map((n) => Math.ceil(n / 256)));
    const grid = grid1d(gpu, total, 1);
    gpu.dispatch(GRAD_SCALER, "unscale", { ...slotBindings("grad", chunk.map((i) => io.grads[i]!)), found_inf: io.foundInf }, grid.workgroups, {
      params: { ...params, inv_scale: o.invScale, gx: grid.workgroups[0] },
      defines: slotDefines(chunk.length),
      name: "GradScaler.unscale",
    });
  }
}

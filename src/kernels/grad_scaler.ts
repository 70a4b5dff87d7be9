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
 */
import scalerSrc from "../../kernels/grad_scaler.wgsl" with { type: "text" };
import { defineKernel, GpuError, grid1d, NAN, type Binding, type Gpu } from "../gpu/index.ts";

export const GRAD_SCALER = defineKernel("kernels/grad_scaler.wgsl", scalerSrc, [NAN]);

/** Slots of kernels/grad_scaler.wgsl `unscale`. */
const SLOTS = 8;

/** Clear the flag, then unscale every gradient in place and raise the flag on any inf/NaN. */
export function unscaleGrads(gpu: Gpu, io: { grads: readonly Binding[]; foundInf: Binding }, o: { sizes: readonly number[]; invScale: number }): void {
  if (io.grads.length !== o.sizes.length) throw new GpuError(`unscaleGrads: ${io.grads.length} gradients but ${o.sizes.length} sizes`);
  const lim = gpu.limits.maxStorageBuffersPerShaderStage;
  const k = Math.min(SLOTS, lim - 1);
  if (k < 1) throw new GpuError(`unscaleGrads: needs 2 storage buffers in one shader stage; this device allows ${lim}`);
  gpu.dispatch(GRAD_SCALER, "reset_flag", { found_inf: io.foundInf }, 1, { params: { ...GRAD_SCALER.zeroParams, inv_scale: 1 }, name: "GradScaler.reset" });
  const live = o.sizes.flatMap((n, i) => (n ? [i] : []));
  for (let c = 0; c < live.length; c += k) {
    const chunk = live.slice(c, c + k);
    const params: Record<string, number> = { ...GRAD_SCALER.zeroParams, inv_scale: o.invScale };
    const defines: Record<string, number> = {};
    let start = 0;
    for (let j = 0; j < SLOTS; j++) {
      const n = j < chunk.length ? o.sizes[chunk[j]!]! : 0;
      if (j > 0) params[`start${j}`] = j < chunk.length ? start : 0xffffffff;
      if (j > 0) defines[`S${j}`] = j < chunk.length ? 1 : 0;
      params[`n${j}`] = n;
      start += Math.ceil(n / 256);
    }
    const grid = grid1d(gpu, start, 1);
    gpu.dispatch(GRAD_SCALER, "unscale", { ...Object.fromEntries(chunk.map((i, j) => [`grad${j}`, io.grads[i]!])), found_inf: io.foundInf }, grid.workgroups, {
      params: { ...params, gx: grid.workgroups[0] },
      defines,
      name: "GradScaler.unscale",
    });
  }
}

/**
 * Launcher of kernels/grad_scaler.wgsl: torch's _amp_foreach_non_finite_check_and_unscale_ for the GradScaler
 * (src/optim/grad_scaler.ts).
 *
 *   unscaleGrads(gpu, { grads, foundInf }, { sizes, invScale })
 *       foundInf[0] (u32) = 1 if any element of any gradient g_j (sizes[j] f32 elements) is inf or NaN, else 0
 *       (tested on the bits: WGSL lets compilers assume finite math); then g_j ← g_j · invScale in place (left
 *       alone when invScale == 1, as torch does). One `reset_flag` dispatch, then one `unscale` per non-empty
 *       gradient, all into the same flag; only an invocation that sees a non-finite value touches it (an atomic
 *       store), so clean steps cost no atomics. 2-D grid of src/gpu/grid.ts, 256 per workgroup; n < 2^32.
 */
import scalerSrc from "../../kernels/grad_scaler.wgsl" with { type: "text" };
import { defineKernel, grid1d, NAN, type Binding, type Gpu } from "../gpu/index.ts";

export const GRAD_SCALER = defineKernel("kernels/grad_scaler.wgsl", scalerSrc, [NAN]);

/** Clear the flag, then unscale every gradient in place and raise the flag on any inf/NaN. */
export function unscaleGrads(gpu: Gpu, io: { grads: readonly Binding[]; foundInf: Binding }, o: { sizes: readonly number[]; invScale: number }): void {
  gpu.dispatch(GRAD_SCALER, "reset_flag", { found_inf: io.foundInf }, 1, { params: { n: 0, row: 0, inv_scale: 1 }, name: "GradScaler.reset" });
  io.grads.forEach((g, i) => {
    const n = o.sizes[i]!;
    if (!n) return;
    const grid = grid1d(gpu, n);
    gpu.dispatch(GRAD_SCALER, "unscale", { grad: g, found_inf: io.foundInf }, grid.workgroups, {
      params: { n, row: grid.row, inv_scale: o.invScale },
      name: "GradScaler.unscale",
    });
  });
}

/**
 * The row kernels' workgroup reduction: kernels/row_reduce.wgsl (a WGSL library appended to kernels/norm.wgsl,
 * softmax.wgsl, reduce.wgsl and optim.wgsl) and `rowLaunch`, which picks its workgroup size and variant per
 * device. A dispatch of a reducing entry spreads `...rowLaunch(gpu, { defines, constants })` into its options:
 * its own defines and constants with WG and SUBGROUP_ROWS added.
 */
import rowReduceSrc from "../../kernels/row_reduce.wgsl" with { type: "text" };
import { describeSubgroups, hasSubgroupsOf, type AdapterEntry } from "./device.ts";
import { GpuError } from "./errors.ts";
import { defineLibrary } from "./kernel.ts";

export const ROW_REDUCE = defineLibrary("kernels/row_reduce.wgsl", rowReduceSrc);

/**
 * How the row kernels (those reducing with kernels/row_reduce.wgsl) launch; tests force each variant.
 * `wg` 0 = per adapter; `subgroups` "auto" = wherever the workgroup is exactly one subgroup.
 */
export const rowConfig = { wg: 0, subgroups: "auto" as "auto" | boolean };

export interface RowLaunch {
  constants: Record<string, number> & { WG: number };
  defines: Record<string, string | number> & { SUBGROUP_ROWS: 0 | 1 };
}

/**
 * Workgroup size and reduction of the row kernels on this device: 256 on GPUs; 8 on CPU adapters (lavapipe
 * runs 8 lanes as one SIMD register, and each workgroup barrier costs a coroutine switch per 8 lanes); subgroup
 * reductions when the device has the subgroups feature with one fixed size equal to the workgroup size.
 */
export function rowLaunch(
  gpu: { adapter: AdapterEntry; features: ReadonlySet<string> },
  own: { defines?: Record<string, string | number>; constants?: Record<string, number> } = {},
): RowLaunch {
  const wg = rowConfig.wg || (gpu.adapter.kind === "cpu" ? 8 : 256);
  if (!Number.isInteger(wg) || wg < 1 || wg > 256 || (wg & (wg - 1)) !== 0) throw new GpuError(`rowConfig.wg must be a power of two in [1, 256], got ${wg}`);
  const fits = hasSubgroupsOf(gpu, wg);
  if (rowConfig.subgroups === true && !fits) throw new GpuError(`row kernels: subgroup reductions need subgroups of exactly ${wg} lanes; ${describeSubgroups(gpu)}`);
  const sub = rowConfig.subgroups === "auto" ? fits : rowConfig.subgroups;
  return { constants: { ...own.constants, WG: wg }, defines: { ...own.defines, SUBGROUP_ROWS: sub ? 1 : 0 } };
}

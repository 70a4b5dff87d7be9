/**
 * The row kernels' workgroup reduction: kernels/row_reduce.wgsl (a WGSL library appended to kernels/norm.wgsl,
 * softmax.wgsl, loss.wgsl, reduce.wgsl and optim.wgsl) and `rowLaunch`, which picks its workgroup size and variant per
 * device from its policy (`policy.rows`, src/gpu/policy.ts). A dispatch of a reducing entry spreads
 * `...rowLaunch(gpu, { defines, constants })` into its options: its own defines and constants with WG and
 * SUBGROUP_ROWS added.
 */
import rowReduceSrc from "../../kernels/row_reduce.wgsl" with { type: "text" };
import { describeSubgroups, hasSubgroupsOf, type AdapterEntry } from "./device.ts";
import { GpuError } from "./errors.ts";
import { defineLibrary } from "./kernel.ts";
import { NAN } from "./nan.ts";
import type { KernelPolicy } from "./policy.ts";

/** Needs kernels/nan.wgsl (is_nan), appended with it. */
export const ROW_REDUCE = defineLibrary("kernels/row_reduce.wgsl", rowReduceSrc, [NAN]);

export interface RowLaunch {
  constants: Record<string, number> & { WG: number };
  defines: Record<string, string | number> & { SUBGROUP_ROWS: 0 | 1 };
}

/**
 * Workgroup size and reduction of the row kernels on this device (`policy.rows`; under "auto": 256 on GPUs;
 * 8 on CPU adapters (lavapipe runs 8 lanes as one SIMD register, and each workgroup barrier costs a coroutine
 * switch per 8 lanes); subgroup reductions when the device has the subgroups feature with one fixed size equal
 * to the workgroup size).
 */
export function rowLaunch(
  gpu: { adapter: AdapterEntry; features: ReadonlySet<string>; policy: KernelPolicy },
  own: { defines?: Record<string, string | number>; constants?: Record<string, number> } = {},
): RowLaunch {
  const { wg: want, subgroups } = gpu.policy.rows;
  const wg = want === "auto" ? (gpu.adapter.kind === "cpu" ? 8 : 256) : want;
  const fits = hasSubgroupsOf(gpu, wg);
  if (subgroups === true && !fits) throw new GpuError(`row kernels: subgroup reductions need subgroups of exactly ${wg} lanes; ${describeSubgroups(gpu)}`);
  const sub = subgroups === "auto" ? fits : subgroups;
  return { constants: { ...own.constants, WG: wg }, defines: { ...own.defines, SUBGROUP_ROWS: sub ? 1 : 0 } };
}

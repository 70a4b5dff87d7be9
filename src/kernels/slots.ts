/**
 * Slot bookkeeping of the multi-tensor launchers (src/kernels/optim.ts `adamwMulti`, `clipGradNorm`,
 * `clipScale`; src/kernels/grad_scaler.ts `unscaleGrads`): one dispatch works on up to MAX_SLOTS tensors, slot j
 * bound as its own buffers (WGSL cannot index a runtime list of buffers). Its WGSL twin is kernels/slots.wgsl
 * (`SLOTS`, a library appended to kernels/optim_multi.wgsl and kernels/grad_scaler.wgsl), which reads what these
 * functions fill: per slot j the params n<j> (its length in the kernel's units) and start<j> (its first
 * workgroup; 0xffffffff for an unused slot), and the defines S<j> (slot j is bound).
 *
 *   slotsFor(gpu, fixed, perSlot, what)          tensors per dispatch: `perSlot` bindings each beside `fixed`
 *                                                others, within the device's maxStorageBuffersPerShaderStage
 *   slotParams(zeroParams, units, workgroups, fields)  the params of a dispatch and its workgroups in all
 *   slotDefines(count, extra)                    the S<j> defines of a dispatch over `count` slots
 *   slotBindings(prefix, list)                   the bindings <prefix><j>
 */
import slotsSrc from "../../kernels/slots.wgsl" with { type: "text" };
import { defineLibrary, GpuError, type Binding, type Gpu } from "../gpu/index.ts";

/** The slot lookup of the multi-tensor kernels (kernels/slots.wgsl): the kernel's params are named `params`. */
export const SLOTS = defineLibrary("kernels/slots.wgsl", slotsSrc);

/** Slots of the multi-tensor kernels (kernels/optim_multi.wgsl's p0..p7, g0..g7; kernels/grad_scaler.wgsl's grad0..grad7). */
export const MAX_SLOTS = 8;
/** A u32 start that no index reaches: the unused slots'. */
const NO_SLOT = 0xffffffff;

/** Tensors per multi-tensor dispatch: `perSlot` bindings each beside `fixed` others, within the device's limit. */
export function slotsFor(gpu: Gpu, fixed: number, perSlot: number, what: string): number {
  const lim = gpu.limits.maxStorageBuffersPerShaderStage;
  const k = Math.min(MAX_SLOTS, Math.floor((lim - fixed) / perSlot));
  if (k < 1) throw new GpuError(`${what}: needs ${fixed + perSlot} storage buffers in one shader stage; this device allows ${lim}`);
  return k;
}

/**
 * The params of a multi-tensor dispatch, from the kernel's `zeroParams`: per slot its length in units (n<j>), its
 * first workgroup (start<j>: the prefix sums of `workgroups`, the slots' workgroup counts) and the entry's own
 * per-slot fields (`fields`: name → one value per slot). Returns the params and the workgroups in all.
 */
export function slotParams(
  zeroParams: Readonly<Record<string, number>>,
  units: readonly number[],
  workgroups: readonly number[],
  fields: Record<string, readonly number[]> = {},
): { params: Record<string, number>; total: number } {
  const params: Record<string, number> = { ...zeroParams };
  let start = 0;
  for (let j = 0; j < MAX_SLOTS; j++) {
    const used = j < units.length;
    if (j > 0) params[`start${j}`] = used ? start : NO_SLOT;
    params[`n${j}`] = used ? units[j]! : 0;
    for (const [k, vals] of Object.entries(fields)) params[`${k}${j}`] = used ? vals[j]! : 0;
    if (used) start += workgroups[j]!;
  }
  return { params, total: start };
}

/** The defines of a dispatch over `count` slots (S<j>: slot j is bound), with the entry's own `extra`. */
export function slotDefines(count: number, extra: Record<string, string | number> = {}): Record<string, string | number> {
  const d: Record<string, string | number> = { ...extra };
  for (let j = 1; j < MAX_SLOTS; j++) d[`S${j}`] = j < count ? 1 : 0;
  return d;
}

/** Bindings <prefix><j> (p<j>, g<j>, grad<j>) of a multi-tensor dispatch. */
export function slotBindings(prefix: string, list: readonly Binding[]): Record<string, Binding> {
  return Object.fromEntries(list.map((b, j) => [`${prefix}${j}`, b]));
}

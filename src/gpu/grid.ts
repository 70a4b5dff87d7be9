/**
 * Launch geometry shared by every 1-D kernel: `n` invocations of a `wg`-wide workgroup spread over a 2-D
 * grid, since one dimension holds at most maxComputeWorkgroupsPerDimension (65535) workgroups. Kernels
 * compute their flat index as `gid.y * row + gid.x` and bounds-check it against n. Workgroups per grid row
 * are the device's `policy.grid.maxX` (src/gpu/policy.ts; tests lower it to exercise the second dimension).
 */
import type { KernelPolicy } from "./policy.ts";

/** What the geometry needs of a device: its kernel policy. */
export type WithPolicy = { readonly policy: KernelPolicy };

export function grid1d(gpu: WithPolicy, n: number, wg = 256): { workgroups: [number, number]; row: number } {
  const groups = Math.max(1, Math.ceil(n / wg));
  const x = Math.min(groups, gpu.policy.grid.maxX);
  return { workgroups: [x, Math.ceil(groups / x)], row: x * wg };
}

/**
 * Launch geometry of a one-workgroup-per-row kernel: `rows` workgroups on a 2-D grid. Kernels compute their
 * row as `wid.y * gx + wid.x` and return when it is >= rows.
 */
export function rowGrid(gpu: WithPolicy, rows: number): { workgroups: [number, number]; gx: number } {
  const { workgroups } = grid1d(gpu, rows, 1);
  return { workgroups, gx: workgroups[0] };
}

/**
 * How a kernel whose bindings are `array<{{VT}}>` moves `n` f32 elements: in vec4s when n is a multiple of 4
 * (VT = vec4<f32>, `units` = n / 4: each load moves 4 elements, which on CPU drivers, where every load is a
 * per-lane loop, is most of the cost), else in f32 (define VEC says which, for `//#if`).
 */
export function vec4Units(n: number): { units: number; defines: { VT: string; VEC: 0 | 1 } } {
  const vec = n % 4 === 0;
  return { units: vec ? n / 4 : n, defines: { VT: vec ? "vec4<f32>" : "f32", VEC: vec ? 1 : 0 } };
}

/** Launch of an elementwise kernel over `n` elements in `vec4Units`: it bounds-checks its flat index against `units`. */
export function elementwise(gpu: WithPolicy, n: number): { units: number; workgroups: [number, number]; row: number; defines: { VT: string; VEC: 0 | 1 } } {
  const u = vec4Units(n);
  const g = grid1d(gpu, u.units);
  return { ...u, workgroups: g.workgroups, row: g.row };
}

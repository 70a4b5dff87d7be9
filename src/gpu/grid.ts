/**
 * Launch geometry shared by every 1-D kernel: `n` invocations of a `wg`-wide workgroup spread over a 2-D
 * grid, since one dimension holds at most maxComputeWorkgroupsPerDimension (65535) workgroups. Kernels
 * compute their flat index as `gid.y * row + gid.x` and bounds-check it against n.
 */
export const gridLimits = {
  /** Workgroups per grid row; tests lower it to exercise the second dimension on small sizes. */
  maxX: 65535,
};

export function grid1d(n: number, wg = 256): { workgroups: [number, number]; row: number } {
  const groups = Math.max(1, Math.ceil(n / wg));
  const x = Math.min(groups, gridLimits.maxX);
  return { workgroups: [x, Math.ceil(groups / x)], row: x * wg };
}

/**
 * Launch geometry of a one-workgroup-per-row kernel: `rows` workgroups on a 2-D grid. Kernels compute their
 * row as `wid.y * gx + wid.x` and return when it is >= rows.
 */
export function rowGrid(rows: number): { workgroups: [number, number]; gx: number } {
  const { workgroups } = grid1d(rows, 1);
  return { workgroups, gx: workgroups[0] };
}


// The row kernels' workgroup reductions (kernels/row_reduce.wgsl, src/gpu/row_reduce.ts `rowLaunch`) in every
// variant a device can pick: a 256-wide tree (GPUs), an 8-wide tree, 8-lane subgroup reductions (lavapipe's
// default) and a 1-wide degenerate tree. Rows of the reducing families (test/kernels/rows/) run under each, on
// rows shorter than, equal to and longer than the workgroup (ROW_LENGTHS). Not a row table itself (it lives
// beside rows/, which launchers.test.ts loads).
import { describeSubgroups, hasSubgroupsOf, type Gpu } from "../../src/gpu/index.ts";
import type { PartialPolicy } from "../../src/gpu/policy.ts";

export interface RowVariant {
  /** For row names: "rows 256-wide tree". */
  label: string;
  variant: PartialPolicy;
  /** Why it cannot run on this device, or null. */
  skip: (gpu: Gpu) => string | null;
}

const runs = () => null;
export const ROW_VARIANTS: readonly RowVariant[] = [
  { label: "rows 256-wide tree", variant: { rows: { wg: 256, subgroups: false } }, skip: runs },
  { label: "rows 8-wide tree", variant: { rows: { wg: 8, subgroups: false } }, skip: runs },
  {
    label: "rows 8-lane subgroups",
    variant: { rows: { wg: 8, subgroups: true } },
    skip: (gpu) => (hasSubgroupsOf(gpu, 8) ? null : `needs subgroups of exactly 8 lanes; ${describeSubgroups(gpu)}`),
  },
  { label: "rows 1-wide (no tree steps)", variant: { rows: { wg: 1, subgroups: false } }, skip: runs },
];

/** Shorter than, equal to and longer than the workgroups (1, 8, 256), and a long row. */
export const ROW_LENGTHS = [1, 7, 8, 300, 4096] as const;

// The row kernels' workgroup reduction (kernels/row_reduce.wgsl, src/gpu/row_reduce.ts): which workgroup size and
// reduction each policy asks for, and the refusal of a variant the device cannot run. The reducing entries
// themselves — row sums and NaN-propagating max (reduce), softmax and its backward, cross-entropy forward and
// backward (loss), RMSNorm and LayerNorm forward and dx (norm), the gradient-norm passes (optim) — run under every
// variant (test/kernels/row_variants.ts: 256-wide tree, 8-wide tree, 8-lane subgroups, 1-wide) on rows shorter
// than, equal to and longer than the workgroup in the launcher table (test/kernels/launchers.test.ts).
import { describe, expect, test } from "bun:test";
import { rowLaunch } from "../../src/gpu/index.ts";
import { ROW_VARIANTS } from "../kernels/row_variants.ts";
import { getGpu } from "./helpers.ts";

const gpu = await getGpu();

describe("row reductions in every launch variant", () => {
  for (const v of ROW_VARIANTS) {
    const why = v.skip(gpu);
    test.skipIf(why !== null)(`${v.label}: rowLaunch gives its workgroup size and reduction${why ? ` (skipped: ${why})` : ""}`, () => {
      const { wg, subgroups } = v.variant.rows!;
      gpu.withPolicy(v.variant, () => expect(rowLaunch(gpu)).toEqual({ constants: { WG: wg as number }, defines: { SUBGROUP_ROWS: subgroups ? 1 : 0 } }));
    });
  }

  test("a forced variant the device cannot run is refused, naming the adapter", () => {
    gpu.withPolicy({ rows: { wg: 16, subgroups: true } }, () => expect(() => rowLaunch(gpu)).toThrow(/subgroup reductions need subgroups of exactly 16 lanes; .+ has/));
    expect(() => gpu.withPolicy({ rows: { wg: 12 } }, () => rowLaunch(gpu))).toThrow('kernel policy: rows.wg must be "auto" or a power of two in [1, 256], got 12');
  });
});

// reduce rows: reduceAxis (sum, mean as scale 1/n, NaN-propagating max), reduceExpand and maxBackward
// (src/kernels/reduce.ts) against test/reference/reduce.ts, on [outer, n, inner] views of the reductions the ops
// make: along the last axis (one workgroup per row), along a middle or first axis (one invocation per column),
// over everything, a single row past 65536 (two passes: ragged chunks of 4096, then the partials), an axis of
// size 1; the row sums and max under every row-reduction variant (test/kernels/row_variants.ts); a 2-D
// workgroup grid (grid.maxX 2).
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import { maxBackward, reduceAxis, reduceExpand, type ReduceCombine } from "../../../src/kernels/reduce.ts";
import * as ref from "../../reference/reduce.ts";
import { uniform } from "../../tensor/helpers.ts";
import { labelSuffix, type LauncherRow, type RowExtra } from "../harness.ts";
import { ROW_LENGTHS, ROW_VARIANTS } from "../row_variants.ts";

type Dims = [outer: number, n: number, inner: number];
type Op = "sum" | "mean" | "max";
const fmt = ([a, n, i]: Dims) => `[${a}, ${n}, ${i}]`;
/** `nan`: a NaN in the middle of outer row 1 (max must propagate it). */
const suffix = (e: RowExtra) => `${e.nan ? " with a NaN" : ""}${labelSuffix(e)}`;

function axisRow(op: Op, dims: Dims, e: RowExtra = {}): LauncherRow {
  const [outer, n, inner] = dims;
  const combine: ReduceCombine = op === "max" ? "max" : "sum";
  const o = { outer, n, inner, scale: op === "mean" ? 1 / n : 1, combine, name: op };
  return {
    family: "reduce",
    name: `reduce reduceAxis ${op} ${fmt(dims)}${suffix(e)}`,
    variant: e.variant,
    skip: e.skip,
    async run(gpu, io, r) {
      const X = uniform(r, outer * n * inner, -3, 3);
      if (e.nan) X[Math.min(outer - 1, 1) * n * inner + (n >> 1) * inner] = NaN;
      const dst = io.output(outer * inner);
      reduceAxis(gpu, { src: io.input(X), dst }, o);
      const want = ref.reduceAxis({ src: X }, o);
      const tol = op === "max" ? { rtol: 0, atol: 0 } : { mag: want.dstMag };
      return [{ what: "dst", got: await io.read(dst, outer * inner), ref: want.dst, opts: tol }];
    },
  };
}

function expandRow(op: "sum" | "mean", dims: Dims, e: RowExtra = {}): LauncherRow {
  const [outer, n, inner] = dims;
  const o = { outer, n, inner, scale: op === "mean" ? 1 / n : 1, name: `${op}.backward` };
  return {
    family: "reduce",
    name: `reduce reduceExpand ${op} ${fmt(dims)}${suffix(e)}`,
    variant: e.variant,
    async run(gpu, io, r) {
      const S = uniform(r, outer * inner);
      const dst = io.output(outer * n * inner);
      reduceExpand(gpu, { src: io.input(S), dst }, o);
      return [{ what: "dst", got: await io.read(dst, outer * n * inner), ref: ref.reduceExpand({ src: S }, o).dst }];
    },
  };
}

/** Values on a coarse grid (multiples of 1/4 in [-1, 1]), so most columns tie for their max. */
function maxBackwardRow(dims: Dims, e: RowExtra = {}): LauncherRow {
  const [outer, n, inner] = dims;
  return {
    family: "reduce",
    name: `reduce maxBackward ${fmt(dims)} ties${suffix(e)}`,
    variant: e.variant,
    async run(gpu, io, r) {
      const X = uniform(r, outer * n * inner, -1, 1).map((v) => Math.round(4 * v) / 4);
      if (e.nan) X[Math.floor(r() * X.length)] = Number.NaN; // its column's max is NaN: the gradient goes to the NaN (torch.amax)
      const m = ref.reduceAxis({ src: X }, { outer, n, inner, scale: 1, combine: "max", name: "max" }).dst;
      const G = uniform(r, outer * inner);
      const dx = io.output(outer * n * inner);
      maxBackward(gpu, { x: io.input(X), m: io.input(m), gout: io.input(G), dx }, { outer, n, inner });
      return [{ what: "dx", got: await io.read(dx, outer * n * inner), ref: ref.maxBackward({ x: X, m, gout: G }, { outer, n, inner }).dx }];
    },
  };
}

export const rows: LauncherRow[] = [];

// The reductions the ops make, as [outer, n, inner]: sum(x, axis) and mean(x, axis) of reduce.test.ts's shapes.
const AXIS: Dims[] = [
  [1, 37, 1], // [37] axis 0
  [5, 300, 1], // [5, 300] axis 1: rows longer than a workgroup
  [1, 300, 7], // [300, 7] axis 0: columns, 7 outputs
  [3, 50, 7], // [3, 50, 7] axis 1: a middle axis
  [1, 3, 350], // axis 0
  [150, 7, 1], // axis 2
  [2, 1, 3], // an axis of size 1
  [1000, 3, 1], // 1000 rows of 3
  // over everything: [1] (and a 0-d tensor), [3, 5, 7], [1000], [257, 3]
  [1, 1, 1],
  [1, 105, 1],
  [1, 1000, 1],
  [1, 771, 1],
  [1, 70001, 1], // two passes: ragged chunks of 4096, then 18 partial sums
];
for (const op of ["sum", "mean", "max"] as const) for (const d of AXIS) rows.push(axisRow(op, d));
rows.push(axisRow("max", [3, 50, 7], { nan: true }), axisRow("max", [1, 70001, 1], { nan: true }));

// Every row-reduction variant: sums and NaN-propagating max over rows shorter than, equal to and longer than the workgroup.
for (const rv of ROW_VARIANTS)
  for (const n of ROW_LENGTHS) {
    const e = { variant: rv.variant, label: rv.label, skip: rv.skip };
    rows.push(axisRow("sum", [5, n, 1], e), axisRow("max", [5, n, 1], { ...e, nan: true }));
  }

// The backward of sum and mean, and of max with ties.
for (const op of ["sum", "mean"] as const) for (const d of AXIS) rows.push(expandRow(op, d));
for (const d of [[4, 9, 1], [2, 5, 3], [1, 300, 7], [3, 1, 4]] as Dims[]) rows.push(maxBackwardRow(d));
rows.push(maxBackwardRow([4, 9, 1], { nan: true }), maxBackwardRow([2, 5, 3], { nan: true }));

// A 2-D grid of workgroups (x capped at 2).
const grid = { variant: { grid: { maxX: 2 } }, label: "grid.maxX 2" };
rows.push(axisRow("sum", [5, 40, 1], grid), expandRow("sum", [5, 40, 1], grid)); // 5 row-workgroups on a 2x3 grid, one idle
rows.push(axisRow("mean", [1, 40, 700], grid), expandRow("mean", [1, 40, 700], grid)); // 700 columns: 3 workgroups
rows.push(axisRow("sum", [1, 70001, 1], grid), expandRow("sum", [1, 70001, 1], grid)); // 18 chunk-workgroups on a 2x9 grid
rows.push(axisRow("max", [5, 40, 1], { ...grid, nan: true }));
rows.push(maxBackwardRow([3, 300, 1], grid));

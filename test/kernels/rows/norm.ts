// norm rows: normForward, normDx and normParamGrads (src/kernels/norm.ts) against test/reference/norm.ts, for
// rmsnorm (with and without Gemma's unit offset) and layernorm (with and without bias): row lengths 1, 7, 13,
// 300 and 4096 under the device's default reduction; forward and dx under every row-reduction variant
// (test/kernels/row_variants.ts); the parameter gradient over ragged row chunks and the most chunks
// (policy.norm); a 2-D workgroup grid (grid.maxX 2); large and zero eps; NaN in x and gout. dx and the parameter gradients read
// the reference forward's stats (rounded to f32), so each launcher is checked on its own. normDx's `accumulate` (dx +=,
// the prior dx random, not poisoned: an input) for every norm on the same shapes, every row-reduction variant and
// NaN. addRmsnormForward (the
// residual add fused into RMSNorm, with and without the unit offset): the same shapes, every row-reduction variant,
// a 2-D grid and NaN in x or res.
// The row entries (forward, dx, accumulate, addRmsnormForward) move rows in vec4s when d % 4 == 0 (define VEC) and in
// f32 otherwise: besides the shapes above (300, 4096, 8 and 20 take the vec4 variant; 1, 5, 7 and 13 the scalar one),
// d = 4 (one vec4 per row), 12 (fewer vec4s than the workgroup), 36 (9 vec4s, ragged over an 8-wide workgroup) next to
// d = 6 and 10 (scalar), every norm and every row-reduction variant.
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import { addRmsnormForward, normDx, normForward, normParamGrads, type NormOptions } from "../../../src/kernels/norm.ts";
import * as ref from "../../reference/norm.ts";
import { uniform } from "../../tensor/helpers.ts";
import { f32, type Check, type LauncherRow } from "../harness.ts";
import { ROW_LENGTHS, ROW_VARIANTS } from "../row_variants.ts";

/** The four norms the ops build: kind, unit offset, bias. */
const KINDS = {
  rmsnorm: { kind: "rmsnorm", unitOffset: false, bias: false, eps: 1e-6 },
  rmsnorm_unit: { kind: "rmsnorm", unitOffset: true, bias: false, eps: 1e-6 },
  layernorm: { kind: "layernorm", unitOffset: false, bias: true, eps: 1e-5 },
  layernorm_nobias: { kind: "layernorm", unitOffset: false, bias: false, eps: 1e-5 },
} as const;
type Kind = keyof typeof KINDS;
type Launcher = "normForward" | "normDx" | "normParamGrads";
const LAUNCHERS: Launcher[] = ["normForward", "normDx", "normParamGrads"];

/** Seeded inputs as the op tests draw them, the reference forward, and its stats rounded to f32 (what dx reads). */
function inputs(r: () => number, o: NormOptions, nan = false) {
  const x = uniform(r, o.rows * o.d, -2, 2.5);
  const w = uniform(r, o.d, 0.5, 1.5);
  const b = o.bias ? uniform(r, o.d) : undefined;
  const gout = uniform(r, o.rows * o.d);
  if (nan) (x[Math.min(1, o.rows - 1) * o.d + (o.d >> 1)] = NaN), (gout[o.rows * o.d - 1] = NaN); // a row of x, an element of gout
  const fwd = ref.normForward({ x, w, b }, o);
  return { x, w, b, gout, fwd, stats: Float64Array.from(new Float32Array(fwd.stats)) };
}

function row(
  launcher: Launcher,
  k: Kind,
  rows: number,
  d: number,
  extra: { eps?: number; variant?: PartialPolicy; label?: string; skip?: LauncherRow["skip"]; nan?: boolean; acc?: boolean } = {},
): LauncherRow {
  const o: NormOptions = { rows, d, ...KINDS[k], eps: extra.eps ?? KINDS[k].eps };
  const epsTag = extra.eps === undefined ? "" : ` eps ${extra.eps}`;
  return {
    family: "norm",
    name: `norm ${launcher} ${k} [${rows}, ${d}]${epsTag}${extra.nan ? " with NaN" : ""}${extra.acc ? " accumulate" : ""}${extra.label ? ` (${extra.label})` : ""}`,
    variant: extra.variant,
    skip: extra.skip,
    async run(gpu, io, r): Promise<Check[]> {
      const v = inputs(r, o, extra.nan);
      const [x, w, gout, stats] = [io.input(v.x), io.input(v.w), io.input(v.gout), io.input(v.stats)];
      if (launcher === "normForward") {
        const [y, st] = [io.output(rows * d), io.output(rows * 2)];
        normForward(gpu, { x, w, b: v.b && io.input(v.b), y, stats: st }, o);
        return [
          { what: "y", got: await io.read(y, rows * d), ref: v.fwd.y, opts: { mag: v.fwd.yMag } },
          { what: "stats", got: await io.read(st, rows * 2), ref: v.fwd.stats, opts: { mag: v.fwd.statsMag } },
        ];
      }
      if (launcher === "normDx") {
        const prior = extra.acc ? f32(uniform(r, rows * d)) : undefined; // accumulate: dx's prior contents, an input
        const dx = prior ? io.input(prior) : io.output(rows * d);
        normDx(gpu, { x, w, gout, stats, dx }, o, extra.acc);
        const want = ref.normDx({ x: v.x, w: v.w, gout: v.gout, stats: v.stats, acc: prior }, o);
        return [{ what: "dx", got: await io.read(dx, rows * d), ref: want.dx, opts: { mag: want.dxMag } }];
      }
      const [dw, db] = [io.output(d), o.bias ? io.output(d) : undefined];
      normParamGrads(gpu, { x, gout, stats, dw, db }, o);
      const want = ref.normParamGrads({ x: v.x, gout: v.gout, stats: v.stats }, o);
      const checks: Check[] = [{ what: "dw", got: await io.read(dw, d), ref: want.dw, opts: { mag: want.dwMag } }];
      if (db) checks.push({ what: "db", got: await io.read(db, d), ref: want.db!, opts: { mag: want.dbMag } });
      return checks;
    },
  };
}

export const rows: LauncherRow[] = [];

// The default reduction; up to 256 rows the parameter gradient is one pass, [300, 5] takes the chunked two passes.
const SHAPES: [number, number][] = [[1, 7], [3, 7], [5, 1], [6, 300], [2, 4096], [37, 13], [300, 5]];
for (const k of Object.keys(KINDS) as Kind[]) for (const [n, d] of SHAPES) for (const l of LAUNCHERS) rows.push(row(l, k, n, d));

// normDx accumulating into a prior dx: every norm and shape, every row-reduction variant, NaN.
for (const k of Object.keys(KINDS) as Kind[]) for (const [n, d] of SHAPES) rows.push(row("normDx", k, n, d, { acc: true }));
for (const rv of ROW_VARIANTS) {
  for (const d of ROW_LENGTHS) rows.push(row("normDx", "rmsnorm", 5, d, { variant: rv.variant, label: rv.label, skip: rv.skip, acc: true }));
  rows.push(row("normDx", "layernorm", 3, 300, { variant: rv.variant, label: rv.label, skip: rv.skip, nan: true, acc: true }));
}

// Every row-reduction variant: forward and dx, rows shorter than, equal to and longer than the workgroup.
for (const rv of ROW_VARIANTS)
  for (const k of ["rmsnorm", "layernorm_nobias"] as const)
    for (const d of ROW_LENGTHS)
      for (const l of ["normForward", "normDx"] as const) rows.push(row(l, k, 5, d, { variant: rv.variant, label: rv.label, skip: rv.skip }));

// The parameter gradient over ragged chunks (singlePassRows 0: the default sums up to 256 rows in one pass).
rows.push(row("normParamGrads", "layernorm", 37, 13, { variant: { norm: { singlePassRows: 0, minChunk: 4 } }, label: "chunks of 4, the last of 1" }));
rows.push(row("normParamGrads", "rmsnorm_unit", 37, 13, { variant: { norm: { singlePassRows: 0, minChunk: 4 } }, label: "chunks of 4, the last of 1" }));
rows.push(row("normParamGrads", "layernorm", 37, 13, { variant: { norm: { singlePassRows: 0, minChunk: 1, maxChunks: 5 } }, label: "5 chunks of 8, the last of 5" }));
rows.push(row("normParamGrads", "rmsnorm", 37, 13, { variant: { norm: { singlePassRows: 0, minChunk: 1, maxChunks: 1000 } }, label: "one row per chunk" }));

// A 2-D grid of workgroups (x capped at 2): 5 row-workgroups on a 2x3 grid, one idle; 300 columns.
for (const l of LAUNCHERS) {
  rows.push(row(l, "layernorm", 5, 300, { variant: { grid: { maxX: 2 } }, label: "grid.maxX 2" }));
  rows.push(row(l, "rmsnorm", 7, 3, { variant: { grid: { maxX: 2 } }, label: "grid.maxX 2" }));
}

// NaN propagation (plain arithmetic: a NaN in a row of x makes that row NaN, and the parameter gradients), every norm,
// every row-reduction variant.
for (const rv of ROW_VARIANTS)
  for (const k of Object.keys(KINDS) as Kind[]) for (const l of LAUNCHERS) rows.push(row(l, k, 3, 300, { variant: rv.variant, label: rv.label, skip: rv.skip, nan: true }));

// eps as the reference computes it: large, and 0 on rows away from zero.
for (const l of LAUNCHERS) {
  rows.push(row(l, "rmsnorm", 3, 20, { eps: 0.5 }));
  rows.push(row(l, "layernorm", 3, 20, { eps: 2 }));
  rows.push(row(l, "rmsnorm", 3, 20, { eps: 0 }));
}

// addRmsnormForward: sum = x + res written, and the RMSNorm of sum (against the reference's sum, not the f32 one).
function addRow(k: "rmsnorm" | "rmsnorm_unit", rows: number, d: number, extra: { variant?: PartialPolicy; label?: string; skip?: LauncherRow["skip"]; nan?: boolean } = {}): LauncherRow {
  const o: NormOptions = { rows, d, ...KINDS[k] };
  return {
    family: "norm",
    name: `norm addRmsnormForward ${k} [${rows}, ${d}]${extra.nan ? " with NaN" : ""}${extra.label ? ` (${extra.label})` : ""}`,
    variant: extra.variant,
    skip: extra.skip,
    async run(gpu, io, r): Promise<Check[]> {
      const x = uniform(r, rows * d, -2, 2.5);
      const res = uniform(r, rows * d, -1.5, 1.5);
      const w = uniform(r, d, 0.5, 1.5);
      if (extra.nan) (x[Math.min(1, rows - 1) * d + (d >> 1)] = NaN), (res[0] = NaN); // a row of x, the first of res
      const want = ref.addRmsnormForward({ x, res, w }, o);
      const [sum, y, st] = [io.output(rows * d), io.output(rows * d), io.output(rows * 2)];
      addRmsnormForward(gpu, { x: io.input(x), res: io.input(res), w: io.input(w), sum, y, stats: st }, o);
      return [
        { what: "sum", got: await io.read(sum, rows * d), ref: want.sum, opts: { mag: want.sumMag } },
        { what: "y", got: await io.read(y, rows * d), ref: want.y, opts: { mag: want.yMag } },
        { what: "stats", got: await io.read(st, rows * 2), ref: want.stats, opts: { mag: want.statsMag } },
      ];
    },
  };
}
for (const k of ["rmsnorm", "rmsnorm_unit"] as const) for (const [n, d] of SHAPES) rows.push(addRow(k, n, d));
for (const rv of ROW_VARIANTS) {
  for (const d of ROW_LENGTHS) rows.push(addRow("rmsnorm", 5, d, { variant: rv.variant, label: rv.label, skip: rv.skip }));
  rows.push(addRow("rmsnorm_unit", 3, 300, { variant: rv.variant, label: rv.label, skip: rv.skip, nan: true }));
}
rows.push(addRow("rmsnorm", 5, 300, { variant: { grid: { maxX: 2 } }, label: "grid.maxX 2" }));
rows.push(addRow("rmsnorm", 7, 3, { variant: { grid: { maxX: 2 } }, label: "grid.maxX 2" }));

// vec4 rows (d % 4 == 0) beside scalar ones (d % 4 != 0), every row entry: every norm on the default reduction, and
// rmsnorm / layernorm under every row-reduction variant.
const VEC_DS = [4, 12, 36, 6, 10];
for (const d of VEC_DS) {
  for (const k of Object.keys(KINDS) as Kind[]) {
    for (const l of ["normForward", "normDx"] as const) rows.push(row(l, k, 3, d));
    rows.push(row("normDx", k, 3, d, { acc: true }));
  }
  for (const k of ["rmsnorm", "rmsnorm_unit"] as const) rows.push(addRow(k, 3, d));
  for (const rv of ROW_VARIANTS) {
    const v = { variant: rv.variant, label: rv.label, skip: rv.skip };
    rows.push(row("normForward", "layernorm", 3, d, v), row("normDx", "rmsnorm_unit", 3, d, v), row("normDx", "layernorm", 3, d, { ...v, acc: true }));
    rows.push(addRow("rmsnorm", 3, d, v));
  }
}

// loss rows: the launchers of src/kernels/loss.ts against test/reference/loss.ts. crossEntropyForward /
// crossEntropyBackward on rows of 1 to 5000 classes, ignored rows (ignoreIndex -100 and inside [0, classes)),
// more rows than a workgroup (the mean), large logits (+-80), every target ignored (NaN loss, zero gradient),
// an invalid target (NaN), every row-reduction variant (test/kernels/row_variants.ts) and a 2-D grid of row
// workgroups; maskedMeanForward / maskedMeanBackward with an all-zero mask row and NaN in masked-out positions
// (never read); l2NormalizeForward / l2NormalizeBackward on rows of 1 to 5000, with zero and tiny rows (norm
// below and above eps); contract with the strides of the cosine-similarity matrix and both its gradients; and NaN
// propagation in each (NaN and +inf logits, a NaN in an ignored row, a NaN mask value, NaN rows of l2).
// Backwards read the reference forward's statistics rounded to f32 (stats, inv), so each launcher is checked on
// its own. Tolerances: the loss op tests' (1e-6 + 1e-4 x, relative to sum|terms| where the reference gives it).
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import {
  contract,
  crossEntropyBackward,
  crossEntropyForward,
  l2NormalizeBackward,
  l2NormalizeForward,
  maskedMeanBackward,
  maskedMeanForward,
  type ContractOptions,
  type CrossEntropyLaunchOptions,
} from "../../../src/kernels/loss.ts";
import * as ref from "../../reference/loss.ts";
import { uniform } from "../../tensor/helpers.ts";
import { f32, labelSuffix, type Check, type LauncherRow, type RowExtra } from "../harness.ts";
import { ROW_LENGTHS, ROW_VARIANTS } from "../row_variants.ts";



// ---- cross-entropy ------------------------------------------------------------------------------------

interface CECase {
  rows: number;
  classes: number;
  ignore?: number;
  /** Every ignoreEvery-th row (i % ignoreEvery == 1) is ignored; "all": every row. */
  ignoreEvery?: number | "all";
  /** Row 1 gets target `classes` (out of range). */
  invalid?: boolean;
  range?: number;
  /**
   * "kept": a NaN logit in row 0 and a +inf in row 2 (torch: those rows' loss and gradient NaN, so the loss NaN);
   * "ignored": a NaN logit in row 1, an ignored row (the loss stays finite; that row's gradient is NaN, as torch's).
   */
  nan?: "kept" | "ignored";
}

/** Targets: random classes other than the ignore index, every ignoreEvery-th row ignored. */
function makeTargets(r: () => number, c: CECase, ignore: number): Int32Array {
  const t = new Int32Array(c.rows);
  for (let i = 0; i < c.rows; i++) {
    const ignored = c.ignoreEvery === "all" || (c.ignoreEvery !== undefined && i % c.ignoreEvery === 1);
    t[i] = ignored ? ignore : Math.floor(r() * c.classes);
    if (!ignored && t[i] === ignore) t[i] = (ignore + 1) % c.classes;
  }
  if (c.invalid) t[1] = c.classes;
  return t;
}

function ceRow(launcher: "crossEntropyForward" | "crossEntropyBackward", c: CECase, e: RowExtra = {}): LauncherRow {
  const o: CrossEntropyLaunchOptions = { rows: c.rows, classes: c.classes, ignoreIndex: c.ignore ?? -100 };
  const range = c.range ?? 3;
  const ign = c.ignoreEvery === undefined ? "" : c.ignoreEvery === "all" ? ", all ignored" : `, every ${c.ignoreEvery}th ignored`;
  return {
    family: "loss",
    name: `loss ${launcher} [${c.rows}, ${c.classes}] ignore ${o.ignoreIndex}${ign}${c.invalid ? ", an invalid target" : ""}, logits in +-${range}${c.nan ? `, NaN in ${c.nan} rows` : ""}${labelSuffix(e)}`,
    variant: e.variant,
    skip: e.skip,
    async run(gpu, io, r): Promise<Check[]> {
      const n = c.rows * c.classes;
      const X = uniform(r, n, -range, range);
      if (c.nan === "kept") (X[1] = NaN), (X[2 * c.classes] = Infinity);
      if (c.nan === "ignored") X[c.classes + 1] = NaN;
      const T = makeTargets(r, c, o.ignoreIndex);
      const fwd = ref.crossEntropyForward({ logits: X, targets: T }, o);
      const [x, t] = [io.input(X), io.input(T)];
      if (launcher === "crossEntropyForward") {
        const [loss, stats] = [io.output(1), io.output(2 * c.rows + 1)];
        crossEntropyForward(gpu, { logits: x, targets: t, loss, stats }, o);
        // m of a row whose s is NaN is unspecified (test/reference/loss.ts): left out.
        const shown = (i: number) => !(i < 2 * c.rows && i % 2 === 0 && Number.isNaN(fwd.stats[i + 1]!));
        const pick = (a: ArrayLike<number>) => Float64Array.from(a).filter((_, i) => shown(i));
        return [
          { what: "loss", got: await io.read(loss, 1), ref: fwd.loss },
          { what: "stats (m, s per row; kept)", got: pick(await io.read(stats, 2 * c.rows + 1)), ref: pick(fwd.stats), opts: { rtol: 1e-5 } },
        ];
      }
      const stats = f32(fwd.stats);
      const dloss = Float64Array.of(Math.fround(0.5 + r()));
      const dlogits = io.output(n);
      crossEntropyBackward(gpu, { logits: x, targets: t, stats: io.input(stats), dloss: io.input(dloss), dlogits }, o);
      const want = ref.crossEntropyBackward({ logits: X, targets: T, stats, dloss }, o);
      return [{ what: "dlogits", got: await io.read(dlogits, n), ref: want.dlogits, opts: { mag: want.dlogitsMag } }];
    },
  };
}

// ---- masked mean --------------------------------------------------------------------------------------

/** nan: a NaN in x at a kept position of batch 0, and a NaN mask value in batch B - 1 (it counts: NaN mean). */
function maskedMeanRow(launcher: "maskedMeanForward" | "maskedMeanBackward", B: number, T: number, D: number, e: RowExtra & { nan?: boolean } = {}): LauncherRow {
  const o = { B, T, D };
  return {
    family: "loss",
    name: `loss ${launcher} [${B}, ${T}, ${D}]${e.nan ? " with NaN in x and mask" : ""}${labelSuffix(e)}`,
    variant: e.variant,
    skip: e.skip,
    async run(gpu, io, r): Promise<Check[]> {
      const X = uniform(r, B * T * D);
      const Mk = new Float64Array(B * T).map(() => (r() < 0.6 ? 1 : 0));
      if (B > 1) Mk.fill(0, T, 2 * T); // row 1: an empty mask
      for (let i = 0; i < X.length; i++) if (!Mk[Math.floor(i / D)]) X[i] = Number.NaN; // garbage where masked out
      if (e.nan) {
        Mk[0] = 1;
        X[1] = NaN; // batch 0, position 0 (kept), feature 1
        Mk[B * T - 1] = NaN; // batch B - 1, its last position
      }
      const fwd = ref.maskedMeanForward({ x: X, mask: Mk }, o);
      const mask = io.input(Mk);
      if (launcher === "maskedMeanForward") {
        const [out, inv] = [io.output(B * D), io.output(B)];
        maskedMeanForward(gpu, { x: io.input(X), mask, out, inv }, o);
        return [
          { what: "out", got: await io.read(out, B * D), ref: fwd.out, opts: { mag: fwd.outMag } },
          { what: "inv", got: await io.read(inv, B), ref: fwd.inv },
        ];
      }
      const inv = f32(fwd.inv);
      const G = uniform(r, B * D);
      const dx = io.output(B * T * D);
      maskedMeanBackward(gpu, { dout: io.input(G), mask, inv: io.input(inv), dx }, o);
      return [{ what: "dx", got: await io.read(dx, B * T * D), ref: ref.maskedMeanBackward({ dout: G, mask: Mk, inv }, o).dx }];
    },
  };
}

// ---- l2 normalize -------------------------------------------------------------------------------------

/** nan: a NaN in row min(1, rows - 1) (the row NaN, as F.normalize) and, backward, in dy of the last row. */
function l2Row(launcher: "l2NormalizeForward" | "l2NormalizeBackward", rows: number, n: number, special = false, e: RowExtra & { nan?: boolean } = {}): LauncherRow {
  const o = { rows, n, eps: 1e-12 };
  return {
    family: "loss",
    name: `loss ${launcher} [${rows}, ${n}]${special ? " zero and tiny rows" : ""}${e.nan ? " with NaN" : ""}${labelSuffix(e)}`,
    variant: e.variant,
    skip: e.skip,
    async run(gpu, io, r): Promise<Check[]> {
      const X = uniform(r, rows * n, -2, 2);
      if (special) {
        X.fill(0, 0, n); // norm 0
        X.fill(Math.fround(1e-15), n, 2 * n); // norm < eps = 1e-12
        X.fill(Math.fround(1e-10), 2 * n, 3 * n); // norm > eps, tiny
      }
      if (e.nan) X[Math.min(1, rows - 1) * n] = NaN;
      const x = io.input(X);
      if (launcher === "l2NormalizeForward") {
        const y = io.output(rows * n);
        l2NormalizeForward(gpu, { x, y }, o);
        return [{ what: "y", got: await io.read(y, rows * n), ref: ref.l2NormalizeForward({ x: X }, o).y }];
      }
      const G = uniform(r, rows * n);
      if (e.nan) G[rows * n - 1] = NaN;
      const dx = io.output(rows * n);
      l2NormalizeBackward(gpu, { x, dy: io.input(G), dx }, o);
      const want = ref.l2NormalizeBackward({ x: X, dy: G }, o);
      return [{ what: "dx", got: await io.read(dx, rows * n), ref: want.dx, opts: { mag: want.dxMag } }];
    },
  };
}

// ---- contract -----------------------------------------------------------------------------------------

/** The three products of cosineSimilarityMatrix(a [N, D], b [M, D]): out, and the gradients of a and b. */
/** nan: a NaN in lhs[0] and rhs[last] (the outputs that sum them NaN). */
function contractRow(which: "out" | "grad_a" | "grad_b", N: number, M: number, D: number, e: RowExtra & { nan?: boolean } = {}): LauncherRow {
  const s: Omit<ContractOptions, "name"> =
    which === "out"
      ? { rows: N, cols: M, depth: D, lr: D, lk: 1, rk: 1, rc: D } // a [N, D] · b [M, D]ᵀ
      : which === "grad_a"
        ? { rows: N, cols: D, depth: M, lr: M, lk: 1, rk: D, rc: 1 } // g [N, M] · b [M, D]
        : { rows: M, cols: D, depth: N, lr: 1, lk: M, rk: D, rc: 1 }; // g [N, M]ᵀ · a [N, D]
  const [lhsN, rhsN] = which === "out" ? [N * D, M * D] : which === "grad_a" ? [N * M, M * D] : [N * M, N * D];
  return {
    family: "loss",
    name: `loss contract ${which} of a [${N}, ${D}], b [${M}, ${D}]${e.nan ? " with NaN" : ""}${labelSuffix(e)}`,
    variant: e.variant,
    skip: e.skip,
    async run(gpu, io, r): Promise<Check[]> {
      const [L, R] = [uniform(r, lhsN), uniform(r, rhsN)];
      if (e.nan) (L[0] = NaN), (R[rhsN - 1] = NaN);
      const out = io.output(s.rows * s.cols);
      contract(gpu, { lhs: io.input(L), rhs: io.input(R), out }, { ...s, name: "contract.row" });
      const want = ref.contract({ lhs: L, rhs: R }, s);
      return [{ what: "out", got: await io.read(out, s.rows * s.cols), ref: want.out, opts: { mag: want.outMag } }];
    },
  };
}

// ---- the table ----------------------------------------------------------------------------------------

export const rows: LauncherRow[] = [];
const CE = ["crossEntropyForward", "crossEntropyBackward"] as const;

// The loss op tests' cases.
const CE_CASES: CECase[] = [
  { rows: 1, classes: 1 },
  { rows: 6, classes: 7, ignoreEvery: 3 },
  { rows: 5, classes: 300, ignoreEvery: 2 },
  { rows: 3, classes: 5000, ignoreEvery: 3 },
  { rows: 300, classes: 11, ignoreEvery: 7 }, // more rows than a workgroup (the mean)
  { rows: 8, classes: 13, ignore: 0, ignoreEvery: 2 }, // an ignoreIndex inside [0, classes)
  { rows: 4, classes: 37, ignore: 5, ignoreEvery: 2 },
  { rows: 4, classes: 37, ignoreEvery: 3, range: 80 }, // large logits
  { rows: 2, classes: 5000, range: 80 },
  { rows: 3, classes: 5, ignoreEvery: "all" }, // NaN loss, zero gradient (PyTorch 1.13)
  { rows: 3, classes: 5, invalid: true }, // NaN loss, NaN gradient in the invalid row
];
for (const c of CE_CASES) for (const l of CE) rows.push(ceRow(l, c));
for (const rv of ROW_VARIANTS)
  for (const n of ROW_LENGTHS) for (const l of CE) rows.push(ceRow(l, { rows: 5, classes: n, ignoreEvery: 3 }, { variant: rv.variant, skip: rv.skip, label: rv.label }));
const grid2 = { variant: { grid: { maxX: 2 } }, label: "grid.maxX 2" };
for (const l of CE) rows.push(ceRow(l, { rows: 7, classes: 9, ignoreEvery: 3 }, grid2));

for (const [B, T, D] of [[1, 1, 1], [3, 5, 7], [2, 9, 300], [4, 30, 70]] as const)
  for (const l of ["maskedMeanForward", "maskedMeanBackward"] as const) rows.push(maskedMeanRow(l, B, T, D));
const grid1 = { variant: { grid: { maxX: 1 } }, label: "grid.maxX 1" };
for (const l of ["maskedMeanForward", "maskedMeanBackward"] as const) rows.push(maskedMeanRow(l, 3, 5, 7, grid1));

const L2_SHAPES: [number, number, boolean][] = [[3, 1, false], [4, 7, false], [3, 300, false], [2, 5000, false], [4, 9, true]];
for (const [m, n, special] of L2_SHAPES)
  for (const l of ["l2NormalizeForward", "l2NormalizeBackward"] as const) rows.push(l2Row(l, m, n, special));

for (const [N, M, D] of [[5, 3, 7], [4, 6, 300], [1, 1, 1], [6, 6, 33], [3, 4, 5]] as const)
  for (const w of ["out", "grad_a", "grad_b"] as const) rows.push(contractRow(w, N, M, D));
rows.push(contractRow("out", 5, 9, 4, grid1));

// NaN propagation (NaN exactly where the reference, torch's rule, has NaN): cross-entropy with NaN and +inf logits in
// kept rows and a NaN in an ignored row (every row-reduction variant), masked mean, l2 normalization, contract.
for (const rv of ROW_VARIANTS)
  for (const nan of ["kept", "ignored"] as const)
    for (const l of CE) rows.push(ceRow(l, { rows: 6, classes: 7, ignoreEvery: 3, nan }, { variant: rv.variant, skip: rv.skip, label: rv.label }));
for (const l of CE) rows.push(ceRow(l, { rows: 3, classes: 300, ignoreEvery: 3, nan: "kept" }));
for (const l of ["maskedMeanForward", "maskedMeanBackward"] as const) rows.push(maskedMeanRow(l, 3, 5, 7, { nan: true }));
for (const l of ["l2NormalizeForward", "l2NormalizeBackward"] as const) rows.push(l2Row(l, 3, 300, false, { nan: true }));
for (const w of ["out", "grad_a", "grad_b"] as const) rows.push(contractRow(w, 5, 3, 7, { nan: true }));

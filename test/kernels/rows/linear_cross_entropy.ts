// linear_cross_entropy rows: the launchers of src/kernels/linear_cross_entropy.ts against
// test/reference/linear_cross_entropy.ts. lceChunkStats on a first chunk and on a later one (merged into earlier
// statistics whose max is above, below and equal to the chunk's; targets inside, before and after the chunk), on
// chunks of 1 to 4096 columns, every row-reduction variant and a 2-D grid of row workgroups; lceMean with ignored
// rows (ignoreIndex -100 and inside the vocabulary), more rows than a workgroup, every row ignored (NaN) and an
// invalid target (x_t never taken: NaN); lceChunkGrad on first, middle and last chunks of 1 to 4096 columns, with
// ignored rows and an invalid target, every row-reduction variant (its workgroup size) and a 2-D grid;
// and NaN propagation in each (a NaN and a +inf logit in kept rows, a NaN in an ignored row, a NaN already in the
// earlier statistics). Each launcher is checked on its own: later launchers read the reference's statistics rounded
// to f32. Tolerances: the cross-entropy rows' (1e-6 + 1e-4 x; statistics 1e-5 relative).
import { lceChunkGrad, lceChunkStats, lceMean, type LceChunkOptions } from "../../../src/kernels/linear_cross_entropy.ts";
import * as ref from "../../reference/linear_cross_entropy.ts";
import { uniform } from "../../tensor/helpers.ts";
import { f32, labelSuffix, type Check, type LauncherRow, type RowExtra } from "../harness.ts";
import { ROW_LENGTHS, ROW_VARIANTS } from "../row_variants.ts";

interface Case {
  rows: number;
  cols: number;
  /** The chunk's first column; the vocabulary is col0 + cols + tail. */
  col0?: number;
  tail?: number;
  ignore?: number;
  /** Every ignoreEvery-th row (i % ignoreEvery == 1) is ignored; "all": every row. */
  ignoreEvery?: number | "all";
  /** Row 1 gets target `vocab` (out of range). */
  invalid?: boolean;
  /**
   * "kept": a NaN logit in row 0 and a +inf in row 2; "ignored": a NaN logit in row 1 (ignored);
   * "earlier": row 0's earlier S is NaN (lceChunkStats on a later chunk keeps it NaN).
   */
  nan?: "kept" | "ignored" | "earlier";
}

const vocabOf = (c: Case) => (c.col0 ?? 0) + c.cols + (c.tail ?? 0);

/** Targets over the whole vocabulary, a third of them inside the chunk; every ignoreEvery-th row ignored. */
function makeTargets(r: () => number, c: Case, ignore: number): Int32Array {
  const V = vocabOf(c);
  const col0 = c.col0 ?? 0;
  const t = new Int32Array(c.rows);
  for (let i = 0; i < c.rows; i++) {
    const ignored = c.ignoreEvery === "all" || (c.ignoreEvery !== undefined && i % c.ignoreEvery === 1);
    t[i] = ignored ? ignore : i % 3 === 0 ? col0 + Math.floor(r() * c.cols) : Math.floor(r() * V);
    if (!ignored && t[i] === ignore) t[i] = (ignore + 1) % V;
  }
  if (c.invalid) t[1] = V;
  return t;
}

/**
 * Statistics after earlier chunks (what a later chunk merges into, and what lceMean reads): maxes above, below and
 * inside the chunk's range, x_t a value (NaN for the invalid target's row, never taken). NaN: "earlier" makes row
 * 0's S NaN; for lceMean (`mean`), "kept" makes rows 0 and 2's S NaN and "ignored" row 1's.
 */
function earlierStats(r: () => number, c: Case, mean = false): Float64Array {
  const s = new Float64Array(3 * c.rows + 1);
  for (let i = 0; i < c.rows; i++) {
    s[3 * i] = [-2, 0.5, 3, 6][i % 4]!;
    s[3 * i + 1] = 0.5 + 20 * r();
    s[3 * i + 2] = -1 + 8 * r();
  }
  if (c.invalid) s[3 * 1 + 2] = NaN;
  if (c.nan === "earlier" || (mean && c.nan === "kept")) s[1] = NaN;
  if (mean && c.nan === "kept" && c.rows > 2) s[7] = NaN;
  if (mean && c.nan === "ignored") s[4] = NaN;
  return f32(s);
}

function row(launcher: "lceChunkStats" | "lceMean" | "lceChunkGrad", c: Case, e: RowExtra & { first?: boolean } = {}): LauncherRow {
  const V = vocabOf(c);
  const o: LceChunkOptions = { rows: c.rows, cols: c.cols, col0: c.col0 ?? 0, vocab: V, ignoreIndex: c.ignore ?? -100 };
  const first = e.first ?? o.col0 === 0;
  const ign = c.ignoreEvery === undefined ? "" : c.ignoreEvery === "all" ? ", all ignored" : `, every ${c.ignoreEvery}th ignored`;
  const shape = `[${c.rows}, ${c.cols}] at column ${o.col0} of ${V}${launcher === "lceChunkStats" ? (first ? " (first)" : " (later)") : ""}`;
  return {
    family: "linear_cross_entropy",
    name: `linear_cross_entropy ${launcher} ${shape} ignore ${o.ignoreIndex}${ign}${c.invalid ? ", an invalid target" : ""}${c.nan ? `, NaN in ${c.nan} rows` : ""}${labelSuffix(e)}`,
    variant: e.variant,
    skip: e.skip,
    async run(gpu, io, r): Promise<Check[]> {
      const n = c.rows * c.cols;
      const X = uniform(r, n, -3, 3);
      if (c.nan === "kept") (X[1 % n] = NaN), c.rows > 2 && (X[2 * c.cols] = Infinity);
      if (c.nan === "ignored") X[c.cols] = NaN;
      const T = makeTargets(r, c, o.ignoreIndex);
      const t = io.input(T);
      const prev = first ? null : earlierStats(r, c);
      const stats = ref.lceChunkStats({ logits: X, targets: T, stats: prev }, { ...o, first }).stats;
      // M of a row whose S is NaN is unspecified: left out.
      const shown = (s: ArrayLike<number>) => (i: number) => !(i < 3 * c.rows && i % 3 === 0 && Number.isNaN(s[i + 1]!));
      if (launcher === "lceChunkStats") {
        const out = io.output(3 * c.rows + 1);
        if (prev) gpu.write(out, new Float32Array(prev));
        lceChunkStats(gpu, { logits: io.input(X), targets: t, stats: out }, { ...o, first });
        const got = (await io.read(out, 3 * c.rows + 1)).slice(0, 3 * c.rows);
        const keep = shown(stats);
        const pick = (a: ArrayLike<number>) => Float64Array.from(a).filter((_, i) => keep(i));
        return [{ what: "stats (M, S, x_t per row)", got: pick(got), ref: pick(stats.subarray(0, 3 * c.rows)), opts: { rtol: 1e-5 } }];
      }
      if (launcher === "lceMean") {
        const before = earlierStats(r, c, true);
        const done = ref.lceMean({ targets: T, stats: before }, o);
        const [loss, s] = [io.output(1), io.output(3 * c.rows + 1)];
        gpu.write(s, new Float32Array(before));
        lceMean(gpu, { targets: t, stats: s, loss }, o);
        return [
          { what: "loss", got: await io.read(loss, 1), ref: done.loss },
          { what: "kept", got: (await io.read(s, 3 * c.rows + 1)).slice(3 * c.rows), ref: done.stats.subarray(3 * c.rows) },
        ];
      }
      const done = ref.lceMean({ targets: T, stats }, o);
      const st = f32(done.stats);
      const dloss = Float64Array.of(Math.fround(0.5 + r()));
      const x = io.output(n);
      gpu.write(x, new Float32Array(X));
      lceChunkGrad(gpu, { logits: x, targets: t, stats: io.input(st), dloss: io.input(dloss) }, o);
      const want = ref.lceChunkGrad({ logits: X, targets: T, stats: st, dloss }, o);
      return [{ what: "dlogits", got: await io.read(x, n), ref: want.dlogits, opts: { mag: want.dlogitsMag } }];
    },
  };
}

export const rows: LauncherRow[] = [];
const ALL = ["lceChunkStats", "lceMean", "lceChunkGrad"] as const;

const CASES: Case[] = [
  { rows: 1, cols: 1 },
  { rows: 6, cols: 7, ignoreEvery: 3, tail: 5 },
  { rows: 6, cols: 7, col0: 9, tail: 4, ignoreEvery: 3 }, // a middle chunk
  { rows: 5, cols: 300, col0: 300, ignoreEvery: 2 }, // the last chunk
  { rows: 3, cols: 4096, col0: 4096, tail: 17, ignoreEvery: 3 },
  { rows: 300, cols: 11, col0: 11, tail: 11, ignoreEvery: 7 }, // more rows than a workgroup (the mean)
  { rows: 8, cols: 13, col0: 13, ignore: 0, ignoreEvery: 2 }, // an ignoreIndex inside the vocabulary
  { rows: 3, cols: 5, col0: 5, tail: 5, ignoreEvery: "all" }, // NaN loss, zero gradient
  { rows: 3, cols: 5, col0: 5, tail: 5, invalid: true }, // NaN loss, NaN gradient in the invalid row
];
for (const c of CASES) for (const l of ALL) rows.push(row(l, c));
rows.push(row("lceChunkStats", { rows: 6, cols: 7, ignoreEvery: 3, tail: 5 }, { first: false, label: "col0 0, merged into earlier stats" }));
for (const rv of ROW_VARIANTS)
  for (const n of ROW_LENGTHS) for (const first of [true, false]) rows.push(row("lceChunkStats", { rows: 5, cols: n, col0: first ? 0 : n, tail: 3, ignoreEvery: 3 }, { variant: rv.variant, skip: rv.skip, label: rv.label }));
for (const rv of ROW_VARIANTS) rows.push(row("lceMean", { rows: 300, cols: 3, col0: 3, ignoreEvery: 5 }, { variant: rv.variant, skip: rv.skip, label: rv.label }));
for (const rv of ROW_VARIANTS)
  for (const n of ROW_LENGTHS) rows.push(row("lceChunkGrad", { rows: 5, cols: n, col0: n, tail: 3, ignoreEvery: 3 }, { variant: rv.variant, skip: rv.skip, label: rv.label }));
const grid2 = { variant: { grid: { maxX: 2 } }, label: "grid.maxX 2" };
rows.push(row("lceChunkStats", { rows: 7, cols: 9, col0: 9, ignoreEvery: 3 }, grid2));
rows.push(row("lceChunkGrad", { rows: 7, cols: 9, col0: 9, ignoreEvery: 3 }, grid2));

// NaN propagation (NaN exactly where the reference, torch's rule, has NaN).
for (const rv of ROW_VARIANTS)
  for (const nan of ["kept", "ignored", "earlier"] as const)
    rows.push(row("lceChunkStats", { rows: 6, cols: 7, col0: 7, tail: 2, ignoreEvery: 3, nan }, { variant: rv.variant, skip: rv.skip, label: rv.label }));
for (const nan of ["kept", "ignored"] as const) for (const l of ALL) rows.push(row(l, { rows: 6, cols: 300, col0: 300, ignoreEvery: 3, nan }));

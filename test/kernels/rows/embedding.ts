// embedding rows: embeddingGather, embeddingSort and embeddingBackward (src/kernels/embedding.ts) against
// test/reference/embedding.ts: rows of d = 4k (moved as vec4) and other d, repeated ids (about half the
// positions name one of 3 hot rows) and rows never named, more ids than one 256-wide sort tile (ragged last
// tile), ids outside [0, v) (NaN rows, sorted first or last, no gradient), a 2-D workgroup grid
// (grid.maxX 2), and a NaN in the table and in the gradient. The backward reads the reference's sorted order, so each launcher is checked on its own.
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import { embeddingBackward, embeddingGather, embeddingSort, type EmbeddingDims } from "../../../src/kernels/embedding.ts";
import * as ref from "../../reference/embedding.ts";
import { uniform } from "../../tensor/helpers.ts";
import type { LauncherRow } from "../harness.ts";

/** Ids in [0, v) where about half the positions repeat one of 3 hot rows; with `bad`, every 5th id is -1 or v. */
function randomIds(r: () => number, n: number, v: number, bad: boolean): Int32Array {
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = Math.floor(r() * (r() < 0.5 ? Math.min(3, v) : v));
  if (bad) for (let i = 1; i < n; i += 5) ids[i] = i % 2 ? -1 : v;
  return ids;
}

type Launcher = "embeddingGather" | "embeddingSort" | "embeddingBackward";
const LAUNCHERS: Launcher[] = ["embeddingGather", "embeddingSort", "embeddingBackward"];

/** nan: a NaN in the table (element 1) and in gout (its last element): in the rows that read or sum them. */
function row(launcher: Launcher, o: EmbeddingDims, e: { variant?: PartialPolicy; label?: string; bad?: boolean; nan?: boolean } = {}): LauncherRow {
  const { n, v, d } = o;
  const tags = `${d % 4 === 0 ? " vec4" : ""}${e.bad ? " ids out of range" : ""}${e.nan ? " with NaN" : ""}${e.label ? ` (${e.label})` : ""}`;
  return {
    family: "embedding",
    name: `embedding ${launcher} n ${n} table [${v}, ${d}]${tags}`,
    variant: e.variant,
    async run(gpu, io, r) {
      const ids = randomIds(r, n, v, e.bad ?? false);
      if (launcher === "embeddingGather") {
        const T = uniform(r, v * d);
        if (e.nan) T[1] = NaN;
        const out = io.output(n * d);
        embeddingGather(gpu, { ids: io.input(ids), table: io.input(T), out }, o);
        return [{ what: "out", got: await io.read(out, n * d), ref: ref.embeddingGather({ ids, table: T }, o).out, opts: { rtol: 0, atol: 0 } }];
      }
      const order = ref.embeddingSort({ ids }, o).order;
      if (launcher === "embeddingSort") {
        const got = io.output(2 * n);
        embeddingSort(gpu, { ids: io.input(ids), order: got }, o);
        return [{ what: "order", got: new Int32Array(await gpu.read(got, 8 * n)), ref: order, opts: { rtol: 0, atol: 0 } }];
      }
      const G = uniform(r, n * d);
      if (e.nan) G[n * d - 1] = NaN;
      const dtable = io.output(v * d);
      embeddingBackward(gpu, { gout: io.input(G), order: io.input(order), dtable }, o);
      const want = ref.embeddingBackward({ gout: G, order }, o);
      return [{ what: "dtable", got: await io.read(dtable, v * d), ref: want.dtable, opts: { mag: want.dtableMag } }];
    },
  };
}

export const rows: LauncherRow[] = [];
const dims = (n: number, v: number, d: number): EmbeddingDims => ({ n, v, d });

for (const o of [
  dims(7, 5, 3),
  dims(18, 11, 13), // some rows never named
  dims(132, 2, 300), // every id repeated many times; vec4
  dims(1, 1, 1),
  dims(1, 6, 4), // vec4, a single id
  dims(10, 40, 257), // d just past a workgroup
  dims(30, 20, 8), // vec4
  dims(600, 50, 3), // more ids than one 256-wide sort tile, ragged last tile
  dims(600, 1000, 2),
])
  for (const l of LAUNCHERS) rows.push(row(l, o));

// Ids outside [0, v): NaN rows (f32 and vec4 rows), sorted by value like the rest, no gradient.
for (const o of [dims(20, 6, 3), dims(20, 6, 4)]) for (const l of LAUNCHERS) rows.push(row(l, o, { bad: true }));

// NaN propagation: a NaN table element reaches the positions that name its row; a NaN gradient, its id's row.
for (const o of [dims(18, 11, 13), dims(30, 20, 8)]) for (const l of ["embeddingGather", "embeddingBackward"] as const) rows.push(row(l, o, { nan: true }));

// A 2-D grid of workgroups (x capped at 2).
const grid = { variant: { grid: { maxX: 2 } }, label: "grid.maxX 2" };
for (const o of [
  dims(700, 9, 2), // sort: 3 workgroups on a 2x2 grid; gather 1400, scatter 18, bounds 10
  dims(3, 600, 2), // scatter: 1200 elements on a 2x3 grid; bounds 601
  dims(300, 200, 8), // vec4 rows: gather 600 vec4s, scatter 400, both on 2-D grids
])
  for (const l of LAUNCHERS) rows.push(row(l, o, grid));

// Every launcher (src/kernels/<family>.ts) against the one float64 reference of its family (test/reference/), as a
// table: family × variant (a kernel policy) × shape × dtype, outputs NaN-poisoned. The rows are in
// test/kernels/rows/<family>.ts; a row that cannot run on this device is reported as skipped with the reason.
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { getGpu } from "../helpers.ts";
import { expectClose, seedOf } from "../tensor/helpers.ts";
import { rng } from "../helpers.ts";
import { RowIo, type LauncherRow } from "./harness.ts";

const ROWS_DIR = join(import.meta.dir, "rows");
const files = readdirSync(ROWS_DIR).filter((f) => f.endsWith(".ts")).sort();
const table: LauncherRow[] = [];
for (const f of files) table.push(...((await import(join(ROWS_DIR, f))) as { rows: LauncherRow[] }).rows);
const gpu = await getGpu();

describe("launchers vs float64 references", () => {
  test("row names are unique and each names its family", () => {
    expect(table.length).toBeGreaterThan(0);
    expect(new Set(table.map((r) => r.name)).size).toBe(table.length);
    for (const r of table) expect(r.name.startsWith(`${r.family} `)).toBe(true);
  });

  for (const row of table) {
    const why = row.skip?.(gpu) ?? null;
    test.skipIf(why !== null)(why ? `${row.name} (skipped: ${why})` : row.name, async () => {
      const io = new RowIo(gpu);
      try {
        const checks = await gpu.withPolicy(row.variant ?? {}, () => row.run(gpu, io, rng(seedOf(row.name))));
        expect(checks.length).toBeGreaterThan(0);
        for (const c of checks) expectClose(`${row.name}: ${c.what}`, c.got, c.ref, c.opts);
      } finally {
        io.release();
      }
    }, 60_000);
  }
});

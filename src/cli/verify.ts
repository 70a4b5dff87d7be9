/**
 * `alignx verify DIR|MANIFEST|GLOB [--json]`: check a packed corpus completely (src/data/verify.ts) and print
 * what it holds: a line per shard, then records and tokens per language, per task and per translation direction.
 * Exit 0 when sound; 1 with `alignx: <file> (byte B, record N): <what is wrong>` on stderr; 2 for a target that
 * names nothing.
 */
import { ShardError } from "../data/shard.ts";
import { verifyCorpus, type VerifyReport } from "../data/verify.ts";
import type { Count } from "../data/manifest.ts";
import { Progress } from "./progress.ts";

export async function verify(o: { target: string; json?: boolean }): Promise<number> {
  if (typeof o.target !== "string" || o.target === "") return fail("verify: missing DIR|MANIFEST|GLOB (usage: alignx verify DIR|MANIFEST|GLOB [--json])", 2);
  // Bytes of shards checked: redrawn on a terminal, a plain line every 10 s in a log, none with --json.
  const bar = o.json ? undefined : new Progress({ label: "verify", unit: "bytes" });
  let last: [number, number] | undefined;
  let report: VerifyReport;
  try {
    report = await verifyCorpus(o.target, { onProgress: (done, total) => bar?.update(...(last = [done, total])) });
  } catch (e) {
    if (e instanceof ShardError) return fail(e.message, e.exitCode);
    throw e;
  } finally {
    if (bar && last && process.stderr.isTTY) bar.done(...last);
  }
  if (o.json) console.log(JSON.stringify(toJson(report), null, 2));
  else if (report.ok) console.log(`${corpusSummary(report)}\n\nok: every shard, block and record checked${report.manifest ? `; the shards and counts match ${report.manifest}` : ""}`);
  return report.error ? fail(report.error.message, 1) : 0;
}

function fail(message: string, code: number): number {
  console.error(`alignx: ${message}`);
  return code;
}

/** The report as JSON: counts keyed as in manifest.json, the error as its parts. */
function toJson(r: VerifyReport): object {
  const error = r.error ? { message: r.error.message, file: r.error.file, byte: r.error.byte ?? null, record: r.error.record ?? null } : null;
  return { ok: r.ok, manifest: r.manifest, shards: r.shards, records: r.records, tokens: r.tokens, by_task: r.byTask, by_language: r.byLanguage, by_direction: r.byDirection, error };
}

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(2)} MB`;
const int = (n: number): string => n.toLocaleString("en-US");

/** What a corpus holds: a line per shard and a total, then records and tokens per language, task and direction. */
export function corpusSummary(r: Pick<VerifyReport, "shards" | "records" | "tokens" | "byLanguage" | "byTask" | "byDirection">): string {
  const bytes = r.shards.reduce((a, s) => a + s.bytes, 0);
  const shardRows = r.shards.map((s) => [s.file, `${int(s.records)} records`, `${int(s.tokens)} tokens`, mb(s.bytes)]);
  shardRows.push([`${r.shards.length} shard${r.shards.length === 1 ? "" : "s"}`, `${int(r.records)} records`, `${int(r.tokens)} tokens`, mb(bytes)]);
  const parts = [table(shardRows), countTable("language", r.byLanguage), countTable("task", r.byTask)];
  if (Object.keys(r.byDirection).length) parts.push(countTable("direction", r.byDirection));
  return parts.join("\n\n");
}

/** Records and tokens per key, most tokens first. */
function countTable(what: string, counts: Record<string, Count>): string {
  const rows = Object.entries(counts)
    .sort(([ka, a], [kb, b]) => b.tokens - a.tokens || ka.localeCompare(kb))
    .map(([k, c]) => [k, int(c.records), int(c.tokens)]);
  return table([[what, "records", "tokens"], ...rows]);
}

/** Columns padded to their widest cell: the first left-aligned, the others right-aligned. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ").trimEnd()).join("\n");
}

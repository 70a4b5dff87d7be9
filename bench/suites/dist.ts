/**
 * All-reduce throughput of our MPI binding (src/dist/mpi.ts, `Comm.allReduce(buf, "sum")` on a Float32Array, in
 * place) against the same MPI_Allreduce called from C (bench/peers/allreduce.c), both as 2 ranks under
 * `mpirun --allow-run-as-root --oversubscribe -np 2` (Open MPI's flags; MPICH's hydra takes neither) on this
 * machine, so over shared memory.
 *
 *   allreduce-ours-<n>   this file run as the rank program (`bun bench/suites/dist.ts --ranks ...`)
 *   allreduce-c-<n>      bench/peers/allreduce.c, compiled at bench time with `mpicc -O2` into a temp directory
 *   allreduce-<n>        the peer row: ours / C in GB/s (> 1: the binding is faster), in the peers table
 * at n = 256K, 1M and 4M floats (1, 4 and 16 MiB). Protocol, the same on both sides: per size `warmup` untimed
 * calls, then `reps` timed ones; before each call every rank refills its buffer with rank + 1 (untimed) and passes
 * a barrier; the sample is rank 0's wall time around the one call (performance.now / MPI_Wtime); every element of
 * every reduction is checked on every rank to be R(R+1)/2 (a row whose check fails is not reported). Reported:
 * the median, and the min (min_ms).
 * GB/s is the ALGORITHM bandwidth, bytes of the buffer (4n) / time, as nccl-tests' algbw; their bus bandwidth is
 * algbw · 2(R−1)/R, the same number at R = 2. Floor: a 2-rank all-reduce over shared memory moves at least the
 * buffer once each way (each rank reads the other's half and writes its own: ~2 × 4n bytes of copies per rank),
 * so algbw tops out near half the machine's memcpy bandwidth (bench/NOTES.md "all-reduce").
 *
 * Rank 0 prints one JSON line per size (parseRankLines reads both programs' output):
 *   {"n":262144,"ranks":2,"ok":1,"ms":[0.16,0.15,...]}
 * Skipped, with the reason: no mpirun on PATH; mpirun that is neither Open MPI's nor MPICH's; the rank program
 * failing (no libmpi: src/dist's error names the package); for the C rows, no mpicc on PATH or a failed compile.
 * The rank program is a TypeScript file run by bun: the compiled `alignx bench` has neither (skipped, saying so).
 * The data-parallel step's communication share is bench/suites/dist_step.ts (same --no-dist flag).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { median } from "../lib/measure.ts";
import type { PeerResult, Skipped } from "../lib/report.ts";

/** Sizes in floats: 256K, 1M, 4M. */
export const DIST_SIZES = [1 << 18, 1 << 20, 1 << 22] as const;

export interface AllReduceRow {
  /** allreduce-ours-<n> or allreduce-c-<n> (n as 256K, 1M, 4M). */
  name: string;
  impl: "ours" | "c";
  floats: number;
  bytes: number;
  ranks: number;
  /** Median of the timed calls (rank 0's wall time). */
  ms: number;
  /** Algorithm bandwidth: bytes / ms (GB/s, 1e9). */
  gbps: number;
  /** The fastest call (on a shared machine a busy-polling rank loses whole scheduler slices: the median moves, this less). */
  min_ms: number;
  /** Every timed call's ms. */
  runs: number[];
}

export interface DistResult {
  mpirun: string;
  flavor: string;
  reps: number;
  warmup: number;
  rows: AllReduceRow[];
  /** What the C peer was built with (`mpicc --showme`'s compiler, or the mpicc path). */
  mpicc?: string;
}

/** 262144 → "256K", 1048576 → "1M". */
export const sizeLabel = (n: number): string => (n % (1 << 20) === 0 ? `${n >> 20}M` : n % 1024 === 0 ? `${n >> 10}K` : String(n));

/** `command -v name` with the PATH of `env`; null when absent. */
export function findTool(name: string, env: Record<string, string | undefined> = process.env): string | null {
  const r = spawnSync("/bin/sh", ["-c", `command -v ${name}`], { encoding: "utf8", env: { PATH: env.PATH ?? "" } });
  const p = r.stdout?.trim();
  return r.status === 0 && p ? p : null;
}

export interface Launcher {
  path: string;
  flavor: "Open MPI" | "MPICH";
}

/** mpirun on PATH and its flavour, or why there is none to use. */
export function findMpirun(env: Record<string, string | undefined> = process.env): Launcher | string {
  const found = findTool("mpirun", env);
  if (!found) return "mpirun is not on PATH (apt-get install openmpi-bin libopenmpi-dev, or tools/setup.sh)";
  // Open MPI takes the directory above an absolute mpirun's as its prefix: the real file's (alternatives' links resolved).
  const path = realpathSync(found);
  const v = spawnSync(path, ["--version"], { encoding: "utf8", env: env as NodeJS.ProcessEnv, timeout: 30_000 });
  const text = `${v.stdout ?? ""}${v.stderr ?? ""}`;
  if (/Open MPI|OpenRTE/i.test(text)) return { path, flavor: "Open MPI" }; // OpenRTE: orterun, Open MPI's mpirun by its own name
  if (/HYDRA|MPICH/i.test(text)) return { path, flavor: "MPICH" };
  return `mpirun at ${path} is neither Open MPI's nor MPICH's (--version: ${text.trim().split("\n")[0] ?? ""})`;
}

/** `mpirun [flags] -np 2 CMD...` */
export function mpirunCmd(l: Launcher, np: number, cmd: readonly string[]): string[] {
  return [l.path, ...(l.flavor === "Open MPI" ? ["--allow-run-as-root", "--oversubscribe"] : []), "-np", String(np), ...cmd];
}

/** The bench's environment without a launcher's variables (the bench itself may run under one). */
function rankEnv(env: Record<string, string | undefined>): Record<string, string | undefined> {
  const out = { ...env };
  for (const k of Object.keys(out)) if (/^(OMPI_|PMIX_|PMI_)/.test(k) || k === "MPI_LOCALRANKID") delete out[k];
  return out;
}

export interface RankLine {
  n: number;
  ranks: number;
  ms: number[];
}

/**
 * The rank-0 lines of either program (see the header), one per size, in order; `what` names the program in errors.
 * Other lines (MPI's own chatter) are ignored; a JSON line that is not such a record, a failed check (ok 0), no
 * samples, or a size missing from `expect` is an error naming the program and the line.
 */
export function parseRankLines(stdout: string, what: string, expect?: readonly number[]): RankLine[] {
  const out: RankLine[] = [];
  stdout.split("\n").forEach((line, i) => {
    const t = line.trim();
    if (!t.startsWith("{")) return;
    let j: unknown;
    try {
      j = JSON.parse(t);
    } catch {
      throw new Error(`${what}: output line ${i + 1} is not JSON: ${t.slice(0, 120)}`);
    }
    const r = j as { n?: unknown; ranks?: unknown; ok?: unknown; ms?: unknown };
    if (!Number.isInteger(r.n) || !Number.isInteger(r.ranks) || !Array.isArray(r.ms))
      throw new Error(`${what}: output line ${i + 1} lacks n, ranks or ms: ${t.slice(0, 120)}`);
    const ms = r.ms as unknown[];
    if (r.ok !== 1 && r.ok !== true) throw new Error(`${what}: the all-reduce of ${r.n} floats gave wrong sums (ok ${String(r.ok)}), line ${i + 1}`);
    if (ms.length === 0 || !ms.every((x) => typeof x === "number" && Number.isFinite(x) && x > 0))
      throw new Error(`${what}: output line ${i + 1}: ms must be positive numbers: ${t.slice(0, 120)}`);
    out.push({ n: r.n as number, ranks: r.ranks as number, ms: ms as number[] });
  });
  if (expect) for (const n of expect) if (!out.some((r) => r.n === n)) throw new Error(`${what}: no result for ${n} floats in its output (${out.length} lines read)`);
  return out;
}

/** Rows of one program's rank lines. */
export function allReduceRows(impl: "ours" | "c", lines: readonly RankLine[]): AllReduceRow[] {
  return lines.map((l) => {
    const ms = median(l.ms);
    return { name: `allreduce-${impl}-${sizeLabel(l.n)}`, impl, floats: l.n, bytes: 4 * l.n, ranks: l.ranks, ms, gbps: (4 * l.n) / (ms / 1e3) / 1e9, min_ms: Math.min(...l.ms), runs: [...l.ms] };
  });
}

/** The peer rows: ours / C by size, where both ran. */
export function allReducePeers(rows: readonly AllReduceRow[]): PeerResult[] {
  const out: PeerResult[] = [];
  for (const o of rows.filter((r) => r.impl === "ours")) {
    const c = rows.find((r) => r.impl === "c" && r.floats === o.floats);
    if (c) out.push({ name: `allreduce-${sizeLabel(o.floats)}`, ours: o.gbps, peer: c.gbps, unit: "GB/s", ratio: o.gbps / c.gbps });
  }
  return out;
}

/** This file, when it can be run as the rank program: by bun, from a checkout (not inside the compiled binary). */
function rankProgram(): string[] | string {
  const self = import.meta.path;
  // Inside `bun build --compile`'s binary import.meta.path is under /$bunfs/ (no such file) and execPath is alignx.
  if (!existsSync(self))
    return "the rank program is bench/suites/dist.ts run by bun; the compiled binary carries neither (run `bun run bench` from a checkout)";
  return [process.execPath, self];
}

/** The C peer's source: next to the suites (bench/peers/allreduce.c). */
export const C_PEER = join(dirname(import.meta.dir), "peers", "allreduce.c");

export interface DistOptions {
  quick: boolean;
  /** Timed calls per size (default 25, 9 with quick). */
  reps?: number;
  warmup?: number;
  sizes?: readonly number[];
  /** The environment searched for mpirun and mpicc (tests pass a PATH without them). */
  env?: Record<string, string | undefined>;
  /** Seconds per launch before it is killed (default 120). */
  timeoutS?: number;
}

/** Compile bench/peers/allreduce.c with mpicc into `dir`: the binary, or why not. */
export function buildCPeer(dir: string, env: Record<string, string | undefined> = process.env): { exe: string; mpicc: string } | string {
  const mpicc = findTool("mpicc", env);
  if (!mpicc) return "mpicc is not on PATH (apt-get install libopenmpi-dev)";
  if (!existsSync(C_PEER)) return `${C_PEER} not found`;
  const exe = join(dir, "allreduce");
  const r = spawnSync(mpicc, ["-O2", "-o", exe, C_PEER], { encoding: "utf8", env: env as NodeJS.ProcessEnv, timeout: 120_000 });
  if (r.error || r.status !== 0) return `mpicc -O2 ${C_PEER} failed: ${r.error?.message ?? (r.stderr || r.stdout).trim().split("\n").slice(-1)[0]}`;
  return { exe, mpicc };
}

function launch(l: Launcher, cmd: string[], what: string, env: Record<string, string | undefined>, timeoutS: number, sizes: readonly number[]): RankLine[] {
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: "utf8", env: rankEnv(env) as NodeJS.ProcessEnv, timeout: timeoutS * 1e3, killSignal: "SIGKILL", maxBuffer: 1 << 22 });
  if (r.error) throw new Error(`${what}: ${r.error.message}`);
  if (r.status !== 0) {
    const why = `${r.stderr}`.split("\n").find((x) => /error|not|fail|cannot/i.test(x)) ?? `${r.stderr}`.trim().split("\n").slice(-1)[0];
    throw new Error(`${what} under ${l.flavor}'s mpirun exited ${r.status ?? r.signal}: ${why?.trim() ?? ""}`);
  }
  return parseRankLines(r.stdout, what, sizes);
}

/** Both programs at every size (see the header); rows, and what was skipped with why. */
export function distSuite(o: DistOptions): { result?: DistResult; peers: PeerResult[]; skipped: Skipped[] } {
  const env = o.env ?? process.env;
  const reps = o.reps ?? (o.quick ? 9 : 25);
  const warmup = o.warmup ?? 3;
  const sizes = o.sizes ?? DIST_SIZES;
  const timeoutS = o.timeoutS ?? 120;
  const skipped: Skipped[] = [];
  const names = (impl: string) => sizes.map((n) => `allreduce-${impl}-${sizeLabel(n)}`).join(", ");
  const l = findMpirun(env);
  if (typeof l === "string") return { peers: [], skipped: [{ what: `${names("ours")}, ${names("c")}`, why: l }] };
  const rows: AllReduceRow[] = [];
  const args = [String(reps), String(warmup), ...sizes.map(String)];
  const prog = rankProgram();
  if (typeof prog === "string") skipped.push({ what: names("ours"), why: prog });
  else
    try {
      rows.push(...allReduceRows("ours", launch(l, mpirunCmd(l, 2, [...prog, "--ranks", ...args]), "bench/suites/dist.ts ranks", env, timeoutS, sizes)));
    } catch (e) {
      skipped.push({ what: names("ours"), why: (e as Error).message });
    }
  const dir = mkdtempSync(join(tmpdir(), "alignx-bench-allreduce-"));
  let mpicc: string | undefined;
  try {
    const built = buildCPeer(dir, env);
    if (typeof built === "string") skipped.push({ what: names("c"), why: built });
    else {
      mpicc = built.mpicc;
      try {
        rows.push(...allReduceRows("c", launch(l, mpirunCmd(l, 2, [built.exe, ...args]), "bench/peers/allreduce.c", env, timeoutS, sizes)));
      } catch (e) {
        skipped.push({ what: names("c"), why: (e as Error).message });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { result: { mpirun: l.path, flavor: l.flavor, reps, warmup, rows, ...(mpicc ? { mpicc } : {}) }, peers: allReducePeers(rows), skipped };
}

export function printDist(d: DistResult): void {
  console.log(`\n${"all-reduce".padEnd(22)} ${"floats".padStart(9)} ${"MiB".padStart(5)} ranks ${"ms".padStart(9)} ${"GB/s".padStart(7)} ${"min ms".padStart(9)}  (f32 sum in place, median of ${d.reps} after ${d.warmup} warm-up; GB/s = bytes / time, algorithm bandwidth)`);
  for (const r of d.rows)
    console.log(`${r.name.padEnd(22)} ${String(r.floats).padStart(9)} ${(r.bytes / 2 ** 20).toFixed(0).padStart(5)} ${String(r.ranks).padStart(5)} ${r.ms.toFixed(3).padStart(9)} ${r.gbps.toFixed(2).padStart(7)} ${r.min_ms.toFixed(3).padStart(9)}`);
}

// ---- the rank program: `mpirun -np R bun bench/suites/dist.ts --ranks REPS WARMUP N1 [N2 ...]` ----

async function ranks(argv: string[]): Promise<void> {
  const { world } = await import("../../src/dist/index.ts");
  const [reps, warmup, ...ns] = argv.map(Number);
  const bad = [reps, warmup, ...ns].findIndex((x, i) => !Number.isInteger(x) || x! < (i === 1 ? 0 : 1));
  if (bad >= 0 || ns.length === 0) {
    console.error(`bench/suites/dist.ts --ranks REPS WARMUP N1 [N2 ...]: argument ${bad + 1} (${argv[bad] ?? "missing"}) must be a whole number >= ${bad === 1 ? 0 : 1}`);
    process.exit(2);
  }
  const R = world.size;
  const want = (R * (R + 1)) / 2;
  for (const n of ns) {
    const buf = new Float32Array(n!);
    const bytes = new Uint8Array(buf.buffer);
    // The check is a native memcmp against the expected bytes, not a JS loop: a loop over millions of elements
    // gets compiled by JSC's JIT threads, which then compete with the busy-polling ranks for the cores during
    // the timed calls (measured: +30% at 4M floats on 2 cores). The C peer's check is compiled ahead of time.
    const expected = new Uint8Array(new Float32Array(n!).fill(want).buffer);
    const ms: number[] = [];
    let ok = 1;
    for (let r = 0; r < warmup! + reps!; r++) {
      buf.fill(world.rank + 1);
      world.barrier();
      const t0 = performance.now();
      world.allReduce(buf, "sum");
      const t1 = performance.now();
      if (r >= warmup!) ms.push(t1 - t0);
      if (Buffer.compare(bytes, expected) !== 0) ok = 0;
    }
    const all = Int32Array.of(ok);
    world.allReduce(all, "min"); // ok on every rank
    if (world.rank === 0) console.log(JSON.stringify({ n, ranks: R, ok: all[0], ms: ms.map((x) => Number(x.toFixed(6))) }));
  }
  world.finalize();
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  if (argv[0] !== "--ranks") {
    console.error("bench/suites/dist.ts is the all-reduce rank program: mpirun -np 2 bun bench/suites/dist.ts --ranks REPS WARMUP N1 [N2 ...] (bun run bench runs it)");
    process.exit(2);
  }
  await ranks(argv.slice(1));
}

/**
 * The communication share of a data-parallel training step (issue 15, item 6): 2 ranks under mpirun on this machine
 * (src/dist, src/align/data_parallel.ts), each training `tiny-64` of suites/train.ts (LlamaModel.fromConfig, its
 * batch on ids of its own seed, AdamW) with the exchange in 256 KiB buckets (its 0.84 MiB of gradients in 4 buckets,
 * as the trainer's 4 MiB cut tiny-256's 20 MiB into 6: one bucket would leave nothing to overlap), in three modes
 * that alternate step by step so that all three see the same load:
 *   alone     no gradient exchange: the compute of the step under the same 2-rank contention (the baseline)
 *   serial    GradientExchange with the overlap off (what ALIGNX_DDP_OVERLAP=0 gives the trainer): every bucket is
 *             read back, all-reduced and written back after the backward
 *   overlap   GradientExchange as the trainer runs it: buckets read back from inside the backward (onGradReady),
 *             all-reduced while the GPU finishes it
 * One step = barrierAsync (untimed: the ranks start together), forward + loss, backward (with the exchange's hook),
 * the exchange, AdamW step, zeroGrad, the loss's readback; its time is the slower rank's (an all-reduce of the
 * samples at the end). One untimed warm-up step, then `steps` rounds; per mode the median.
 *   exposed_ms = the median over rounds of step(mode) − step(alone) of the same round: the time of the exchange
 *                NOT hidden behind compute (paired by round: the machine's load moves less within a round)
 *   share      = exposed_ms / step_ms(mode)
 * plus the exchange's own medians (ExchangeStats): host_ms (all-reduce, copies, write-back: what metrics.jsonl
 * calls comm_seconds), mpi_ms, wait_ms (for the read-backs and the other rank), early (buckets read back inside the
 * backward). On lavapipe the "GPU" is the same 2 CPU cores, shared with the other rank (and the machine's other
 * jobs): the load average goes with the figures (bench/NOTES.md).
 *
 * tiny-256 with the trainer's buckets: distStepSuite({ config: "tiny-256", bucketBytes: 4 << 20, steps: 3 }) (~2.5 s
 * a step on 2 idle cores; bench/NOTES.md has its figures).
 * The rank program is this file (`mpirun -np 2 bun bench/suites/dist_step.ts --ranks STEPS CONFIG BUCKET_BYTES
 * [ADAPTER]`); rank 0 prints one JSON line. Skipped with the reason: no mpirun (or neither Open MPI's nor MPICH's), the compiled binary (no bun,
 * no source to run), a failed launch. `--no-dist` skips it with the all-reduce rows of suites/dist.ts.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { loadavg } from "node:os";
import { median } from "../lib/measure.ts";
import type { Skipped } from "../lib/report.ts";
import { findMpirun, mpirunCmd } from "./dist.ts";
import { batchIds, trainConfigs } from "./train.ts";

export const DIST_STEP_CONFIG = "tiny-64";
export const DIST_STEP_BUCKET_BYTES = 256 << 10;
export const DIST_STEP_MODES = ["alone", "serial", "overlap"] as const;
export type DistStepMode = (typeof DIST_STEP_MODES)[number];

export interface DistStepRow {
  /** dist-step-<mode>-<config> */
  name: string;
  mode: DistStepMode;
  /** Median step time (the slower rank's each step). */
  step_ms: number;
  /** Median over rounds of (this mode's step − the alone step of the round): the exchange's time not hidden behind compute (0 for alone). */
  exposed_ms: number;
  /** exposed_ms / step_ms. */
  share: number;
  /** Medians of the exchange's ExchangeStats (rank 0), absent for alone. */
  host_ms?: number;
  mpi_ms?: number;
  wait_ms?: number;
  /** Buckets read back from inside the backward / all buckets. */
  early?: number;
  buckets?: number;
  /** Every timed step's ms. */
  runs: number[];
}

export interface DistStepResult {
  config: string;
  bucket_bytes: number;
  ranks: number;
  params: number;
  grad_bytes: number;
  steps: number;
  mpirun: string;
  flavor: string;
  /** os.loadavg() (1, 5, 15 min) before and after the launch. */
  load: { start: number[]; end: number[] };
  wall_s: number;
  rows: DistStepRow[];
}

/** What rank 0 prints. */
export interface RankReport {
  config: string;
  ranks: number;
  params: number;
  grad_bytes: number;
  /** Per mode: the slower rank's ms per timed step, and rank 0's exchange stats per timed step. */
  modes: Record<DistStepMode, { ms: number[]; host_ms: number[]; mpi_ms: number[]; wait_ms: number[]; early: number[]; buckets: number[] }>;
}

/** The bench's environment without a launcher's variables (the bench itself may run under one). */
function rankEnv(): NodeJS.ProcessEnv {
  const out = { ...process.env };
  for (const k of Object.keys(out)) if (/^(OMPI_|PMIX_|PMI_)/.test(k) || k === "MPI_LOCALRANKID") delete out[k];
  return out;
}

/** Rows from rank 0's report (see the header). */
export function distStepRows(r: RankReport): DistStepRow[] {
  const alone = r.modes.alone.ms;
  return DIST_STEP_MODES.map((mode) => {
    const m = r.modes[mode];
    const step = median(m.ms);
    // Paired by round (the steps of one round ran back to back, under the same load): the median difference.
    const exposed = mode === "alone" ? 0 : median(m.ms.map((x, i) => x - alone[i]!));
    const row: DistStepRow = { name: `dist-step-${mode}-${r.config}`, mode, step_ms: step, exposed_ms: exposed, share: exposed / step, runs: m.ms };
    if (mode !== "alone")
      Object.assign(row, { host_ms: median(m.host_ms), mpi_ms: median(m.mpi_ms), wait_ms: median(m.wait_ms), early: median(m.early), buckets: median(m.buckets) });
    return row;
  });
}

export interface DistStepOptions {
  quick: boolean;
  /** Timed rounds (one step of each mode a round); default 15, 8 with quick (tiny-64: ~0.1-0.3 s a step on 2 cores). */
  steps?: number;
  /** The adapter the ranks open (--adapter; --cpu passes "cpu"). */
  adapter?: string;
  /** A tiny config of suites/train.ts (default tiny-64) and the exchange's bucket size (default 256 KiB; the trainer's is 4 MiB). */
  config?: string;
  bucketBytes?: number;
  /** Seconds before the launch is killed (default 120). */
  timeoutS?: number;
  /** The environment searched for mpirun (tests pass a PATH without it). */
  env?: Record<string, string | undefined>;
}

export function distStepSuite(o: DistStepOptions): { result?: DistStepResult; skipped: Skipped[] } {
  const config = o.config ?? DIST_STEP_CONFIG;
  const bucketBytes = o.bucketBytes ?? DIST_STEP_BUCKET_BYTES;
  const what = `dist-step-{${DIST_STEP_MODES.join(",")}}-${config}`;
  const l = findMpirun(o.env);
  if (typeof l === "string") return { skipped: [{ what, why: l }] };
  const self = import.meta.path;
  if (!existsSync(self))
    return { skipped: [{ what, why: "the rank program is bench/suites/dist_step.ts run by bun; the compiled binary carries neither (run `bun run bench` from a checkout)" }] };
  const steps = o.steps ?? (o.quick ? 8 : 15);
  const start = loadavg();
  const t0 = performance.now();
  const cmd = mpirunCmd(l, 2, [process.execPath, self, "--ranks", String(steps), config, String(bucketBytes), ...(o.adapter === undefined ? [] : [o.adapter])]);
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: "utf8", env: rankEnv(), timeout: (o.timeoutS ?? 120) * 1e3, killSignal: "SIGKILL", maxBuffer: 1 << 22 });
  const wall = (performance.now() - t0) / 1e3;
  if (r.error || r.status !== 0) {
    const why = r.error?.message ?? `${r.stderr}`.split("\n").find((x) => /error|not|fail|cannot/i.test(x)) ?? `${r.stderr}`.trim().split("\n").slice(-1)[0];
    return { skipped: [{ what, why: `mpirun -np 2 bench/suites/dist_step.ts exited ${r.status ?? r.signal}: ${why?.trim() ?? ""}` }] };
  }
  const line = r.stdout.split("\n").find((x) => x.startsWith("{"));
  if (!line) return { skipped: [{ what, why: `no report in the ranks' output: ${r.stdout.slice(0, 200)}` }] };
  const rep = JSON.parse(line) as RankReport;
  return {
    result: { config: rep.config, bucket_bytes: bucketBytes, ranks: rep.ranks, params: rep.params, grad_bytes: rep.grad_bytes, steps, mpirun: l.path, flavor: l.flavor, load: { start, end: loadavg() }, wall_s: wall, rows: distStepRows(rep) },
    skipped: [],
  };
}

export function printDistStep(d: DistStepResult): void {
  const f = (x: number | undefined, w: number, dp = 1) => (x === undefined ? "" : x.toFixed(dp)).padStart(w);
  console.log(
    `\n${"data-parallel step".padEnd(26)} ${"step ms".padStart(8)} ${"exposed".padStart(8)} ${"share".padStart(6)} ${"host ms".padStart(8)} ${"mpi ms".padStart(7)} ${"wait ms".padStart(8)} early  ` +
      `(${d.ranks} ranks, ${d.config}, ${(d.grad_bytes / 2 ** 20).toFixed(1)} MiB of gradients in ${(d.bucket_bytes / 2 ** 20).toFixed(2)} MiB buckets, median of ${d.steps}; load ${d.load.start.map((x) => x.toFixed(1)).join(", ")})`,
  );
  for (const r of d.rows)
    console.log(
      `${r.name.padEnd(26)} ${f(r.step_ms, 8)} ${f(r.exposed_ms, 8)} ${(r.mode === "alone" ? "" : `${(100 * r.share).toFixed(1)}%`).padStart(6)} ${f(r.host_ms, 8)} ${f(r.mpi_ms, 7)} ${f(r.wait_ms, 8)} ${r.early === undefined ? "" : `${r.early}/${r.buckets}`}`,
    );
}

// ---- the rank program: `mpirun -np 2 bun bench/suites/dist_step.ts --ranks STEPS CONFIG BUCKET_BYTES [ADAPTER|cpu]` ----

async function ranks(argv: string[]): Promise<void> {
  const [{ world }, { Gpu }, { LlamaModel }, { AdamW }, { GradientExchange }] = await Promise.all([
    import("../../src/dist/index.ts"),
    import("../../src/gpu/index.ts"),
    import("../../src/nn/index.ts"),
    import("../../src/optim/index.ts"),
    import("../../src/align/data_parallel.ts"),
  ]);
  await import("../../src/tensor/index.ts"); // the ops' tuners, which Gpu.open({ tune: true }) runs
  const [steps, bucketBytes] = [Number(argv[0]), Number(argv[2])];
  const c = trainConfigs(false, true).find((x) => x.name === argv[1]);
  if (!Number.isInteger(steps) || steps < 1 || !c || !Number.isInteger(bucketBytes) || bucketBytes < 4) {
    console.error(`bench/suites/dist_step.ts --ranks STEPS CONFIG BUCKET_BYTES [ADAPTER]: got ${argv.join(" ")} (STEPS >= 1, CONFIG a tiny config of suites/train.ts, BUCKET_BYTES >= 4)`);
    process.exit(2);
  }
  const comm = world;
  const gpu = await Gpu.open({ ...(argv[3] === "cpu" ? { cpu: true } : argv[3] ? { adapter: argv[3] } : {}), tune: true });
  const model = LlamaModel.fromConfig(gpu, c.hf, { seed: 1 });
  const params = Object.values(model.parameters());
  const opt = new AdamW(model.parameters(), { lr: 1e-4 });
  const input = batchIds(c, 3 + 100 * comm.rank); // each rank its own batch
  const modes = Object.fromEntries(DIST_STEP_MODES.map((m) => [m, { ms: [] as number[], host_ms: [] as number[], mpi_ms: [] as number[], wait_ms: [] as number[], early: [] as number[], buckets: [] as number[] }])) as RankReport["modes"];
  const step = async (mode: DistStepMode, timed: boolean) => {
    await comm.barrierAsync();
    const t0 = performance.now();
    const ex = mode === "alone" ? undefined : new GradientExchange(params, comm, { bucketBytes, overlap: mode === "overlap" });
    const { loss } = model.forwardLoss(input, { logits: false });
    loss.backward(ex?.backwardOptions);
    const s = await ex?.finish();
    opt.step();
    opt.zeroGrad();
    await loss.item();
    const ms = performance.now() - t0;
    loss.release();
    if (!timed) return;
    const m = modes[mode];
    m.ms.push(ms);
    if (s) {
      m.host_ms.push(s.seconds * 1e3);
      m.mpi_ms.push(s.mpiSeconds * 1e3);
      m.wait_ms.push(s.gpuWaitSeconds * 1e3);
      m.early.push(s.early);
      m.buckets.push(s.buckets);
    }
  };
  try {
    await step("overlap", false); // warm-up: pipelines, AdamW's state, the exchange's buffers (every mode runs the same kernels)
    for (let i = 0; i < steps; i++) for (const mode of DIST_STEP_MODES) await step(mode, true);
    // Each step's time: the slower rank's.
    for (const mode of DIST_STEP_MODES) {
      const ms = Float64Array.from(modes[mode].ms);
      comm.allReduce(ms, "max");
      modes[mode].ms = Array.from(ms, (x) => Number(x.toFixed(3)));
    }
    if (comm.rank === 0) {
      const report: RankReport = { config: c.name, ranks: comm.size, params: model.parameterCount, grad_bytes: 4 * model.parameterCount, modes };
      console.log(JSON.stringify(report));
    }
  } finally {
    opt.release();
    model.release();
    gpu.destroy();
  }
  comm.finalize();
}

if (import.meta.main) {
  const argv = process.argv.slice(2);
  if (argv[0] !== "--ranks") {
    console.error("bench/suites/dist_step.ts is a rank program: mpirun -np 2 bun bench/suites/dist_step.ts --ranks STEPS CONFIG BUCKET_BYTES [ADAPTER] (bun run bench runs it)");
    process.exit(2);
  }
  await ranks(argv.slice(1));
}

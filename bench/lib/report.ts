/**
 * The result document (issue 5's JSON) and the table printed on stdout.
 *
 *   { date, quick, reps, load, device, ceilings: { copy_gbps, matmul_gflops }, ceiling_kernels,
 *     autotune: { "matmul/<dtype>/<small|large>/<hash>" | "attention/long/<hash>": { choice, ms: { variant: median ms }, method, tunedAt } },
 *     kernels: [{ name, shape, dtype, ms, gflops | gbps, pct_of_ceiling, floor_ms, parts, timing }],
 *     peers:   [{ name, ours, peer, unit, ratio,                 ratio = ours / peer (> 1: we are faster)
 *                torch?, blas?, blas_lib?, threads?,            PyTorch peers: what torch ran with
 *                peer_runs?, peer_spread? }],                   the peer's runs (peer = their median), [min, max]
 *     train:   [{ name, config, objective, tokens_per_s, mfu, params, matmul_params, tokens_per_step, step_ms, peak_bytes,
 *                 param_bytes, peak_over_params, estimate_bytes, dispatches_per_step, loss, loss_init,
 *                 terms_init?, stage1?, overhead_pct? }],     stage-1 rows (objective "stage1") follow their NTP row
 *     generate?: { rows: [{ name: generate-<config>-b<B>, prefill_ms, prefill_tokens_per_s, decode_ms_per_step,
 *                 decode_tokens_per_s, dispatches_per_decode_step, decode_floor_ms, ... }],
 *                 eval: { name: eval-<config>, seconds_per_100, translations, batch_size, max_new_tokens, ... } },
 *     dist?:   { mpirun, flavor, reps, warmup, rows: [{ name: allreduce-<ours|c>-<n>, floats, bytes, ms, gbps, min_ms, runs }] },
 *     skipped: [{ what, why }], runtime_s, phases_s }
 */
import { mkdir, stat } from "node:fs/promises";
import type { TuneResult } from "../../src/gpu/index.ts";
import type { DataResult } from "../suites/data.ts";
import type { DistResult } from "../suites/dist.ts";
import type { GenerateBenchResult } from "../suites/generate.ts";
import { join } from "node:path";
import { writeBytesAtomic } from "../../src/io/atomic.ts";
import { prepareOutput } from "../../src/io/output.ts";

export interface KernelResult {
  name: string;
  shape: number[];
  dtype: string;
  ms: number;
  gflops?: number;
  gbps?: number;
  pct_of_ceiling: number;
  /** The two floors at the ceilings: FLOPs / matmul ceiling, bytes / copy ceiling (ms). */
  floor_ms?: { flops: number; bytes: number };
  /** Kernels whose GPU time was summed into `ms`. */
  parts?: string[];
  timing?: string;
}

export interface PeerResult {
  name: string;
  ours: number;
  /** The peer's figure: the median of `peer_runs` when the peer ran more than once. */
  peer: number;
  unit: string;
  ratio: number;
  /** PyTorch peers: torch's version. */
  torch?: string;
  /** PyTorch peers: the BLAS as torch reports it (BLAS_INFO in torch.__config__.show(); Debian's build says `generic`). */
  blas?: string;
  /** PyTorch peers: the BLAS library torch actually loaded (openblas, reference, mkl; bench/torch_env.py). */
  blas_lib?: string;
  /** PyTorch peers: torch.get_num_threads(). */
  threads?: number;
  /** Every run of the peer (separate processes), when it ran more than once. */
  peer_runs?: number[];
  /** [min, max] of peer_runs. */
  peer_spread?: [number, number];
}

export interface TrainResult {
  /** train-<config> (next-token prediction) or train-stage1-<config> (AlignX stage 1). */
  name: string;
  config: string;
  /** What the step optimizes: "ntp" (L_NTP) or "stage1" (L_NTP + λ_ctr · L_CTR + λ_lam · L_LAM). */
  objective: "ntp" | "stage1";
  tokens_per_s: number;
  /**
   * 6 · matmul_params · tokens / step time / ceilings.matmul_gflops (the measured matmul ceiling, not a datasheet
   * peak). Attention's T² products are not counted (the 6N rule), so MFU slightly understates the work.
   */
  mfu: number;
  params: number;
  /** The parameters that take part in matrix products: all but an untied input embedding (a row lookup). */
  matmul_params: number;
  tokens_per_step: number;
  step_ms: number;
  /** Pool peak (class sizes of live buffers) during a training step, parameters and AdamW state included. */
  peak_bytes: number;
  param_bytes: number;
  peak_over_params: number;
  /** memoryReport()'s estimate of the same step. */
  estimate_bytes: number;
  /** Kernel launches per training step (uploads and copies not counted). */
  dispatches_per_step: number;
  /** The last timed step's loss. */
  loss?: number;
  /** The warm-up step's loss: the loss at init, before any update. */
  loss_init?: number;
  /** Stage 1: the unweighted terms at init (loss_init = ntp + λ_ctr · ctr + λ_lam · lam). */
  terms_init?: { ntp: number; ctr: number; lam: number };
  /** Stage 1: the settings it ran with (config.json names). */
  stage1?: {
    align_layer: number;
    contrastive_lambda: number;
    contrastive_temperature: number;
    language_matching_lambda: number;
    language_matching_intermediate_size: number;
  };
  /** Stage 1: (step ms / the same config's NTP step ms − 1) × 100, same run (per token if the batches differ). */
  overhead_pct?: number;
}

export interface Skipped {
  what: string;
  why: string;
}

export interface BenchResult {
  date: string;
  quick: boolean;
  reps: number;
  /** os.loadavg() at the start and end of the run (1, 5, 15 minutes): other processes share this machine. */
  load: { start: number[]; end: number[] };
  device: Record<string, unknown>;
  ceilings: { copy_gbps: number; matmul_gflops: number };
  /** What gave each ceiling, and both measurements (start and end of the run). */
  ceiling_kernels: { copy: string; matmul: string; runs: { copy_gbps: number; matmul_gflops: number; matmul: string }[] };
  /** Kernel variant choices by tuning key (`Gpu.open({ tune: true })`, src/gpu/autotune.ts): the winner and every variant's median ms. */
  autotune: Record<string, TuneResult>;
  kernels: KernelResult[];
  peers: PeerResult[];
  train: TrainResult[];
  /** The data suite (suites/data.ts): pack and loader throughput, loader memory. */
  data?: DataResult;
  /** Generation with the KV cache and the translation evaluation (suites/generate.ts). */
  generate?: GenerateBenchResult;
  /** All-reduce throughput, ours vs C (suites/dist.ts); the ratios are `allreduce-<n>` peers. */
  dist?: DistResult;
  skipped: Skipped[];
  runtime_s: number;
  /** Seconds per phase (ceilings, kernels, train with its PyTorch peers, other peers). */
  phases_s: Record<string, number>;
}

const fmt = (x: number | undefined, d = 2) => (x === undefined || !Number.isFinite(x) ? "" : x.toFixed(d));
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

export function printKernels(ks: KernelResult[]): void {
  console.log(`\n${"kernel".padEnd(22)} ${"shape".padEnd(20)} dtype ${"ms".padStart(10)} ${"GFLOP/s".padStart(9)} ${"GB/s".padStart(8)} ${"% ceil".padStart(7)}`);
  for (const k of ks)
    console.log(
      `${k.name.padEnd(22)} ${k.shape.join("x").padEnd(20)} ${k.dtype.padEnd(5)} ${fmt(k.ms, 3).padStart(10)} ${fmt(k.gflops).padStart(9)} ${fmt(k.gbps).padStart(8)} ${fmt(k.pct_of_ceiling, 1).padStart(7)}`,
    );
}

/** What a peer ran with, for the table: torch's version, BLAS (as torch reports it / as loaded), threads, runs. */
export function peerWith(p: PeerResult): string {
  const w: string[] = [];
  if (p.torch) w.push(`torch ${p.torch}`);
  if (p.blas) w.push(`BLAS_INFO=${p.blas}${p.blas_lib ? ` (loaded: ${p.blas_lib})` : ""}`);
  if (p.threads !== undefined) w.push(`${p.threads} threads`);
  if (p.peer_runs && p.peer_runs.length > 1 && p.peer_spread) w.push(`median of ${p.peer_runs.length} runs [${fmt(p.peer_spread[0])}-${fmt(p.peer_spread[1])}]`);
  return w.join(", ");
}

export function printPeers(ps: PeerResult[]): void {
  console.log(`\n${"peer".padEnd(30)} ${"ours".padStart(10)} ${"peer".padStart(10)} unit      ${"ratio".padStart(7)}  peer ran with`);
  for (const p of ps)
    console.log(`${p.name.padEnd(30)} ${fmt(p.ours).padStart(10)} ${fmt(p.peer).padStart(10)} ${p.unit.padEnd(9)} ${`${fmt(p.ratio)}x`.padStart(7)}  ${peerWith(p)}`.trimEnd());
}

export function printTrain(ts: TrainResult[]): void {
  console.log(
    `\n${"train".padEnd(24)} ${"params".padStart(12)} ${"tok/step".padStart(8)} ${"step ms".padStart(10)} ${"tokens/s".padStart(10)} ${"MFU %".padStart(6)} ${"peak".padStart(11)} ${"params".padStart(11)} peak/params  estimate  dispatches ${"loss@init".padStart(9)} overhead`,
  );
  for (const t of ts)
    console.log(
      `${t.name.padEnd(24)} ${String(t.params).padStart(12)} ${String(t.tokens_per_step).padStart(8)} ${fmt(t.step_ms, 1).padStart(10)} ${fmt(t.tokens_per_s, 1).padStart(10)} ${fmt(100 * t.mfu, 1).padStart(6)} ${mib(t.peak_bytes).padStart(11)} ${mib(t.param_bytes).padStart(11)} ${fmt(t.peak_over_params).padStart(11)}  ${mib(t.estimate_bytes).padStart(9)}  ${t.dispatches_per_step.toFixed(0).padStart(10)} ${fmt(t.loss_init, 4).padStart(9)} ${t.overhead_pct === undefined ? "" : `${t.overhead_pct >= 0 ? "+" : ""}${fmt(t.overhead_pct, 1)}%`}`.trimEnd(),
    );
  const s1 = ts.filter((t) => t.terms_init);
  for (const t of s1)
    console.log(
      `  ${t.name}: at init L_NTP ${fmt(t.terms_init!.ntp, 4)}, L_CTR ${fmt(t.terms_init!.ctr, 4)}, L_LAM ${fmt(t.terms_init!.lam, 4)}` +
        (t.stage1 ? ` (align_layer ${t.stage1.align_layer}, λ_ctr ${t.stage1.contrastive_lambda}, τ ${t.stage1.contrastive_temperature}, λ_lam ${t.stage1.language_matching_lambda})` : ""),
    );
}

/**
 * Check the results folder before the run (src/io/output.ts rules, exit 2 naming --out): an existing one must
 * be a writable directory whose latest.json may be replaced; a new one must be creatable.
 */
export async function checkResultDir(dir: string): Promise<void> {
  const latest = join(dir, "latest.json");
  const there = await stat(dir).catch(() => null);
  if (there?.isDirectory()) await prepareOutput(latest, { kind: "file", label: "bench: --out" });
  else await prepareOutput(dir, { kind: "dir", label: "bench: --out" });
}

/** Write latest.json and a dated copy, each atomically; returns the dated path. */
export async function writeResult(dir: string, r: BenchResult): Promise<string> {
  await mkdir(dir, { recursive: true });
  const json = JSON.stringify(r, null, 2) + "\n";
  await writeBytesAtomic(join(dir, "latest.json"), json);
  const dated = join(dir, `${r.date.replace(/[:.]/g, "-")}.json`);
  await writeBytesAtomic(dated, json);
  return dated;
}

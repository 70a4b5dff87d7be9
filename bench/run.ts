/**
 * `bun run bench [-- --quick] [--adapter NAME | --cpu] [--reps N] [--only REGEX] [--no-train] [--no-stage1]
 *                [--no-peers] [--no-generate] [--no-dist] [--steps N] [--deadline SECONDS] [--out DIR]`, or `alignx bench [same options]` from the binary
 * (one binary carries both: what a GPU server with no network gets, see bench/gpu.sh).
 * How close each op comes to this device's measured ceilings, what a training step does end to end, and how
 * both compare with peers run in the same process (or, for PyTorch, the same run) on the same adapter.
 *
 * METHOD
 *  1. Ceilings first (suites/ceilings.ts): copy bandwidth (copy_vec4, read + write) and the best f32 matmul
 *     GFLOP/s of the self-test kernel and of the matmul op (NN) at (big/2)³ and big³ (big = 1024 on a CPU
 *     adapter, 4096 on a GPU), measured at the start and again at the end of the run; the better of the two
 *     is the ceiling (on a shared machine one of them may land in a busy moment). f16 cases are reported
 *     against this f32 ceiling too (they may exceed 100%); so may small cases that live in the host's caches.
 *  2. Kernel cases (suites/kernels.ts): every op family through its exported op — matmul (NN/NT/TN,
 *     batched, non-tile-multiple sizes; f16 when the adapter has shader-f16 AND the op takes f16 operands),
 *     attention forward and backward (seq 128..2048 on a GPU, 128..256 with --quick or on a CPU), softmax,
 *     rmsnorm fwd/bwd, cross-entropy fwd/bwd, embedding fwd/bwd, AdamW, elementwise add, sum.
 *     Timing (lib/measure.ts): one untimed warm-up, then N repetitions; each repetition syncs the queue
 *     before and after the op, and its sample is the SUM of the GPU timestamp durations of every kernel the
 *     op recorded (a multi-kernel op — attention backward's prep + dQ + dK/dV, rmsnorm backward's dx +
 *     dparams passes, a two-pass sum — is the sum of its kernels; `parts` in the JSON lists them). A backward
 *     case runs its forward untimed before each repetition and times the backward alone. Without
 *     timestamp-query the sample is the host wall time of the synced run. Reported: the median, GFLOP/s for
 *     compute-bound cases (vs the matmul ceiling), GB/s for memory-bound ones (vs the copy ceiling), from
 *     FLOP and byte counts stated per case (minimum traffic: every input read once, every output written
 *     once); `floor_ms` gives both floors.
 *  3. Training (suites/train.ts): LlamaModel.fromConfig + AdamW, tokens/s and MFU = 6·matmul_params·tokens / step
 *     time / the measured matmul ceiling (not a datasheet peak), the pool's peak bytes vs parameter bytes.
 *     Tiny configs on a CPU adapter; ~124M and ~1B (TinyLlama's shape) on a GPU. After each config's
 *     next-token step (train-<config>), AlignX's stage-1 step of the same config (train-stage1-<config>:
 *     L_NTP + 0.3 L_CTR + 0.4 L_LAM, AdamW over model + classifier) with overhead_pct, its step time over the
 *     NTP step's (−1, in %); a stage-1 row whose loss at init is not finite and above the NTP loss at init is
 *     not reported (skipped, with why). --no-stage1 leaves it out. A LLaMA-3-style step (128256-token
 *     vocabulary, 2 layers) twice, train-llama3-128k-logits (the [B, T, V] logits) and train-llama3-128k (the
 *     loss in vocabulary chunks, as the trainer runs it): their peak columns show the logits' share (full runs
 *     on a CPU adapter, every run on a GPU; no stage-1 row or peer for them).
 *  4. Peers (suites/peers.ts; ratio = ours / peer, > 1 means faster): naive WGSL matmul vs the op NN at big³
 *     ((big/2)³ with --quick on a CPU adapter), both by GPU timestamps; tfjs-backend-webgpu matmul 1024³
 *     (host-timed with a readback, ours timed the same way); on a CPU adapter PyTorch's f32 1024³ matmul on the
 *     same CPU (torch-mm-1024, bench/torch_peer.py); PyTorch training the same configs
 *     (bench/torch_train_peer.py: CPU torch on a CPU adapter, CUDA torch on a GPU; tokens/s; the median of 3
 *     runs, each a separate process, with the spread in the JSON), the stage-1 step too
 *     (torch-train-stage1-<config>: `--stage 1`, the reference's losses, so the ratio covers the whole
 *     AlignX objective). Every PyTorch row says what torch ran
 *     with: version, BLAS (as torch reports it, and the library loaded), threads. CPU torch runs on all cores
 *     with the BLAS Debian's libblas.so.3 points at: OpenBLAS after `tools/setup.sh --bench`.
 *     What the ratios mean: on lavapipe we run a GPU program on a CPU emulator; PyTorch with a native BLAS on
 *     the same cores is the CPU's own ceiling; tfjs-backend-webgpu is the like-for-like WebGPU peer; the
 *     ratio users care about is the one on a GPU.
 *  5. Data (suites/data.ts): pack throughput per worker count, loader tokens/s and RSS over an epoch of a
 *     corpus 20× its shuffle buffer, and the loader's tokens/s against the largest training config's.
 *  6. Generation (suites/generate.ts; --no-generate skips): greedy generation with the KV cache on a random
 *     tiny-256 (llama-124m on a GPU), batch 1 and 8, prefill and decode tokens/s apart, a decode step against
 *     its floor (parameter bytes at the copy ceiling); and `alignx eval`'s own function on UDHR eng↔deu with a
 *     BPE trained in-process: wall seconds per 100 translations.
 *  7. All-reduce (suites/dist.ts; --no-dist skips): our MPI binding's f32 sum vs MPI_Allreduce from C
 *     (bench/peers/allreduce.c, built with mpicc), 2 ranks under mpirun, 256K/1M/4M floats, GB/s = bytes / time
 *     (algorithm bandwidth); the ratio in the peers table. Skipped, saying why, without mpirun or mpicc.
 *  8. Data-parallel step (suites/dist_step.ts; --no-dist skips it too): 2 ranks training tiny-64 under mpirun
 *     (256 KiB buckets), steps without an exchange, with the serial one (ALIGNX_DDP_OVERLAP=0) and the overlapped
 *     one, alternating; the exchange's time not hidden behind compute (step − the no-exchange step of the same
 *     round, median) and its share of the step. Skipped, saying why, without mpirun.
 * Output: a table on stdout, DIR/latest.json and a dated copy (shape: lib/report.ts). The load average is
 * recorded at the start and end: on a shared machine the figures move with it.
 */
import { loadavg } from "node:os";
import { cac } from "cac";
import { Gpu } from "../src/gpu/index.ts";
import { parseArgs } from "../src/cli/usage.ts";
import "../src/tensor/index.ts"; // registers the ops' tuners, which Gpu.open({ tune: true }) runs
import { timeOp, type Timing } from "./lib/measure.ts";
import { checkResultDir, printKernels, printPeers, printTrain, writeResult, type BenchResult, type KernelResult, type PeerResult, type Skipped, type TrainResult } from "./lib/report.ts";
import { measureCeilings, type Timed } from "./suites/ceilings.ts";
import { f16MatmulUnsupported, kernelCases, matmulCase } from "./suites/kernels.ts";
import { dataSuite, printData, type DataResult } from "./suites/data.ts";
import { naiveMatmul, oursHostMatmul, torchMatmul } from "./suites/peers.ts";
import { stage1Check, torchPeer, torchRow, trainConfigs, trainOurs, trainOursStage1, trainTorch } from "./suites/train.ts";
import { evalRow, finishGenerate, generateConfig, generateRows, printGenerate, type GenerateBenchResult } from "./suites/generate.ts";
import { distSuite, printDist, type DistResult } from "./suites/dist.ts";
import { distStepSuite, printDistStep, type DistStepResult } from "./suites/dist_step.ts";
import { tfjsMatmul } from "./peers/tfjs.ts";

const errText = (e: unknown) => (e instanceof Error ? e.message.split("\n")[0]! : String(e));
const gflops = (flops: number, t: Timing) => flops / (t.ms / 1e3) / 1e9;

/** A case's row: its rate against the ceiling it is bound by, and both floors. */
function result(c: Timed["c"], t: Timing, ceil: { copy_gbps: number; matmul_gflops: number }): KernelResult {
  const r: KernelResult = { name: c.name, shape: c.shape, dtype: c.dtype, ms: t.ms, pct_of_ceiling: 0 };
  if (c.bound === "compute") {
    r.gflops = gflops(c.flops, t);
    r.pct_of_ceiling = (100 * r.gflops) / ceil.matmul_gflops;
  } else {
    r.gbps = c.bytes / (t.ms / 1e3) / 1e9;
    r.pct_of_ceiling = (100 * r.gbps) / ceil.copy_gbps;
  }
  r.floor_ms = { flops: (c.flops / (ceil.matmul_gflops * 1e9)) * 1e3, bytes: (c.bytes / (ceil.copy_gbps * 1e9)) * 1e3 };
  r.parts = t.parts;
  r.timing = t.method;
  return r;
}

/** A bad option: the message names it; exit code 2 (the CLI's usage code). */
export class BenchUsageError extends Error {
  readonly exitCode = 2;
}

/** Run the suite; `argv` as process.argv (two leading entries, then the options). */
export async function main(argv: string[] = process.argv): Promise<void> {
  const t0 = performance.now();
  const cli = cac(argv[1] === "alignx bench" ? "alignx bench" : "bun run bench");
  cli.option("--quick", "Small sizes and few repetitions (≤ 5 minutes on 2 CPU cores)");
  cli.option("--reps <n>", "Repetitions per kernel case (median reported)");
  cli.option("--steps <n>", "Timed training steps per config (median reported)");
  cli.option("--only <regex>", "Run only the kernel cases whose name matches (ceilings always run)");
  cli.option("--no-train", "Skip the training configs (and their PyTorch peers)");
  cli.option("--no-stage1", "Skip the AlignX stage-1 training step (and its PyTorch peer); the NTP step still runs");
  cli.option("--no-peers", "Skip the peers");
  cli.option("--no-data", "Skip the data suite (pack and loader throughput)");
  cli.option("--no-generate", "Skip the generation (KV-cache prefill/decode tokens/s) and evaluation (s per 100 translations) rows");
  cli.option("--no-dist", "Skip the all-reduce rows (our MPI binding vs MPI_Allreduce from C, 2 ranks under mpirun) and the data-parallel step's communication share");
  cli.option("--deadline <s>", "After this many seconds, skip what is left (results are still written)");
  cli.option("--adapter <name>", "Adapter (substring or index)");
  cli.option("--cpu", "Use the CPU adapter");
  cli.option("--out <dir>", "Results folder", { default: "bench/results" });
  cli.help();
  const { options: o } = parseArgs(cli, argv.slice(2)); // the CLI's rules: `--reps -1` is a value, values as typed
  if (o.help) return;
  const quick = Boolean(o.quick);
  const count = (name: string, v: unknown, dflt: number): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new BenchUsageError(`--${name} must be a whole number >= 1, got ${String(v)}`);
    return n;
  };
  const reps = count("reps", o.reps, quick ? 3 : 7);
  const steps = count("steps", o.steps, quick ? 2 : 3);
  let only: RegExp | null = null;
  try {
    only = o.only === undefined ? null : new RegExp(String(o.only));
  } catch (e) {
    throw new BenchUsageError(`--only: ${(e as Error).message}`);
  }
  const deadline = o.deadline === undefined ? Infinity : Number(o.deadline);
  if (!(deadline > 0)) throw new BenchUsageError(`--deadline must be a number of seconds > 0, got ${String(o.deadline)}`);
  await checkResultDir(String(o.out)); // before the run, not after it
  const loadStart = loadavg();
  // Autotunes the kernel variants (matmul, attention) before returning: read from the per-adapter cache when tuned before.
  const opened = performance.now();
  const gpu = await Gpu.open({ adapter: o.adapter === undefined ? undefined : String(o.adapter), cpu: o.cpu, tune: true });
  const onGpu = gpu.adapter.kind !== "cpu";
  const big = onGpu ? 4096 : 1024;
  const late = () => (performance.now() - t0) / 1e3 > deadline;
  const skipped: Skipped[] = [];
  const phases: Record<string, number> = {};
  let mark = opened; // the first phase, autotune, includes opening the device (which tunes)
  const phase = (name: string) => {
    const now = performance.now();
    phases[name] = (now - mark) / 1e3;
    mark = now;
  };
  const skip = (what: string, why: string) => {
    skipped.push({ what, why });
    console.error(`skipped ${what}: ${why}`);
  };
  const device = {
    description: gpu.adapter.description,
    vendor: gpu.adapter.vendor,
    architecture: gpu.adapter.architecture,
    kind: gpu.adapter.kind,
    backend: gpu.adapter.backend,
    features: [...gpu.features],
    timing: gpu.features.has("timestamp-query") ? "gpu-timestamps" : "host",
  };
  console.log(`device   ${device.description} (${device.kind}, ${device.backend}), timing by ${device.timing}`);
  console.log(`load     ${loadStart.map((x) => x.toFixed(2)).join(", ")} (1, 5, 15 min) at start`);

  // 0. The kernel variants Gpu.open tuned: matmul, attention.
  const autotune = gpu.tuned;
  for (const [key, r] of Object.entries(autotune)) {
    const times = Object.entries(r.ms).map(([k, ms]) => `${k} ${ms.toFixed(2)}`).join(", ");
    console.log(`autotune ${key.split("/").slice(0, -1).join("/")}: ${r.choice} (ms: ${times})${gpu.tuner.timed.has(key) ? "" : ` [cached ${r.tunedAt}]`}`);
  }
  phase("autotune");

  // 1. Ceilings (again at the end: the better of the two is kept).
  const first = await measureCeilings(gpu, big, reps);
  console.log(`ceilings copy ${first.copy_gbps.toFixed(2)} GB/s, matmul ${first.matmul_gflops.toFixed(2)} GFLOP/s (${first.matmul_what}) at start`);
  const measured: Timed[] = [...first.rows];
  phase("ceilings");

  // 2. Kernel cases.
  const f16Why = await f16MatmulUnsupported(gpu);
  if (f16Why) skip("f16 matmul cases", f16Why);
  for (const c of kernelCases({ gpu: onGpu, quick }, f16Why === null)) {
    if (only && !only.test(c.name)) continue;
    const label = `${c.name} ${c.shape.join("x")} ${c.dtype}`;
    if (late()) {
      skip(label, `past the --deadline of ${deadline} s`);
      continue;
    }
    try {
      measured.push({ c, t: await timeOp(gpu, c.setup(gpu), reps) });
    } catch (e) {
      skip(label, errText(e));
      await gpu.sync().catch(() => {});
    }
    gpu.pool.trim(); // each case's buffers go back to the device, not into the pool's cache
  }
  phase("kernels");

  // 3. Training, 4. peers.
  const peers: PeerResult[] = [];
  const train: TrainResult[] = [];
  if (o.train !== false) {
    for (const c of trainConfigs(onGpu, quick)) {
      if (late()) {
        skip(`train ${c.name}`, `past the --deadline of ${deadline} s`);
        continue;
      }
      // The NTP step, then AlignX's stage-1 step of the same config right after it (overhead_pct compares the
      // two, so nothing runs between them), then the PyTorch peers of both.
      let r: TrainResult;
      try {
        r = await trainOurs(gpu, c, steps);
        train.push(r);
      } catch (e) {
        skip(`train ${c.name}`, errText(e));
        await gpu.sync().catch(() => {});
        continue;
      }
      if (c.memoryOnly) continue; // no stage-1 row, no peer (see trainConfigs)
      let s1: TrainResult | undefined;
      if (o.stage1 !== false && late()) skip(`train-stage1-${c.name}`, `past the --deadline of ${deadline} s`);
      else if (o.stage1 !== false) {
        try {
          const s = await trainOursStage1(gpu, c, steps, r);
          const bad = stage1Check(r, s);
          if (bad) skip(s.name, `failed its check, not reported: ${bad}`);
          else train.push((s1 = s));
        } catch (e) {
          skip(`train-stage1-${c.name}`, errText(e));
          await gpu.sync().catch(() => {});
        }
      }
      if (o.peers === false) continue;
      for (const [ours, stage] of [[r, 0], [s1, 1]] as const) {
        if (!ours) continue;
        const t = trainTorch(c, steps, onGpu, onGpu ? 300 : 150, 3, stage);
        if ("what" in t) skip(t.what, t.why);
        else peers.push(torchPeer(ours, t));
      }
    }
    phase("train");
  }
  if (o.peers !== false && late()) skip("naive-wgsl-matmul, tfjs-matmul-1024", `past the --deadline of ${deadline} s`);
  else if (o.peers !== false) {
    // The naive kernel is slow (≈ 1 GFLOP/s on lavapipe): --quick on a CPU adapter compares at (big/2)³.
    // Ours is measured again right before it, so both see the same load.
    const nn = quick && !onGpu ? big / 2 : big;
    const oursNn = gflops(2 * nn ** 3, await timeOp(gpu, matmulCase(nn, nn, nn).setup(gpu), reps));
    const naiveNn = gflops(2 * nn ** 3, await timeOp(gpu, naiveMatmul(gpu, nn), reps));
    peers.push({ name: `naive-wgsl-matmul-${nn}`, ours: oursNn, peer: naiveNn, unit: "GFLOP/s", ratio: oursNn / naiveNn });
    let ours1024: number | undefined;
    try {
      const tfjs = await tfjsMatmul(1024, reps);
      ours1024 = await oursHostMatmul(gpu, 1024, reps);
      peers.push({ name: "tfjs-matmul-1024", ours: ours1024, peer: tfjs.gflops, unit: "GFLOP/s", ratio: ours1024 / tfjs.gflops });
    } catch (e) {
      skip("tfjs-matmul-1024", errText(e));
    }
    // PyTorch's product on the same CPU: the CPU's own ceiling (a CPU adapter only; bench/gpu.sh does the GPU's).
    if (!onGpu) {
      try {
        const ours = ours1024 ?? (await oursHostMatmul(gpu, 1024, reps));
        const t = torchMatmul(1024, reps);
        if ("what" in t) skip(t.what, t.why);
        else peers.push({ name: "torch-mm-1024", ours, peer: t.gflops, unit: "GFLOP/s", ratio: ours / t.gflops, ...torchRow(t) });
      } catch (e) {
        skip("torch-mm-1024", errText(e));
      }
    }
    phase("peers");
  }

  // 5. Data: pack and loader throughput, the loader against the largest training config's consumption.
  let data: DataResult | undefined;
  if (o.data !== false && late()) skip("data", `past the --deadline of ${deadline} s`);
  else if (o.data !== false) {
    try {
      const largest = train.filter((t) => t.objective === "ntp").reduce<TrainResult | undefined>((a, t) => (!a || t.tokens_per_step > a.tokens_per_step ? t : a), undefined);
      data = await dataSuite({ quick, train: largest && { config: largest.config, tokens_per_s: largest.tokens_per_s } });
    } catch (e) {
      skip("data", errText(e));
    }
    phase("data");
  }

  // 6. Generation and evaluation (suites/generate.ts), 7. all-reduce (suites/dist.ts).
  let generated: GenerateBenchResult | undefined;
  if (o.generate !== false && late()) skip("generate, eval", `past the --deadline of ${deadline} s`);
  else if (o.generate !== false) {
    const gc = generateConfig(onGpu, quick);
    generated = { rows: [] };
    try {
      generated.rows = await generateRows(gpu, gc, quick ? 1 : 2);
    } catch (e) {
      skip(`generate-${gc.name}`, errText(e));
      await gpu.sync().catch(() => {});
    }
    if (late()) skip(`eval-${gc.name}`, `past the --deadline of ${deadline} s`);
    else
      try {
        generated.eval = await evalRow(gpu, gc);
      } catch (e) {
        skip(`eval-${gc.name}`, errText(e));
        await gpu.sync().catch(() => {});
      }
    phase("generate");
  }
  let dist: DistResult | undefined;
  if (o.dist !== false && late()) skip("allreduce", `past the --deadline of ${deadline} s`);
  else if (o.dist !== false) {
    const d = distSuite({ quick });
    dist = d.result;
    peers.push(...d.peers); // allreduce-<n>: ours / C (the C peer belongs to this suite: --no-peers does not drop it)
    for (const s of d.skipped) skip(s.what, s.why);
    phase("dist");
  }
  // 8. The data-parallel step's communication share, overlap off and on (suites/dist_step.ts; --no-dist skips it too).
  let distStep: DistStepResult | undefined;
  if (o.dist !== false && late()) skip("dist-step", `past the --deadline of ${deadline} s`);
  else if (o.dist !== false) {
    const d = distStepSuite({ quick, adapter: o.cpu ? "cpu" : o.adapter === undefined ? undefined : String(o.adapter) });
    distStep = d.result;
    for (const s of d.skipped) skip(s.what, s.why);
    phase("dist_step");
  }

  const last = late() ? first : await measureCeilings(gpu, big, reps);
  phase("ceilings_again");
  const ceilings = { copy_gbps: Math.max(first.copy_gbps, last.copy_gbps), matmul_gflops: Math.max(first.matmul_gflops, last.matmul_gflops) };
  const ceilingKernels = {
    copy: `copy_vec4 ${first.rows[0]!.c.bytes / 2} B`,
    matmul: first.matmul_gflops >= last.matmul_gflops ? first.matmul_what : last.matmul_what,
    runs: (last === first ? [first] : [first, last]).map((x) => ({ copy_gbps: x.copy_gbps, matmul_gflops: x.matmul_gflops, matmul: x.matmul_what })),
  };
  if (last !== first) console.log(`ceilings copy ${last.copy_gbps.toFixed(2)} GB/s, matmul ${last.matmul_gflops.toFixed(2)} GFLOP/s (${last.matmul_what}) at end`);
  console.log(`ceilings copy ${ceilings.copy_gbps.toFixed(2)} GB/s, matmul ${ceilings.matmul_gflops.toFixed(2)} GFLOP/s: the better of the two, used below`);

  const kernels = measured.map((m) => result(m.c, m.t, ceilings));
  for (const t of train) t.mfu = (6 * t.matmul_params * t.tokens_per_step) / (t.step_ms / 1e3) / (ceilings.matmul_gflops * 1e9);
  if (generated) finishGenerate(generated, ceilings);
  printKernels(kernels);
  if (train.length) printTrain(train);
  if (peers.length) printPeers(peers);
  if (data) printData(data);
  if (generated) printGenerate(generated);
  if (dist) printDist(dist);
  if (distStep) printDistStep(distStep);

  const out: BenchResult = {
    date: new Date().toISOString(),
    quick,
    reps,
    load: { start: loadStart, end: loadavg() },
    device,
    ceilings,
    ceiling_kernels: ceilingKernels,
    autotune,
    kernels,
    peers,
    train,
    ...(data ? { data } : {}),
    ...(generated ? { generate: generated } : {}),
    ...(dist ? { dist } : {}),
    ...(distStep ? { dist_step: distStep } : {}),
    skipped,
    runtime_s: (performance.now() - t0) / 1e3,
    phases_s: phases,
  };
  const dated = await writeResult(String(o.out), out);
  console.log(`\nload     ${out.load.end.map((x) => x.toFixed(2)).join(", ")} at end; runtime ${out.runtime_s.toFixed(1)} s (${Object.entries(phases)
      .map(([k, v]) => `${k} ${v.toFixed(0)} s`)
      .join(", ")})`);
  console.log(`wrote ${String(o.out)}/latest.json and ${dated}`);
  gpu.destroy();
}

if (import.meta.main)
  await main().catch((e) => {
    const msg = e instanceof Error ? e.message : String(e);
    console.error(msg.startsWith("bench: ") ? msg : `bench: ${msg}`);
    process.exit(e instanceof BenchUsageError || (e as { exitCode?: unknown })?.exitCode === 2 ? 2 : 1);
  });

/**
 * The training loop of every stage (pretraining, AlignX stage 1, stage 2), as HF Trainer runs the reference:
 *
 *   one optimizer step = `gradient_accumulation_steps` micro-batches from the loader; each micro-batch's loss
 *   (stage 1: L_NTP + λ_ctr·L_CTR + λ_lam·L_LAM; else L_NTP) divided by the accumulation count and
 *   backwarded, so the gradients add up (in place, into `.grad`) to those of the mean loss over the global
 *   batch; then the global norm is clipped (`max_grad_norm`), AdamW steps over the model (and, in stage 1, the
 *   classifier), the LR schedule advances (linear warmup, then linear decay to 0 at the last step), and the
 *   gradients are dropped.
 *
 *   steps     `max_steps`, else ⌊num_train_epochs × batches per epoch / accumulation⌋ (at least 1). The loader is
 *             one stream over epochs, so a step may take its micro-batches across an epoch boundary.
 *   bad steps a step whose loss or gradient norm is not finite is skipped (no update, gradients dropped; the
 *             schedule does not advance) and counted; after `max_bad_steps` in a row the run stops with an
 *             error naming the step, and the checkpoints written so far stay as they were.
 *   output    OUT/run.json (the job and resolved options), OUT/metrics.jsonl (a line per step: every loss
 *             term, grad norm, LR, loss scale, tokens/s, GPU memory), OUT/checkpoint-N/ (src/align/checkpoint.ts)
 *             every `save_steps` and at the end (the last `save_total_limit` kept), OUT/model/ (the final
 *             weights in HF layout with the tokenizer) and OUT/loss.svg (the loss terms and LR).
 *   resume    `resume: "latest" | DIR` restores weights, classifier, AdamW moments and step counts, the schedule,
 *             the loader's exact position and the counters, after checking the checkpoint was made by a run of
 *             the same identity (stage, options that change the computation, model config, corpus); metrics.jsonl
 *             is cut back to the checkpoint's step. The run then computes bit-for-bit what the uninterrupted
 *             run would have (a test kills a run with SIGKILL and compares the final weights).
 *   Ctrl-C    SIGINT/SIGTERM finish the current step, save a checkpoint and return `interrupted` (the CLI exits
 *             130); a second signal ends the process at once.
 *
 * Data parallelism (issue 15; `job.comm`, the MPI world of `mpirun -np N alignx train`, src/dist): W ranks, one
 * device each, run this same loop. The loader stream is the same on every rank; of each step's W × accumulation
 * micro-batches, rank r trains r, r + W, r + 2W, ... (so a step sees the examples a single rank with accumulation
 * W × accumulation sees, in the same order). Between backward and the clip every gradient becomes its mean over
 * the ranks (./data_parallel.ts: all-reduced in buckets, read back while this rank's last backward runs); each
 * rank divides its losses by its own accumulation, so the result is the mean over all W × accumulation
 * micro-batches and the clip and AdamW step are the same on
 * every rank. The loss terms are averaged over the ranks for the metrics, and a stop (Ctrl-C) is agreed on in the
 * same all-reduce, so every rank stops at the same step. Rank 0 alone writes OUT (run.json, metrics.jsonl,
 * checkpoints, model/, loss.svg, and --overwrite's removal); the others wait at a barrier after each checkpoint.
 * Set-up failures are agreed on once (every rank stops with the message of the lowest failing rank, exit 2),
 * after which a hash of the job (options, model, data, output) must be the same on every rank. Every rank
 * resumes from the same checkpoint; its identity records the global accumulation (accumulation × ranks), so a
 * run may resume on another number of ranks with the same global batch. `shardOptimizer` (ZeRO stage 1, ./zero.ts)
 * keeps each parameter's AdamW state on one rank only and broadcasts the updated weights; same results.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, stat, truncate, writeFile, appendFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Loader, readManifest, MANIFEST_FILE, loadTokenizer, type LoaderBatch, type LoaderState } from "../data/index.ts";
import { linePlotSvg } from "../eval/plot.ts";
import { firstFailure, LocalComm, type Comm } from "../dist/index.ts";
import type { Gpu } from "../gpu/index.ts";
import { openCheckpoint, prepareOutput, readHfConfig, saveTensors, writeBytesAtomic } from "../io/index.ts";
import { LlamaModel, loadParameters } from "../nn/index.ts";
import { AdamW, clipGradNorm, getLinearScheduleWithWarmup, GradScaler, LambdaLR } from "../optim/index.ts";
import { mulScalar, scope, Tensor, type BackwardOptions } from "../tensor/index.ts";
import { readStage1Config, type Stage1Config } from "./config.ts";
import {
  CLASSIFIER_FILE,
  checkpointName,
  listCheckpoints,
  pruneCheckpoints,
  readOptimizerState,
  readTrainerState,
  resolveResume,
  saveTrainCheckpoint,
  trainedConfigJson,
  companionFiles,
  type TrainerState,
} from "./checkpoint.ts";
import { GradientExchange } from "./data_parallel.ts";
import { OptimizerShard } from "./zero.ts";
import { CLASSIFIER_PREFIX, LanguageMatchingClassifier, stage1Loss } from "./losses.ts";
import { globalBatch, hyperJson, TrainOptionError, type Stage, type TrainHyper } from "./options.ts";

export const RUN_FILE = "run.json";
export const METRICS_FILE = "metrics.jsonl";
export const FINAL_DIR = "model";
export const PLOT_FILE = "loss.svg";

/** The shard task each stage trains on (a manifest of another task is refused). */
const STAGE_TASKS: Record<Stage, readonly string[]> = { 0: ["pretrain"], 1: ["stage1"], 2: ["stage2", "stage1"] };
export const STAGE_NAMES: Record<Stage, string> = { 0: "pretrain", 1: "stage 1", 2: "stage 2" };

/** A run that cannot start or continue: bad paths, a corpus of another tokenizer, a mismatched resume (exit 2), or a stop (exit 1). */
export class TrainError extends Error {
  override name = "TrainError";
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

export interface TrainJob {
  stage: Stage;
  /**
   * Stages 1 and 2: the HF model directory to start from (stage 2 from a stage-1 output: its classifier is
   * dropped). Stage 0 (pretraining from scratch): a directory with config.json and the tokenizer; the weights are
   * drawn fresh from the seed (weights there are not read).
   */
  model: string;
  /** Shards: a pack output directory, its manifest.json, or shard paths / globs. */
  data: string | readonly string[];
  out: string;
  hyper: TrainHyper;
  /** "latest" or a checkpoint directory. */
  resume?: string;
  /** Replace an existing output directory (only one written by `alignx train`). */
  overwrite?: boolean;
  /** Stage 1: AlignX settings from flags (override config.json's). */
  log?: (line: string) => void;
  /** Progress line output: a bar on a terminal, else a plain line every `logging_steps`. */
  progress?: ProgressSink;
  /** Called after every optimizer step (tests). */
  onStep?: (m: StepMetrics) => void | Promise<void>;
  /** Listen to SIGINT/SIGTERM (the CLI); default true. */
  handleSignals?: boolean;
  /** Data parallelism: the ranks of this run (src/dist `worldComm()` under mpirun). Default: a world of one. */
  comm?: Comm;
  /** Data parallel: each rank keeps AdamW's moments for 1/W of the parameters (ZeRO stage 1, ./zero.ts). */
  shardOptimizer?: boolean;
}

export interface ProgressSink {
  update(done: number, total: number, extra: string): void;
  done(done: number, total: number, extra: string): void;
  log(line: string): void;
  readonly tty: boolean;
}

export interface StepMetrics {
  step: number;
  total_steps: number;
  epoch: number;
  loss: number;
  loss_ntp: number;
  loss_ctr?: number;
  loss_lam?: number;
  grad_norm: number;
  lr: number;
  /** Dynamic loss scale (1: fp32 training has none). */
  loss_scale: number;
  tokens: number;
  tokens_per_s: number;
  gpu_live_bytes: number;
  gpu_peak_bytes: number;
  seconds: number;
  skipped?: boolean;
  /**
   * Data parallel: host seconds of this step's gradient exchange outside its waits for the GPU and the other ranks
   * (all-reduce, copies, write-back; ./data_parallel.ts ExchangeStats.seconds).
   */
  comm_seconds?: number;
}

export interface TrainResult {
  status: "done" | "interrupted";
  out: string;
  /** OUT/model (done) or the checkpoint saved at the interruption. */
  model: string;
  steps: number;
  totalSteps: number;
  /** The mean loss terms of the last logged steps. */
  last: StepMetrics | null;
  seconds: number;
}

/** The options a resumed run must share with the checkpoint's (the others, logging and saving, may change). */
const VOLATILE = new Set(["logging_steps", "save_steps", "save_total_limit", "max_bad_steps"]);

function identityOf(job: TrainJob, modelConfig: Record<string, unknown>, stage1: Stage1Config | undefined, shards: readonly { file: string; records: number }[], worldSize: number): Record<string, unknown> {
  const h = hyperJson(job.hyper);
  for (const k of VOLATILE) delete h[k];
  h.gradient_accumulation_steps = job.hyper.gradient_accumulation_steps * worldSize; // the global accumulation
  return { stage: job.stage, hyper: h, model_config: modelConfig, stage1: stage1 ?? null, shards };
}

/** The first differing field of two identities, as "path: a vs b". */
function firstDifference(a: unknown, b: unknown, path = ""): string | null {
  if (a === b) return null;
  if (a && b && typeof a === "object" && typeof b === "object" && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of [...keys].sort()) {
      const d = firstDifference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path ? `${path}.${k}` : k);
      if (d) return d;
    }
    return null;
  }
  return `${path}: ${JSON.stringify(a)} in the checkpoint, ${JSON.stringify(b)} now`;
}

const isClassifierName = (n: string) => n.startsWith(`${CLASSIFIER_PREFIX}.`);

/** Batch rows as the model takes them. */
function rows(a: Int32Array, B: number, T: number): number[][] {
  return Array.from({ length: B }, (_, b) => Array.from(a.subarray(b * T, (b + 1) * T)));
}

/** Prepare the output directory: new, or (with overwrite) one written by the trainer, or (resume) the run's own. */
async function prepareOut(job: TrainJob): Promise<void> {
  const inputs = [{ path: job.model, label: "--model" }, ...(typeof job.data === "string" ? [{ path: job.data, label: "--data" }] : [])];
  await prepareOutput(job.out, { kind: "dir", label: "--out", inputs }).catch((e) => {
    throw new TrainError(`train: ${(e as Error).message}`);
  });
  if (!existsSync(job.out)) return;
  const st = await stat(job.out);
  if (!st.isDirectory()) throw new TrainError(`train: --out ${job.out} exists and is not a directory`);
  const names = await readdir(job.out);
  if (job.resume !== undefined) {
    if (!names.includes(RUN_FILE)) throw new TrainError(`train: --resume: ${job.out} holds no ${RUN_FILE} (not an alignx train output)`);
    return;
  }
  if (names.length === 0) return;
  if (!job.overwrite) throw new TrainError(`train: --out ${job.out} exists and is not empty; pass --overwrite to replace it, or --resume latest to continue it`);
  if (!names.includes(RUN_FILE)) throw new TrainError(`train: --out ${job.out} is not empty and holds no ${RUN_FILE} (not an alignx train output); refusing to replace it even with --overwrite`);
  await rm(job.out, { recursive: true, force: true });
}

/** The world of one: a job without `comm`. */
const SINGLE = new LocalComm();

/**
 * Run one training job to the end (or to an interruption). With `job.comm` of several ranks every rank calls it
 * (collective); see the module comment.
 */
export async function train(gpu: Gpu, job: TrainJob): Promise<TrainResult> {
  const comm = job.comm ?? SINGLE;
  if (comm.size === 1) return runTrain(gpu, job, comm, () => {});
  // Every rank reaches the agreement once: at the end of set-up (`ready`), or here after failing before it.
  let agreed = false;
  const agree = (own: unknown) => {
    agreed = true;
    const exitCode = typeof (own as { exitCode?: unknown })?.exitCode === "number" ? (own as { exitCode: number }).exitCode : 1;
    const f = firstFailure(comm, own === undefined ? null : { message: own instanceof Error ? own.message : String(own), exitCode });
    if (f) throw new TrainError(f.rank === 0 ? f.message : `${f.message} (on rank ${f.rank} of ${comm.size})`, f.exitCode);
  };
  try {
    return await runTrain(gpu, job, comm, () => agree(undefined));
  } catch (e) {
    if (!agreed) agree(e);
    throw e;
  }
}

/** Data parallel: the same job on every rank? (a hash of it broadcast from rank 0; collective) */
function checkSameJob(comm: Comm, job: TrainJob, identity: Record<string, unknown>): void {
  const what = { identity, model: job.model, data: job.data, out: job.out, resume: job.resume ?? null, overwrite: job.overwrite ?? false };
  const own = new Uint8Array(createHash("sha256").update(JSON.stringify(what)).digest());
  const root = own.slice();
  comm.broadcast(root, 0);
  const same = root.every((x, i) => x === own[i]);
  const f = firstFailure(comm, same ? null : { message: "the job hash differs from rank 0's", exitCode: 2 });
  if (f)
    throw new TrainError(
      `train: rank ${f.rank} of ${comm.size} was started with another job than rank 0 (its options, --model, --data, --out or --resume differ, or its model or data files do); start every rank with the same command line and files`,
    );
}

async function runTrain(gpu: Gpu, job: TrainJob, comm: Comm, ready: () => void): Promise<TrainResult> {
  const W = comm.size;
  const isRoot = comm.rank === 0;
  const log = isRoot ? (job.log ?? ((l: string) => console.error(l))) : () => {};
  const progress = isRoot ? job.progress : undefined;
  const h = job.hyper;
  const stageName = STAGE_NAMES[job.stage];
  if (job.stage !== 1 && Object.keys(h.stage1).length > 0)
    throw new TrainError(`train: ${Object.keys(h.stage1).map((k) => `--${k.replaceAll("_", "-")}`).join(", ")} only apply to --stage 1`);

  // ---- inputs, checked before any work ----
  const modelDir = job.model;
  const configPath = join(modelDir, "config.json");
  if (!existsSync(configPath)) throw new TrainError(`train: --model ${modelDir}: no config.json there`);
  const rawConfig = JSON.parse(await readFile(configPath, "utf8")) as Record<string, unknown>;
  const modelConfig = await readHfConfig(configPath).catch((e) => {
    throw new TrainError(`train: ${(e as Error).message}`);
  });
  const tokenizer = await loadTokenizer(modelDir).catch((e) => {
    throw new TrainError(`train: --model ${modelDir}: the tokenizer: ${(e as Error).message}`);
  });
  let stage1: Stage1Config | undefined;
  if (job.stage === 1) {
    try {
      stage1 = readStage1Config(rawConfig, { numLayers: modelConfig.numHiddenLayers, overrides: h.stage1, source: configPath });
    } catch (e) {
      throw new TrainError(`train: ${(e as Error).message}`);
    }
  }
  if (h.precision === "fp16" && !gpu.features.has("shader-f16"))
    throw new TrainError(`train: --precision fp16 needs the device feature shader-f16, which ${gpu.adapter.description} lacks; use --precision fp32`);
  if (isRoot) await prepareOut(job); // (only rank 0 writes OUT; its failure reaches the others at `ready`)

  // The corpus: its task and tokenizer must be the stage's and the model's.
  const dataList = typeof job.data === "string" ? [job.data] : [...job.data];
  const manifestPath = dataList.length === 1 ? (dataList[0]!.endsWith(".json") ? dataList[0]! : join(dataList[0]!, MANIFEST_FILE)) : null;
  if (manifestPath && existsSync(manifestPath)) {
    const m = await readManifest(manifestPath);
    if (!STAGE_TASKS[job.stage].includes(m.task))
      throw new TrainError(`train: --data ${manifestPath} holds ${m.task} examples; ${stageName} trains on ${STAGE_TASKS[job.stage].join(" or ")} shards (alignx pack --task ${STAGE_TASKS[job.stage][0]})`);
  }

  let resumeDir: string | undefined;
  let resumed: TrainerState | undefined;
  if (job.resume !== undefined) {
    resumeDir = await resolveResume(job.resume, job.out).catch((e) => {
      throw new TrainError(`train: ${(e as Error).message}`);
    });
    resumed = await readTrainerState(resumeDir).catch((e) => {
      throw new TrainError(`train: ${(e as Error).message}`);
    });
  }

  const loaderOpts = {
    data: typeof job.data === "string" ? job.data : [...job.data],
    batchSize: h.per_device_train_batch_size,
    seed: h.seed,
    shuffleBuffer: h.shuffle_buffer,
    groupByLength: h.group_by_length,
    padToMultipleOf: h.pad_to_multiple_of,
    maxLength: h.cutoff_len,
    trainOnInputs: h.train_on_inputs,
    padId: tokenizer.padId ?? tokenizer.eosId ?? 0,
    expectTokenizerHash: tokenizer.hash,
  };
  let loader: Loader;
  try {
    loader = await Loader.open(loaderOpts, resumed?.loader);
  } catch (e) {
    throw new TrainError(`train: --data: ${(e as Error).message}`);
  }
  if (loader.vocabSize > modelConfig.vocabSize) {
    await loader.close();
    throw new TrainError(`train: the corpus's vocabulary (${loader.vocabSize}) is larger than the model's vocab_size ${modelConfig.vocabSize}`);
  }
  if (loader.batchesPerEpoch < W) {
    await loader.close();
    throw new TrainError(`train: ${W} ranks but the corpus makes ${loader.batchesPerEpoch} micro-batch${loader.batchesPerEpoch === 1 ? "" : "es"} of ${h.per_device_train_batch_size} per epoch; use fewer ranks or a smaller --micro-batch`);
  }

  const accum = h.gradient_accumulation_steps;
  const totalSteps = h.max_steps ?? Math.max(1, Math.floor((h.num_train_epochs * loader.batchesPerEpoch) / (accum * W)));
  const warmupSteps = h.warmup_steps ?? Math.ceil(h.warmup_ratio * totalSteps);
  const identity = identityOf(job, structuredClone(rawConfig), stage1, loader.shards.map((s) => ({ file: s.file, records: s.records })), W);
  if (resumed) {
    const d = firstDifference(resumed.identity, JSON.parse(JSON.stringify(identity)));
    if (d) {
      await loader.close();
      throw new TrainError(`train: --resume ${resumeDir}: the checkpoint was made by another run (${d}); resume with the same options, model and data`);
    }
  }

  // ---- the model, classifier, optimizer, schedule ----
  let model: LlamaModel | undefined;
  let classifier: LanguageMatchingClassifier | undefined;
  let opt: AdamW | undefined;
  let scaler: GradScaler | undefined;
  const signals = job.handleSignals ?? true;
  let stopRequested = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopRequested) {
      // The second signal: stop now. Other listeners (src/io/output.ts removing temp files in flight) run for
      // this same signal and end the process themselves; with none, exit as the signal would (128 + its number).
      process.removeListener("SIGINT", onSignal);
      process.removeListener("SIGTERM", onSignal);
      if (process.listenerCount(sig) === 0) process.exit(sig === "SIGINT" ? 130 : 143);
      return;
    }
    stopRequested = true;
    log(`\n${stageName}: ${sig} received: finishing this step and saving a checkpoint (send it again to stop at once)`);
  };
  try {
    const weightsDir = resumeDir ?? modelDir;
    if (job.stage === 0 && !resumeDir) model = LlamaModel.fromConfig(gpu, rawConfig, { seed: h.seed });
    else {
      try {
        model = await LlamaModel.fromPretrained(gpu, weightsDir, { requiresGrad: true, foreign: isClassifierName });
      } catch (e) {
        throw new TrainError(`train: ${(e as Error).message}`);
      }
    }
    model.gradientCheckpointing = h.gradient_checkpointing;
    if (h.precision === "fp16") {
      model.autocast = "f16";
      scaler = new GradScaler();
    }
    if (stage1) classifier = await loadClassifier(gpu, weightsDir, model, stage1, h.seed);

    const params: Record<string, ReturnType<LlamaModel["param"]>> = { ...model.parameters(), ...(classifier?.parameters() ?? {}) };
    opt = new AdamW(params, { lr: h.learning_rate, betas: [h.adam_beta1, h.adam_beta2], eps: h.adam_epsilon, weightDecay: h.weight_decay });
    const sched = new LambdaLR(opt, getLinearScheduleWithWarmup({ numWarmupSteps: warmupSteps, numTrainingSteps: totalSteps }));
    const shard = job.shardOptimizer && W > 1 ? new OptimizerShard(params, comm) : undefined;
    const c = {
      step: 0,
      totalSteps,
      microBatches: 0,
      tokens: 0,
      badInARow: 0,
      badTotal: 0,
      seconds: 0,
    };
    if (resumed && resumeDir) {
      const sd = await readOptimizerState(resumeDir, resumed);
      opt.loadStateDict(shard ? shard.ownedState(sd) : sd);
      sched.loadStateDict({ lastStep: resumed.scheduler.lastStep });
      if (scaler && resumed.scaler) scaler.loadStateDict(resumed.scaler);
      Object.assign(c, {
        step: resumed.step,
        microBatches: resumed.microBatches,
        tokens: resumed.tokens,
        badInARow: resumed.badInARow,
        badTotal: resumed.badTotal,
        seconds: resumed.seconds,
      });
    }

    ready(); // data parallel: every rank is set up, or all stop here with the first failure
    if (W > 1) checkSameJob(comm, job, identity);

    // ---- run.json and metrics ----
    if (isRoot) await mkdir(job.out, { recursive: true });
    const metricsPath = join(job.out, METRICS_FILE);
    if (isRoot && !resumed) {
      const run = {
        format: "alignx-train-run",
        stage: job.stage,
        model: resolve(modelDir),
        data: dataList.map((d) => resolve(d)),
        options: hyperJson(h),
        alignx: stage1 ?? null,
        total_steps: totalSteps,
        warmup_steps: warmupSteps,
        global_batch: globalBatch(h, W),
        world_size: W,
        started: new Date().toISOString(),
      };
      await writeBytesAtomic(join(job.out, RUN_FILE), `${JSON.stringify(run, null, 2)}\n`);
      await writeFile(metricsPath, "");
    } else if (isRoot) await cutMetrics(metricsPath, c.step);

    const words = [
      `${stageName}: ${model.parameterCount.toLocaleString("en-US")} parameters${classifier ? ` + classifier ${classifier.parameterCount.toLocaleString("en-US")}` : ""}`,
      `${loader.records.toLocaleString("en-US")} examples (${loader.batchesPerEpoch} micro-batches of ${h.per_device_train_batch_size} per epoch)`,
      `${totalSteps} steps of ${globalBatch(h, W)} (= ${h.per_device_train_batch_size} × ${accum}${W > 1 ? ` × ${W} ranks` : ""})`,
      `lr ${h.learning_rate} warmup ${warmupSteps}`,
    ];
    if (stage1) words.push(`align_layer ${stage1.alignLayer} λ_ctr ${stage1.contrastiveLambda} τ ${stage1.contrastiveTemperature} λ_lam ${stage1.languageMatchingLambda}`);
    log(words.join(", "));
    if (resumed) log(`${stageName}: resumed from ${resumeDir} at step ${c.step} of ${totalSteps}`);
    if (shard) {
      const { owned, total } = shard.sizes();
      log(`${stageName}: optimizer state sharded over ${W} ranks: rank 0 keeps AdamW moments for ${owned.toLocaleString("en-US")} of ${total.toLocaleString("en-US")} parameters`);
    }

    if (signals) {
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
    }

    const allParams = Object.values(params);
    const saveCheckpoint = async () => {
      const dir = join(job.out, checkpointName(c.step));
      const optimizer = shard ? await shard.gatherState(opt!) : opt!; // sharded: every owner sends rank 0 its moments
      if (!isRoot) {
        await comm.barrierAsync(); // rank 0 is writing it
        return dir;
      }
      await saveTrainCheckpoint(dir, {
        model: model!,
        classifier,
        stage1,
        optimizer: optimizer!,
        tokenizerDir: modelDir,
        state: {
          stage: job.stage,
          identity,
          ...c,
          scheduler: { lastStep: sched.lastStep, warmupSteps },
          loader: loader.state(),
          scaler: scaler?.stateDict() ?? null,
          alignx: undefined,
        },
      });
      await pruneCheckpoints(job.out, h.save_total_limit);
      if (W > 1) await comm.barrierAsync();
      return dir;
    };

    let last: StepMetrics | null = null;
    const t0 = performance.now();
    const seconds0 = c.seconds;
    let windowTokens = 0;
    let windowT = performance.now();
    let interrupted = false;
    let lastSaved = resumed ? c.step : -1;
    while (c.step < totalSteps) {
      const stepT0 = performance.now();
      const terms: Tensor[][] = [];
      let tokens = 0;
      let epoch = 0;
      let commSeconds = 0;
      let stopAll = false; // data parallel: some rank was asked to stop (agreed in the step's all-reduce)
      try {
        // The step's W × accum micro-batches of the shared stream; this rank trains every W-th from its rank. Data
        // parallel: the backward of this rank's last one reads gradient buckets back as it finishes them (overlap).
        const exchange = W > 1 ? new GradientExchange(allParams, comm) : undefined;
        for (let j = 0; j < accum * W; j++) {
          const b: LoaderBatch = await loader.next();
          c.microBatches++;
          tokens += b.tokens;
          epoch = b.epoch + (b.step % loader.batchesPerEpoch) / loader.batchesPerEpoch;
          if (j % W === comm.rank) terms.push(microStep(model, classifier, stage1, b, accum, scaler, j + W >= accum * W ? exchange?.backwardOptions : undefined));
        }
        if (exchange) commSeconds = (await exchange.finish()).seconds;
        // fp16: the gradients back to their true scale (and the overflow check) before they are clipped.
        const lossScale = scaler?.getScale() ?? 1;
        scaler?.unscale_(opt);
        // The clip's scaling is fused into the AdamW step (read as the step reads each gradient; src/optim/clip.ts).
        const norm = clipGradNorm(allParams, h.max_grad_norm > 0 ? h.max_grad_norm : Number.POSITIVE_INFINITY, { fuseInto: opt });
        const values = await Promise.all([norm, ...terms.flat()].map((t) => t.item()));
        norm.release();
        const gradNorm = values[0]!;
        const k = terms[0]!.length;
        const means = Array.from({ length: k }, (_, j) => values.slice(1).filter((_, i) => i % k === j).reduce((a, x) => a + x, 0) / accum);
        if (W > 1) {
          // The ranks' means and whether any rank was asked to stop, in one all-reduce.
          const g = Float64Array.of(...means, stopRequested ? 1 : 0);
          comm.allReduce(g, "sum");
          for (let j = 0; j < k; j++) means[j] = g[j]! / W;
          stopAll = g[k]! > 0;
        }
        const mean = (j: number) => means[j]!;
        const loss = mean(0), ntp = mean(1);
        let finite = Number.isFinite(loss) && Number.isFinite(gradNorm);
        const lr = opt.groups[0]!.options.lr;
        // fp16: the scaler steps unless a gradient overflowed, and lowers the scale when one did (an overflow with
        // a finite loss is the scale being too high, not a bad step: it is skipped without counting).
        shard?.dropForeignGradients(); // sharded: this rank steps only its own parameters
        const stepped = scaler ? await scaler.step(opt) : finite && (opt.step(), true);
        if (stepped && shard) await shard.allGatherWeights();
        scaler?.update();
        const overflow = scaler !== undefined && !stepped && Number.isFinite(loss);
        if (stepped) {
          sched.step();
          c.step++;
          c.badInARow = 0;
          finite = true;
        } else if (!overflow) {
          c.badInARow++;
          c.badTotal++;
        }
        opt.zeroGrad();
        c.tokens += tokens;
        windowTokens += tokens;
        const now = performance.now();
        c.seconds = seconds0 + (now - t0) / 1e3;
        const mem = gpu.memory();
        const metrics: StepMetrics = {
          step: c.step,
          total_steps: totalSteps,
          epoch: Number(epoch.toFixed(4)),
          loss,
          loss_ntp: ntp,
          ...(stage1 ? { loss_ctr: mean(2), loss_lam: mean(3) } : {}),
          grad_norm: gradNorm,
          lr,
          loss_scale: lossScale,
          tokens,
          tokens_per_s: tokens / ((now - stepT0) / 1e3),
          gpu_live_bytes: mem.liveBytes,
          gpu_peak_bytes: mem.peakBytes,
          seconds: Number(c.seconds.toFixed(3)),
          ...(finite ? {} : { skipped: true }),
          ...(W > 1 ? { comm_seconds: Number(commSeconds.toFixed(4)) } : {}),
        };
        if (isRoot) await appendFile(metricsPath, `${JSON.stringify(metrics)}\n`);
        last = metrics;
        if (overflow) {
          log(`${stageName}: step ${c.step + 1}: fp16 gradients overflowed at loss scale ${lossScale}; step skipped, scale now ${scaler!.getScale()}`);
          continue;
        }
        if (!finite) {
          log(`${stageName}: step ${c.step + 1}: the ${Number.isFinite(loss) ? "gradient norm" : "loss"} is not finite (${Number.isFinite(loss) ? gradNorm : loss}); step skipped (${c.badInARow} in a row)`);
          if (c.badInARow >= h.max_bad_steps)
            throw new TrainError(
              `${stageName}: ${c.badInARow} steps in a row with a non-finite loss or gradient (max_bad_steps ${h.max_bad_steps}); stopping at step ${c.step}. ` +
                `The checkpoints in ${job.out} are as they were; lower the learning rate or check the data, then --resume latest`,
              1,
            );
          continue;
        }
        await job.onStep?.(metrics);
        const rate = windowTokens / ((now - windowT) / 1e3);
        const extra = progressExtra(metrics, rate);
        if (progress?.tty) progress.update(c.step, totalSteps, extra);
        else if (progress && (c.step % h.logging_steps === 0 || c.step === totalSteps)) {
          progress.log(`${stageName} step ${c.step}/${totalSteps}  ${extra}  elapsed ${fmtS(c.seconds)}`);
          windowTokens = 0;
          windowT = now;
        }
        if (progress?.tty && now - windowT > 5000) {
          windowTokens = 0;
          windowT = now;
        }
      } finally {
        for (const t of terms.flat()) t.release();
      }
      if (W > 1 ? stopAll : stopRequested) {
        interrupted = true;
        break;
      }
      if (h.save_steps > 0 && c.step % h.save_steps === 0 && c.step < totalSteps) {
        await saveCheckpoint();
        lastSaved = c.step;
      }
    }
    if (progress?.tty && last) progress.done(c.step, totalSteps, progressExtra(last, last.tokens_per_s));

    // ---- the end: a checkpoint, the final model, the plot ----
    const ckpt = lastSaved === c.step ? join(job.out, checkpointName(c.step)) : await saveCheckpoint();
    if (interrupted) {
      log(`${stageName}: interrupted at step ${c.step} of ${totalSteps}; saved ${ckpt}. Continue with --resume latest`);
      return { status: "interrupted", out: job.out, model: ckpt, steps: c.step, totalSteps, last, seconds: c.seconds };
    }
    const finalDir = join(job.out, FINAL_DIR);
    if (isRoot) {
      await model.save(finalDir, { dtype: "F32", files: { ...(await companionFiles(modelDir)), "config.json": trainedConfigJson(model, stage1) } });
      if (classifier) {
        await saveTensors(join(finalDir, CLASSIFIER_FILE), classifier.params, { dtype: "F32" });
      }
      await writeFile(join(job.out, PLOT_FILE), await lossPlot(metricsPath, stageName));
    }
    if (W > 1) await comm.barrierAsync(); // every rank returns once model/ is written
    log(`${stageName}: done, ${c.step} steps in ${fmtS(c.seconds)}; model in ${finalDir}`);
    return { status: "done", out: job.out, model: finalDir, steps: c.step, totalSteps, last, seconds: c.seconds };
  } finally {
    if (signals) {
      process.removeListener("SIGINT", onSignal);
      process.removeListener("SIGTERM", onSignal);
    }
    await loader.close();
    scaler?.release();
    opt?.release();
    classifier?.release();
    model?.release();
  }
}

/**
 * One micro-batch: forward, the loss divided by the accumulation count, backward (gradients add into `.grad`;
 * `opts`: the data-parallel exchange's hook, on the step's last micro-batch of this rank).
 * Returns the unweighted terms as scalars [loss, ntp, (ctr, lam)] for the metrics (the caller releases them).
 */
function microStep(model: LlamaModel, classifier: LanguageMatchingClassifier | undefined, stage1: Stage1Config | undefined, b: LoaderBatch, accum: number, scaler?: GradScaler, opts?: BackwardOptions): Tensor[] {
  const backward = (loss: Tensor) =>
    scope(() => {
      const l = mulScalar(loss, 1 / accum);
      (scaler ? (scaler.scale(l) as Tensor) : l).backward(opts);
    });
  const B = b.batch, T = b.length;
  const inputIds = rows(b.inputIds, B, T);
  const attentionMask = rows(b.attentionMask, B, T);
  const labels = rows(b.labels, B, T);
  if (stage1 && classifier) {
    const out = stage1Loss(model, classifier, { inputIds, attentionMask, labels, srcTgtIndex: rows(b.srcTgtIndex, B, T), srcLang: b.srcLang, tgtLang: b.tgtLang }, stage1);
    out.logits.release();
    backward(out.loss);
    return [out.loss, out.ntp, out.ctr, out.lam];
  }
  // The loss straight from the last hidden state, the vocabulary in chunks: no [B, T, V] logits (linearCrossEntropy).
  const out = model.forwardLoss(inputIds, { attentionMask, labels, logits: false });
  backward(out.loss);
  return [out.loss, out.loss.detach()];
}

/** The stage-1 classifier: from the start directory (its own file, or the model's safetensors as the reference saves it), else new. */
async function loadClassifier(gpu: Gpu, dir: string, model: LlamaModel, cfg: Stage1Config, seed: number): Promise<LanguageMatchingClassifier> {
  const d = model.config.hiddenSize;
  const specs = LanguageMatchingClassifier.specs(d, cfg.languageMatchingIntermediateSize);
  for (const path of [join(dir, CLASSIFIER_FILE), dir]) {
    if (!existsSync(path)) continue;
    const ckpt = await openCheckpoint(path);
    try {
      const present = specs.filter((s) => ckpt.has(s.name));
      if (present.length === 0) continue;
      if (present.length !== specs.length)
        throw new TrainError(`train: ${ckpt.path} holds ${present.map((s) => s.name).join(", ")} but not the rest of the language-matching classifier`);
      return LanguageMatchingClassifier.fromTensors(gpu, d, await loadParameters(gpu, ckpt, specs, { requiresGrad: true }));
    } catch (e) {
      if (e instanceof TrainError) throw e;
      throw new TrainError(`train: the language-matching classifier in ${path}: ${(e as Error).message}`);
    } finally {
      await ckpt.close();
    }
  }
  return LanguageMatchingClassifier.create(gpu, d, cfg.languageMatchingIntermediateSize, { seed });
}

/** Keep the metrics lines of steps <= `step` (a resumed run rewrites what came after its checkpoint). */
async function cutMetrics(path: string, step: number): Promise<void> {
  if (!existsSync(path)) return;
  const text = await readFile(path, "utf8");
  let keep = 0;
  for (const line of text.split("\n")) {
    if (line === "") break;
    let m: StepMetrics;
    try {
      m = JSON.parse(line) as StepMetrics;
    } catch {
      break;
    }
    if (m.step > step || (m.skipped === true && m.step >= step)) break;
    keep += Buffer.byteLength(line) + 1;
  }
  await truncate(path, keep);
}

function fmtS(s: number): string {
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s` : `${s.toFixed(1)}s`;
}

const f4 = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : String(x));

function progressExtra(m: StepMetrics, rate: number): string {
  const terms = [`loss ${f4(m.loss)}`];
  if (m.loss_ctr !== undefined) terms.push(`ntp ${f4(m.loss_ntp)} ctr ${f4(m.loss_ctr)} lam ${f4(m.loss_lam!)}`);
  terms.push(`lr ${m.lr.toExponential(2)}`, `${Math.round(rate).toLocaleString("en-US")} tok/s`);
  return terms.join("  ");
}

/** The SVG of the loss terms and the LR against the step, from metrics.jsonl. */
export async function lossPlot(metricsPath: string, title: string): Promise<string> {
  const lines = (await readFile(metricsPath, "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l) as StepMetrics);
  const ok = lines.filter((m) => !m.skipped);
  const series = (name: string, f: (m: StepMetrics) => number | undefined) => ({ name, points: ok.filter((m) => f(m) !== undefined).map((m) => [m.step, f(m)!] as [number, number]) });
  const loss = [series("loss", (m) => m.loss)];
  if (ok.some((m) => m.loss_ctr !== undefined)) loss.push(series("L_NTP", (m) => m.loss_ntp), series("L_CTR", (m) => m.loss_ctr), series("L_LAM", (m) => m.loss_lam));
  return linePlotSvg({
    title: `${title}: loss terms and learning rate`,
    xLabel: "optimizer step",
    panels: [
      { yLabel: "loss", series: loss },
      { yLabel: "learning rate", series: [series("lr", (m) => m.lr)] },
    ],
  });
}

export { TrainOptionError };

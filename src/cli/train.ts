/**
 * `alignx train --stage 1|2 --model DIR --data SHARDS --out DIR [options]` and `alignx pretrain --model DIR
 * --data SHARDS --out DIR [options]`: one training job (src/align/trainer.ts). The options come from one table
 * (src/align/options.ts TRAIN_OPTIONS): each is a flag here (`--learning-rate`, ...) and a key of the JSON
 * config file (`--config FILE`), over the preset's defaults (`--preset finetune|from-scratch`).
 * Exit 0 when done, 130 when interrupted (a checkpoint was saved), 2 for bad options or inputs (before any
 * work), 1 for failures during training.
 *
 * Data parallel: `mpirun -np N alignx train ...` runs N ranks of this same command (src/dist). Each opens the adapter
 * of its local rank (`localRank % count` of the GPU adapters, or of all adapters when there is no GPU; `--adapter`,
 * ALIGNX_ADAPTER or --cpu choose one for every rank instead), the global batch is micro-batch × accumulation × N,
 * and rank 0 alone prints progress and writes --out (src/align/trainer.ts). Every rank prints one line naming its
 * adapter; a failure to open one stops every rank with its message (exit 2).
 */
import type { CAC, Command } from "cac";
import { readFile } from "node:fs/promises";
import "../tensor/index.ts"; // registers the ops' tuners, which Gpu.open({ tune: true }) runs
import { PRESETS, resolveTrainOptions, STRING_KEYS, TRAIN_OPTIONS, flagsOf, train, TrainError, type Stage, type TrainHyper, type TrainResult } from "../align/index.ts";
import { worldComm, type Comm } from "../dist/index.ts";
import type { Gpu } from "../gpu/index.ts";
import { openRankGpu, rankLine } from "./gpu.ts";
import { jsonErrorOffset } from "../data/index.ts";
import { Progress } from "./progress.ts";
import { UsageError } from "./usage.ts";

const camel = (s: string) => s.replaceAll(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** Declare the training options (from the table) on a cac command. */
export function trainOptions(cmd: Command): Command {
  cmd
    .option("--model <dir>", "Model directory to start from (HF: config.json, safetensors, tokenizer.json)")
    .option("--data <shards>", "Shards: an alignx pack output directory, its manifest.json, or a glob")
    .option("--out <dir>", "Output directory: checkpoints, metrics.jsonl, loss.svg, model/")
    .option("--config <file>", "JSON file of options (the keys below in snake_case, e.g. learning_rate)")
    .option("--preset <name>", `Defaults: ${PRESETS.join(" or ")} (default finetune: the reference's)`)
    .option("--resume <ckpt>", "Continue exactly from a checkpoint directory, or 'latest' in --out")
    .option("--overwrite", "Replace an existing output directory (only one written by alignx train)")
    .option("--precision <p>", "fp32 (default) or fp16: f16 matrix products with f32 master weights and dynamic loss scaling (needs shader-f16)")
    .option("--shard-optimizer", "Under mpirun: each rank keeps AdamW's moments for 1/N of the parameters (ZeRO stage 1; same results)");
  for (const s of TRAIN_OPTIONS) {
    const [main, ...aliases] = flagsOf(s.key);
    const names = [...aliases.map((a) => `--${a}`), `--${main}`].join(", ");
    cmd.option(s.kind === "bool" ? `${names} [bool]` : `${names} <value>`, `${s.help} (${s.key})`);
  }
  return cmd;
}

/** The options cac parsed (camelCase) → flag values by JSON key; the aliases map to their key. */
export function flagValues(cmd: string, o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of TRAIN_OPTIONS) {
    const given = flagsOf(s.key)
      .map((f) => [f, o[camel(f)]] as const)
      .filter(([, v]) => v !== undefined);
    if (given.length > 1) throw new UsageError(`${cmd}: --${given[0]![0]} and --${given[1]![0]} set the same option (${s.key}); give one`);
    if (given.length) out[s.key] = given[0]![1] === true && s.kind === "bool" ? true : given[0]![1];
  }
  for (const k of STRING_KEYS) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

/** Read a JSON config file, or a usage error naming the file and the position of a syntax error. */
export async function readConfigFile(cmd: string, path: string): Promise<{ path: string; doc: unknown }> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new UsageError(`${cmd}: --config ${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  try {
    return { path, doc: JSON.parse(text) };
  } catch (e) {
    const at = jsonErrorOffset(text);
    let where = "";
    if (at >= 0) {
      const before = text.slice(0, at).split("\n");
      where = `:${before.length}:${before[before.length - 1]!.length + 1}`;
    }
    throw new UsageError(`${cmd}: --config ${path}${where}: not valid JSON (${(e as Error).message})`);
  }
}

export interface TrainCliOptions {
  adapter?: string;
  cpu?: boolean;
  /** Progress output on a terminal (default: stderr's isTTY). */
  tty?: boolean;
  log?: (line: string) => void;
  gpu?: Gpu;
  /** The ranks (default: src/dist `worldComm()`, the MPI world under mpirun, else a world of one). */
  comm?: Comm;
}

/** Resolve the hyperparameters of a train/pretrain command line (flags, --config, --preset, --no-ctr/--no-lam). */
export async function hyperFromCli(cmd: string, o: Record<string, unknown>, worldSize = 1): Promise<TrainHyper> {
  const flags = flagValues(cmd, o);
  for (const [neg, key] of [["ctr", "contrastive_lambda"], ["lam", "language_matching_lambda"]] as const)
    if (o[neg] === false) {
      if (flags[key] !== undefined) throw new UsageError(`${cmd}: --no-${neg} and --${key.replaceAll("_", "-")} conflict; give one`);
      flags[key] = 0;
    }
  const file = typeof o.config === "string" && o.config !== "" ? await readConfigFile(cmd, o.config) : undefined;
  if (o.config !== undefined && !file) throw new UsageError(`${cmd}: --config needs a file`);
  return resolveTrainOptions({ flags, file, worldSize });
}

/** Run `alignx train` (stage 1/2) or `alignx pretrain` (stage 0). Returns the exit code. */
export async function trainCli(cmd: "train" | "pretrain", o: Record<string, unknown>, cli: TrainCliOptions = {}): Promise<number> {
  const comm = cli.comm ?? worldComm();
  let stage: Stage = 0;
  if (cmd === "train") {
    const s = o.stage === undefined ? undefined : String(o.stage);
    if (s !== "1" && s !== "2") throw new UsageError(`train: --stage must be 1 or 2${s === undefined ? " (it is required)" : `, got ${s}`}; pretraining from scratch is alignx pretrain`);
    stage = Number(s) as Stage;
  }
  for (const k of ["model", "data", "out"] as const)
    if (typeof o[k] !== "string" || o[k] === "") throw new UsageError(`${cmd}: --${k} is required (see alignx ${cmd} --help)`);
  if (o.resume !== undefined && (typeof o.resume !== "string" || o.resume === "")) throw new UsageError(`${cmd}: --resume needs a checkpoint directory or 'latest'`);
  if (o.resume !== undefined && o.overwrite) throw new UsageError(`${cmd}: --resume and --overwrite conflict (resuming continues the output directory)`);
  const hyper = await hyperFromCli(cmd, o, comm.size).catch((e) => {
    throw e instanceof UsageError ? e : new UsageError(`${cmd}: ${(e as Error).message}`); // hyperFromCli's own errors already name the command
  });
  const progress = new Progress({ label: cmd === "pretrain" ? "pretrain" : `stage ${stage}`, unit: "steps", tty: cli.tty });
  const gpu = cli.gpu ?? (await openRankGpu(cmd, comm, cli));
  if (comm.size > 1)
    (cli.log ?? ((l: string) => progress.log(l)))(rankLine(cmd, comm, gpu));
  let r: TrainResult;
  try {
    r = await train(gpu, {
      stage,
      model: o.model as string,
      data: o.data as string,
      out: o.out as string,
      hyper,
      resume: o.resume as string | undefined,
      overwrite: o.overwrite === true,
      log: cli.log ?? ((l) => progress.log(l)),
      progress: { update: (d, t, e) => progress.update(d, t, e), done: (d, t, e) => progress.done(d, t, e), log: (l) => progress.log(l), tty: progress.isTty },
      comm,
      shardOptimizer: o.shardOptimizer === true,
    });
  } finally {
    if (!cli.gpu) gpu.destroy();
  }
  comm.finalize(); // every rank returned at the same step
  return r.status === "interrupted" ? 130 : 0;
}

/** Register `train` and `pretrain` on the CLI. */
export function registerTrain(cli: CAC, common: () => TrainCliOptions): void {
  trainOptions(
    cli
      .command("train", "Train AlignX stage 1 (NTP + contrastive + language matching) or stage 2 (NTP) from a model directory")
      .usage("train --stage 1|2 --model DIR --data SHARDS --out DIR [--preset finetune|from-scratch] [--config FILE] [options]")
      .option("--stage <n>", "1: representation alignment (stage1 shards), 2: instruction tuning (stage2 shards)")
      .option("--no-ctr", "Stage 1 without the contrastive loss (λ_ctr = 0)")
      .option("--no-lam", "Stage 1 without the language-matching loss (λ_lam = 0)"),
  ).action((o: Record<string, unknown>) => trainCli("train", o, { ...common(), adapter: o.adapter as string | undefined, cpu: o.cpu as boolean | undefined }));
  trainOptions(
    cli
      .command("pretrain", "Next-token pretraining of a fresh model (config.json + tokenizer in --model) on --task pretrain shards")
      .usage("pretrain --model DIR --data SHARDS --out DIR [--preset from-scratch] [options]"),
  ).action((o: Record<string, unknown>) => trainCli("pretrain", o, { ...common(), adapter: o.adapter as string | undefined, cpu: o.cpu as boolean | undefined }));
}

export { TrainError };

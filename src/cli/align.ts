/**
 * `alignx align [options]`: the AlignX pipeline (src/align/pipeline.ts), from a corpus to a report. With no
 * options (`bun run align`) it is the built-in run: a small LLaMA trained from scratch on the UDHR in the ten
 * AlignX languages, stage 1 and stage 2, the `--no-align` baseline, and the comparison of the two.
 * Exit 0 when done, 2 for bad options (before any work), 130 when interrupted, 1 for failures.
 *
 * Data parallel: `mpirun -np N alignx align ...` (or `mpirun -np N bun run align`) runs N ranks of this same
 * command (src/dist): rank 0 prepares, evaluates and writes OUT, every training phase runs on all N ranks with the
 * global batch of one process (src/align/pipeline.ts). Each rank opens the adapter of its local rank as
 * `alignx train` does (`--adapter`, ALIGNX_ADAPTER or --cpu choose one for every rank) and prints one line naming
 * it; the default --out's time stamp is rank 0's; everything else is printed by rank 0 alone.
 */
import type { CAC } from "cac";
import "../tensor/index.ts"; // registers the ops' tuners, which Gpu.open({ tune: true }) runs
import { ALIGN_DEFAULTS, runAlign, type AlignPlan } from "../align/index.ts";
import { worldComm, type Comm } from "../dist/index.ts";
import { Gpu } from "../gpu/index.ts";
import { openRankGpu, rankLine } from "./gpu.ts";
import { Progress } from "./progress.ts";
import { readConfigFile } from "./train.ts";
import { listOption, numOption, SEED, UsageError } from "./usage.ts";

export interface AlignCliOptions {
  adapter?: string;
  cpu?: boolean;
  tty?: boolean;
  log?: (line: string) => void;
  gpu?: Gpu;
  /** The ranks (default: src/dist `worldComm()`, the MPI world under mpirun, else a world of one). */
  comm?: Comm;
}

function stamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** Data parallel: rank 0's time stamp on every rank (the default --out must be one directory). */
function agreedStamp(comm: Comm): string {
  const own = new TextEncoder().encode(stamp());
  const buf = own.slice();
  comm.broadcast(buf, 0); // always 15 bytes: YYYYMMDD-HHMMSS
  return new TextDecoder().decode(buf);
}

export async function alignCli(inputs: string[], o: Record<string, unknown>, cli: AlignCliOptions = {}): Promise<number> {
  const cmd = "align";
  const comm = cli.comm ?? worldComm();
  const epochs = (flag: string, v: unknown, d: number) => numOption(cmd, flag, v, { min: 0, minOpen: true, max: 1e6 }) ?? d;
  if (o.out !== undefined && (typeof o.out !== "string" || o.out === "")) throw new UsageError("align: --out needs a directory");
  if (o.model !== undefined && (typeof o.model !== "string" || o.model === "")) throw new UsageError("align: --model needs a directory");
  if (o.resume === true && o.out === undefined) throw new UsageError("align: --resume needs the --out of the run to continue");
  if (o.align === false && o.baseline === false) throw new UsageError("align: --no-align and --no-baseline together leave nothing to train");
  if (o.align === false && (o.ctr === false || o.lam === false)) throw new UsageError("align: --no-ctr / --no-lam change stage 1, which --no-align skips");
  let flags: Record<string, unknown> = {};
  if (o.config !== undefined) {
    if (typeof o.config !== "string" || o.config === "") throw new UsageError("align: --config needs a file");
    const f = await readConfigFile(cmd, o.config);
    if (f.doc === null || typeof f.doc !== "object" || Array.isArray(f.doc)) throw new UsageError(`align: --config ${o.config}: a training config must be a JSON object of options`);
    flags = f.doc as Record<string, unknown>;
  }
  const plan: AlignPlan = {
    out: (o.out as string | undefined) ?? `runs/align-${comm.size > 1 ? agreedStamp(comm) : stamp()}`,
    inputs: inputs.length ? inputs : [],
    langs: listOption(cmd, "langs", o.langs),
    model: o.model as string | undefined,
    heldout: numOption(cmd, "heldout", o.heldout, { min: 0, minOpen: true, max: 0.9 }) ?? ALIGN_DEFAULTS.heldout,
    pretrainEpochs: epochs("pretrain-epochs", o.pretrainEpochs, ALIGN_DEFAULTS.pretrainEpochs),
    stage1Epochs: epochs("stage1-epochs", o.stage1Epochs, ALIGN_DEFAULTS.stage1Epochs),
    stage2Epochs: epochs("stage2-epochs", o.stage2Epochs, ALIGN_DEFAULTS.stage2Epochs),
    maxSteps: numOption(cmd, "max-steps", o.maxSteps, { integer: true, min: 1 }),
    vocabSize: numOption(cmd, "vocab-size", o.vocabSize, { integer: true, min: 300, max: 65536 }) ?? ALIGN_DEFAULTS.vocabSize,
    noCtr: o.ctr === false,
    noLam: o.lam === false,
    noAlign: o.align === false,
    noBaseline: o.baseline === false,
    seed: numOption(cmd, "seed", o.seed, SEED) ?? ALIGN_DEFAULTS.seed,
    cutoff: numOption(cmd, "cutoff", o.cutoff, { integer: true, min: 16, max: 1 << 20 }) ?? ALIGN_DEFAULTS.cutoff,
    maxNewTokens: numOption(cmd, "max-new-tokens", o.maxNewTokens, { integer: true, min: 1, max: 4096 }) ?? ALIGN_DEFAULTS.maxNewTokens,
    flags,
    overwrite: o.overwrite === true,
    resume: o.resume === true,
  };
  if (plan.inputs.length === 0) plan.inputs = [`udhr:${(plan.langs ?? (await import("../data/index.ts")).ALIGNX_LANGS).join(",")}`];
  if (o.quick) {
    plan.maxSteps ??= 4;
    plan.pretrainEpochs = Math.min(plan.pretrainEpochs, 1);
    if (o.vocabSize === undefined) plan.vocabSize = 512;
    if (o.maxNewTokens === undefined) plan.maxNewTokens = 8;
  }
  const log = cli.log ?? ((l: string) => console.error(l));
  if (comm.rank === 0)
    log(`alignx align: ${plan.model ? `AlignX fine-tuning of ${plan.model}` : "the built-in run: a small LLaMA trained from scratch"} on ${plan.inputs.join(" ")}; output in ${plan.out}${comm.size > 1 ? ` (${comm.size} ranks)` : ""}`);
  const gpu = cli.gpu ?? (await openRankGpu("align", comm, cli));
  if (comm.size > 1) log(rankLine("align", comm, gpu));
  try {
    await runAlign(
      gpu,
      plan,
      {
        log,
        progress: (label) => {
          const p = new Progress({ label: `  ${label}`, unit: "steps", tty: cli.tty });
          return { update: (d, t, e) => p.update(d, t, e), done: (d, t, e) => p.done(d, t, e), log: (l) => p.log(`  ${l}`), tty: p.isTty };
        },
      },
      comm,
    );
  } finally {
    if (!cli.gpu) gpu.destroy();
  }
  comm.finalize(); // every rank returned after the report
  return 0;
}

export function registerAlign(cli: CAC): void {
  cli
    .command("align [...inputs]", "The AlignX pipeline: pack → (pretrain) → stage 1 → stage 2 → evaluation against --no-align; no arguments: the built-in UDHR run")
    .usage("align [INPUTS...] [--model DIR] [--out DIR] [--langs L1,L2,...] [--no-align | --no-baseline] [--no-ctr] [--no-lam] [--quick]   (INPUTS: parallel corpora, default udhr)")
    .option("--model <dir>", "Start from this pretrained model (default: train a small LLaMA and its tokenizer from scratch)")
    .option("--out <dir>", "Output directory (default runs/align-<date>-<time>)")
    .option("--langs <list>", "Languages (default: the ten AlignX languages)")
    .option("--config <file>", "JSON file of training options (alignx train's keys, e.g. learning_rate), applied to every phase")
    .option("--pretrain-epochs <n>", `Pretraining epochs from scratch (default ${ALIGN_DEFAULTS.pretrainEpochs})`)
    .option("--stage1-epochs <n>", `Stage-1 epochs (default ${ALIGN_DEFAULTS.stage1Epochs})`)
    .option("--stage2-epochs <n>", `Stage-2 epochs (default ${ALIGN_DEFAULTS.stage2Epochs})`)
    .option("--max-steps <n>", "Cap every phase at this many optimizer steps")
    .option("--vocab-size <n>", `Tokenizer size from scratch (default ${ALIGN_DEFAULTS.vocabSize})`)
    .option("--heldout <share>", `Share of parallel rows held out for evaluation (default ${ALIGN_DEFAULTS.heldout})`)
    .option("--cutoff <n>", `Most tokens per example (default ${ALIGN_DEFAULTS.cutoff})`)
    .option("--max-new-tokens <n>", `Longest translation in the evaluation (default ${ALIGN_DEFAULTS.maxNewTokens})`)
    .option("--seed <n>", `Seed of the split, the data order and the weights (default ${ALIGN_DEFAULTS.seed})`)
    .option("--no-align", "Only the baseline: stage 2 alone (the paper's comparison)")
    .option("--no-baseline", "Skip the --no-align comparison")
    .option("--no-ctr", "Stage 1 without the contrastive loss")
    .option("--no-lam", "Stage 1 without the language-matching loss")
    .option("--quick", "A few steps per phase (a smoke test of the pipeline)")
    .option("--overwrite", "Replace an existing alignx align output directory")
    .option("--resume", "Continue an interrupted run in --out (same options): finished phases are kept")
    .action((inputs: string[], o: Record<string, unknown>) => alignCli(inputs, o, { adapter: o.adapter as string | undefined, cpu: o.cpu as boolean | undefined }));
}

/**
 * Training checkpoints: everything a run needs to continue exactly, in one directory written atomically
 * (src/io/atomic.ts saveDirAtomic: built as DIR.tmp-PID, renamed when complete, so a run killed mid-save leaves
 * the previous checkpoint as it was).
 *
 *   OUT/checkpoint-<step>/                       (step: optimizer steps done, zero-padded to 6 digits)
 *     config.json, model.safetensors (F32)       the model in HF layout: `alignx generate`, transformers
 *     tokenizer.json, tokenizer_config.json, ... the tokenizer files of the model it started from
 *     language_matching_classifier.safetensors   stage 1: the classifier under its HF names (a file of its own,
 *                                                so the weights above load anywhere as a plain LLaMA)
 *     optimizer.safetensors                      AdamW's exp_avg / exp_avg_sq per parameter, as "<name>.<state>"
 *     trainer_state.json                         step, epoch, counters, LR schedule, loader position (exact),
 *                                                the optimizer's per-parameter step counts and hyperparameters,
 *                                                and the run's identity (what a resume must match)
 *
 * Weights and moments are saved in F32, bit-exact: a resumed run computes exactly what the uninterrupted run
 * would have. Keep-last-K (`pruneCheckpoints`) removes the oldest complete checkpoints after a new one is in
 * place.
 */
import { existsSync } from "node:fs";
import { readdir, readFile, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { LoaderState } from "../data/index.ts";
import {
  CheckpointError,
  hfConfigJson,
  openSafetensors,
  saveDirAtomic,
  tensorsToWrite,
  writeBytesAtomic,
  writeCheckpointInto,
  writeSafetensors,
  type TensorToWrite,
} from "../io/index.ts";
import { COMPANION_FILES, type LlamaModel } from "../nn/index.ts";
import type { GradScalerStateDict, Optimizer, OptimizerStateDict } from "../optim/index.ts";
import { stage1ConfigJson, type Stage1Config } from "./config.ts";
import type { LanguageMatchingClassifier } from "./losses.ts";

export const TRAINER_STATE_FILE = "trainer_state.json";
export const OPTIMIZER_FILE = "optimizer.safetensors";
export const CLASSIFIER_FILE = "language_matching_classifier.safetensors";
export const TRAINER_STATE_FORMAT = "alignx-trainer-state";
export const TRAINER_STATE_VERSION = 1;

const CKPT_RE = /^checkpoint-(\d+)$/;

export function checkpointName(step: number): string {
  return `checkpoint-${String(step).padStart(6, "0")}`;
}

/** Counters of the run at the checkpoint. */
export interface TrainerCounters {
  /** Optimizer steps done. */
  step: number;
  totalSteps: number;
  /** Micro-batches consumed (skipped steps included). */
  microBatches: number;
  /** Non-padding tokens trained on. */
  tokens: number;
  /** Steps skipped for a non-finite loss or gradient, in a row at the checkpoint, and in all. */
  badInARow: number;
  badTotal: number;
  /** Wall seconds of training before this checkpoint (over every resume). */
  seconds: number;
}

export interface TrainerState extends TrainerCounters {
  format: typeof TRAINER_STATE_FORMAT;
  version: number;
  stage: number;
  /** What a resume must match: the options that change the computation, the model's config, the corpus. */
  identity: Record<string, unknown>;
  scheduler: { lastStep: number; warmupSteps: number };
  loader: LoaderState;
  optimizer: { kind: string; groups: OptimizerStateDict["groups"]; steps: Record<string, number>; stateNames: string[] };
  /** The loss scaler's state (fp16), or null. */
  scaler?: GradScalerStateDict | null;
  /** The stage-1 settings in force (config.json names), for stage 1. */
  alignx?: Record<string, number>;
}

export interface CheckpointParts {
  model: LlamaModel;
  classifier?: LanguageMatchingClassifier;
  stage1?: Stage1Config;
  optimizer: Optimizer<{ lr: number }>;
  /** Where the model's tokenizer files are (copied into the checkpoint). */
  tokenizerDir: string;
  state: Omit<TrainerState, "format" | "version" | "optimizer">;
}

/** Files of the tokenizer (and generation config) in `dir`, to copy beside the weights. */
export async function companionFiles(dir: string): Promise<Record<string, Uint8Array>> {
  const out: Record<string, Uint8Array> = {};
  for (const name of COMPANION_FILES) {
    const f = Bun.file(join(dir, name));
    if (await f.exists()) out[name] = new Uint8Array(await f.arrayBuffer());
  }
  return out;
}

/** config.json of a trained model: the model's config, plus the AlignX settings for stage 1 (as the reference saves them). */
export function trainedConfigJson(model: LlamaModel, stage1?: Stage1Config): string {
  const cfg = JSON.parse(hfConfigJson(model.config, { torchDtype: "float32" })) as Record<string, unknown>;
  return `${JSON.stringify(stage1 ? { ...cfg, ...stage1ConfigJson(stage1) } : cfg, null, 2)}\n`;
}

/** The optimizer's moments as safetensors entries "<param>.<state>", read from the GPU one at a time. */
function optimizerTensors(opt: Optimizer<{ lr: number }>): { tensors: TensorToWrite[]; steps: Record<string, number>; stateNames: Set<string> } {
  const tensors: TensorToWrite[] = [];
  const steps: Record<string, number> = {};
  const stateNames = new Set<string>();
  for (const g of opt.groups)
    g.params.forEach((p, k) => {
      const st = opt.stateOf(p);
      if (!st) return;
      const name = g.names[k]!;
      steps[name] = st.step;
      for (const [key, t] of Object.entries(st.tensors)) {
        stateNames.add(key);
        tensors.push({ name: `${name}.${key}`, dtype: "F32", shape: p.shape, data: () => t.data() });
      }
    });
  return { tensors, steps, stateNames };
}

/** Write a checkpoint directory atomically (replacing one of the same name). */
export async function saveTrainCheckpoint(dir: string, parts: CheckpointParts): Promise<void> {
  const { model, classifier, optimizer } = parts;
  const files: Record<string, string | Uint8Array> = { ...(await companionFiles(parts.tokenizerDir)), "config.json": trainedConfigJson(model, parts.stage1) };
  const opt = optimizerTensors(optimizer);
  const state: TrainerState = {
    format: TRAINER_STATE_FORMAT,
    version: TRAINER_STATE_VERSION,
    ...parts.state,
    optimizer: {
      kind: optimizer.kind,
      groups: optimizer.groups.map((g) => ({ names: [...g.names], initialLr: g.initialLr, options: structuredClone({ ...g.options }) as Record<string, unknown> })),
      steps: opt.steps,
      stateNames: [...opt.stateNames],
    },
  };
  await saveDirAtomic(dir, async (tmp) => {
    await writeCheckpointInto(dir, tensorsToWrite(model.params, "F32"), { files }, (fill) => fill(tmp));
    if (classifier) await writeSafetensors(join(tmp, CLASSIFIER_FILE), tensorsToWrite(classifier.params, "F32"), { format: "pt" });
    await writeSafetensors(join(tmp, OPTIMIZER_FILE), opt.tensors, { format: "alignx-optimizer" });
    await writeBytesAtomic(join(tmp, TRAINER_STATE_FILE), `${JSON.stringify(state)}\n`);
  });
}

/** The complete checkpoints in `out`, oldest first. */
export async function listCheckpoints(out: string): Promise<{ dir: string; step: number }[]> {
  const names = await readdir(out).catch(() => [] as string[]);
  const found: { dir: string; step: number }[] = [];
  for (const n of names) {
    const m = CKPT_RE.exec(n);
    if (m && existsSync(join(out, n, TRAINER_STATE_FILE))) found.push({ dir: join(out, n), step: Number(m[1]) });
  }
  return found.sort((a, b) => a.step - b.step);
}

/** Remove all but the newest `keep` checkpoints. Returns the removed directories. */
export async function pruneCheckpoints(out: string, keep: number): Promise<string[]> {
  const all = await listCheckpoints(out);
  const gone = all.slice(0, Math.max(0, all.length - keep)).map((c) => c.dir);
  for (const d of gone) await rm(d, { recursive: true, force: true });
  return gone;
}

/** `--resume latest` (the newest checkpoint in `out`) or a checkpoint directory: its path, or a clear error. */
export async function resolveResume(spec: string, out: string): Promise<string> {
  if (spec === "latest") {
    const all = await listCheckpoints(out);
    if (all.length === 0) throw new CheckpointError(`--resume latest: no checkpoint-N directory with ${TRAINER_STATE_FILE} in the output directory`, resolve(out));
    return all[all.length - 1]!.dir;
  }
  if (!existsSync(join(spec, TRAINER_STATE_FILE)))
    throw new CheckpointError(`--resume: not a training checkpoint (no ${TRAINER_STATE_FILE}); give a checkpoint-N directory or "latest"`, resolve(spec));
  return spec;
}

/** Read and check trainer_state.json. */
export async function readTrainerState(dir: string): Promise<TrainerState> {
  const path = join(dir, TRAINER_STATE_FILE);
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(path, "utf8"));
  } catch (e) {
    throw new CheckpointError(`cannot read the trainer state: ${(e as Error).message}`, path);
  }
  const s = doc as Partial<TrainerState>;
  if (s?.format !== TRAINER_STATE_FORMAT) throw new CheckpointError(`not an ${TRAINER_STATE_FORMAT} file (format: ${JSON.stringify(s?.format)})`, path);
  if (s.version !== TRAINER_STATE_VERSION) throw new CheckpointError(`version ${s.version} is not supported (this build reads ${TRAINER_STATE_VERSION})`, path);
  for (const k of ["step", "totalSteps", "microBatches", "tokens", "badInARow", "badTotal"] as const)
    if (!Number.isSafeInteger(s[k]) || (s[k] as number) < 0) throw new CheckpointError(`${k} must be an integer >= 0, got ${JSON.stringify(s[k])}`, path);
  if (!s.loader || !s.optimizer || !s.scheduler || !s.identity) throw new CheckpointError("the state lacks one of loader, optimizer, scheduler, identity", path);
  return s as TrainerState;
}

/** The optimizer state of a checkpoint, as `Optimizer.loadStateDict` takes it (moments read into host memory). */
export async function readOptimizerState(dir: string, state: TrainerState): Promise<OptimizerStateDict> {
  const path = join(dir, OPTIMIZER_FILE);
  const f = await openSafetensors(path);
  try {
    const sd: OptimizerStateDict = { kind: state.optimizer.kind, groups: state.optimizer.groups, state: {} };
    for (const [name, step] of Object.entries(state.optimizer.steps)) {
      const tensors: Record<string, Float32Array> = {};
      let shape: number[] = [];
      for (const key of state.optimizer.stateNames) {
        const entry = `${name}.${key}`;
        if (!f.has(entry)) throw new CheckpointError(`no tensor ${entry} (the trainer state lists parameter ${name})`, path);
        if (f.entry(entry).dtype !== "F32") throw new CheckpointError(`${entry} is ${f.entry(entry).dtype}, not F32`, path);
        tensors[key] = await f.readF32(entry);
        shape = [...f.entry(entry).shape];
      }
      sd.state[name] = { step, shape, tensors };
    }
    return sd;
  } finally {
    await f.close();
  }
}

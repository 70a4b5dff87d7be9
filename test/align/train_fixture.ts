// The corpus and models test/align/trainer.test.ts trains on, built once per file in a temp directory (about a
// second): a byte-level BPE of 512 tokens trained on the UDHR (eng, deu, fra), a tiny LLaMA config.json for it, a
// seeded "pretrained" start (the fresh model saved), a copy with a NaN in model.norm.weight, and the UDHR packed
// as stage1, stage2 and pretrain shards, plus stage1 shards of a second tokenizer (another vocabulary size).
// Also the `alignx` subprocess runner the CLI tests use.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { resolveTrainOptions, type TrainHyper } from "../../src/align/options.ts";
import { saveTrainedBpe, trainBpe } from "../../src/data/bpe_train.ts";
import { openUdhr } from "../../src/data/formats/udhr.ts";
import { pack } from "../../src/data/pack.ts";
import type { Gpu } from "../../src/gpu/index.ts";
import { LlamaModel } from "../../src/nn/index.ts";

export const ROOT = resolve(import.meta.dir, "..", "..");
export const MAIN = join(ROOT, "src/cli/main.ts");
export const UDHR = "udhr:eng,deu,fra";
/** Longest example kept by pack (the UDHR articles in this 512-token BPE are 190 tokens and more: 26 fit in 192). */
export const CUTOFF = 192;

/** The tiny LLaMA of the fixture (its special ids are the trained tokenizer's <s>, </s>, <pad>). */
export const TINY_CONFIG = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 512,
  max_position_embeddings: 512,
  rms_norm_eps: 1e-5,
  initializer_range: 0.02,
  bos_token_id: 0,
  eos_token_id: 1,
  pad_token_id: 2,
};

export interface TrainFixture {
  root: string;
  /** A fresh model directory: tokenizer files + config.json, no weights (stage 0's --model). */
  fresh: string;
  /** The fresh model of seed 1 saved with its tokenizer (the start of stages 1 and 2). */
  start: string;
  /** As `start` with a NaN in model.norm.weight. */
  nan: string;
  /** Shards: stage1, stage2 (translations only), pretrain (64-token sequences), and stage1 of another tokenizer. */
  s1: string;
  s2: string;
  pre: string;
  s1Other: string;
  /** A new, not yet existing path under the fixture root. */
  path(name: string): string;
  cleanup(): void;
}

async function udhrTexts(): Promise<string[]> {
  const texts: string[] = [];
  for await (const it of (await openUdhr(UDHR)).read()) if (it.kind === "parallel") texts.push(...Object.values(it.texts));
  return texts;
}

export async function buildTrainFixture(gpu: Gpu): Promise<TrainFixture> {
  const root = mkdtempSync(join(tmpdir(), "alignx-trainer-test-"));
  const texts = await udhrTexts();
  if (texts.length < 100) throw new Error(`the UDHR gave ${texts.length} texts`);
  const trained = trainBpe(texts, { vocabSize: 512 });
  if (trained.vocab.slice(0, 3).join(" ") !== "<s> </s> <pad>") throw new Error(`special tokens: ${trained.vocab.slice(0, 3).join(" ")}`);
  const fresh = join(root, "fresh");
  await saveTrainedBpe(fresh, trained);
  writeFileSync(join(fresh, "config.json"), `${JSON.stringify(TINY_CONFIG, null, 2)}\n`);
  const tokenizerFiles: Record<string, Uint8Array> = {};
  for (const name of ["tokenizer.json", "tokenizer_config.json"]) tokenizerFiles[name] = new Uint8Array(await Bun.file(join(fresh, name)).arrayBuffer());

  const start = join(root, "start");
  const nan = join(root, "nan");
  {
    using m = LlamaModel.fromConfig(gpu, TINY_CONFIG, { seed: 1 });
    await m.save(start, { dtype: "F32", files: tokenizerFiles });
    gpu.write(m.param("model.norm.weight").buffer, Float32Array.of(Number.NaN), 4 * 5);
    await m.save(nan, { dtype: "F32", files: tokenizerFiles });
  }

  const other = join(root, "other-tokenizer");
  await saveTrainedBpe(other, trainBpe(texts, { vocabSize: 384 }));

  const shards = (name: string) => join(root, "data", name);
  mkdirSync(join(root, "data"));
  const quiet = { log: () => {}, workers: 0, inputs: [UDHR] };
  await pack({ ...quiet, tokenizer: fresh, out: shards("s1"), task: "stage1", cutoff: CUTOFF });
  await pack({ ...quiet, tokenizer: fresh, out: shards("s2"), task: "stage2", mix: { translation: 1, general: 0 }, cutoff: CUTOFF });
  await pack({ ...quiet, tokenizer: fresh, out: shards("pre"), task: "pretrain", seqLen: 64 });
  await pack({ ...quiet, tokenizer: other, out: shards("s1-other"), task: "stage1", cutoff: 512 });

  let n = 0;
  return {
    root,
    fresh,
    start,
    nan,
    s1: shards("s1"),
    s2: shards("s2"),
    pre: shards("pre"),
    s1Other: shards("s1-other"),
    path: (name) => join(root, "runs", `${String(n++).padStart(2, "0")}-${name}`),
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}

/** from-scratch hyperparameters for a few tiny steps: micro-batch 2, global batch 4 (accumulation 2). */
export function tinyHyper(flags: Record<string, unknown> = {}): TrainHyper {
  return resolveTrainOptions({
    preset: "from-scratch",
    flags: { max_steps: 4, per_device_train_batch_size: 2, global_batch_size: 4, save_steps: 0, logging_steps: 1, seed: 3, ...flags },
  });
}

/** The CLI flags of tinyHyper (for `alignx train` subprocesses). */
export const TINY_FLAGS = ["--preset", "from-scratch", "--micro-batch", "2", "--global-batch-size", "4", "--seed", "3", "--logging-steps", "1"];

export interface CliResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** The environment of an `alignx` subprocess: the test run's (its private autotune cache), no adapter choice. */
export function cliEnv(): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env };
  delete env.ALIGNX_ADAPTER;
  delete env.ALIGNX_CPU;
  delete env.ALIGNX_DEBUG;
  return env;
}

export function alignxCmd(args: readonly string[]): string[] {
  return [process.execPath, MAIN, ...args];
}

/** Run alignx from the repo root; SIGKILL after `timeoutMs` so nothing can hang the suite. */
export async function alignx(args: readonly string[], timeoutMs = 60_000): Promise<CliResult> {
  const proc = Bun.spawn({ cmd: alignxCmd(args), cwd: ROOT, env: cliEnv(), stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: timeoutMs, killSignal: "SIGKILL" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (proc.signalCode) throw new Error(`alignx ${args.join(" ")}: killed by ${proc.signalCode} (timeout ${timeoutMs} ms?)\n${stdout}\n${stderr}`);
  return { code, signal: null, stdout, stderr };
}

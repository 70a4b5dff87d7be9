/**
 * `alignx align`: the whole AlignX pipeline in one command, and with no arguments the built-in run
 * (`bun run align`): a small LLaMA trained from scratch on the UDHR in the ten AlignX languages.
 *
 *   1. corpus     the inputs' parallel rows (default `udhr:<the ten AlignX languages>`), split by a seeded draw into
 *                 train and held-out rows (OUT/data/{train,heldout}.jsonl, HF translation layout);
 *   2. tokenizer  from scratch: a byte-level BPE trained on the training rows (src/data/bpe_train.ts);
 *                 from `--model`: the model's own;
 *   3. pack       pretrain (from scratch only), stage1 and stage2 shards of the training rows, stage2 shards of the
 *                 held-out rows (OUT/data/<task>/);
 *   4. pretrain   from scratch only: next-token pretraining of the small config (OUT/pretrain/);
 *   5. stage 1    L_NTP + λ_ctr·L_CTR + λ_lam·L_LAM from the pretrained model (OUT/stage1/);
 *   6. stage 2    L_NTP from stage 1's model (OUT/stage2/): the AlignX model;
 *   7. baseline   `--no-align`'s model: stage 2 alone from the pretrained model, for as many steps as stages 1 and 2
 *                 together (OUT/baseline/); skipped with --no-baseline;
 *   8. evaluate   both models on the held-out rows: next-token loss, and the representation alignment of
 *                 translations per layer (src/eval/alignment.ts: retrieval top-1 x→eng and eng→x, cosine of
 *                 translations vs random pairs, linear CKA), the align layer marked;
 *   9. report     OUT/report.{json,md} and OUT/alignment.svg; the two models side by side on the terminal.
 *
 * Every phase's output directory is complete or absent (the trainer's and the packer's atomic writes). An existing
 * output directory is refused unless `--overwrite` (start again) or `--resume` (same options: the split, tokenizer
 * and shards are rebuilt, identically, finished phases are reused and an interrupted one continues from its last
 * checkpoint, exactly as `alignx train --resume latest`).
 * The translation-quality evaluation (BLEU/chrF on FLORES with greedy decoding) is `alignx eval` (the evaluation
 * issue); this pipeline's evaluation is what the small built-in run can measure in minutes.
 *
 * Data parallel (`mpirun -np N alignx align`, `comm` of N ranks, src/dist): rank 0 alone does what writes OUT (the
 * checks and --overwrite's removal, align.json, the split, the tokenizer, the shards, the fresh model, the
 * evaluation and the report) while the others wait at a barrier that does not spin a core; every rank then reads
 * what rank 0 wrote at the same OUT path, so OUT must be one directory for every rank (one machine, or a
 * filesystem shared by every host at the same path: a rank that does not see rank 0's align.json stops the job).
 * Every training phase runs data-parallel through the trainer with the same global batch as one process: each
 * phase's accumulation is divided by N (refused, naming --config, when it does not divide), so N ranks train
 * the weights one process trains. Whether a phase is resumed, reused or started is decided by rank 0 and
 * broadcast. Any rank's failure stops every rank with the message of the lowest failing rank (`firstFailure`),
 * and only rank 0 logs.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ALIGNX_LANGS, Loader, loadTokenizer, MANIFEST_FILE, openInputs, pack, saveTrainedBpe, trainBpe, type ParallelRow, type HfTokenizer } from "../data/index.ts";
import { firstFailure, LocalComm, type Comm } from "../dist/index.ts";
import { alignmentReport, linePlotSvg, spanAlignment, type AlignmentReport, type SpanAlignmentReport } from "../eval/index.ts";
import { evalDirections, runTranslationEval, type TranslationReport } from "../eval/eval_report.ts";
import { LanguageDetector } from "../eval/lid.ts";
import type { Gpu } from "../gpu/index.ts";
import { writeBytesAtomic } from "../io/index.ts";
import { LlamaModel } from "../nn/index.ts";
import { noGrad, scope } from "../tensor/index.ts";
import { Mulberry32 } from "../tensor/rng.ts";
import { readStage1Config } from "./config.ts";
import { globalBatch, resolveTrainOptions, type TrainHyper } from "./options.ts";
import { listCheckpoints, readTrainerState } from "./checkpoint.ts";
import { FINAL_DIR, RUN_FILE, train, TrainError, type ProgressSink, type TrainResult } from "./trainer.ts";

/** The built-in model: a small LLaMA that trains in minutes on two CPU cores under lavapipe. */
export function smallLlamaConfig(vocabSize: number): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: 64,
    intermediate_size: 176,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    vocab_size: vocabSize,
    max_position_embeddings: 1024,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    initializer_range: 0.02,
    hidden_act: "silu",
    tie_word_embeddings: false,
    bos_token_id: 0,
    eos_token_id: 1,
    pad_token_id: 2,
    torch_dtype: "float32",
  };
}

export interface AlignPlan {
  out: string;
  /** Corpus inputs (paths, globs, `udhr[:LANGS]`). Default: the UDHR in the ten AlignX languages. */
  inputs: string[];
  langs?: string[];
  /** Start from this pretrained model (no tokenizer training, no pretraining). */
  model?: string;
  /** Share of parallel rows held out for evaluation. */
  heldout: number;
  /** Epochs of each phase (from scratch: pretraining too). */
  pretrainEpochs: number;
  stage1Epochs: number;
  stage2Epochs: number;
  /** Hard caps on optimizer steps (quick runs, CI). */
  maxSteps?: number;
  vocabSize: number;
  /** Stage 1 without a term (the paper's ablations). */
  noCtr: boolean;
  noLam: boolean;
  /** Only the --no-align model (stage 2 alone). */
  noAlign: boolean;
  /** Skip the --no-align comparison. */
  noBaseline: boolean;
  seed: number;
  cutoff: number;
  /** Longest translation generated in the evaluation. */
  maxNewTokens: number;
  /** Extra training options (flags / config file), by JSON key, over the preset. */
  flags: Record<string, unknown>;
  overwrite: boolean;
  /** Continue an interrupted run in `out` (same plan): finished phases are kept, an interrupted one resumes from its last checkpoint. */
  resume?: boolean;
}

export const ALIGN_DEFAULTS = {
  out: "runs/align",
  heldout: 0.2,
  pretrainEpochs: 8,
  stage1Epochs: 1,
  stage2Epochs: 1,
  vocabSize: 2048,
  seed: 42,
  cutoff: 320,
  maxNewTokens: 64,
} as const;

export interface AlignSinks {
  log: (line: string) => void;
  progress: (label: string) => ProgressSink;
}

interface ModelEval {
  name: string;
  dir: string;
  heldoutLoss: number;
  heldoutTokens: number;
  /** Each held-out sentence encoded alone (the paper's analysis). */
  alignment: AlignmentReport;
  /** Source vs target spans inside the held-out translation prompts (what L_CTR aligns). */
  spans: SpanAlignmentReport;
  /** Greedy translation of the held-out rows en→x and x→en (the final models only). */
  translation: TranslationReport | null;
}

/** How the held-out rows are translated (see `evaluate`). */
interface TranslationPlan {
  out: string;
  maxNewTokens: number;
  log: (line: string) => void;
}

const defaultInputs = () => [`udhr:${ALIGNX_LANGS.join(",")}`];

/** Split the inputs' parallel rows into train and held-out (seeded); write both as JSONL. */
async function splitCorpus(plan: AlignPlan, dir: string, log: (l: string) => void): Promise<{ train: ParallelRow[]; heldout: ParallelRow[] }> {
  const sources = await openInputs(plan.inputs, {});
  const rows: ParallelRow[] = [];
  for (const s of sources) for await (const it of s.read()) if (it.kind === "parallel") rows.push(it);
  const keep = plan.langs ?? [...ALIGNX_LANGS];
  const filtered = rows
    .map((r) => ({ ...r, texts: Object.fromEntries(Object.entries(r.texts).filter(([l]) => keep.includes(l))) }))
    .filter((r) => Object.keys(r.texts).length >= 2 && "eng" in r.texts);
  if (filtered.length < 4)
    throw new TrainError(`align: the inputs (${plan.inputs.join(" ")}) hold ${filtered.length} parallel rows with English and another of ${keep.join(",")}; at least 4 are needed`);
  const rng = new Mulberry32(plan.seed);
  const order = filtered.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const nHeld = Math.max(2, Math.round(filtered.length * plan.heldout));
  const heldSet = new Set(order.slice(0, nHeld));
  const train = filtered.filter((_, i) => !heldSet.has(i));
  const heldout = filtered.filter((_, i) => heldSet.has(i));
  await mkdir(dir, { recursive: true });
  const jsonl = (rs: ParallelRow[]) => rs.map((r) => JSON.stringify({ translation: r.texts, source: r.source })).join("\n") + "\n";
  await writeBytesAtomic(join(dir, "train.jsonl"), jsonl(train));
  await writeBytesAtomic(join(dir, "heldout.jsonl"), jsonl(heldout));
  const langs = [...new Set(filtered.flatMap((r) => Object.keys(r.texts)))].sort();
  log(`corpus: ${filtered.length} parallel rows in ${langs.length} languages (${langs.join(" ")}): ${train.length} for training, ${heldout.length} held out for evaluation`);
  return { train, heldout };
}

/** The held-out next-token loss of a model: the mean over every supervised token of the held-out shards. */
async function heldoutLoss(gpu: Gpu, model: LlamaModel, data: string, tok: HfTokenizer): Promise<{ loss: number; tokens: number }> {
  const loader = await Loader.open({ data, batchSize: 8, shuffle: false, epochs: 1, padId: tok.padId ?? 0, expectTokenizerHash: tok.hash });
  let sum = 0, count = 0;
  try {
    for await (const b of loader) {
      const B = b.batch, T = b.length;
      const rows = (a: Int32Array) => Array.from({ length: B }, (_, i) => Array.from(a.subarray(i * T, (i + 1) * T)));
      const labels = rows(b.labels);
      let n = 0;
      for (const r of labels) for (let t = 1; t < T; t++) if (r[t] !== -100) n++;
      const v = await noGrad(() => scope(() => {
        return model.forwardLoss(rows(b.inputIds), { attentionMask: rows(b.attentionMask), labels, logits: false }).loss;
      })).item();
      sum += v * n;
      count += n;
    }
  } finally {
    await loader.close();
  }
  return { loss: sum / count, tokens: count };
}

async function evaluate(
  gpu: Gpu,
  name: string,
  dir: string,
  heldoutShards: string,
  heldout: ParallelRow[],
  langs: string[],
  tok: HfTokenizer,
  seed: number,
  translation: TranslationPlan | null,
): Promise<ModelEval> {
  const model = await LlamaModel.fromPretrained(gpu, dir, { requiresGrad: false });
  try {
    const { loss, tokens } = await heldoutLoss(gpu, model, heldoutShards, tok);
    const rows = heldout.filter((r) => langs.every((l) => l in r.texts));
    const sentences: Record<string, number[][]> = {};
    for (const l of langs) sentences[l] = rows.map((r) => tok.encode(r.texts[l]!).slice(0, 512));
    const alignment = await alignmentReport(model, { langs, pivot: "eng", sentences }, { seed, skipPrefix: tok.bosId === null ? 0 : 1 });
    const spans = await spanAlignment(model, heldoutShards, { expectTokenizerHash: tok.hash, padId: tok.padId ?? 0 });
    let tr: TranslationReport | null = null;
    if (translation && tok.eosId !== null) {
      // The held-out rows as a FLORES-like set: the same N sentences in every language.
      const texts = Object.fromEntries(langs.map((l) => [l, rows.map((r) => r.texts[l]!.replace(/\s*\n\s*/g, " "))]));
      const set = { dir: "held-out rows", split: ".dev" as const, langs, available: langs, sentences: texts, n: rows.length, linesRead: rows.length, emptyLines: 0 };
      const out = join(translation.out, name.replaceAll(" ", "-"));
      await mkdir(out, { recursive: true });
      tr = await runTranslationEval(model, tok, {
        out,
        set,
        directions: evalDirections(langs, ["en-x", "x-en"]),
        batchSize: 32,
        maxNewTokens: translation.maxNewTokens,
        eosTokenIds: [tok.eosId],
        lid: new LanguageDetector(langs),
        model: dir,
      });
    }
    return { name, dir, heldoutLoss: loss, heldoutTokens: tokens, alignment, spans, translation: tr };
  } finally {
    model.release();
  }
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** Data parallel: was every rank started with rank 0's plan? (a hash of it broadcast from rank 0; collective) */
function checkSamePlan(comm: Comm, plan: AlignPlan): void {
  const own = new Uint8Array(createHash("sha256").update(JSON.stringify(plan)).digest());
  const root = own.slice();
  comm.broadcast(root, 0);
  const f = firstFailure(comm, root.every((x, i) => x === own[i]) ? null : { message: "the plan differs from rank 0's", exitCode: 2 });
  if (f)
    throw new TrainError(
      `align: rank ${f.rank} of ${comm.size} was started with other options than rank 0 (its inputs, options, --config file or --out differ); start every rank with the same command line and files`,
    );
}

/**
 * Data parallel: does every rank see the align.json rank 0 wrote in `out`? (its hash broadcast from rank 0;
 * collective) Every rank reads rank 0's shards, tokenizer and models there, so OUT must be shared.
 */
async function checkSharedOut(comm: Comm, out: string): Promise<void> {
  const path = join(out, "align.json");
  let own: Uint8Array | null = null;
  try {
    own = new Uint8Array(createHash("sha256").update(await readFile(path)).digest());
  } catch {
    // not there: said below
  }
  const root = new Uint8Array(32);
  if (comm.rank === 0) root.set(own!);
  comm.broadcast(root, 0);
  const same = own !== null && root.every((x, i) => x === own![i]);
  const f = firstFailure(comm, same ? null : { message: own === null ? "no such file" : "another file", exitCode: 2 });
  if (f)
    throw new TrainError(
      `align: rank ${f.rank} of ${comm.size} does not see the ${path} rank 0 wrote (${f.message} there): under mpirun every rank reads what rank 0 writes in --out, so --out must be the same directory for every rank (one machine, or a filesystem shared by every host at the same path)`,
    );
}

/**
 * Run the pipeline. Returns the report's path (and, on rank 0, its markdown). Under mpirun every rank of `comm`
 * calls it (collective; see the module comment).
 */
export async function runAlign(gpu: Gpu, plan: AlignPlan, sinks: AlignSinks, comm: Comm = new LocalComm()): Promise<{ report: string; markdown: string }> {
  const W = comm.size;
  const isRoot = comm.rank === 0;
  const log = isRoot ? sinks.log : () => {};
  const out = plan.out;
  const planJson = (p: AlignPlan) => JSON.stringify({ ...p, overwrite: undefined, resume: undefined });
  if (plan.resume && plan.overwrite) throw new TrainError("align: --resume and --overwrite conflict");
  if (W > 1) checkSamePlan(comm, plan);
  const fromScratch = plan.model === undefined;

  // Each phase's options; under mpirun the accumulation of one process divided by the ranks (the same global batch).
  const hyper = (epochs: number, extra: Record<string, unknown> = {}): TrainHyper => {
    const h = resolveTrainOptions({
      preset: fromScratch ? "from-scratch" : "finetune",
      flags: { seed: plan.seed, cutoff_len: plan.cutoff, num_train_epochs: epochs, ...(plan.maxSteps ? { max_steps: plan.maxSteps } : {}), ...plan.flags, ...extra },
    });
    const a = h.gradient_accumulation_steps;
    if (W === 1) return h;
    if (a % W !== 0)
      throw new TrainError(
        `align: under mpirun -np ${W} every phase keeps the global batch of one process (${globalBatch(h)} = micro-batch ${h.per_device_train_batch_size} × accumulation ${a}) by dividing the accumulation by the ${W} ranks, and ${a} does not divide by ${W}; ` +
          `set per_device_train_batch_size, gradient_accumulation_steps or global_batch_size in --config so that the accumulation is a multiple of ${W}, or run a number of ranks that divides ${a}`,
      );
    return { ...h, gradient_accumulation_steps: a / W };
  };
  hyper(1); // the training options (and, under mpirun, the batch split) are checked before any work

  /**
   * `what` on rank 0 alone (what writes OUT); the other ranks wait without spinning a core. A failure stops every
   * rank with rank 0's message. Rank 0 gets the value.
   */
  const onRoot = async <T>(what: () => Promise<T>): Promise<T | undefined> => {
    if (W === 1) return what();
    let value: T | undefined;
    let err: unknown;
    if (isRoot) {
      try {
        value = await what();
      } catch (e) {
        err = e;
      }
    }
    await comm.barrierAsync();
    const exitCode = typeof (err as { exitCode?: unknown })?.exitCode === "number" ? (err as { exitCode: number }).exitCode : 1;
    const f = firstFailure(comm, err === undefined ? null : { message: err instanceof Error ? err.message : String(err), exitCode });
    if (f) throw err ?? new TrainError(f.message, f.exitCode);
    return value;
  };

  const t0 = performance.now();
  const phases = [fromScratch ? "tokenizer" : null, "pack", fromScratch ? "pretrain" : null, plan.noAlign ? null : "stage 1", plan.noAlign ? null : "stage 2", plan.noBaseline && !plan.noAlign ? null : "baseline", "evaluate"].filter(Boolean) as string[];
  let phaseNo = 0;
  const phase = (name: string, what: string) => log(`\n[${++phaseNo}/${phases.length}] ${name}: ${what}`);
  const dataDir = join(out, "data");
  const tokDir = fromScratch ? join(out, "tokenizer") : plan.model!;
  const trainJsonl = join(dataDir, "train.jsonl");

  // 0-3. the output directory, corpus, tokenizer and shards: rank 0 writes them, every rank reads them.
  const prepared = await onRoot(async () => {
    if (plan.resume) {
      const path = join(out, "align.json");
      if (!existsSync(path)) throw new TrainError(`align: --resume: ${out} holds no align.json (not an alignx align output)`);
      const prev = (JSON.parse(await readFile(path, "utf8")) as { plan: AlignPlan }).plan;
      if (planJson(prev) !== planJson({ ...plan, out: prev.out }))
        throw new TrainError(`align: --resume: ${out} was started with other options (align.json: ${planJson(prev)}); resume with the same ones`);
      if (existsSync(join(out, "report.json"))) throw new TrainError(`align: --resume: ${out} is finished (report.json); nothing to resume`);
    } else if (existsSync(out) && (await readdir(out)).length > 0) {
      if (!plan.overwrite) throw new TrainError(`align: ${out} exists and is not empty; pass --overwrite to start again there, --resume to continue it, or choose another --out`);
      if (!existsSync(join(out, "align.json"))) throw new TrainError(`align: ${out} is not an alignx align output (no align.json); refusing to replace it even with --overwrite`);
      await rm(out, { recursive: true, force: true });
    }
    await mkdir(out, { recursive: true });
    if (!plan.resume) await writeFile(join(out, "align.json"), `${JSON.stringify({ format: "alignx-align", plan }, null, 2)}\n`);

    // 1-2. corpus and tokenizer
    const { train: trainRows, heldout } = await splitCorpus(plan, dataDir, log);
    if (fromScratch) {
      phase("tokenizer", `byte-level BPE with ${plan.vocabSize} tokens on the training rows`);
      const texts = trainRows.flatMap((r) => Object.values(r.texts));
      const trained = trainBpe(texts, { vocabSize: plan.vocabSize });
      await saveTrainedBpe(tokDir, trained);
      log(`  ${trained.vocab.length} tokens (${trained.stats.merges} merges, ${trained.stats.stoppedBy}) in ${trained.stats.seconds.toFixed(1)} s → ${tokDir}`);
    }
    const tok = await loadTokenizer(tokDir);

    // 3. pack
    phase("pack", "shards of the training rows (and the held-out rows for evaluation)");
    const packTask = async (task: "pretrain" | "stage1" | "stage2", input: string, name: string) => {
      const dir = join(dataDir, name);
      const sizes = task === "pretrain" ? { seqLen: 128 } : task === "stage2" ? { cutoff: plan.cutoff, mix: { translation: 1, general: 0 } } : { cutoff: plan.cutoff };
      const m = await pack({ tokenizer: tokDir, out: dir, inputs: [input], task, ...sizes, seed: plan.seed, overwrite: true, workers: 0, langs: plan.langs, createdBy: "alignx align" });
      const dropped = Object.entries(m.dropped).filter(([, v]) => v > 0);
      log(`  ${name}: ${m.counts.records.toLocaleString("en-US")} examples, ${m.counts.tokens.toLocaleString("en-US")} tokens${dropped.length ? ` (dropped: ${dropped.map(([k, v]) => `${v} ${k}`).join(", ")})` : ""}`);
    };
    if (fromScratch) await packTask("pretrain", trainJsonl, "pretrain");
    await packTask("stage1", trainJsonl, "stage1");
    await packTask("stage2", trainJsonl, "stage2");
    await packTask("stage1", join(dataDir, "heldout.jsonl"), "heldout");
    return { heldout, tok };
  });
  if (W > 1) await checkSharedOut(comm, out);
  const pretrainData = join(dataDir, "pretrain");
  const stage1Data = join(dataDir, "stage1");
  const stage2Data = join(dataDir, "stage2");
  const heldoutData = join(dataDir, "heldout");

  const trained: { phase: string; dir: string; steps: number; seconds: number; loss: number | null }[] = [];
  const run = async (label: string, stage: 0 | 1 | 2, model: string, data: string, dir: string, h: TrainHyper): Promise<TrainResult> => {
    const r = await runPhase(label, stage, model, data, dir, h);
    trained.push({ phase: label, dir, steps: r.steps, seconds: Number(r.seconds.toFixed(1)), loss: r.last?.loss ?? null });
    return r;
  };
  const runPhase = async (label: string, stage: 0 | 1 | 2, model: string, data: string, dir: string, h: TrainHyper): Promise<TrainResult> => {
    // Rank 0 decides, from OUT, whether the phase starts, resumes (1) or was done before (2: its step counts).
    const decided = await onRoot(async () => {
      const d = new Float64Array(4);
      if (!plan.resume || !existsSync(join(dir, RUN_FILE))) return d;
      const done = await listCheckpoints(dir);
      if (existsSync(join(dir, FINAL_DIR, "config.json")) && done.length > 0) {
        const st = await readTrainerState(done.at(-1)!.dir);
        d.set([2, st.step, st.totalSteps, st.seconds]);
      } else if (done.length > 0) d[0] = 1;
      return d;
    });
    const d = decided ?? new Float64Array(4);
    if (W > 1) comm.broadcast(d, 0);
    if (d[0] === 2) {
      log(`  ${label}: done before (${d[1]} steps); reusing ${join(dir, FINAL_DIR)}`);
      return { status: "done", out: dir, model: join(dir, FINAL_DIR), steps: d[1]!, totalSteps: d[2]!, last: null, seconds: d[3]! };
    }
    const resume = d[0] === 1 ? "latest" : undefined;
    const r = await train(gpu, { stage, model, data, out: dir, hyper: h, overwrite: resume === undefined, resume, log: (l) => log(`  ${l}`), progress: sinks.progress(label), comm });
    if (r.status === "interrupted")
      throw new TrainError(`align: interrupted during ${label} (checkpoint in ${dir}); continue with the same command and --resume`, 130);
    return r;
  };

  // 4. pretrain
  let base = plan.model ?? "";
  if (fromScratch) {
    const fresh = join(out, "fresh");
    await onRoot(async () => {
      await mkdir(fresh, { recursive: true });
      await writeFile(join(fresh, "config.json"), `${JSON.stringify(smallLlamaConfig(prepared!.tok.vocabSize), null, 2)}\n`);
      for (const f of ["tokenizer.json", "tokenizer_config.json"]) await writeFile(join(fresh, f), await readFile(join(tokDir, f)));
    });
    const h = hyper(plan.pretrainEpochs);
    phase("pretrain", `next-token pretraining of a ${(smallLlamaConfig(0).num_hidden_layers as number)}-layer LLaMA (hidden ${smallLlamaConfig(0).hidden_size as number}) from scratch, ${plan.pretrainEpochs} epochs${W > 1 ? ` (${W} ranks)` : ""}`);
    base = (await run("pretrain", 0, fresh, pretrainData, join(out, "pretrain"), h)).model;
  }

  // 5-6. AlignX: stage 1 then stage 2
  let alignSteps = 0;
  let alignxModel: string | null = null;
  let stage1Model: string | null = null;
  const s1extra = { ...(plan.noCtr ? { contrastive_lambda: 0 } : {}), ...(plan.noLam ? { language_matching_lambda: 0 } : {}) };
  if (!plan.noAlign) {
    phase("stage 1", `representation alignment (L_NTP + λ_ctr·L_CTR + λ_lam·L_LAM)${plan.noCtr ? " without L_CTR" : ""}${plan.noLam ? " without L_LAM" : ""}`);
    const r1 = await run("stage 1", 1, base, stage1Data, join(out, "stage1"), hyper(plan.stage1Epochs, s1extra));
    phase("stage 2", "multilingual instruction tuning (L_NTP) from stage 1");
    const r2 = await run("stage 2", 2, r1.model, stage2Data, join(out, "stage2"), hyper(plan.stage2Epochs));
    alignSteps = r1.steps + r2.steps;
    stage1Model = r1.model;
    alignxModel = r2.model;
  }

  // 7. the --no-align baseline: stage 2 alone, the same number of steps
  let baselineModel: string | null = null;
  if (plan.noAlign || !plan.noBaseline) {
    const steps = alignSteps || undefined;
    phase("baseline", `--no-align: stage 2 alone from the ${fromScratch ? "pretrained" : "given"} model${steps ? `, ${steps} steps (as stages 1 + 2)` : ""}`);
    const h = hyper(plan.stage1Epochs + plan.stage2Epochs, steps ? { max_steps: steps } : {});
    baselineModel = (await run("baseline", 2, base, stage2Data, join(out, "baseline"), h)).model;
  }

  // 8-9. evaluate and report: rank 0 (the others wait)
  const md = await onRoot(async () => {
    const { heldout, tok } = prepared!;
    let stage1Cfg = null as ReturnType<typeof readStage1Config> | null;
    if (stage1Model) {
      const raw = JSON.parse(await readFile(join(stage1Model, "config.json"), "utf8")) as Record<string, unknown>;
      stage1Cfg = readStage1Config(raw, { numLayers: raw.num_hidden_layers as number });
    }
    phase("evaluate", `held-out loss, alignment of translations at every layer, and greedy translation en→x / x→en (${heldout.length} held-out rows)`);
    const langs = [...new Set(heldout.flatMap((r) => Object.keys(r.texts)))].filter((l) => heldout.every((r) => l in r.texts)).sort();
    if (!langs.includes("eng") || langs.length < 2) throw new TrainError(`align: the held-out rows share no English and another language; cannot measure alignment`);
    const evals: ModelEval[] = [];
    const tplan: TranslationPlan = { out: join(out, "translations"), maxNewTokens: plan.maxNewTokens, log };
    if (stage1Model) evals.push(await evaluate(gpu, "after stage 1", stage1Model, heldoutData, heldout, langs, tok, plan.seed, null));
    if (alignxModel) evals.push(await evaluate(gpu, "alignx", alignxModel, heldoutData, heldout, langs, tok, plan.seed, tplan));
    if (baselineModel) evals.push(await evaluate(gpu, "no-align", baselineModel, heldoutData, heldout, langs, tok, plan.seed, tplan));
    return writeReport(out, t0, trained, heldout, langs, evals, stage1Cfg?.alignLayer, W, log);
  });
  return { report: join(out, "report.json"), markdown: md ?? "" };
}

/** OUT/report.{json,md} and OUT/alignment.svg from the evaluations; the markdown is logged and returned. */
async function writeReport(
  out: string,
  t0: number,
  trained: { phase: string; dir: string; steps: number; seconds: number; loss: number | null }[],
  heldout: ParallelRow[],
  langs: string[],
  evals: ModelEval[],
  stage1AlignLayer: number | undefined,
  worldSize: number,
  log: (line: string) => void,
): Promise<string> {
  const numLayers = evals[0]!.alignment.layers.length - 1;
  const alignLayer = stage1AlignLayer ?? Math.floor(numLayers / 2);
  const report = {
    format: "alignx-align-report",
    version: 1,
    seconds: Number(((performance.now() - t0) / 1e3).toFixed(1)),
    world_size: worldSize,
    align_layer: alignLayer,
    training: trained,
    heldout_rows: heldout.length,
    languages: langs,
    models: evals.map((e) => ({
      name: e.name,
      dir: e.dir,
      heldout_loss: e.heldoutLoss,
      heldout_tokens: e.heldoutTokens,
      align_layer: e.alignment.layers[alignLayer]!.mean,
      last_layer: e.alignment.layers[numLayers]!.mean,
      in_prompt_align_layer: e.spans.layers[alignLayer]!,
      alignment: e.alignment,
      in_prompt: e.spans,
      translation: e.translation && { averages: e.translation.averages, results: e.translation.results.map((r) => ({ src: r.src, tgt: r.tgt, bleu: r.bleu, "chrf++": r["chrf++"], off_target: r.off_target })) },
    })),
  };
  await writeBytesAtomic(join(out, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
  const svg = linePlotSvg({
    title: "Alignment of held-out translations per layer",
    xLabel: "layer (0 = embeddings)",
    panels: [
      {
        yLabel: "retrieval in the prompt (src↔tgt span)",
        series: evals.map((e) => ({ name: e.name, dashed: e.name === "no-align", points: e.spans.layers.map((l) => [l.layer, l.retrieval] as [number, number]) })),
        markers: [{ x: alignLayer, label: "align layer" }],
      },
      {
        yLabel: "retrieval, sentences alone (x↔eng)",
        series: evals.map((e) => ({ name: e.name, dashed: e.name === "no-align", points: e.alignment.layers.map((l) => [l.layer, (l.mean.x2pivot + l.mean.pivot2x) / 2] as [number, number]) })),
        markers: [{ x: alignLayer, label: "align layer" }],
      },
      {
        yLabel: "cosine: translations − random",
        series: evals.map((e) => ({ name: e.name, dashed: e.name === "no-align", points: e.alignment.layers.map((l) => [l.layer, l.mean.meanCos - l.mean.randomCos] as [number, number]) })),
        markers: [{ x: alignLayer, label: "align layer" }],
      },
    ],
  });
  await writeBytesAtomic(join(out, "alignment.svg"), svg);
  const md = reportMarkdown(report, evals, alignLayer, numLayers);
  await writeBytesAtomic(join(out, "report.md"), md);
  log(`\n${md}`);
  log(`models: ${evals.map((e) => `${e.name} ${e.dir}`).join(", ")}\nreport: ${join(out, "report.md")} (and report.json, alignment.svg, */loss.svg) — ${report.seconds.toFixed(0)} s in all${worldSize > 1 ? ` on ${worldSize} ranks` : ""}`);
  return md;
}

function reportMarkdown(
  report: { seconds: number; heldout_rows: number; languages: string[]; training: { phase: string; dir: string; steps: number; seconds: number; loss: number | null }[] },
  evals: ModelEval[],
  alignLayer: number,
  numLayers: number,
): string {
  const row = (label: string, f: (e: ModelEval) => string) => `| ${label} | ${evals.map(f).join(" | ")} |`;
  const at = (e: ModelEval, layer: number) => e.alignment.layers[layer]!.mean;
  const alone = (e: ModelEval, layer: number) => (at(e, layer).x2pivot + at(e, layer).pivot2x) / 2;
  const spans = evals[0]!.spans;
  const lines = [
    `# AlignX run: ${evals.map((e) => e.name).join(" vs ")}`,
    "",
    `Held out: ${report.heldout_rows} parallel rows in ${report.languages.join(" ")} (never trained on), as ${spans.examples} translation prompts in ${Object.keys(spans.directions).length} directions.`,
    "",
    `- **in the prompt**: top-1 cosine retrieval between the mean states of each prompt's source and target spans, among the prompts of the same direction (the states L_CTR pulls together; chance ${pct(spans.chance)});`,
    `- **sentences alone**: each sentence encoded by itself, top-1 retrieval of its English translation and back (the paper's analysis; chance ${pct(1 / report.heldout_rows)}).`,
    "",
    "Training (curves: each phase's loss.svg):",
    "",
    "| phase | steps | last loss | seconds | curves |",
    "|---|---:|---:|---:|---|",
    ...report.training.map((t) => `| ${t.phase} | ${t.steps} | ${t.loss === null ? "(reused)" : t.loss.toFixed(4)} | ${t.seconds} | ${t.dir}/loss.svg |`),
    "",
    `| measure | ${evals.map((e) => e.name).join(" | ")} |`,
    `|---|${evals.map(() => "---:").join("|")}|`,
    row("held-out loss (NTP)", (e) => e.heldoutLoss.toFixed(4)),
    row(`retrieval in the prompt @ align layer ${alignLayer}`, (e) => pct(e.spans.layers[alignLayer]!.retrieval)),
    row(`retrieval, sentences alone @ align layer ${alignLayer}`, (e) => pct(alone(e, alignLayer))),
    row(`cos(translations) − cos(random), alone @ ${alignLayer}`, (e) => (at(e, alignLayer).meanCos - at(e, alignLayer).randomCos).toFixed(4)),
    row(`linear CKA, alone @ ${alignLayer}`, (e) => at(e, alignLayer).cka.toFixed(4)),
    row(`retrieval, sentences alone @ last layer ${numLayers}`, (e) => pct(alone(e, numLayers))),
    "",
    "Per layer (retrieval in the prompt / sentences alone):",
    "",
    `| layer | ${evals.map((e) => e.name).join(" | ")} |`,
    `|---:|${evals.map(() => "---:").join("|")}|`,
    ...evals[0]!.alignment.layers.map(
      (l) => `| ${l.layer}${l.layer === alignLayer ? " (align)" : ""} | ${evals.map((e) => `${pct(e.spans.layers[l.layer]!.retrieval)} / ${pct(alone(e, l.layer))}`).join(" | ")} |`,
    ),
    "",
    ...translationSection(evals),
  ];
  return lines.join("\n");
}

/** The translation table: BLEU, chrF++ and off-target rate per direction for each translated model, and the differences of the first two. */
function translationSection(evals: ModelEval[]): string[] {
  const tr = evals.filter((e) => e.translation);
  if (tr.length === 0) return [];
  const [a, b] = tr;
  const head = tr.map((e) => `${e.name} BLEU | ${e.name} chrF++ | ${e.name} off-target`).join(" | ");
  const lines = [
    `Greedy translation of the held-out rows (the Alpaca translation prompt; hypotheses in translations/<model>/):`,
    "",
    `| direction | ${head}${b ? " | Δ chrF++" : ""} |`,
    `|---|${tr.map(() => "---:|---:|---:").join("|")}${b ? "|---:" : ""}|`,
  ];
  const results = a!.translation!.results;
  const off = (x: number | null) => (x === null ? "n/a" : pct(x));
  for (let i = 0; i < results.length; i++) {
    const cells = tr.map((e) => {
      const r = e.translation!.results[i]!;
      return `${r.bleu.toFixed(1)} | ${r["chrf++"].toFixed(1)} | ${off(r.off_target)}`;
    });
    const d = b ? ` | ${(a!.translation!.results[i]!["chrf++"] - b.translation!.results[i]!["chrf++"]).toFixed(1)}` : "";
    lines.push(`| ${results[i]!.src}→${results[i]!.tgt} | ${cells.join(" | ")}${d} |`);
  }
  for (const k of Object.keys(a!.translation!.averages)) {
    const cells = tr.map((e) => {
      const v = e.translation!.averages[k]!;
      return `${v.bleu.toFixed(1)} | ${v["chrf++"].toFixed(1)} | ${off(v.off_target)}`;
    });
    const d = b ? ` | ${(a!.translation!.averages[k]!["chrf++"] - b.translation!.averages[k]!["chrf++"]).toFixed(1)}` : "";
    lines.push(`| **average ${k}** | ${cells.join(" | ")}${d} |`);
  }
  lines.push("", `BLEU: ${a!.translation!.signatures.bleu.join("; ")}. chrF++: ${a!.translation!.signatures["chrf++"].join("; ")}.`, ...a!.translation!.notes.map((n) => `Note: ${n}`), "");
  return lines;
}

export { MANIFEST_FILE };

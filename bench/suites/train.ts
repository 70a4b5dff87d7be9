/**
 * End to end: training steps of LlamaModel (src/nn/llama.ts) built by `fromConfig` from an HF-style config
 * object, with AdamW (src/optim). One step = forwardLoss + backward + AdamW step + zeroGrad, timed on the host
 * up to the loss's readback (which waits for all of it): the wall time a trainer sees. One warm-up step
 * (pipeline compilation, AdamW state), then the median of `steps` steps.
 *   tokens/s = B·T / step time
 *   MFU      = 6 · params · B·T / step time / ceilings.matmul_gflops
 * params counts every parameter (embeddings and lm_head included); attention's T² FLOPs are not counted (the
 * usual 6N approximation). The peak is the MEASURED f32 matmul ceiling of this device, not a datasheet value,
 * so MFU here says how close the whole step comes to our own best matmul.
 * Memory: the pool's peak (class sizes of live buffers: parameters, gradients, AdamW state, activations) over
 * the timed steps, against the parameter bytes and memoryReport()'s estimate.
 *
 * Stage 1 (train-stage1-<config>, ../shared/ALIGNX.md): the same model, the same timing, but the step is AlignX's
 * stage-1 objective L_NTP + λ_ctr · L_CTR + λ_lam · L_LAM (src/align/losses.ts stage1Loss, settings from the
 * config's stage-1 fields or their defaults: align_layer ⌊L/2⌋, λ_ctr 0.3, τ 0.1, λ_lam 0.4, classifier width
 * 128) on a synthetic translation-like batch (stage1Batch: the NTP batch's ids, a source span and a target span
 * per row, languages that match in some pairs and not in others), backward, AdamW over the model AND the
 * language-matching classifier, zeroGrad. `overhead_pct` = (stage-1 step ms / NTP step ms − 1) × 100 against
 * the NTP row of the same config measured just before it in the same run (per token when the stage-1 batch had
 * to be raised to 2 rows). `loss_init` (both rows) is the warm-up step's loss, before any update: the stage-1
 * one is the NTP one plus two positive terms (stage1Check).
 *
 * Peer (torch-train-<config>): bench/torch_train_peer.py runs the same config, batch and step in PyTorch
 * (CPU torch on a CPU adapter, on all cores with whatever BLAS Debian's libblas.so.3 points at — OpenBLAS once
 * `tools/setup.sh --bench` has installed libopenblas0-pthread; CUDA torch on a GPU one), when an interpreter
 * with torch is found. It runs `runs` times (separate processes: torch's CPU figure swings up to 2× from one
 * process to the next); the peer figure is their median, and the row keeps every run, the spread and what
 * torch ran with (version, BLAS as torch reports it and as loaded, threads). torch-train-stage1-<config>:
 * `torch_train_peer.py --stage 1`, the same batch shape, spans, languages and losses as the reference computes
 * them (the classifier on materialized [e_i ; e_j] inputs), AdamW over model + classifier.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { LanguageMatchingClassifier, readStage1Config, stage1Loss, type Stage1Batch, type Stage1Config } from "../../src/align/index.ts";
import type { Gpu } from "../../src/gpu/index.ts";
import { LlamaModel, memoryReport } from "../../src/nn/index.ts";
import { AdamW } from "../../src/optim/index.ts";
import { ids } from "../lib/data.ts";
import { median } from "../lib/measure.ts";
import type { PeerResult, Skipped, TrainResult } from "../lib/report.ts";

export interface TrainConfig {
  name: string;
  batch: number;
  seq: number;
  /** HF config.json fields (what src/io/hf_config.ts parses). */
  hf: Record<string, unknown>;
  /**
   * How the step computes its loss: "logits" (default: the [B, T, V] logits, then cross-entropy, as the PyTorch
   * peer does) or "chunked" (forwardLoss({ logits: false }): the vocabulary in chunks, no logits; what the
   * trainer runs).
   */
  loss?: "logits" | "chunked";
  /** Memory rows only: no AlignX stage-1 row and no PyTorch peer for this config. */
  memoryOnly?: boolean;
}

const llama = (o: Record<string, unknown>): Record<string, unknown> => ({
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_act: "silu",
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  max_position_embeddings: 2048,
  attention_bias: false,
  mlp_bias: false,
  tie_word_embeddings: false,
  pad_token_id: null,
  bos_token_id: 1,
  eos_token_id: 2,
  initializer_range: 0.02,
  ...o,
});

/**
 * A LLaMA-3-style step with reduced depth: the 128256-token vocabulary, GQA, rope_theta 500000, hidden 256 (its
 * embedding, 125 MiB, is the largest that fits lavapipe's 128 MiB binding), B·T 256. Twice: with the logits
 * ([B·T, V] f32 = 125 MiB, and as much again for their gradient) and chunked, as the trainer runs it; their peak
 * columns are the issue-14 comparison (the logits' share of the peak).
 */
function llama3Pair(): TrainConfig[] {
  const hf = llama({ hidden_size: 256, intermediate_size: 688, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 128256, rope_theta: 500000.0 });
  return [
    { name: "llama3-128k-logits", batch: 2, seq: 128, hf, loss: "logits", memoryOnly: true },
    { name: "llama3-128k", batch: 2, seq: 128, hf, loss: "chunked", memoryOnly: true },
  ];
}

export function trainConfigs(gpu: boolean, quick: boolean): TrainConfig[] {
  const tiny: TrainConfig[] = [
    { name: "tiny-64", batch: 2, seq: 64, hf: llama({ hidden_size: 64, intermediate_size: 176, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 1000 }) },
    { name: "tiny-256", batch: 2, seq: 128, hf: llama({ hidden_size: 256, intermediate_size: 688, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 4, vocab_size: 4096 }) },
  ];
  if (!gpu)
    return quick
      ? tiny
      : [
          ...tiny,
          { name: "small-512", batch: 1, seq: 256, hf: llama({ hidden_size: 512, intermediate_size: 1376, num_hidden_layers: 4, num_attention_heads: 8, num_key_value_heads: 8, vocab_size: 8192 }) },
          ...llama3Pair(),
        ];
  // GPT-2-small-sized LLaMA (≈124M with tied embeddings) and TinyLlama-1.1B's shape.
  const m124: TrainConfig = {
    name: "llama-124m",
    batch: 8,
    seq: 512,
    hf: llama({ hidden_size: 768, intermediate_size: 2048, num_hidden_layers: 12, num_attention_heads: 12, num_key_value_heads: 12, vocab_size: 50304, tie_word_embeddings: true }),
  };
  const b1: TrainConfig = {
    name: "llama-1b",
    batch: 4,
    seq: 512,
    hf: llama({ hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4, vocab_size: 32000 }),
  };
  return quick ? [tiny[1]!, m124, ...llama3Pair()] : [tiny[1]!, m124, b1, ...llama3Pair()];
}

/**
 * Of `params` (the model's, plus any head trained with it), those that take part in matrix products: all but the
 * input embedding, a row lookup (kept when tied: it is also the output head). MFU counts 6 FLOPs per token for these.
 */
export function matmulParams(c: TrainConfig, params: number): number {
  return c.hf.tie_word_embeddings ? params : params - (c.hf.vocab_size as number) * (c.hf.hidden_size as number);
}

export function batchIds(c: TrainConfig, seed: number, rows = c.batch): number[][] {
  const v = c.hf.vocab_size as number;
  return Array.from({ length: rows }, (_, b) => Array.from(ids(c.seq, v, seed + b)));
}

/** The NTP batch's ids seed (the stage-1 batch reuses them, so its L_NTP at init is the NTP row's loss). */
const IDS_SEED = 3;

/** Rows of the stage-1 batch: the config's batch, at least 2 (the contrastive term needs in-batch negatives). */
export const stage1Rows = (c: TrainConfig): number => Math.max(2, c.batch);

/**
 * A synthetic stage-1 batch for `c` (../shared/ALIGNX.md's layout, on the NTP batch's ids): B = stage1Rows(c)
 * rows of T = c.seq tokens; in every row positions [4, ⌊T/2⌋) are the source (index 1), [⌊T/2⌋ + 2, T − 2) the
 * target (index 2), the rest 0 (BOS, template, EOS); languages src = b mod 3, tgt = (b + 1) mod 3, so among the
 * (2B)² language-matching pairs some match and some do not. bench/torch_train_peer.py --stage 1 builds the same
 * spans and languages. Labels: next-token prediction over the whole row (train_on_inputs, the reference's).
 */
export function stage1Batch(c: TrainConfig): Stage1Batch {
  const B = stage1Rows(c);
  const T = c.seq;
  const half = Math.floor(T / 2);
  if (T < 12) throw new Error(`stage1Batch: ${c.name}'s seq ${T} is too short for a source and a target span (needs >= 12)`);
  const row = Array.from({ length: T }, (_, t) => (t >= 4 && t < half ? 1 : t >= half + 2 && t < T - 2 ? 2 : 0));
  return {
    inputIds: batchIds(c, IDS_SEED, B),
    srcTgtIndex: Array.from({ length: B }, () => [...row]),
    srcLang: Array.from({ length: B }, (_, b) => b % 3),
    tgtLang: Array.from({ length: B }, (_, b) => (b + 1) % 3),
  };
}

/**
 * The timing protocol both training rows share: `step()` records one training step and returns its loss's
 * readback (which waits for the whole step); one warm-up step (pipelines, optimizer state; its loss is the loss
 * at init), then `steps` timed steps: their median host time, the pool's peak, kernel launches per step.
 */
async function timeSteps(gpu: Gpu, steps: number, step: () => Promise<number>) {
  const lossInit = await step();
  const times: number[] = [];
  let peak = 0;
  let loss = 0;
  const d0 = gpu.queue.stats().dispatches;
  for (let s = 0; s < steps; s++) {
    gpu.pool.resetPeak();
    const t0 = performance.now();
    loss = await step();
    times.push(performance.now() - t0);
    peak = Math.max(peak, gpu.memory().peakBytes);
  }
  return { ms: median(times), peak, loss, lossInit, dispatches: (gpu.queue.stats().dispatches - d0) / steps };
}

export async function trainOurs(gpu: Gpu, c: TrainConfig, steps: number): Promise<TrainResult> {
  // Buffers cached by earlier cases would count against the device, not in the peak. Synced first: trim()
  // destroys cached buffers at once, and recorded-but-unsubmitted work may still bind some (right after
  // Gpu.open({ tune: true }), a trim without the sync fails the first step: "used in submit while destroyed").
  await gpu.sync();
  gpu.pool.trim();
  const model = LlamaModel.fromConfig(gpu, c.hf, { seed: 1 });
  const opt = new AdamW(model.parameters(), { lr: 1e-4 });
  const input = batchIds(c, IDS_SEED);
  const tokens = c.batch * c.seq;
  try {
    const chunked = c.loss === "chunked";
    const r = await timeSteps(gpu, steps, async () => {
      const { logits, loss } = chunked ? model.forwardLoss(input, { logits: false }) : model.forwardLoss(input);
      loss.backward();
      opt.step();
      opt.zeroGrad();
      const l = await loss.item();
      logits?.release();
      loss.release();
      return l;
    });
    return {
      name: `train-${c.name}`,
      config: c.name,
      objective: "ntp",
      tokens_per_s: tokens / (r.ms / 1e3),
      mfu: Number.NaN, // set by the caller once the ceiling is final
      params: model.parameterCount,
      matmul_params: matmulParams(c, model.parameterCount),
      tokens_per_step: tokens,
      step_ms: r.ms,
      peak_bytes: r.peak,
      param_bytes: model.parameterBytes,
      peak_over_params: r.peak / model.parameterBytes,
      estimate_bytes: memoryReport(c.hf, { batch: c.batch, seq: c.seq, loss: c.loss }).total,
      dispatches_per_step: r.dispatches,
      loss: r.loss,
      loss_init: r.lossInit,
    };
  } finally {
    opt.release();
    model.release();
    gpu.pool.trim(); // give the memory back (a CUDA torch peer may run next on the same GPU)
  }
}

/** The classifier's seed (any fixed one: the row only needs the same classifier every run). */
const CLASSIFIER_SEED = 7;

/**
 * The stage-1 step of `c` (see the header): stage1Loss(...).loss.backward(), AdamW over the model and the
 * classifier, zeroGrad; timed as trainOurs. `ntp`: the NTP row of the same config from the same run, for
 * overhead_pct. params / param_bytes include the classifier (2·(2d·128) + 2·128 weights); estimate_bytes is
 * memoryReport's NTP estimate (it knows nothing of the classifier or the kept hidden states).
 */
export async function trainOursStage1(gpu: Gpu, c: TrainConfig, steps: number, ntp?: TrainResult): Promise<TrainResult> {
  await gpu.sync(); // as trainOurs
  gpu.pool.trim();
  const batch = stage1Batch(c);
  const B = batch.inputIds.length;
  const model = LlamaModel.fromConfig(gpu, c.hf, { seed: 1 });
  const cfg: Stage1Config = readStage1Config(c.hf, { numLayers: model.config.numHiddenLayers, source: c.name });
  let classifier: LanguageMatchingClassifier | undefined;
  let opt: AdamW | undefined;
  const tokens = B * c.seq;
  try {
    classifier = LanguageMatchingClassifier.create(gpu, model.config.hiddenSize, cfg.languageMatchingIntermediateSize, { seed: CLASSIFIER_SEED });
    opt = new AdamW({ ...model.parameters(), ...classifier.parameters() }, { lr: 1e-4 });
    const [m, cl, o] = [model, classifier, opt];
    let terms: { ntp: number; ctr: number; lam: number } | undefined;
    const r = await timeSteps(gpu, steps, async () => {
      const out = stage1Loss(m, cl, batch, cfg);
      try {
        out.loss.backward();
        o.step();
        o.zeroGrad();
        const l = await out.loss.item();
        // The terms of the warm-up step (at init), read after its loss, outside any timed step.
        if (!terms) terms = { ntp: await out.ntp.item(), ctr: await out.ctr.item(), lam: await out.lam.item() };
        return l;
      } finally {
        for (const t of [out.logits, out.loss, out.ntp, out.ctr, out.lam]) t.release();
      }
    });
    const params = model.parameterCount + classifier.parameterCount;
    const paramBytes = model.parameterBytes + classifier.parameterBytes;
    return {
      name: `train-stage1-${c.name}`,
      config: c.name,
      objective: "stage1",
      tokens_per_s: tokens / (r.ms / 1e3),
      mfu: Number.NaN,
      params,
      matmul_params: matmulParams(c, params),
      tokens_per_step: tokens,
      step_ms: r.ms,
      peak_bytes: r.peak,
      param_bytes: paramBytes,
      peak_over_params: r.peak / paramBytes,
      estimate_bytes: memoryReport(c.hf, { batch: B, seq: c.seq }).total,
      dispatches_per_step: r.dispatches,
      loss: r.loss,
      loss_init: r.lossInit,
      ...(terms ? { terms_init: terms } : {}),
      stage1: {
        align_layer: cfg.alignLayer,
        contrastive_lambda: cfg.contrastiveLambda,
        contrastive_temperature: cfg.contrastiveTemperature,
        language_matching_lambda: cfg.languageMatchingLambda,
        language_matching_intermediate_size: cfg.languageMatchingIntermediateSize,
      },
      ...(ntp ? { overhead_pct: overheadPct(ntp, { tokens_per_step: tokens, step_ms: r.ms }) } : {}),
    };
  } finally {
    opt?.release();
    classifier?.release();
    model.release();
    gpu.pool.trim();
  }
}

/**
 * The stage-1 step's overhead over the NTP step, in % of the NTP step: (stage-1 ms / NTP ms − 1) × 100, per
 * token when the two batches differ (a batch-1 config's stage-1 batch has 2 rows).
 */
export function overheadPct(ntp: Pick<TrainResult, "tokens_per_step" | "step_ms">, s1: Pick<TrainResult, "tokens_per_step" | "step_ms">): number {
  return (s1.step_ms / s1.tokens_per_step / (ntp.step_ms / ntp.tokens_per_step) - 1) * 100;
}

/**
 * Why a stage-1 row is not to be believed, or null. At init (the warm-up step, same model seed, same ids) the
 * stage-1 loss is L_NTP + λ_ctr · L_CTR + λ_lam · L_LAM with both terms > 0: finite, above the NTP row's loss at
 * init, its L_NTP term the NTP row's loss (same batch rows only), and loss_init the weighted sum of its terms.
 */
export function stage1Check(ntp: TrainResult, s1: TrainResult): string | null {
  const what = `${s1.name}`;
  const l = s1.loss_init;
  const t = s1.terms_init;
  if (l === undefined || !Number.isFinite(l) || !Number.isFinite(s1.loss)) return `${what}: loss ${l} at init, ${s1.loss} at the end is not finite`;
  if (!t || !s1.stage1) return `${what}: no terms at init`;
  if (!(t.ctr > 0) || !(t.lam > 0)) return `${what}: L_CTR ${t.ctr} and L_LAM ${t.lam} at init must be > 0`;
  const sum = t.ntp + s1.stage1.contrastive_lambda * t.ctr + s1.stage1.language_matching_lambda * t.lam;
  if (Math.abs(l - sum) > 1e-4 * Math.abs(sum)) return `${what}: loss at init ${l} is not L_NTP + λ_ctr·L_CTR + λ_lam·L_LAM = ${sum}`;
  if (ntp.loss_init === undefined || !(l > ntp.loss_init)) return `${what}: loss at init ${l} is not above ${ntp.name}'s ${ntp.loss_init}`;
  if (ntp.tokens_per_step === s1.tokens_per_step && Math.abs(t.ntp - ntp.loss_init) > 1e-4 * Math.abs(ntp.loss_init))
    return `${what}: its L_NTP at init ${t.ntp} is not ${ntp.name}'s loss at init ${ntp.loss_init} (same model, same ids)`;
  return null;
}

// ---- the PyTorch peer ---------------------------------------------------------------------------------

/** bench/<name>, from the working directory (the compiled binary) or next to this file. */
export function peerScript(name = "torch_train_peer.py"): string | null {
  for (const p of [join(process.cwd(), "bench", name), join(dirname(import.meta.dir), name)]) if (existsSync(p)) return p;
  return null;
}

let found: { python: string; cuda: boolean } | null | undefined;

/** The first interpreter with torch: $ALIGNX_BENCH_PYTHON, Debian's /usr/bin/python3, python3 on PATH. */
export function torchPython(): { python: string; cuda: boolean } | null {
  if (found !== undefined) return found;
  found = null;
  for (const python of [process.env.ALIGNX_BENCH_PYTHON, "/usr/bin/python3", "python3"]) {
    if (!python) continue;
    const r = spawnSync(python, ["-c", "import torch; print(int(torch.cuda.is_available()))"], { encoding: "utf8", timeout: 60_000 });
    if (r.status === 0) return (found = { python, cuda: r.stdout.trim() === "1" });
  }
  return found;
}

/** What a PyTorch peer ran with (bench/torch_env.py). */
export interface TorchWith {
  torch: string;
  /** BLAS_INFO as torch.__config__.show() reports it. */
  blas: string;
  /** The BLAS library loaded: openblas, reference, mkl, unknown. */
  blas_lib: string;
  blas_path: string;
  threads: number;
}

export interface TorchTrain extends TorchWith {
  /** The median of `runs` (tokens of the peer's batch: stage1Rows(c) rows for the stage-1 step). */
  tokens_per_s: number;
  step_ms: number;
  params: number;
  device: string;
  /** tokens/s of each run (a separate process each). */
  runs: number[];
}

/**
 * Run the same training step in PyTorch `runs` times: the median run, or why it was skipped. stage 1: the
 * stage-1 step (`--stage 1`) on stage1Batch's shape, spans and languages.
 */
export function trainTorch(c: TrainConfig, steps: number, onGpu: boolean, timeoutS: number, runs = 3, stage: 0 | 1 = 0): TorchTrain | Skipped {
  const what = stage === 1 ? `torch-train-stage1-${c.name}` : `torch-train-${c.name}`;
  const batch = stage === 1 ? stage1Rows(c) : c.batch;
  const script = peerScript();
  if (!script) return { what, why: "bench/torch_train_peer.py not found" };
  const py = torchPython();
  if (!py) return { what, why: "no python3 with torch (tried $ALIGNX_BENCH_PYTHON, /usr/bin/python3, python3)" };
  if (onGpu && !py.cuda) return { what, why: `${py.python}'s torch has no CUDA: a CPU torch is no peer for a GPU adapter` };
  const args = [script, "--config", JSON.stringify(c.hf), "--batch", String(batch), "--seq", String(c.seq), "--steps", String(steps), "--device", onGpu ? "cuda" : "cpu"];
  if (stage === 1) args.push("--stage", "1");
  const done: Omit<TorchTrain, "runs">[] = [];
  for (let i = 0; i < runs; i++) {
    const r = spawnSync(py.python, args, { encoding: "utf8", timeout: timeoutS * 1e3, maxBuffer: 1 << 20 });
    if (r.error || r.status !== 0) return { what, why: `${py.python} failed: ${r.error?.message ?? r.stderr.trim().split("\n").slice(-1)[0]}` };
    try {
      done.push(JSON.parse(r.stdout.trim().split("\n").slice(-1)[0]!) as Omit<TorchTrain, "runs">);
    } catch {
      return { what, why: `unreadable output: ${r.stdout.slice(0, 200)}` };
    }
  }
  const rates = done.map((d) => d.tokens_per_s);
  const mid = median(rates);
  const nearest = done.reduce((a, d) => (Math.abs(d.tokens_per_s - mid) < Math.abs(a.tokens_per_s - mid) ? d : a));
  return { ...nearest, tokens_per_s: mid, step_ms: (batch * c.seq * 1e3) / mid, runs: rates };
}

/** A PyTorch peer row's provenance fields, and the runs with their spread when there were several. */
export function torchRow(t: TorchWith, runs?: number[]): Pick<PeerResult, "torch" | "blas" | "blas_lib" | "threads" | "peer_runs" | "peer_spread"> {
  return {
    torch: t.torch,
    blas: t.blas,
    blas_lib: t.blas_lib,
    threads: t.threads,
    ...(runs && runs.length > 1 ? { peer_runs: runs, peer_spread: [Math.min(...runs), Math.max(...runs)] as [number, number] } : {}),
  };
}

/** torch-<ours.name>: torch-train-<config> or torch-train-stage1-<config>. */
export function torchPeer(ours: TrainResult, t: TorchTrain): PeerResult {
  return { name: `torch-${ours.name}`, ours: ours.tokens_per_s, peer: t.tokens_per_s, unit: "tokens/s", ratio: ours.tokens_per_s / t.tokens_per_s, ...torchRow(t, t.runs) };
}

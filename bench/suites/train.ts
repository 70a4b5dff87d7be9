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
 * Peer (torch-train-<config>): bench/torch_train_peer.py runs the same config, batch and step in PyTorch
 * (CPU torch on a CPU adapter, on all cores with whatever BLAS Debian's libblas.so.3 points at — OpenBLAS once
 * `tools/setup.sh --bench` has installed libopenblas0-pthread; CUDA torch on a GPU one), when an interpreter
 * with torch is found. It runs `runs` times (separate processes: torch's CPU figure swings up to 2× from one
 * process to the next); the peer figure is their median, and the row keeps every run, the spread and what
 * torch ran with (version, BLAS as torch reports it and as loaded, threads).
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
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
  return quick ? [tiny[1]!, m124] : [tiny[1]!, m124, b1];
}

function batchIds(c: TrainConfig, seed: number): number[][] {
  const v = c.hf.vocab_size as number;
  return Array.from({ length: c.batch }, (_, b) => Array.from(ids(c.seq, v, seed + b)));
}

export async function trainOurs(gpu: Gpu, c: TrainConfig, steps: number): Promise<TrainResult> {
  gpu.pool.trim(); // buffers cached by earlier cases would count against the device, not in the peak
  const model = LlamaModel.fromConfig(gpu, c.hf, { seed: 1 });
  const opt = new AdamW(model.parameters(), { lr: 1e-4 });
  const input = batchIds(c, 3);
  const tokens = c.batch * c.seq;
  try {
    const step = async (): Promise<number> => {
      const { logits, loss } = model.forwardLoss(input);
      loss.backward();
      opt.step();
      opt.zeroGrad();
      const l = await loss.item();
      logits.release();
      loss.release();
      return l;
    };
    await step(); // warm-up: compile every pipeline, create the AdamW state
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
    const dispatches = (gpu.queue.stats().dispatches - d0) / steps;
    const ms = median(times);
    const params = model.parameterCount;
    return {
      config: c.name,
      tokens_per_s: tokens / (ms / 1e3),
      mfu: Number.NaN, // set by the caller once the ceiling is final
      params,
      tokens_per_step: tokens,
      step_ms: ms,
      peak_bytes: peak,
      param_bytes: model.parameterBytes,
      peak_over_params: peak / model.parameterBytes,
      estimate_bytes: memoryReport(c.hf, { batch: c.batch, seq: c.seq }).total,
      dispatches_per_step: dispatches,
      loss,
    };
  } finally {
    opt.release();
    model.release();
    gpu.pool.trim(); // give the memory back (a CUDA torch peer may run next on the same GPU)
  }
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
  /** The median of `runs`. */
  tokens_per_s: number;
  step_ms: number;
  params: number;
  device: string;
  /** tokens/s of each run (a separate process each). */
  runs: number[];
}

/** Run the same training step in PyTorch `runs` times: the median run, or why it was skipped. */
export function trainTorch(c: TrainConfig, steps: number, onGpu: boolean, timeoutS: number, runs = 3): TorchTrain | Skipped {
  const what = `torch-train-${c.name}`;
  const script = peerScript();
  if (!script) return { what, why: "bench/torch_train_peer.py not found" };
  const py = torchPython();
  if (!py) return { what, why: "no python3 with torch (tried $ALIGNX_BENCH_PYTHON, /usr/bin/python3, python3)" };
  if (onGpu && !py.cuda) return { what, why: `${py.python}'s torch has no CUDA: a CPU torch is no peer for a GPU adapter` };
  const args = [script, "--config", JSON.stringify(c.hf), "--batch", String(c.batch), "--seq", String(c.seq), "--steps", String(steps), "--device", onGpu ? "cuda" : "cpu"];
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
  return { ...nearest, tokens_per_s: mid, step_ms: (c.batch * c.seq * 1e3) / mid, runs: rates };
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

export function torchPeer(ours: TrainResult, t: TorchTrain): PeerResult {
  return { name: `torch-train-${ours.config}`, ours: ours.tokens_per_s, peer: t.tokens_per_s, unit: "tokens/s", ratio: ours.tokens_per_s / t.tokens_per_s, ...torchRow(t, t.runs) };
}

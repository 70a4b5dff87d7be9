/**
 * Every op's autotuning in one call (src/gpu/autotune.ts does the timing and the per-adapter cache): the
 * matmul variants first, then flash against unfused attention (whose unfused path runs on the tuned matmul).
 * What the CLI commands and the bench run before their work; a first run on an adapter takes a few seconds,
 * later runs only read the cache file.
 */
import type { Gpu, TuneResult } from "../gpu/index.ts";
import { tuneAttention } from "./ops/attention.ts";
import { tuneMatmul } from "./ops/matmul.ts";

export async function tuneOps(gpu: Gpu, tuner = gpu.tuner): Promise<Record<string, TuneResult>> {
  return { ...(await tuneMatmul(gpu, tuner)), ...(await tuneAttention(gpu, tuner)) };
}

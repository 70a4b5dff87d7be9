// Shared by all test files: `bun test` runs them in one process, so they share one device.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Gpu } from "../src/gpu/index.ts";

import "./setup.ts"; // (also preloaded by bunfig.toml) a private autotune cache for the run

let gpu: Promise<Gpu> | undefined;

export function getGpu(): Promise<Gpu> {
  gpu ??= Gpu.open();
  return gpu;
}

/** A small seeded PRNG (mulberry32) so failures repeat; seed from the test name. */
export { mulberry32 as rng } from "../src/tensor/rng.ts";

export function randomF32(n: number, r: () => number, lo = -1, hi = 1): Float32Array<ArrayBuffer> {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}

/** Fill a pooled buffer with NaN so a kernel that skips an element cannot pass. */
export function poison(g: Gpu, b: import("../src/gpu/index.ts").PooledBuffer): void {
  g.fill(b, Number.NaN);
}

export interface FlatMemoryReport {
  start: import("../src/gpu/index.ts").PoolStats;
  warm: import("../src/gpu/index.ts").PoolStats;
  end: import("../src/gpu/index.ts").PoolStats;
}

/**
 * Run `step` `steps` times and assert that, from the end of step `warmup - 1` on, the pool's live buffers,
 * live bytes and created-buffer count do not change, and that no new bind group is created (the pool hands a
 * repeated step the same buffers, so the queue's bind groups are all reused): a training-style loop must not
 * leak, grow, or pay for new bindings every step.
 * Returns the three snapshots for extra assertions (e.g. end equals start once the caller releases).
 */
export async function expectFlatMemory(
  gpu: Gpu,
  steps: number,
  step: (it: number) => void | Promise<void>,
  { warmup = 5, sameBindings = true }: { warmup?: number; sameBindings?: boolean } = {},
): Promise<FlatMemoryReport> {
  const { expect } = await import("bun:test");
  await gpu.sync();
  const start = gpu.memory();
  let warm = start;
  let warmBindGroups = 0;
  for (let it = 0; it < steps; it++) {
    await step(it);
    if (it === warmup - 1) {
      await gpu.sync();
      warm = gpu.memory();
      warmBindGroups = gpu.queue.stats().bindGroupsCreated;
    }
  }
  await gpu.sync();
  const end = gpu.memory();
  expect(end.liveBuffers).toBe(warm.liveBuffers);
  expect(end.liveBytes).toBe(warm.liveBytes);
  expect(end.created).toBe(warm.created);
  // (A loop whose steps differ by design, e.g. a growing KV cache, passes sameBindings: false.)
  if (sameBindings) expect(gpu.queue.stats().bindGroupsCreated - warmBindGroups).toBe(0);
  return { start, warm, end };
}

/** A fresh directory (`prefix` as mkdtemp's) under the run's scratch root, removed after the run (test/setup.ts). */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(process.env.ALIGNX_TEST_TMP ?? tmpdir(), prefix));
}

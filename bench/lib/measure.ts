/**
 * How every kernel case is timed (bench/run.ts's header states the method; this is its code).
 *
 * A case allocates its inputs once (`setup`), then per repetition:
 *   1. `prepare()` records untimed work the timed part needs (a backward case runs its forward here), and the
 *      queue is synced, so nothing of it leaks into the measurement;
 *   2. the profiler is reset, `run()` records the timed work (one op: every dispatch it makes), the queue is
 *      synced;
 *   3. the sample is the SUM of the GPU timestamp durations of every dispatch recorded by `run()` (the
 *      profiler gives each dispatch its own compute pass with begin/end timestamps; a multi-kernel op is the
 *      sum of its kernels, so the gaps between passes are not counted). Without `timestamp-query`, or if no
 *      duration came back, the sample is the host wall time of `run()` + sync;
 *   4. `cleanup()` releases per-repetition outputs.
 * One untimed warm-up repetition comes first (pipeline compilation, first touch of every buffer). The result is
 * the median sample; the names of the kernels that were summed are kept (`parts`) so a reader can see what a
 * figure covers.
 */
import { median, type Gpu } from "../../src/gpu/index.ts";

export interface Prepared {
  /** Record the timed work. */
  run(): void;
  /** Untimed work before each run (synced before timing starts). */
  prepare?(): void;
  /** After each run (and after the warm-up): release per-run outputs. */
  cleanup?(): void;
  /** Release everything `setup` allocated. */
  dispose(): void;
}

export interface Timing {
  ms: number;
  /** "gpu-timestamps" or "host". */
  method: string;
  /** Kernel names whose GPU time was summed, with calls per run. */
  parts: string[];
  samples: number[];
}

export { median } from "../../src/gpu/index.ts";

export async function timeOp(gpu: Gpu, p: Prepared, reps: number): Promise<Timing> {
  const prof = gpu.queue.profiler;
  try {
    p.prepare?.();
    p.run();
    await gpu.sync();
    p.cleanup?.();
    await gpu.sync();
    const useTs = gpu.profile(true);
    const samples: number[] = [];
    let method = useTs ? "gpu-timestamps" : "host";
    let parts: string[] = [];
    for (let r = 0; r < reps; r++) {
      p.prepare?.();
      await gpu.sync();
      prof.reset();
      const t0 = performance.now();
      p.run();
      await gpu.sync();
      const host = performance.now() - t0;
      const report = prof.report();
      const gpuMs = report.reduce((s, k) => s + k.ms, 0);
      if (useTs && gpuMs > 0) samples.push(gpuMs);
      else {
        samples.push(host);
        method = "host";
      }
      if (r === 0) parts = report.map((k) => (k.calls > 1 ? `${k.name}×${k.calls}` : k.name));
      p.cleanup?.();
    }
    gpu.profile(false);
    return { ms: median(samples), method, parts, samples };
  } finally {
    gpu.profile(false);
    p.dispose();
  }
}

/** Median host time of `fn` (which must wait for its own result), after one warm-up call. */
export async function timeHost(fn: () => Promise<void>, reps: number): Promise<number> {
  await fn();
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  return median(samples);
}

/**
 * The one-second health check behind `alignx info`: copy bandwidth and matmul throughput on the chosen
 * adapter, each result checked on the host before it is reported (a fast wrong kernel is not a pass).
 */
import { GpuError } from "./errors.ts";
import { grid1d } from "./grid.ts";
import type { Gpu } from "./index.ts";
import { COPY } from "./copy.ts";
import selftestSrc from "./selftest.wgsl" with { type: "text" };
import { defineKernel } from "./kernel.ts";

/** The self-test's own matmul (matmul_nn_v1: simple and easy to check; the ops run the tuned kernels). */
export const SELFTEST_MATMUL = defineKernel("src/gpu/selftest.wgsl", selftestSrc);



export interface SelfTest {
  copyGBps: number;
  copyBytes: number;
  matmulGflops: number;
  matmulShape: [number, number, number];
  timing: "gpu-timestamps" | "host";
}


/** Median time (ms) of `reps` runs of `body` after one warm-up, by GPU timestamps when offered. */
async function timeIt(gpu: Gpu, name: string, reps: number, body: () => void): Promise<{ ms: number; timing: SelfTest["timing"] }> {
  body();
  await gpu.sync();
  const useTs = gpu.profile(true);
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    gpu.queue.profiler.reset();
    const t0 = performance.now();
    body();
    await gpu.sync();
    const host = performance.now() - t0;
    const k = gpu.queue.profiler.report().find((e) => e.name === name);
    samples.push(useTs && k && k.ms > 0 ? k.ms : host);
  }
  gpu.profile(false);
  samples.sort((a, b) => a - b);
  return { ms: samples[Math.floor(samples.length / 2)]!, timing: useTs ? "gpu-timestamps" : "host" };
}

export async function selfTest(gpu: Gpu, opts: { copyMiB?: number; matmul?: number; reps?: number } = {}): Promise<SelfTest> {
  const reps = opts.reps ?? 5;
  const cpu = gpu.adapter.kind === "cpu";
  const mib = opts.copyMiB ?? (cpu ? 32 : 256);
  const n4 = Math.min((mib << 20) / 16, gpu.limits.maxStorageBufferBindingSize / 16);
  const bytes = n4 * 16;
  const src = new Float32Array(n4 * 4);
  for (let i = 0; i < src.length; i += 997) src[i] = i;
  const a = gpu.upload(src, "selftest-src");
  const b = gpu.alloc(bytes, "selftest-dst");
  const g = grid1d(gpu, n4);
  const copy = await timeIt(gpu, "copy", reps, () =>
    gpu.dispatch(COPY, "copy_vec4", { src: a, dst: b }, g.workgroups, { params: { ...COPY.zeroParams, n4, row: g.row }, name: "copy" }),
  );
  const back = new Float32Array(await gpu.read(b));
  for (let i = 0; i < src.length; i += 997) if (back[i] !== src[i]) throw new GpuError(`self-test: copy kernel wrong at element ${i}: ${back[i]} != ${src[i]}`);
  gpu.release(a);
  gpu.release(b);

  const n = opts.matmul ?? (cpu ? 256 : 2048);
  const [M, N, K] = [n, n, n];
  const A = new Float32Array(M * K).map((_, i) => ((i * 7919) % 13) / 13 - 0.5);
  const B = new Float32Array(K * N).map((_, i) => ((i * 104729) % 17) / 17 - 0.5);
  const bufA = gpu.upload(A);
  const bufB = gpu.upload(B);
  const bufC = gpu.alloc(M * N * 4);
  const wg: [number, number] = [Math.ceil(N / 4 / 8), Math.ceil(M / 8 / 8)];
  const mm = await timeIt(gpu, "matmul", reps, () =>
    gpu.dispatch(SELFTEST_MATMUL, "matmul_nn_v1", { a: bufA, b: bufB, c: bufC }, wg, { params: { M, N, K }, name: "matmul" }),
  );
  const C = new Float32Array(await gpu.read(bufC));
  for (const [r, c] of [[0, 0], [M - 1, N - 1], [M >> 1, 3], [7, N - 5]] as const) {
    let ref = 0;
    for (let k = 0; k < K; k++) ref += A[r * K + k]! * B[k * N + c]!;
    const got = C[r * N + c]!;
    if (!(Math.abs(got - ref) <= 1e-3 * (1 + Math.abs(ref))))
      throw new GpuError(`self-test: matmul wrong at C[${r},${c}]: ${got} != ${ref}`);
  }
  for (const x of [bufA, bufB, bufC]) gpu.release(x);
  return {
    copyGBps: (2 * bytes) / (copy.ms / 1e3) / 1e9,
    copyBytes: bytes,
    matmulGflops: (2 * M * N * K) / (mm.ms / 1e3) / 1e9,
    matmulShape: [M, N, K],
    timing: copy.timing,
  };
}

/**
 * The device's measured ceilings, against which every case's "% of ceiling" is computed. bench/run.ts
 * measures them at the start and again at the end of a run and keeps the better of the two (a ceiling is the
 * best the device does; on a shared machine one measurement may fall in a busy moment):
 *   - copy: the runtime's copy_vec4 kernel (read + write = 2 × size bytes) on a large buffer;
 *   - matmul: the best f32 GFLOP/s of the runtime's self-test kernel (matmul_nn_v1, src/gpu/selftest.wgsl) and of
 *     the matmul op (NN), both at big³ (1024 on a CPU adapter, 4096 on a GPU). That figure is also the "peak"
 *     of MFU: a measured ceiling, not a datasheet number.
 */
import { type Gpu, grid1d, type PooledBuffer } from "../../src/gpu/index.ts";
import { COPY } from "../../src/gpu/copy.ts";
import { SELFTEST_MATMUL as MATMUL } from "../../src/gpu/selftest.ts";
import { randomBuffer } from "../lib/data.ts";
import { timeOp, type Prepared, type Timing } from "../lib/measure.ts";
import { matmulCase } from "./kernels.ts";

/** A raw-kernel case over pooled buffers. */
function raw(gpu: Gpu, buffers: PooledBuffer[], run: () => void): Prepared {
  return { run, dispose: () => buffers.forEach((b) => gpu.release(b)) };
}

export function copyKernel(gpu: Gpu, n4: number): Prepared {
  const src = gpu.alloc(16 * n4);
  const dst = gpu.alloc(16 * n4);
  const g = grid1d(gpu, n4);
  return raw(gpu, [src, dst], () => gpu.dispatch(COPY, "copy_vec4", { src, dst }, g.workgroups, { params: { ...COPY.zeroParams, n4, row: g.row }, name: "copy_vec4" }));
}

/** The self-test kernel: C = A·B, N a multiple of 4. */
export function matmulV1Kernel(gpu: Gpu, M: number, N: number, K: number): Prepared {
  const a = randomBuffer(gpu, M * K, 1);
  const b = randomBuffer(gpu, K * N, 2);
  const c = gpu.alloc(M * N * 4);
  return raw(gpu, [a, b, c], () =>
    gpu.dispatch(MATMUL, "matmul_nn_v1", { a, b, c }, [Math.ceil(N / 32), Math.ceil(M / 64)], { params: { M, N, K }, name: "matmul_nn_v1" }),
  );
}

/** A measured case: what it computes (for rates and floors) and how long it took. */
export interface Timed {
  c: { name: string; shape: number[]; dtype: string; flops: number; bytes: number; bound: "compute" | "memory" };
  t: Timing;
}

export interface Ceilings {
  copy_gbps: number;
  matmul_gflops: number;
  /** Which kernel and size gave the matmul figure. */
  matmul_what: string;
  rows: Timed[];
}

/**
 * Copy at 32 MiB (CPU adapter) / 512 MiB (GPU), then matmul_nn_v1 and the op NN at (big/2)³ and big³; the
 * matmul ceiling is the best of the four.
 */
export async function measureCeilings(gpu: Gpu, big: number, reps: number): Promise<Ceilings> {
  const copyN4 = ((gpu.adapter.kind === "cpu" ? 32 : 512) << 20) / 16;
  const copy = await timeOp(gpu, copyKernel(gpu, copyN4), reps);
  const rows: Timed[] = [{ c: { name: "copy_vec4", shape: [copyN4 * 4], dtype: "f32", flops: 0, bytes: 32 * copyN4, bound: "memory" }, t: copy }];
  let best = { gflops: 0, what: "" };
  for (const n of [big / 2, big]) {
    const mm = matmulCase(n, n, n);
    const v1 = await timeOp(gpu, matmulV1Kernel(gpu, n, n, n), reps);
    const op = await timeOp(gpu, mm.setup(gpu), reps);
    rows.push({ c: { ...mm, name: "matmul_nn_v1" }, t: v1 }, { c: mm, t: op });
    for (const [what, ms] of [["matmul_nn_v1 (self-test kernel)", v1.ms], ["matmul op NN", op.ms]] as const)
      if (mm.flops / (ms / 1e3) / 1e9 > best.gflops) best = { gflops: mm.flops / (ms / 1e3) / 1e9, what: `${what} at ${n}³ f32` };
  }
  return { copy_gbps: (32 * copyN4) / (copy.ms / 1e3) / 1e9, matmul_gflops: best.gflops, matmul_what: best.what, rows };
}

/**
 * Peers measured in the same run, on the same adapter (ratio = ours / peer; > 1 means we are faster):
 *   - naive-wgsl-matmul-<n>: bench/peers/naive_matmul.wgsl (one output per invocation, no tiling), timed like
 *     every kernel case (GPU timestamps), against the matmul op NN at the same size;
 *   - tfjs-matmul-1024: @tensorflow/tfjs-backend-webgpu (bench/peers/tfjs.ts), host-timed as one matMul plus a
 *     full readback; ours is timed the same way here (the op + gpu.read of the result);
 *   - torch-mm-1024: PyTorch's f32 1024³ product on the same CPU (bench/torch_peer.py: all cores, the BLAS that
 *     libblas.so.3 points at, the median of its repetitions after warm-up, compute only), against the same
 *     figure of ours as the tfjs row; only on a CPU adapter (on a GPU, bench/gpu.sh compares CUDA torch);
 *   - torch-train-<config>, torch-train-stage1-<config>: bench/torch_train_peer.py, the next-token step and
 *     (`--stage 1`) AlignX's stage-1 step (suites/train.ts runs both).
 * What the ratios mean: on lavapipe our kernels are a GPU program run by a CPU emulator, so the torch rows (a
 * native BLAS on the same cores) are the CPU's own ceiling, not a like-for-like peer; tfjs-backend-webgpu on the
 * same adapter is the like-for-like WebGPU peer; the ratio users care about is the one on a GPU.
 */
import { spawnSync } from "node:child_process";
import naiveSrc from "../peers/naive_matmul.wgsl" with { type: "text" };
import { defineKernel, type Gpu } from "../../src/gpu/index.ts";
import { matmul } from "../../src/tensor/index.ts";
import { randomBuffer, uniform } from "../lib/data.ts";
import { timeHost, type Prepared } from "../lib/measure.ts";
import type { Skipped } from "../lib/report.ts";
import { peerScript, torchPython, type TorchWith } from "./train.ts";

const NAIVE = defineKernel("bench/peers/naive_matmul.wgsl", naiveSrc);

export function naiveMatmul(gpu: Gpu, n: number): Prepared {
  const a = randomBuffer(gpu, n * n, 1);
  const b = randomBuffer(gpu, n * n, 2);
  const c = gpu.alloc(n * n * 4);
  return {
    run: () => gpu.dispatch(NAIVE, "matmul_naive", { a, b, c }, [Math.ceil(n / 16), Math.ceil(n / 16)], { params: { M: n, N: n, K: n }, name: "matmul_naive" }),
    dispose: () => [a, b, c].forEach((x) => gpu.release(x)),
  };
}

/** GFLOP/s of the matmul op at n³, host-timed with a full readback of the result (the tfjs peer's method). */
export async function oursHostMatmul(gpu: Gpu, n: number, reps: number): Promise<number> {
  const a = uniform(gpu, [n, n], "f32", 1);
  const b = uniform(gpu, [n, n], "f32", 2);
  try {
    const ms = await timeHost(async () => {
      const c = matmul(a, b);
      await gpu.read(c.buffer, n * n * 4);
      c.release();
    }, reps);
    return (2 * n ** 3) / (ms / 1e3) / 1e9;
  } finally {
    a.release();
    b.release();
  }
}

/** PyTorch's f32 n³ matmul on the CPU (bench/torch_peer.py): GFLOP/s and what torch ran with, or why skipped. */
export function torchMatmul(n: number, reps: number): ({ gflops: number } & TorchWith) | Skipped {
  const what = `torch-mm-${n}`;
  const script = peerScript("torch_peer.py");
  if (!script) return { what, why: "bench/torch_peer.py not found" };
  const py = torchPython();
  if (!py) return { what, why: "no python3 with torch (tried $ALIGNX_BENCH_PYTHON, /usr/bin/python3, python3)" };
  const r = spawnSync(py.python, [script, "--n", String(n), "--reps", String(Math.max(reps, 5))], {
    encoding: "utf8",
    timeout: 120_000,
    env: { ...process.env, CUDA_VISIBLE_DEVICES: "" }, // the CPU's figure, even where torch has CUDA
  });
  if (r.error || r.status !== 0) return { what, why: `${py.python} failed: ${r.error?.message ?? r.stderr.trim().split("\n").slice(-1)[0]}` };
  try {
    const o = JSON.parse(r.stdout.trim().split("\n").slice(-1)[0]!) as TorchWith & { matmul: { dtype: string; gflops: number }[] };
    const f32 = o.matmul.find((m) => m.dtype === "f32");
    if (!f32) return { what, why: "no f32 result" };
    return { gflops: f32.gflops, torch: o.torch, blas: o.blas, blas_lib: o.blas_lib, blas_path: o.blas_path, threads: o.threads };
  } catch {
    return { what, why: `unreadable output: ${r.stdout.slice(0, 200)}` };
  }
}

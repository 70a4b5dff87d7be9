/**
 * Peers measured in the same run, on the same adapter (ratio = ours / peer; > 1 means we are faster):
 *   - naive-wgsl-matmul-<n>: bench/peers/naive_matmul.wgsl (one output per invocation, no tiling), timed like
 *     every kernel case (GPU timestamps), against the matmul op NN at the same size;
 *   - tfjs-matmul-1024: @tensorflow/tfjs-backend-webgpu (bench/peers/tfjs.ts), host-timed as one matMul plus a
 *     full readback; ours is timed the same way here (the op + gpu.read of the result);
 *   - torch-train-<config>: bench/torch_train_peer.py (suites/train.ts runs it).
 */
import naiveSrc from "../peers/naive_matmul.wgsl" with { type: "text" };
import { defineKernel, type Gpu } from "../../src/gpu/index.ts";
import { matmul } from "../../src/tensor/index.ts";
import { randomBuffer, uniform } from "../lib/data.ts";
import { timeHost, type Prepared } from "../lib/measure.ts";

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

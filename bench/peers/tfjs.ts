/**
 * Peer: @tensorflow/tfjs-backend-webgpu's matmul on the same adapter, in the same process.
 * tfjs runs under bun-webgpu through our WebGPU globals (src/gpu/globals.ts), which supply what it needs:
 * `navigator.gpu` before tfjs loads, a global `GPUBuffer`, the per-stage limits bun-webgpu wants as 0, and
 * feature names as strings (tfjs requests `['bgra8unorm-storage']`, a nested array).
 * Timed on the host: upload once, then per run one matMul and a wait for its data.
 */
import { installGlobals } from "../../src/gpu/globals.ts";

export async function tfjsMatmul(n: number, reps: number): Promise<{ gflops: number; ms: number; version: string }> {
  await installGlobals();
  const tf = await import("@tensorflow/tfjs-core");
  await import("@tensorflow/tfjs-backend-webgpu");
  if (!(await tf.setBackend("webgpu"))) throw new Error("tfjs: the webgpu backend did not initialize");
  await tf.ready();
  const a = tf.randomUniform([n, n], -0.5, 0.5, "float32", 1);
  const b = tf.randomUniform([n, n], -0.5, 0.5, "float32", 2);
  const once = async () => {
    const t0 = performance.now();
    const c = tf.matMul(a, b);
    await c.data();
    c.dispose();
    return performance.now() - t0;
  };
  await once(); // compile
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) samples.push(await once());
  samples.sort((x, y) => x - y);
  const ms = samples[Math.floor(samples.length / 2)]!;
  a.dispose();
  b.dispose();
  tf.engine().reset();
  return { gflops: (2 * n ** 3) / (ms / 1e3) / 1e9, ms, version: tf.version_core };
}

if (import.meta.main) {
  const n = Number(process.argv[2] ?? 1024);
  console.log(await tfjsMatmul(n, Number(process.argv[3] ?? 3)));
}

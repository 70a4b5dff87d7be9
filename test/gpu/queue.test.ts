import { describe, expect, test } from "bun:test";
import { defineKernel, GpuValidationError, grid1d } from "../../src/gpu/index.ts";
import { COPY } from "../../src/gpu/copy.ts";
import { SELFTEST_MATMUL as MATMUL } from "../../src/gpu/selftest.ts";
import { getGpu, poison, randomF32, rng } from "../helpers.ts";

const ACC = defineKernel(
  "kernels/test_acc.wgsl",
  `struct P { v: f32, i: u32 }
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(1) @binding(0) var<uniform> p: P;
@compute @workgroup_size(1) fn main() { y[0] = y[0] + p.v; y[1 + p.i % 3u] = y[1 + p.i % 3u] + 1.0; }`,
);

// What the device offers decides which tests apply: those that cannot run here are reported as skipped.
const dev = await getGpu();
const BIG_BINDING_CHEAP = dev.limits.maxStorageBufferBindingSize <= 256 * 2 ** 20;
const TIMESTAMPS = dev.features.has("timestamp-query");

describe("queue", () => {
  test("N dispatches are one submit, and bind groups are reused", async () => {
    const gpu = await getGpu();
    const n4 = 1000;
    const a = gpu.upload(randomF32(4 * n4, rng(1)));
    const b = gpu.alloc(16 * n4);
    const g = grid1d(gpu, n4);
    gpu.dispatch(COPY, "copy_vec4", { src: a, dst: b }, g.workgroups, { params: { n4, row: g.row, value: 0, bits: 0 } });
    await gpu.sync();
    const s0 = gpu.queue.stats();
    for (let i = 0; i < 200; i++)
      gpu.dispatch(COPY, i % 2 ? "copy_vec4" : "fill_vec4", { src: a, dst: b }, g.workgroups, { params: { n4, row: g.row, value: i, bits: 0 } });
    expect(gpu.queue.stats().pendingCommands).toBe(200);
    expect(gpu.queue.stats().submits).toBe(s0.submits);
    await gpu.sync();
    const s1 = gpu.queue.stats();
    expect(s1.submits - s0.submits).toBe(1);
    expect(s1.dispatches - s0.dispatches).toBe(200);
    expect(s1.bindGroupsCreated - s0.bindGroupsCreated).toBeLessThanOrEqual(1); // fill_vec4's pipeline, once
    gpu.release(a);
    gpu.release(b);
  });

  test("readback is correct on random data with the output poisoned first (copy, odd sizes)", async () => {
    const gpu = await getGpu();
    const r = rng(2);
    for (const n4 of [1, 255, 257, 4099, 70001]) {
      const src = randomF32(4 * n4, r, -1e3, 1e3);
      const a = gpu.upload(src);
      const b = gpu.alloc(16 * n4);
      poison(gpu, b);
      const g = grid1d(gpu, n4);
      gpu.dispatch(COPY, "copy_vec4", { src: a, dst: b }, g.workgroups, { params: { n4, row: g.row, value: 0, bits: 0 } });
      const out = new Float32Array(await gpu.read(b));
      expect(out.length).toBe(src.length);
      expect(out).toEqual(src);
      gpu.release(a);
      gpu.release(b);
    }
  });

  test("matmul against a float64 reference, shapes that are not tile multiples", async () => {
    const gpu = await getGpu();
    const r = rng(3);
    for (const [M, N, K] of [[1, 4, 1], [37, 20, 29], [64, 64, 64], [9, 132, 100]] as const) {
      const A = randomF32(M * K, r);
      const B = randomF32(K * N, r);
      const a = gpu.upload(A);
      const b = gpu.upload(B);
      const c = gpu.alloc(M * N * 4);
      poison(gpu, c);
      gpu.dispatch(MATMUL, "matmul_nn_v1", { a, b, c }, [Math.ceil(N / 4 / 8), Math.ceil(M / 64)], { params: { M, N, K } });
      const C = new Float32Array(await gpu.read(c));
      let worst = 0;
      for (let i = 0; i < M; i++)
        for (let j = 0; j < N; j++) {
          let ref = 0;
          for (let k = 0; k < K; k++) ref += A[i * K + k]! * B[k * N + j]!;
          const err = Math.abs(C[i * N + j]! - ref) / (1e-3 + Math.abs(ref));
          if (!(err <= worst)) worst = Number.isNaN(err) ? Infinity : Math.max(worst, err);
        }
      expect(worst).toBeLessThan(1e-3);
      for (const x of [a, b, c]) gpu.release(x);
    }
  });

  test("an upload is ordered after the commands recorded before it", async () => {
    const gpu = await getGpu();
    const n4 = 64;
    const old = randomF32(4 * n4, rng(4));
    const fresh = randomF32(4 * n4, rng(5));
    const a = gpu.upload(old);
    const b = gpu.alloc(16 * n4);
    const c = gpu.alloc(16 * n4);
    const g = grid1d(gpu, n4);
    gpu.dispatch(COPY, "copy_vec4", { src: a, dst: b }, g.workgroups, { params: { n4, row: g.row, value: 0, bits: 0 } });
    gpu.write(a, fresh); // must not overtake the copy above
    gpu.dispatch(COPY, "copy_vec4", { src: a, dst: c }, g.workgroups, { params: { n4, row: g.row, value: 0, bits: 0 } });
    expect(new Float32Array(await gpu.read(b))).toEqual(old);
    expect(new Float32Array(await gpu.read(c))).toEqual(fresh);
    for (const x of [a, b, c]) gpu.release(x);
  });

  test("more dispatches than the uniform ring holds: every one gets its own parameters", async () => {
    const gpu = await getGpu();
    const y = gpu.upload(new Float32Array(4));
    const s0 = gpu.queue.stats();
    const n = 5000;
    const maxBatch = gpu.queue.maxBatch;
    gpu.queue.maxBatch = 1e9; // only the full ring may force a submit here
    try {
      for (let i = 0; i < n; i++) gpu.dispatch(ACC, "main", { y }, 1, { params: { v: i, i } });
    } finally {
      gpu.queue.maxBatch = maxBatch;
    }
    const out = new Float32Array(await gpu.read(y));
    expect(out[0]).toBe((n * (n - 1)) / 2);
    expect([out[1], out[2], out[3]]).toEqual([1667, 1667, 1666]);
    expect(gpu.queue.stats().submits - s0.submits).toBeGreaterThanOrEqual(2);
    gpu.release(y);
  });

  // Only where such a buffer is cheap to make (lavapipe: 128 MiB); a GPU's limit is GiBs.
  test.skipIf(!BIG_BINDING_CHEAP)("a binding over the device's maxStorageBufferBindingSize is refused at the call, naming op, binding and sizes", async () => {
    const gpu = await getGpu();
    const max = gpu.limits.maxStorageBufferBindingSize;
    const big = gpu.alloc(max + 16);
    try {
      expect(() => gpu.dispatch(ACC, "main", { y: big }, 1, { params: { v: 1, i: 0 }, name: "too_big" })).toThrow(
        /too_big: binding 'y' needs [\d.]+ MiB in one buffer binding; this device allows [\d.]+ MiB \(maxStorageBufferBindingSize of /,
      );
      // A range within the limit binds.
      gpu.dispatch(ACC, "main", { y: { buffer: big, size: 16 } }, 1, { params: { v: 1, i: 0 } });
      await gpu.sync();
    } finally {
      gpu.release(big);
    }
  });

  test("a validation error at flush names the op that caused it", async () => {
    const gpu = await getGpu();
    const a = gpu.alloc(1024);
    const b = gpu.alloc(1024);
    const g = grid1d(gpu, 64);
    gpu.dispatch(COPY, "copy_vec4", { src: a, dst: b }, g.workgroups, { params: { n4: 64, row: g.row, value: 0, bits: 0 }, name: "fine-op" });
    // The same buffer bound read-only and writable in one dispatch: a usage conflict Dawn rejects.
    gpu.dispatch(COPY, "copy_vec4", { src: a, dst: a }, g.workgroups, { params: { n4: 64, row: g.row, value: 0, bits: 0 }, name: "aliasing-op" });
    const err = await gpu.sync().catch((e) => e);
    expect(err).toBeInstanceOf(GpuValidationError);
    expect(err.message).toContain("op 'aliasing-op'");
    gpu.release(a);
    gpu.release(b);
    await gpu.sync(); // recovered
  });

  test.skipIf(!TIMESTAMPS)("profiling sums GPU time per op name (needs timestamp-query)", async () => {
    const gpu = await getGpu();
    expect(gpu.profile(true)).toBe(true);
    gpu.queue.profiler.reset();
    const n4 = 4096;
    const a = gpu.alloc(16 * n4);
    const b = gpu.alloc(16 * n4);
    const g = grid1d(gpu, n4);
    for (let i = 0; i < 3; i++) gpu.dispatch(COPY, "fill_vec4", { src: a, dst: b }, g.workgroups, { params: { n4, row: g.row, value: i, bits: 0 }, name: "fill" });
    gpu.dispatch(COPY, "copy_vec4", { src: b, dst: a }, g.workgroups, { params: { n4, row: g.row, value: 0, bits: 0 }, name: "copy" });
    const out = new Float32Array(await gpu.read(a));
    expect(out[4 * n4 - 1]).toBe(2);
    await gpu.sync();
    const rep = gpu.queue.profiler.report();
    gpu.profile(false);
    expect(rep.find((e) => e.name === "fill")?.calls).toBe(3);
    expect(rep.find((e) => e.name === "copy")?.calls).toBe(1);
    for (const e of rep) expect(e.ms).toBeGreaterThanOrEqual(0);
    gpu.release(a);
    gpu.release(b);
  });
});

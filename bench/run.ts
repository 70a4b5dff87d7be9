/**
 * `bun run bench [-- --quick] [--adapter NAME | --cpu] [--reps N]`: how close each kernel comes to this
 * device's measured ceilings, and how it compares with peers run in the same process on the same adapter.
 *
 * Ceilings are measured first (copy bandwidth, best matmul throughput). Each case is timed as the median of
 * N runs by GPU timestamp queries (host timing when the adapter has none) and reported in GFLOP/s or GB/s
 * with its % of the ceiling. Output: a table on stdout, bench/results/latest.json and a dated copy.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cac } from "cac";
import naiveSrc from "./peers/naive_matmul.wgsl" with { type: "text" };
import { defineKernel, Gpu, grid1d, type PooledBuffer } from "../src/gpu/index.ts";
import { COPY, MATMUL } from "../src/gpu/kernels.ts";
import { tfjsMatmul } from "./peers/tfjs.ts";

const NAIVE = defineKernel("bench/peers/naive_matmul.wgsl", naiveSrc);

interface Case {
  name: string;
  shape: number[];
  dtype: string;
  flops?: number;
  bytes?: number;
  /** Allocate inputs, return the recording function and the buffers to release. */
  setup(gpu: Gpu): { run(): void; buffers: PooledBuffer[] };
}

export interface KernelResult {
  name: string;
  shape: number[];
  dtype: string;
  ms: number;
  gflops?: number;
  gbps?: number;
  pct_of_ceiling: number;
}

function randomBuffer(gpu: Gpu, n: number, seed: number): PooledBuffer {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return gpu.upload(a);
}

function copyCase(n4: number): Case {
  return {
    name: "copy_vec4",
    shape: [n4 * 4],
    dtype: "f32",
    bytes: 32 * n4,
    setup(gpu) {
      const src = gpu.alloc(16 * n4);
      const dst = gpu.alloc(16 * n4);
      const g = grid1d(n4);
      return { buffers: [src, dst], run: () => gpu.dispatch(COPY, "copy_vec4", { src, dst }, g.workgroups, { params: { n4, row: g.row, value: 0 }, name: "copy_vec4" }) };
    },
  };
}

function matmulCase(kind: "v1" | "naive", M: number, N: number, K: number): Case {
  return {
    name: kind === "v1" ? "matmul_nn_v1" : "matmul_naive",
    shape: [M, N, K],
    dtype: "f32",
    flops: 2 * M * N * K,
    setup(gpu) {
      const a = randomBuffer(gpu, M * K, 1);
      const b = randomBuffer(gpu, K * N, 2);
      const c = gpu.alloc(M * N * 4);
      const name = kind === "v1" ? "matmul_nn_v1" : "matmul_naive";
      const run =
        kind === "v1"
          ? () => gpu.dispatch(MATMUL, "matmul_nn_v1", { a, b, c }, [Math.ceil(N / 32), Math.ceil(M / 64)], { params: { M, N, K }, name })
          : () => gpu.dispatch(NAIVE, "matmul_naive", { a, b, c }, [Math.ceil(N / 16), Math.ceil(M / 16)], { params: { M, N, K }, name });
      return { buffers: [a, b, c], run };
    },
  };
}

async function measure(gpu: Gpu, c: Case, reps: number): Promise<number> {
  const { run, buffers } = c.setup(gpu);
  try {
    run();
    await gpu.sync(); // warm-up: compile and first touch
    const useTs = gpu.profile(true);
    const samples: number[] = [];
    for (let r = 0; r < reps; r++) {
      gpu.queue.profiler.reset();
      const t0 = performance.now();
      run();
      await gpu.sync();
      const host = performance.now() - t0;
      const k = gpu.queue.profiler.report().find((e) => e.name === c.name);
      samples.push(useTs && k && k.ms > 0 ? k.ms : host);
    }
    gpu.profile(false);
    samples.sort((x, y) => x - y);
    return samples[Math.floor(samples.length / 2)]!;
  } finally {
    for (const b of buffers) gpu.release(b);
  }
}

/** Median host time of run + a full readback of `out`: the method the tfjs peer is timed with. */
async function measureHost(gpu: Gpu, c: Case, reps: number): Promise<number> {
  const { run, buffers } = c.setup(gpu);
  const out = buffers[buffers.length - 1]!;
  try {
    run();
    await gpu.read(out);
    const samples: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      run();
      await gpu.read(out);
      samples.push(performance.now() - t0);
    }
    samples.sort((x, y) => x - y);
    return samples[Math.floor(samples.length / 2)]!;
  } finally {
    for (const b of buffers) gpu.release(b);
  }
}

async function main(): Promise<void> {
  const cli = cac("bench");
  cli.option("--quick", "Small sizes and few repetitions (≤ 5 minutes on 2 CPU cores)");
  cli.option("--reps <n>", "Repetitions per case (median reported)");
  cli.option("--adapter <name>", "Adapter (substring or index)");
  cli.option("--cpu", "Use the CPU adapter");
  cli.option("--out <dir>", "Results folder", { default: "bench/results" });
  cli.help();
  const { options: o } = cli.parse();
  if (o.help) return;
  const gpu = await Gpu.open({ adapter: o.adapter === undefined ? undefined : String(o.adapter), cpu: o.cpu });
  const cpu = gpu.adapter.kind === "cpu";
  const quick = Boolean(o.quick);
  const reps = Number(o.reps ?? (quick ? 3 : 7));
  const big = cpu ? 1024 : 4096;

  // Ceilings first: the best this device does at a plain copy and at our best matmul.
  const copyN4 = ((cpu ? 32 : 512) << 20) / 16;
  const copyMs = await measure(gpu, copyCase(copyN4), reps);
  const copyGbps = (32 * copyN4) / (copyMs / 1e3) / 1e9;
  const mmBig = matmulCase("v1", big, big, big);
  const mmMs = await measure(gpu, mmBig, reps);
  const matmulGflops = mmBig.flops! / (mmMs / 1e3) / 1e9;

  const cases: Case[] = [
    copyCase(cpu ? (1 << 20) / 16 : (64 << 20) / 16),
    matmulCase("v1", 256, 256, 256),
    matmulCase("v1", 1023, 1024, 1021),
    ...(quick ? [] : [matmulCase("v1", 2048, 2048, 2048)]),
  ];
  const kernels: KernelResult[] = [
    { name: "copy_vec4", shape: [copyN4 * 4], dtype: "f32", ms: copyMs, gbps: copyGbps, pct_of_ceiling: 100 },
    { name: "matmul_nn_v1", shape: [big, big, big], dtype: "f32", ms: mmMs, gflops: matmulGflops, pct_of_ceiling: 100 },
  ];
  for (const c of cases) {
    const ms = await measure(gpu, c, reps);
    const r: KernelResult = { name: c.name, shape: c.shape, dtype: c.dtype, ms, pct_of_ceiling: 0 };
    if (c.flops) {
      r.gflops = c.flops / (ms / 1e3) / 1e9;
      r.pct_of_ceiling = (100 * r.gflops) / matmulGflops;
    } else if (c.bytes) {
      r.gbps = c.bytes / (ms / 1e3) / 1e9;
      r.pct_of_ceiling = (100 * r.gbps) / copyGbps;
    }
    kernels.push(r);
  }

  // Peers, same adapter, same process: ratio > 1 means we are faster.
  const peers: { name: string; ours: number; peer: number; unit: string; ratio: number }[] = [];
  const naive = matmulCase("naive", big, big, big);
  const naiveGflops = naive.flops! / ((await measure(gpu, naive, reps)) / 1e3) / 1e9;
  peers.push({ name: `naive-wgsl-matmul-${big}`, ours: matmulGflops, peer: naiveGflops, unit: "GFLOP/s", ratio: matmulGflops / naiveGflops });
  // tfjs-backend-webgpu, host-timed with a full readback; ours timed the same way here.
  try {
    const tfjs = await tfjsMatmul(1024, reps);
    const oursCase = matmulCase("v1", 1024, 1024, 1024);
    const oursGflops = oursCase.flops! / ((await measureHost(gpu, oursCase, reps)) / 1e3) / 1e9;
    peers.push({ name: "tfjs-matmul-1024", ours: oursGflops, peer: tfjs.gflops, unit: "GFLOP/s", ratio: oursGflops / tfjs.gflops });
  } catch (e) {
    console.error(`peer tfjs-matmul-1024 skipped: ${e instanceof Error ? e.message : e}`);
  }

  const device = {
    description: gpu.adapter.description,
    vendor: gpu.adapter.vendor,
    architecture: gpu.adapter.architecture,
    kind: gpu.adapter.kind,
    backend: gpu.adapter.backend,
    features: [...gpu.features],
    timing: gpu.features.has("timestamp-query") ? "gpu-timestamps" : "host",
  };
  const result = { date: new Date().toISOString(), quick, reps, device, ceilings: { copy_gbps: copyGbps, matmul_gflops: matmulGflops }, kernels, peers, train: [] };

  const fmt = (x: number | undefined, d = 2) => (x === undefined ? "" : x.toFixed(d));
  console.log(`device   ${device.description} (${device.kind}, ${device.backend}), timing by ${device.timing}`);
  console.log(`ceilings copy ${fmt(copyGbps)} GB/s, matmul ${fmt(matmulGflops)} GFLOP/s (matmul_nn_v1 ${big}³)`);
  console.log(`\n${"kernel".padEnd(16)} ${"shape".padEnd(18)} dtype ${"ms".padStart(10)} ${"GFLOP/s".padStart(9)} ${"GB/s".padStart(8)} ${"% ceil".padStart(7)}`);
  for (const k of kernels)
    console.log(`${k.name.padEnd(16)} ${k.shape.join("x").padEnd(18)} ${k.dtype.padEnd(5)} ${fmt(k.ms, 3).padStart(10)} ${fmt(k.gflops).padStart(9)} ${fmt(k.gbps).padStart(8)} ${fmt(k.pct_of_ceiling, 1).padStart(7)}`);
  console.log(`\n${"peer".padEnd(26)} ${"ours".padStart(9)} ${"peer".padStart(9)} unit     ratio`);
  for (const p of peers) console.log(`${p.name.padEnd(26)} ${fmt(p.ours).padStart(9)} ${fmt(p.peer).padStart(9)} ${p.unit.padEnd(8)} ${fmt(p.ratio)}x`);

  const dir = String(o.out);
  mkdirSync(dir, { recursive: true });
  const json = JSON.stringify(result, null, 2) + "\n";
  writeFileSync(join(dir, "latest.json"), json);
  const dated = join(dir, `${result.date.replace(/[:.]/g, "-")}.json`);
  writeFileSync(dated, json);
  console.log(`\nwrote ${join(dir, "latest.json")} and ${dated}`);
  gpu.destroy();
}

await main();

// Autotuning (src/gpu/autotune.ts) and the matmul op's use of it: the fastest candidate wins by measured
// time, the choice is written per adapter and read back by a new tuner without timing anything, a corrupt
// or foreign cache file is reported (file and reason) and replaced, ALIGNX_AUTOTUNE=0 turns tuning off, and
// the matmul op runs the tuned variant under "auto"; Gpu.open({ tune: true }) runs the registered tuners
// (matmul, then attention) and, from a warm cache, times nothing.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Autotuner, defineKernel, Gpu, type Candidate, type TuneResult } from "../../src/gpu/index.ts";
import { registeredTuners } from "../../src/gpu/autotune.ts";
import { Tensor } from "../../src/tensor/index.ts";
import { attentionTuneKey } from "../../src/kernels/attention.ts";
import { matmulTuneKey, matmulVariantFor, matmulVariants, tuneMatmul, variantName } from "../../src/kernels/matmul.ts";
import { attention, tuneAttention } from "../../src/tensor/ops/attention.ts";
import { getGpu } from "../helpers.ts";

// A kernel whose cost grows with `iters`: candidates of known relative speed.
const SPIN = defineKernel(
  "test/spin.wgsl",
  `struct P { iters: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(1) @binding(0) var<uniform> p: P;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) {
  var v = x[g.x];
  for (var i = 0u; i < p.iters; i++) { v = fma(v, 0.999, 0.001); }
  x[g.x] = v;
}`,
);

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "alignx-tune-"));
  dirs.push(d);
  return d;
};
const savedEnv = process.env.ALIGNX_AUTOTUNE;
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  if (savedEnv === undefined) delete process.env.ALIGNX_AUTOTUNE;
  else process.env.ALIGNX_AUTOTUNE = savedEnv;
});

describe("autotune", () => {
  test("the fastest candidate wins; a new tuner reads the choice from disk without timing", async () => {
    const gpu = await getGpu();
    const buf = gpu.alloc(64 * 64 * 4);
    const spin = (iters: number): Candidate => ({
      name: `spin-${iters}`,
      run: () => gpu.dispatch(SPIN, "main", { x: buf }, 64, { params: { iters } }),
    });
    const dir = tempDir();
    const t1 = new Autotuner(gpu, { dir });
    const r = await t1.tune("spin@1", [spin(20000), spin(200), spin(5000)]);
    expect(r!.choice).toBe("spin-200");
    expect(r!.ms["spin-200"]!).toBeLessThan(r!.ms["spin-20000"]!);
    expect(Object.keys(r!.ms).sort()).toEqual(["spin-200", "spin-20000", "spin-5000"]);
    const file = JSON.parse(readFileSync(join(dir, t1.fileName), "utf8"));
    expect(file.format).toBe("alignx-autotune/1");
    expect(file.entries["spin@1"].choice).toBe("spin-200");
    // A second tuner (a later process) finds the choice without running anything.
    const never = (name: string): Candidate => ({ name, run: () => { throw new Error(`${name} must not run`); } });
    const t2 = new Autotuner(gpu, { dir });
    expect(t2.lookup("spin@1")!.choice).toBe("spin-200");
    expect((await t2.tune("spin@1", [never("spin-200"), never("spin-20000")]))!.choice).toBe("spin-200");
    // A new key (another kernel version) is tuned afresh.
    expect((await t2.tune("spin@2", [spin(3000), spin(10)]))!.choice).toBe("spin-10");
    gpu.release(buf);
  }, 60_000);

  test("a corrupt or foreign cache file is reported with its path and replaced", async () => {
    const gpu = await getGpu();
    const buf = gpu.alloc(256);
    const c = (n: number): Candidate => ({ name: `c${n}`, run: () => gpu.dispatch(SPIN, "main", { x: buf }, 1, { params: { iters: n } }) });
    for (const [content, reason] of [
      ['{"format": "alignx-autotune/1", "entries": {', "JSON"],
      ['{"format": "something-else", "entries": {}}', "not an alignx-autotune/1 file"],
    ] as const) {
      const dir = tempDir();
      const logs: string[] = [];
      const t = new Autotuner(gpu, { dir, log: (m) => logs.push(m) });
      writeFileSync(t.file, content);
      expect(t.lookup("k")).toBeUndefined();
      expect(logs.length).toBe(1);
      expect(logs[0]).toContain(t.file);
      expect(logs[0]).toContain(reason);
      await t.tune("k", [c(1), c(1_000_000)]);
      expect(JSON.parse(readFileSync(t.file, "utf8")).entries.k.choice).toBe("c1");
    }
    // A malformed entry is dropped alone; the others are kept.
    const dir = tempDir();
    const logs: string[] = [];
    const t = new Autotuner(gpu, { dir, log: (m) => logs.push(m) });
    writeFileSync(t.file, JSON.stringify({ format: "alignx-autotune/1", entries: { good: { choice: "a", ms: { a: 1 } }, bad: { choice: "zz", ms: { a: 1 } } } }));
    expect(t.lookup("good")!.choice).toBe("a");
    expect(t.lookup("bad")).toBeUndefined();
    expect(logs.join("\n")).toContain('entry "bad"');
    gpu.release(buf);
  }, 60_000);

  test("an unwritable cache directory: the choice holds for this run, with a warning naming the path", async () => {
    const gpu = await getGpu();
    const buf = gpu.alloc(256);
    const blocker = join(tempDir(), "not-a-dir");
    writeFileSync(blocker, "a file where the cache directory should be");
    const logs: string[] = [];
    const t = new Autotuner(gpu, { dir: blocker, log: (m) => logs.push(m) });
    const c = (n: number): Candidate => ({ name: `c${n}`, run: () => gpu.dispatch(SPIN, "main", { x: buf }, 1, { params: { iters: n } }) });
    expect((await t.tune("k", [c(1), c(1_000_000)]))!.choice).toBe("c1");
    expect(t.lookup("k")!.choice).toBe("c1");
    expect(logs.join("\n")).toContain(`could not write the autotune cache ${t.file}`);
    gpu.release(buf);
  }, 60_000);

  test("ALIGNX_AUTOTUNE=0 turns tuning off", async () => {
    const gpu = await getGpu();
    process.env.ALIGNX_AUTOTUNE = "0";
    const t = new Autotuner(gpu, { dir: tempDir() });
    expect(await t.tune("k", [{ name: "x", run: () => { throw new Error("must not run"); } }])).toBeUndefined();
    expect(t.lookup("k")).toBeUndefined();
  });

  test("tuneMatmul times every variant that runs here; auto then runs the tuned variant", async () => {
    const gpu = await getGpu();
    const dir = tempDir();
    const tuner = new Autotuner(gpu, { dir, reps: 1 });
    const results = await tuneMatmul(gpu, tuner);
    const names = matmulVariants(gpu).map(variantName).sort();
    const keys = Object.keys(results);
    expect(keys).toContain(matmulTuneKey("f32", "small"));
    expect(keys).toContain(matmulTuneKey("f32", "large"));
    for (const r of Object.values(results)) {
      expect(Object.keys(r.ms).sort()).toEqual(names);
      expect(r.ms[r.choice]).toBe(Math.min(...Object.values(r.ms)));
    }
    // Force a choice into the shared device's tuner: "auto" follows it, an explicit kernel overrides it.
    const key = matmulTuneKey("f32", "small");
    const forced = { ...results[key]!, choice: "direct-tm4" };
    gpu.tuner.all(); // load the device tuner's file first, so it cannot overwrite the forced entry
    (gpu.tuner as unknown as { entries: Map<string, unknown>; loaded: boolean }).entries.set(key, forced);
    try {
      expect(matmulVariantFor(gpu, { M: 16, N: 16, K: 16, batch: 1 }, "f32")).toEqual({ kernel: "direct", tm: 4 });
      gpu.withPolicy({ matmul: { kernel: "tiled" } }, () => expect(matmulVariantFor(gpu, { M: 16, N: 16, K: 16, batch: 1 }, "f32")).toEqual({ kernel: "tiled", tm: 4 }));
      // And the product is right with it.
      using a = Tensor.fromArray(gpu, [1, 2, 3, 4], [2, 2]);
      using b = Tensor.fromArray(gpu, [5, 6, 7, 8], [2, 2]);
      using c = a.matmul(b);
      expect([...(await c.toArray())]).toEqual([19, 22, 43, 50]);
    } finally {
      (gpu.tuner as unknown as { entries: Map<string, unknown> }).entries.delete(key);
    }
  }, 120_000);

  test("tuneAttention times flash against unfused; auto then follows it where unfused fits, flash elsewhere", async () => {
    const gpu = await getGpu();
    const tuner = new Autotuner(gpu, { dir: tempDir(), reps: 1 });
    const r = (await tuneAttention(gpu, tuner))[attentionTuneKey()]!;
    expect(Object.keys(r.ms).sort()).toEqual(["flash", "unfused"]);
    expect(r.ms[r.choice]).toBe(Math.min(...Object.values(r.ms)));
    // Which path ran shows in the dispatch names: the unfused path records attention.softmax.
    const ran = async (T: number): Promise<string> => {
      using q = Tensor.full(gpu, [1, 2, T, 8], 0.1);
      using k = Tensor.full(gpu, [1, 1, T, 8], 0.1);
      gpu.profile(true);
      gpu.queue.profiler.reset();
      using o = attention(q, k, k);
      await gpu.sync();
      const names = gpu.queue.profiler.report().map((x) => x.name);
      gpu.profile(false);
      return names.includes("attention.softmax") ? "unfused" : "flash";
    };
    const entries = (gpu.tuner as unknown as { entries: Map<string, unknown> }).entries;
    gpu.tuner.all(); // load the device tuner's file first, so it cannot overwrite what is set below
    try {
      for (const choice of ["flash", "unfused"]) {
        entries.set(attentionTuneKey(), { ...r, choice });
        expect(await ran(128)).toBe(choice);
        expect(await ran(16)).toBe("flash"); // below minUnfusedT: always the fused kernels
      }
    } finally {
      entries.delete(attentionTuneKey());
    }
  }, 120_000);

  test("Gpu.open({ tune: true }) runs the registered tuners in order and fills the choices from a warm cache without timing", async () => {
    const shared = await getGpu();
    // src/tensor/index.ts registers the matmul variants before attention (whose unfused path runs on the tuned matmul).
    expect(registeredTuners().map((t) => t.name)).toEqual(["matmul", "attention"]);
    // A warm cache for this adapter (a second device on the shared device's adapter has its file name) whose
    // choices and times no measurement would produce: what the new device reports must come from the file.
    const dir = tempDir();
    const entry = (choice: string, ms: Record<string, number>): TuneResult => ({ choice, ms, method: "host", tunedAt: "2020-01-01T00:00:00.000Z" });
    const mm = entry("direct-tm4", { "direct-tm4": 1, tiled: 2 });
    const att = entry("unfused", { flash: 2, unfused: 1 });
    const entries: Record<string, TuneResult> = { [attentionTuneKey()]: att };
    for (const dtype of ["f32", "f16"] as const) for (const cls of ["small", "large"] as const) entries[matmulTuneKey(dtype, cls)] = mm;
    writeFileSync(join(dir, shared.tuner.fileName), JSON.stringify({ format: "alignx-autotune/1", entries }));
    const savedDir = process.env.ALIGNX_CACHE_DIR;
    process.env.ALIGNX_CACHE_DIR = dir;
    let gpu: Gpu | undefined;
    try {
      gpu = await Gpu.open({ tune: true });
      expect(gpu.tuner.file).toBe(join(dir, shared.tuner.fileName));
      const want: Record<string, TuneResult> = { [matmulTuneKey("f32", "small")]: mm, [matmulTuneKey("f32", "large")]: mm };
      if (gpu.features.has("shader-f16")) Object.assign(want, { [matmulTuneKey("f16", "small")]: mm, [matmulTuneKey("f16", "large")]: mm });
      want[attentionTuneKey()] = att;
      expect(gpu.tuned).toEqual(want);
      expect(Object.keys(gpu.tuned)).toEqual(Object.keys(want)); // matmul first, then attention
      expect(gpu.tuner.timed.size).toBe(0); // nothing was timed
      // The device's "auto" choices follow the cache.
      expect(matmulVariantFor(gpu, { M: 16, N: 16, K: 16, batch: 1 }, "f32")).toEqual({ kernel: "direct", tm: 4 });
      // tune() again: the same results, still without timing.
      expect(await gpu.tune()).toEqual(want);
      expect(gpu.tuner.timed.size).toBe(0);
    } finally {
      gpu?.destroy();
      if (savedDir === undefined) delete process.env.ALIGNX_CACHE_DIR;
      else process.env.ALIGNX_CACHE_DIR = savedDir;
    }
  }, 120_000);
});

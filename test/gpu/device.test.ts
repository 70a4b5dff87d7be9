import { describe, expect, test } from "bun:test";
import { chooseAdapter, DeviceLostError, Gpu, listAdapters, UnknownAdapterError } from "../../src/gpu/index.ts";
import { getGpu } from "../helpers.ts";

describe("device", () => {
  test("an adapter is found and the device gets the adapter's maximum limits", async () => {
    const gpu = await getGpu();
    const all = await listAdapters();
    expect(all.length).toBeGreaterThan(0);
    expect(gpu.adapter.description.length).toBeGreaterThan(0);
    const a = gpu.adapter.adapter.limits;
    expect(gpu.limits.maxStorageBufferBindingSize).toBe(a.maxStorageBufferBindingSize);
    expect(gpu.limits.maxBufferSize).toBe(a.maxBufferSize);
    expect(gpu.limits.maxComputeWorkgroupStorageSize).toBe(a.maxComputeWorkgroupStorageSize);
    expect(gpu.limits.maxComputeInvocationsPerWorkgroup).toBe(a.maxComputeInvocationsPerWorkgroup);
    for (const f of ["shader-f16", "subgroups", "timestamp-query"])
      expect(gpu.features.has(f)).toBe(gpu.adapter.adapter.features.has(f));
  });

  test("adapter choice: by name, by index, CPU, and an unknown name lists what exists", async () => {
    const all = await listAdapters();
    const first = all[0]!;
    expect((await chooseAdapter({ adapter: first.description.slice(0, 6).toUpperCase() })).description).toBe(first.description);
    expect((await chooseAdapter({ adapter: "0" })).description).toBe(first.description);
    if (all.some((a) => a.kind === "cpu")) expect((await chooseAdapter({ cpu: true })).kind).toBe("cpu");
    const err = await chooseAdapter({ adapter: "no-such-gpu-xyz" }).catch((e) => e);
    expect(err).toBeInstanceOf(UnknownAdapterError);
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain("no-such-gpu-xyz");
    expect(err.message).toContain(`[0] ${first.description}`);
  });

  test("a lost device gives an error, not a hang", async () => {
    const g = await Gpu.open();
    const b = g.alloc(1024);
    g.device.destroy();
    const err = await Promise.race([
      (async () => {
        await g.handle.lostPromise;
        try {
          g.write(b, new Float32Array(4));
          return await g.read(b);
        } catch (e) {
          return e;
        }
      })(),
      new Promise((r) => setTimeout(() => r("hang"), 10_000)),
    ]);
    expect(err).toBeInstanceOf(DeviceLostError);
    expect(String((err as Error).message)).toContain("GPU device lost");
  });
});

describe("Dawn toggles", () => {
  test("ALIGNX_DAWN_TOGGLES=allow_unsafe_apis reaches Dawn (experimental features become visible)", async () => {
    const script = `import { listAdapters } from "./src/gpu/device.ts";
const a = (await listAdapters())[0];
console.log(JSON.stringify([...a.adapter.features]));`;
    const run = (env: Record<string, string>) => {
      const p = Bun.spawnSync([process.execPath, "-e", script], { cwd: `${import.meta.dir}/../..`, env: { ...process.env, ...env }, timeout: 30_000 });
      expect(p.exitCode).toBe(0);
      return JSON.parse(p.stdout.toString().trim().split("\n").pop()!) as string[];
    };
    const plain = run({ ALIGNX_DAWN_TOGGLES: "" });
    const unsafe = run({ ALIGNX_DAWN_TOGGLES: "allow_unsafe_apis" });
    expect(plain.some((f) => f.startsWith("chromium-experimental"))).toBe(false);
    expect(unsafe.some((f) => f.startsWith("chromium-experimental"))).toBe(true);
  });
});

// Dawn device toggles (src/gpu/binding.ts, src/gpu/device.ts): `disable_robustness` is requested exactly when
// asked (`Gpu.open({ robustness: false })`, `ALIGNX_ROBUSTNESS=0`) and never otherwise, it is in force on the device
// (Dawn's own list of the device's toggles, and its effect on a kernel), and user scripts' devices (`alignx run`)
// stay robust whatever the environment says. The project's kernels with robustness off: run the suite (or
// test/kernels/launchers.test.ts, the NaN-poisoning launcher tests) with `ALIGNX_ROBUSTNESS=0`.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { dawnTogglesInForce, deviceToggles } from "../../src/gpu/binding.ts";
import { deviceTogglesFor } from "../../src/gpu/device.ts";
import { Gpu } from "../../src/gpu/index.ts";
import { getGpu } from "../helpers.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const ENV = ["ALIGNX_ROBUSTNESS"] as const;

/** Run `fn` with these variables set (undefined: unset), restoring the caller's values afterwards. */
async function withEnv<T>(vars: Partial<Record<(typeof ENV)[number], string | undefined>>, fn: () => T | Promise<T>): Promise<T> {
  const saved = Object.fromEntries(ENV.map((k) => [k, process.env[k]]));
  try {
    for (const k of ENV) {
      const v = k in vars ? vars[k] : undefined;
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    return await fn();
  } finally {
    for (const k of ENV) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

/**
 * The probe: `fixed` is declared as array<f32, 4> but bound to a buffer of 64 floats (100, 101, …) and read at
 * index 8 (from a uniform, so the compiler cannot see it). With robustness on, Dawn's transform clamps the index
 * to 3 and the kernel reads 103; with it off nothing clamps, and the read lands on element 8 of the binding, 108
 * (inside the bound range: memory-safe either way, and the same on every driver).
 * Written out as plain JS so the user-script fixture below can run the very same code.
 */
const PROBE = /* js */ `
async function probe(device) {
  const code = \`
    struct P { i: u32 }
    @group(0) @binding(0) var<storage, read> fixed: array<f32, 4>;
    @group(0) @binding(1) var<storage, read_write> out: array<f32>;
    @group(0) @binding(2) var<uniform> p: P;
    @compute @workgroup_size(1) fn main() { out[0] = fixed[p.i]; }\`;
  const STORAGE = 0x80, UNIFORM = 0x40, COPY_SRC = 0x4, COPY_DST = 0x8, MAP_READ = 0x1;
  const make = (size, usage, data) => {
    const b = device.createBuffer({ size, usage });
    if (data) device.queue.writeBuffer(b, 0, data);
    return b;
  };
  const src = make(256, STORAGE | COPY_DST, new Float32Array(64).map((_, i) => 100 + i));
  const out = make(16, STORAGE | COPY_SRC);
  const index = make(16, UNIFORM | COPY_DST, new Uint32Array([8, 0, 0, 0]));
  const back = make(16, MAP_READ | COPY_DST);
  const pipeline = device.createComputePipeline({ layout: "auto", compute: { module: device.createShaderModule({ code }), entryPoint: "main" } });
  const group = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: src } }, { binding: 1, resource: { buffer: out } }, { binding: 2, resource: { buffer: index } }],
  });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(1);
  pass.end();
  enc.copyBufferToBuffer(out, 0, back, 0, 16);
  device.queue.submit([enc.finish()]);
  await back.mapAsync(MAP_READ);
  const value = new Float32Array(back.getMappedRange().slice(0))[0];
  back.unmap();
  for (const b of [src, out, index, back]) b.destroy();
  return value;
}`;
const probe = new Function(`${PROBE}; return probe;`)() as (device: GPUDevice) => Promise<number>;
const CLAMPED = 103;
const UNCLAMPED = 108;

describe("Dawn device toggles", () => {
  const opened: Gpu[] = [];
  afterEach(() => {
    for (const g of opened.splice(0)) g.destroy();
  });

  test("which toggles a device asks for: the option, overridden by ALIGNX_ROBUSTNESS either way", async () => {
    const cases: [Record<string, string>, { robustness?: boolean }, string[]][] = [
      [{}, {}, []],
      [{}, { robustness: true }, []],
      [{}, { robustness: false }, ["disable_robustness"]],
      [{ ALIGNX_ROBUSTNESS: "1" }, { robustness: false }, []],
      [{ ALIGNX_ROBUSTNESS: "true" }, {}, []],
      [{ ALIGNX_ROBUSTNESS: "0" }, {}, ["disable_robustness"]],
      [{ ALIGNX_ROBUSTNESS: "0" }, { robustness: true }, ["disable_robustness"]],
      [{ ALIGNX_ROBUSTNESS: "" }, { robustness: false }, ["disable_robustness"]],
      [{ ALIGNX_ROBUSTNESS: "false" }, {}, ["disable_robustness"]],
    ];
    for (const [env, opts, want] of cases) expect([env, opts, await withEnv(env, () => deviceTogglesFor(opts))]).toEqual([env, opts, want]);
    await withEnv({ ALIGNX_ROBUSTNESS: "off" }, () => expect(() => deviceTogglesFor({})).toThrow("ALIGNX_ROBUSTNESS must be 1 or 0, got 'off'"));
    // A bad value fails Gpu.open before a device opens.
    const err = await withEnv({ ALIGNX_ROBUSTNESS: "yes" }, () => Gpu.open().then(() => null, (e: unknown) => e));
    expect(String(err)).toContain("ALIGNX_ROBUSTNESS must be 1 or 0, got 'yes'");
  });

  test("the suite's shared device has the project's default toggles: none, or disable_robustness under ALIGNX_ROBUSTNESS=0", async () => {
    const gpu = await getGpu();
    expect(gpu.handle.toggles).toEqual(deviceTogglesFor({}));
    expect(deviceToggles(gpu.device)).toEqual(gpu.handle.toggles);
    expect(gpu.handle.toggles).not.toContain("skip_validation"); // validation stays on in tests, always
    const inForce = await dawnTogglesInForce(gpu.device);
    const watched = new Set(["disable_robustness", "skip_validation"]);
    if (inForce) expect(inForce.filter((t) => watched.has(t))).toEqual([...gpu.handle.toggles]);
  });

  test("robustness: false → disable_robustness requested, in force by Dawn's account, and no index clamping; the default → none of it", async () => {
    const [robust, fast] = await withEnv({}, async () => [await Gpu.open(), await Gpu.open({ robustness: false })]);
    opened.push(robust!, fast!);
    expect(robust!.handle.toggles).toEqual([]);
    expect(fast!.handle.toggles).toEqual(["disable_robustness"]);
    expect(deviceToggles(fast!.device)).toEqual(["disable_robustness"]);

    // Dawn's own list of the device's toggles (x86-64 with bun-webgpu; undefined where it cannot be asked).
    const inForceRobust = await dawnTogglesInForce(robust!.device);
    const inForceFast = await dawnTogglesInForce(fast!.device);
    if (robust!.handle.binding.name === "bun-webgpu" && process.arch === "x64") {
      expect(inForceRobust).toBeArray();
      expect(inForceFast).toBeArray();
    }
    if (inForceRobust && inForceFast) {
      expect(inForceRobust).not.toContain("disable_robustness");
      expect(inForceFast).toContain("disable_robustness");
      expect(inForceFast).not.toContain("skip_validation");
    }

    // Its effect. (A binding that cannot pass device toggles records none, and then clamps on both.)
    expect(await probe(robust!.device)).toBe(CLAMPED);
    expect(await probe(fast!.device)).toBe(robust!.handle.binding.name === "bun-webgpu" ? UNCLAMPED : CLAMPED);

    // The runtime's own path works on the fast device (a kernel through the queue, read back).
    const b = fast!.upload(new Float32Array([1, 2, 3, 4]));
    fast!.fill(b, 7);
    expect([...new Float32Array(await fast!.read(b, 16))]).toEqual([7, 7, 7, 7]);
    fast!.release(b);
  });

  test("ALIGNX_ROBUSTNESS=1 keeps a device robust although the caller asked for robustness: false", async () => {
    const gpu = await withEnv({ ALIGNX_ROBUSTNESS: "1" }, () => Gpu.open({ robustness: false }));
    opened.push(gpu);
    expect(gpu.handle.toggles).toEqual([]);
    expect(await probe(gpu.device)).toBe(CLAMPED);
  });

  test(
    "alignx run: a user script's device stays robust, even with ALIGNX_ROBUSTNESS=0",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "alignx-toggles-"));
      try {
        const script = join(dir, "probe.ts");
        writeFileSync(
          script,
          `${PROBE}
import { dawnTogglesInForce } from ${JSON.stringify(join(ROOT, "src/gpu/binding.ts"))};
const adapter = await navigator.gpu.requestAdapter();
const device = await adapter.requestDevice();
console.log(JSON.stringify({ value: await probe(device), inForce: (await dawnTogglesInForce(device)) ?? null }));
`,
        );
        const env: Record<string, string | undefined> = { ...process.env, ALIGNX_ROBUSTNESS: "0" };
        const p = Bun.spawnSync([process.execPath, join(ROOT, "src/cli/main.ts"), "run", script], { cwd: ROOT, env, timeout: 60_000 });
        expect(p.exitCode).toBe(0);
        const line = p.stdout.toString().trim().split("\n").pop()!;
        const r = JSON.parse(line) as { value: number; inForce: string[] | null };
        expect(r.value).toBe(CLAMPED);
        if (r.inForce) {
          expect(r.inForce).not.toContain("disable_robustness");
          expect(r.inForce).not.toContain("skip_validation");
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    90_000,
  );
});

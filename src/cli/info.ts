/** `alignx info`: adapter, features, key limits and a one-second self-test of the device. */
import { Gpu, fmtBytes, listAdapters, type DeviceOptions } from "../gpu/index.ts";
import { selfTest } from "../gpu/selftest.ts";
import "../tensor/index.ts"; // registers the ops' tuners, which Gpu.open({ tune: true }) runs

const KEY_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupsPerDimension",
] as const;

export async function info(opts: DeviceOptions & { json?: boolean; selftest?: boolean }): Promise<number> {
  // With the self-test, the kernel choices too (matmul variant per dtype and size class, attention path):
  // timed now on a first run on this adapter, else read from the cache file.
  const gpu = await Gpu.open({ adapter: opts.adapter, cpu: opts.cpu, tune: opts.selftest !== false });
  try {
    const a = gpu.adapter;
    const limits = Object.fromEntries(KEY_LIMITS.map((k) => [k, (gpu.limits as unknown as Record<string, number>)[k]]));
    const adapters = (await listAdapters()).map((e) => `${e.description} (${e.kind}, ${e.backend})`);
    const t = opts.selftest === false ? undefined : await selfTest(gpu);
    const tuned = gpu.tuned;
    if (opts.json) {
      const autotune = { file: gpu.tuner.file, entries: tuned };
      console.log(JSON.stringify({ adapter: { ...a, adapter: undefined }, binding: gpu.handle.binding.name, adapters, features: [...gpu.features], limits, selftest: t, autotune }, null, 2));
      return 0;
    }
    const out: string[] = [];
    out.push(`adapter      ${a.description}`);
    out.push(`             vendor ${a.vendor || "?"}, architecture ${a.architecture || "?"}, ${a.kind}, backend ${a.backend}, binding ${gpu.handle.binding.name}`);
    if (adapters.length > 1) out.push(`all adapters ${adapters.map((x, i) => `[${i}] ${x}`).join("; ")}`);
    out.push(`features     ${[...gpu.features].sort().join(", ")}`);
    for (const [k, v] of Object.entries(limits)) out.push(`${k.padEnd(35)} ${k.endsWith("Size") && v >= 65536 ? `${v} (${fmtBytes(v)})` : v}`);
    if (t) {
      out.push(`self-test    copy ${t.copyGBps.toFixed(2)} GB/s (${fmtBytes(t.copyBytes)}, read+write), matmul ${t.matmulGflops.toFixed(2)} GFLOP/s (${t.matmulShape.join("x")} f32, the simple self-test kernel: the ops run the tuned ones below), timed by ${t.timing}`);
      out.push(`status       ok: results checked on the host`);
    }
    const keys = Object.keys(tuned);
    if (keys.length) {
      const where = keys.some((k) => gpu.tuner.timed.has(k)) ? `tuned now, saved to ${gpu.tuner.file}` : `tuned before, read from ${gpu.tuner.file}`;
      const mm = keys.filter((k) => k.startsWith("matmul/"));
      out.push(`matmul       ${mm.map((k) => `${k.split("/").slice(1, 3).join(" ")} ${tuned[k]!.choice}`).join(", ")}`);
      for (const k of keys.filter((x) => x.startsWith("attention/"))) out.push(`attention    long sequences (T >= 128, probabilities within budget): ${tuned[k]!.choice}`);
      out.push(`autotune     ${where}`);
    } else if (opts.selftest !== false) out.push(`autotune     off (ALIGNX_AUTOTUNE=0): built-in kernel choices`);
    console.log(out.join("\n"));
    return 0;
  } finally {
    gpu.destroy();
  }
}

/** `alignx info`: adapter, features, key limits and a one-second self-test of the device. */
import { Gpu, fmtBytes, listAdapters, type DeviceOptions } from "../gpu/index.ts";
import { selfTest } from "../gpu/selftest.ts";

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
  const gpu = await Gpu.open(opts);
  try {
    const a = gpu.adapter;
    const limits = Object.fromEntries(KEY_LIMITS.map((k) => [k, (gpu.limits as unknown as Record<string, number>)[k]]));
    const adapters = (await listAdapters()).map((e) => `${e.description} (${e.kind}, ${e.backend})`);
    const t = opts.selftest === false ? undefined : await selfTest(gpu);
    if (opts.json) {
      console.log(JSON.stringify({ adapter: { ...a, adapter: undefined }, binding: gpu.handle.binding.name, adapters, features: [...gpu.features], limits, selftest: t }, null, 2));
      return 0;
    }
    const out: string[] = [];
    out.push(`adapter      ${a.description}`);
    out.push(`             vendor ${a.vendor || "?"}, architecture ${a.architecture || "?"}, ${a.kind}, backend ${a.backend}, binding ${gpu.handle.binding.name}`);
    if (adapters.length > 1) out.push(`all adapters ${adapters.map((x, i) => `[${i}] ${x}`).join("; ")}`);
    out.push(`features     ${[...gpu.features].sort().join(", ")}`);
    for (const [k, v] of Object.entries(limits)) out.push(`${k.padEnd(35)} ${k.endsWith("Size") && v >= 65536 ? `${v} (${fmtBytes(v)})` : v}`);
    if (t) {
      out.push(`self-test    copy ${t.copyGBps.toFixed(2)} GB/s (${fmtBytes(t.copyBytes)}, read+write), matmul ${t.matmulGflops.toFixed(2)} GFLOP/s (${t.matmulShape.join("x")} f32), timed by ${t.timing}`);
      out.push(`status       ok: results checked on the host`);
    }
    console.log(out.join("\n"));
    return 0;
  } finally {
    gpu.destroy();
  }
}

/**
 * Adapter choice and device creation.
 *
 * WebGPU has no "list adapters" call, so `listAdapters` asks Dawn under each preference it understands
 * (default, high-performance, low-power, fallback, each backend) and keeps the distinct answers.
 * The choice: `--adapter NAME` / `ALIGNX_ADAPTER` (a case-insensitive substring of the description,
 * or an index into the list), `--cpu` / `ALIGNX_CPU=1` (the CPU adapter, e.g. lavapipe), otherwise the
 * best kind available: discrete GPU, then integrated, then anything else, then CPU.
 * Experimental features (subgroup matrices) appear only with `ALIGNX_DAWN_TOGGLES=allow_unsafe_apis`.
 *
 * Robustness. Dawn makes every shader memory access safe (its robustness transform clamps indices; on Vulkan
 * the driver's robust buffer access checks the rest), at a cost per access. `openDevice` opens the devices
 * that run the runtime's own kernels, which the tests check element by element with NaN-poisoned outputs, so
 * `{ robustness: false }` asks Dawn for `disable_robustness` there (meant for the project's own commands: train,
 * align, generate, parity, info, bench); the default stays robust. User scripts (`alignx run`, src/gpu/globals.ts) create their devices through
 * `adapter.requestDevice` and are never given the toggle. `ALIGNX_ROBUSTNESS=1` keeps robustness on for
 * every device whatever the caller asked, `ALIGNX_ROBUSTNESS=0` turns it off for every device opened here
 * (how the test suite is run the way the commands run). What it is worth: bench/NOTES.md, 2026-12-02 (on
 * lavapipe, nothing measurable: the per-element bounds checks there are Mesa's own). Dawn's `skip_validation`
 * is not offered: it saves < 1 µs of ~5 µs host time per dispatch, hides the validation errors the queue
 * attributes to ops, and crashes lavapipe in a training step (same entry).
 */
import { deviceToggles, loadBinding, type Binding } from "./binding.ts";
import { DeviceLostError, NoAdapterError, UnknownAdapterError } from "./errors.ts";

export type AdapterKind = "discrete-gpu" | "integrated-gpu" | "cpu" | "unknown";

export interface AdapterEntry {
  adapter: GPUAdapter;
  description: string;
  vendor: string;
  architecture: string;
  backend: string;
  kind: AdapterKind;
  /** Subgroup sizes the adapter may use (0 when it does not say). */
  subgroupMinSize: number;
  subgroupMaxSize: number;
}

export interface DeviceOptions {
  /** Substring of the adapter description, or an index into `listAdapters()`. */
  adapter?: string;
  /** Force the CPU adapter. */
  cpu?: boolean;
  /**
   * false: Dawn's `disable_robustness` on this device, for the runtime's own tested kernels (default true:
   * robust). `ALIGNX_ROBUSTNESS=1` / `0` overrides it either way.
   */
  robustness?: boolean;
}

/** Whether the variable `name` says on (`1`, `true`), off (`0`, `false`), or nothing (unset, empty); anything else throws. */
function envFlag(name: string): boolean | undefined {
  const v = (process.env[name] ?? "").trim().toLowerCase();
  if (v === "") return undefined;
  if (v === "1" || v === "true") return true;
  if (v === "0" || v === "false") return false;
  throw new Error(`${name} must be 1 or 0, got '${process.env[name]}'`);
}

/**
 * The Dawn device toggles `openDevice` asks for: `disable_robustness` when robustness is off (the option,
 * overridden by `ALIGNX_ROBUSTNESS`), else none.
 */
export function deviceTogglesFor(opts: DeviceOptions = {}): string[] {
  const robust = envFlag("ALIGNX_ROBUSTNESS") ?? opts.robustness ?? true;
  return robust ? [] : ["disable_robustness"];
}

/** Optional features enabled whenever the adapter offers them. */
export const WANTED_FEATURES = ["shader-f16", "subgroups", "timestamp-query", "chromium-experimental-subgroup-matrix"] as const;

/** Limits requested at the adapter's maximum. */
const MAX_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxUniformBufferBindingSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxBindGroups",
] as const;

// Dawn's numeric enums, which bun-webgpu passes through unconverted (dawn.node gives strings).
const BACKENDS = ["undefined", "null", "webgpu", "d3d11", "d3d12", "metal", "vulkan", "opengl", "opengles"];
const KINDS: AdapterKind[] = ["unknown", "discrete-gpu", "integrated-gpu", "cpu", "unknown"];
const KIND_RANK: Record<AdapterKind, number> = { "discrete-gpu": 0, "integrated-gpu": 1, unknown: 2, cpu: 3 };

function describe(adapter: GPUAdapter): AdapterEntry {
  const info = adapter.info as GPUAdapterInfo & { backendType?: number | string; adapterType?: number | string; subgroupMinSize?: number; subgroupMaxSize?: number };
  const backend = typeof info.backendType === "number" ? (BACKENDS[info.backendType] ?? "unknown") : (info.backendType ?? "unknown");
  let kind: AdapterKind =
    typeof info.adapterType === "number" ? (KINDS[info.adapterType] ?? "unknown") : ((info.adapterType as AdapterKind) ?? "unknown");
  if (kind === "unknown" && /llvmpipe|swiftshader|lavapipe|warp/i.test(info.description + info.architecture)) kind = "cpu";
  const description = info.description || `${info.vendor} ${info.architecture}`.trim() || "unnamed adapter";
  const sub = { subgroupMinSize: Number(info.subgroupMinSize ?? 0) || 0, subgroupMaxSize: Number(info.subgroupMaxSize ?? 0) || 0 };
  return { adapter, description, vendor: info.vendor, architecture: info.architecture, backend, kind, ...sub };
}

const QUERIES: GPURequestAdapterOptions[] = [
  {},
  { powerPreference: "high-performance" },
  { powerPreference: "low-power" },
  { forceFallbackAdapter: true },
];

/** Every adapter Dawn will hand out, best first. Silences Dawn's discovery warnings about missing backends. */
export async function listAdapters(binding?: Binding): Promise<AdapterEntry[]> {
  const b = binding ?? (await loadBinding());
  const seen = new Map<string, AdapterEntry>();
  for (const q of QUERIES) {
    let a: GPUAdapter | null = null;
    try {
      a = await quietly(() => b.gpu.requestAdapter(q));
    } catch {
      a = null;
    }
    if (!a) continue;
    const e = describe(a);
    // Dawn's Null backend (offered when no real driver is found) accepts work and computes nothing.
    if (e.backend === "null") continue;
    const key = `${e.backend}|${e.description}`;
    if (!seen.has(key)) seen.set(key, e);
  }
  return [...seen.values()].sort((x, y) => KIND_RANK[x.kind] - KIND_RANK[y.kind]);
}

/** Dawn prints OpenGL/EGL discovery failures on stderr while looking for adapters; they mean nothing here. */
async function quietly<T>(fn: () => Promise<T>): Promise<T> {
  const write = process.stderr.write;
  const origWarn = console.warn;
  const skip = (s: unknown) => typeof s === "string" && /eglInitialize|BackendType::OpenGL|CheckEGL|^\s*$/.test(s);
  process.stderr.write = ((chunk: unknown, ...rest: unknown[]) =>
    skip(String(chunk)) ? true : (write as (...a: unknown[]) => boolean).call(process.stderr, chunk, ...rest)) as typeof write;
  console.warn = (...a: unknown[]) => (a.some((x) => skip(String(x))) ? undefined : origWarn(...a));
  try {
    return await fn();
  } finally {
    process.stderr.write = write;
    console.warn = origWarn;
  }
}

export function resolveOptions(opts: DeviceOptions = {}): DeviceOptions {
  const env = process.env;
  return {
    adapter: opts.adapter ?? (env.ALIGNX_ADAPTER || undefined),
    cpu: opts.cpu ?? (env.ALIGNX_CPU === "1" || env.ALIGNX_CPU === "true"),
  };
}

/** Pick the adapter the options ask for. Throws NoAdapterError or UnknownAdapterError (exit 2). */
export async function chooseAdapter(opts: DeviceOptions = {}, binding?: Binding): Promise<AdapterEntry> {
  const o = resolveOptions(opts);
  const all = await listAdapters(binding);
  if (all.length === 0) throw new NoAdapterError();
  const names = all.map((e) => `${e.description} (${e.kind}, ${e.backend})`);
  if (o.adapter !== undefined && o.adapter !== "") {
    const want = o.adapter;
    const hit = /^\d+$/.test(want)
      ? all[Number(want)]
      : all.find((e) => `${e.description} ${e.vendor} ${e.architecture}`.toLowerCase().includes(want.toLowerCase()));
    if (!hit) throw new UnknownAdapterError(want, names);
    return hit;
  }
  if (o.cpu) {
    const cpu = all.find((e) => e.kind === "cpu");
    if (!cpu) throw new UnknownAdapterError("cpu", names);
    return cpu;
  }
  return all[0]!;
}

export interface DeviceHandle {
  binding: Binding;
  entry: AdapterEntry;
  device: GPUDevice;
  features: Set<string>;
  /** Set once the device is lost; every later GPU call throws it. */
  lost: DeviceLostError | undefined;
  /** Resolves (never rejects) when the device is lost, so waits can race against it. */
  lostPromise: Promise<DeviceLostError>;
  /** The Dawn device toggles the device was created with (`deviceTogglesFor`; [] on bindings that cannot pass them). */
  toggles: readonly string[];
}

/** Create the device: adapter maxima for buffer/workgroup limits, optional features when offered. */
export async function openDevice(opts: DeviceOptions = {}): Promise<DeviceHandle> {
  const toggles = deviceTogglesFor(opts); // a bad ALIGNX_ROBUSTNESS fails before anything opens
  const binding = await loadBinding();
  const entry = await chooseAdapter(opts, binding);
  const { adapter } = entry;
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  const lim = adapter.limits as unknown as Record<string, number>;
  for (const k of MAX_LIMITS) if (typeof lim[k] === "number" && lim[k] > 0) requiredLimits[k] = lim[k];
  for (const k of binding.quirks.zeroLimits) requiredLimits[k] = 0;
  const device = await binding.requestDevice(
    adapter,
    { label: "alignx", requiredFeatures, requiredLimits: requiredLimits as GPUDeviceDescriptor["requiredLimits"] },
    toggles,
  );
  const handle: DeviceHandle = {
    binding,
    entry,
    device,
    features: new Set([...device.features].map(String)),
    lost: undefined,
    lostPromise: undefined as unknown as Promise<DeviceLostError>,
    toggles: deviceToggles(device),
  };
  handle.lostPromise = device.lost.then((info) => {
    handle.lost = new DeviceLostError(String(info.reason ?? "unknown"), info.message);
    return handle.lost;
  });
  return handle;
}

type SubgroupInfo = { adapter: AdapterEntry; features: ReadonlySet<string> };

/** Whether the device has the subgroups feature with one fixed subgroup size of exactly `lanes` lanes. */
export function hasSubgroupsOf(gpu: SubgroupInfo, lanes: number): boolean {
  const a = gpu.adapter;
  return gpu.features.has("subgroups") && a.subgroupMinSize === lanes && a.subgroupMaxSize === lanes;
}

/** The adapter and its subgroup sizes, for errors: "llvmpipe ... has 8..8" or "... has no subgroups feature". */
export function describeSubgroups(gpu: SubgroupInfo): string {
  const a = gpu.adapter;
  return `${a.description} has ${gpu.features.has("subgroups") ? `${a.subgroupMinSize}..${a.subgroupMaxSize}` : "no subgroups feature"}`;
}

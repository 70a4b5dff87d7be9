/**
 * The binding seam: the one module that knows which WebGPU implementation is in use.
 *
 * Everything else in the project talks to the standard WebGPU API (`GPU`, `GPUAdapter`, `GPUDevice`, …)
 * it gets from `loadBinding()`. Bindings:
 *   - `bun-webgpu` (default): Dawn through `bun:ffi`. Works under Bun and inside `bun build --compile`.
 *   - `dawn-node`: the `webgpu` npm package (Dawn's own node bindings). Works under Node, but under Bun it
 *     segfaults in `mapAsync` after a compute pass (a Bun N-API problem), so it is opt-in only.
 *   - `native`: a `navigator.gpu` the runtime already provides (a future Bun with built-in WebGPU, Deno).
 * Choose with `ALIGNX_BINDING=<name>`. A new binding is one more entry in `LOADERS`.
 */

export type BindingName = "bun-webgpu" | "dawn-node" | "native";

export interface Binding {
  readonly name: BindingName;
  readonly gpu: GPU;
  /** Constructors and flag objects to put on globalThis (GPUBufferUsage, GPUMapMode, GPUValidationError, …). */
  readonly globals: Record<string, unknown>;
  /** Library-specific quirks the rest of the runtime must respect. */
  readonly quirks: BindingQuirks;
}

export interface BindingQuirks {
  /** Limits the binding reports as 0 and that must be requested as 0 (bun-webgpu: four per-stage storage limits). */
  readonly zeroLimits: readonly string[];
  /** Buffers are not garbage-collected: every buffer must be destroyed explicitly. */
  readonly manualBufferLifetime: boolean;
  /** Most async operations (mapAsync, popErrorScope, …) the binding tolerates in flight. */
  readonly maxPendingAsync: number;
  /** `GPUShaderModule.getCompilationInfo()` is missing (bun-webgpu: it aborts); the user-script globals supply one. */
  readonly noCompilationInfo: boolean;
}

const LOADERS: Record<BindingName, () => Promise<Binding>> = {
  async "bun-webgpu"() {
    const lib = await import("bun-webgpu");
    let gpu = lib.createGPUInstance() as unknown as GPU;
    const toggles = dawnToggles();
    if (toggles.length) gpu = await withToggles(gpu, toggles);
    return {
      name: "bun-webgpu",
      gpu,
      globals: { ...lib.globalConstructors },
      quirks: {
        zeroLimits: [
          "maxStorageBuffersInFragmentStage",
          "maxStorageBuffersInVertexStage",
          "maxStorageTexturesInFragmentStage",
          "maxStorageTexturesInVertexStage",
        ],
        manualBufferLifetime: true,
        maxPendingAsync: 1024,
        noCompilationInfo: true,
      },
    };
  },
  async "dawn-node"() {
    // Indirect specifier: the package is optional and must not be bundled into the compiled binary.
    const spec = "webgpu";
    const mod = (await import(spec)) as { create(flags: string[]): GPU; globals: Record<string, unknown> };
    return {
      name: "dawn-node",
      gpu: mod.create([]),
      globals: { ...mod.globals },
      quirks: { zeroLimits: [], manualBufferLifetime: false, maxPendingAsync: Infinity, noCompilationInfo: false },
    };
  },
  async native() {
    const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
    if (!gpu) throw new Error("ALIGNX_BINDING=native: this runtime has no navigator.gpu");
    return {
      name: "native",
      gpu,
      globals: {},
      quirks: { zeroLimits: [], manualBufferLifetime: false, maxPendingAsync: Infinity, noCompilationInfo: false },
    };
  },
};

/** Dawn instance toggles from `ALIGNX_DAWN_TOGGLES` (comma-separated), e.g. `allow_unsafe_apis`. */
export function dawnToggles(): string[] {
  return (process.env.ALIGNX_DAWN_TOGGLES ?? "")
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean);
}

/**
 * bun-webgpu creates its instance with a null descriptor, so Dawn's experimental features (the
 * subgroup-matrix / tensor-core path among them) stay hidden. Re-create the instance through the same
 * library's `wgpuCreateInstance` with a WGPUInstanceDescriptor whose chain holds a DawnTogglesDescriptor:
 *   WGPUChainedStruct { next: ptr @0, sType: u32 @8 }            (16 bytes)
 *   DawnTogglesDescriptor { chain @0, enabledCount: size_t @16, enabled: char** @24,
 *                           disabledCount: size_t @32, disabled: char** @40 }   (48 bytes)
 *   WGPUInstanceDescriptor { nextInChain: ptr @0, … zero }      (64 bytes reserved, rest zero)
 * The buffers stay referenced for the life of the process (Dawn copies toggles at creation, but cheaply safe).
 */
const keepAlive: unknown[] = [];
async function withToggles(base: GPU, toggles: string[]): Promise<GPU> {
  const { ptr } = await import("bun:ffi");
  const b = base as unknown as { lib: { wgpuCreateInstance(p: number): number }; constructor: new (p: number, lib: unknown) => GPU; destroy(): void };
  const S_TYPE_DAWN_TOGGLES_DESCRIPTOR = 0x5000a;
  const strings = toggles.map((t) => Buffer.from(t + "\0"));
  const list = new BigUint64Array(strings.length);
  strings.forEach((s, i) => (list[i] = BigInt(ptr(s))));
  const tog = new DataView(new ArrayBuffer(48));
  tog.setUint32(8, S_TYPE_DAWN_TOGGLES_DESCRIPTOR, true);
  tog.setBigUint64(16, BigInt(strings.length), true);
  tog.setBigUint64(24, BigInt(ptr(list)), true);
  const desc = new DataView(new ArrayBuffer(64));
  desc.setBigUint64(0, BigInt(ptr(tog.buffer)), true);
  keepAlive.push(strings, list, tog, desc);
  const instance = b.lib.wgpuCreateInstance(ptr(desc.buffer));
  if (!instance) throw new Error(`Dawn refused an instance with toggles ${toggles.join(",")}`);
  const gpu = new b.constructor(instance, b.lib);
  b.destroy();
  return gpu;
}

let loaded: Promise<Binding> | undefined;

/** Load (once per process) the WebGPU binding named by `ALIGNX_BINDING`, default `bun-webgpu`. */
export function loadBinding(name = (process.env.ALIGNX_BINDING ?? "bun-webgpu") as BindingName): Promise<Binding> {
  if (!(name in LOADERS)) {
    throw new Error(`ALIGNX_BINDING=${name}: unknown WebGPU binding (known: ${Object.keys(LOADERS).join(", ")})`);
  }
  loaded ??= LOADERS[name]().catch((e: unknown) => {
    loaded = undefined;
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(`could not load the WebGPU binding '${name}': ${why}`);
  });
  return loaded;
}

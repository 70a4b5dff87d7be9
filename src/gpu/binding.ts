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
}

const LOADERS: Record<BindingName, () => Promise<Binding>> = {
  async "bun-webgpu"() {
    const lib = await import("bun-webgpu");
    const gpu = lib.createGPUInstance() as unknown as GPU;
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
      quirks: { zeroLimits: [], manualBufferLifetime: false, maxPendingAsync: Infinity },
    };
  },
  async native() {
    const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
    if (!gpu) throw new Error("ALIGNX_BINDING=native: this runtime has no navigator.gpu");
    return {
      name: "native",
      gpu,
      globals: {},
      quirks: { zeroLimits: [], manualBufferLifetime: false, maxPendingAsync: Infinity },
    };
  },
};

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

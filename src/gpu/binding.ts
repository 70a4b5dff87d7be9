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
 *
 * Dawn toggles. Instance toggles (`ALIGNX_DAWN_TOGGLES`, `withToggles`) and device toggles (`binding.requestDevice`
 * with a list, e.g. `disable_robustness`; src/gpu/device.ts decides which) both travel as a
 * DawnTogglesDescriptor chained to the descriptor Dawn is given. For devices, bun-webgpu's own
 * `GPUAdapter.requestDevice(desc)` spreads `desc` into the WGPUDeviceDescriptor it packs, and that struct's first
 * field is `nextInChain` (a plain pointer), so a descriptor carrying `nextInChain: <address of our toggles
 * struct>` reaches `wgpuAdapterRequestDevice` unchanged: no fork, no second copy of bun-webgpu's callback,
 * uncaptured-error and device-lost plumbing (calling wgpuAdapterRequestDevice ourselves would need all three,
 * and GPUDeviceImpl is not exported). The cost: it relies on that spread, so test/gpu/toggles.test.ts checks on
 * every run that the toggle is in force, by Dawn's own account (`dawnTogglesInForce`) and by its effect (an index
 * past a fixed-size storage array is clamped only while robustness is on). `deviceToggles(device)` records what
 * each device was asked for (the seam the tests read). Other bindings create the device without toggles (dawn.node
 * takes them per process, as `create(["enable-dawn-features=…"])` flags) and record none.
 */

export type BindingName = "bun-webgpu" | "dawn-node" | "native";

export interface Binding {
  readonly name: BindingName;
  readonly gpu: GPU;
  /** Constructors and flag objects to put on globalThis (GPUBufferUsage, GPUMapMode, GPUValidationError, …). */
  readonly globals: Record<string, unknown>;
  /** Library-specific quirks the rest of the runtime must respect. */
  readonly quirks: BindingQuirks;
  /**
   * `adapter.requestDevice(desc)` with Dawn device toggles enabled on the new device (none: exactly
   * `adapter.requestDevice(desc)`). A binding that cannot pass device toggles creates the device without them;
   * `deviceToggles(device)` says what each device got.
   */
  requestDevice(adapter: GPUAdapter, desc: GPUDeviceDescriptor, toggles?: readonly string[]): Promise<GPUDevice>;
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
      requestDevice: requestDeviceWithToggles,
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
      requestDevice: requestDeviceWithoutToggles,
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
      requestDevice: requestDeviceWithoutToggles,
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

/** WGPUSType of DawnTogglesDescriptor (bun-webgpu's sType table: `DawnTogglesDescriptor: 327690`). */
const S_TYPE_DAWN_TOGGLES_DESCRIPTOR = 0x5000a;

/**
 * A DawnTogglesDescriptor enabling `toggles`, for a descriptor's `nextInChain` (64-bit layout):
 *   WGPUChainedStruct { next: ptr @0, sType: u32 @8 }            (16 bytes)
 *   DawnTogglesDescriptor { chain @0, enabledCount: size_t @16, enabled: char** @24,
 *                           disabledCount: size_t @32, disabled: char** @40 }   (48 bytes)
 * `keep` holds every buffer the struct points into: hold it until Dawn has read the descriptor (Dawn copies
 * the toggles into the object's state when it creates it).
 */
async function togglesDescriptor(toggles: readonly string[]): Promise<{ address: number; keep: unknown[] }> {
  const { ptr } = await import("bun:ffi");
  const strings = toggles.map((t) => Buffer.from(t + "\0"));
  const list = new BigUint64Array(Math.max(1, strings.length));
  strings.forEach((s, i) => (list[i] = BigInt(ptr(s))));
  const tog = new DataView(new ArrayBuffer(48));
  tog.setUint32(8, S_TYPE_DAWN_TOGGLES_DESCRIPTOR, true);
  tog.setBigUint64(16, BigInt(strings.length), true);
  tog.setBigUint64(24, BigInt(ptr(list)), true);
  return { address: ptr(tog.buffer), keep: [strings, list, tog] };
}

/**
 * bun-webgpu creates its instance with a null descriptor, so Dawn's experimental features (the
 * subgroup-matrix / tensor-core path among them) stay hidden. Re-create the instance through the same
 * library's `wgpuCreateInstance` with a WGPUInstanceDescriptor { nextInChain: ptr @0, … zero } (64 bytes
 * reserved) whose chain is a DawnTogglesDescriptor (`togglesDescriptor`).
 * The buffers stay referenced for the life of the process (Dawn copies toggles at creation, but cheaply safe).
 */
const keepAlive: unknown[] = [];
async function withToggles(base: GPU, toggles: string[]): Promise<GPU> {
  const { ptr } = await import("bun:ffi");
  const b = base as unknown as { lib: { wgpuCreateInstance(p: number): number }; constructor: new (p: number, lib: unknown) => GPU; destroy(): void };
  const tog = await togglesDescriptor(toggles);
  const desc = new DataView(new ArrayBuffer(64));
  desc.setBigUint64(0, BigInt(tog.address), true);
  keepAlive.push(tog.keep, desc);
  const instance = b.lib.wgpuCreateInstance(ptr(desc.buffer));
  if (!instance) throw new Error(`Dawn refused an instance with toggles ${toggles.join(",")}`);
  const gpu = new b.constructor(instance, b.lib);
  b.destroy();
  return gpu;
}

/** The device toggles each device was created with (the test seam: `deviceToggles`). */
const requested = new WeakMap<GPUDevice, readonly string[]>();

/**
 * The Dawn device toggles this device was asked for when it was created through `binding.requestDevice` ([] for
 * none, for a binding that cannot pass them, and for a device created some other way, e.g. by a user script).
 */
export function deviceToggles(device: GPUDevice): readonly string[] {
  return requested.get(device) ?? [];
}

async function requestDeviceWithoutToggles(adapter: GPUAdapter, desc: GPUDeviceDescriptor): Promise<GPUDevice> {
  const device = await adapter.requestDevice(desc);
  requested.set(device, Object.freeze([]));
  return device;
}

/** bun-webgpu: the toggles ride in the descriptor's `nextInChain`, which its WGPUDeviceDescriptor packer copies as is. */
async function requestDeviceWithToggles(adapter: GPUAdapter, desc: GPUDeviceDescriptor, toggles: readonly string[] = []): Promise<GPUDevice> {
  if (toggles.length === 0) return requestDeviceWithoutToggles(adapter, desc);
  const tog = await togglesDescriptor(toggles);
  const device = await adapter.requestDevice({ ...desc, nextInChain: tog.address } as GPUDeviceDescriptor);
  void tog.keep; // alive until here: bun-webgpu packs the descriptor and calls Dawn before its promise settles
  requested.set(device, Object.freeze([...toggles]));
  return device;
}

type TogglesUsedFn = (out: Uint8Array | BigUint64Array, device: number) => unknown;
let togglesUsed: TogglesUsedFn | null | undefined;

/**
 * Every toggle enabled on `device`, by Dawn's own account (`dawn::native::GetTogglesUsed(WGPUDevice)`, which
 * libwebgpu_wrapper exports as a C++ symbol), or undefined where that cannot be asked: another binding, another
 * architecture, a library without the symbol. For checks and diagnostics only (test/gpu/toggles.test.ts), never on
 * a hot path: it is a C++ call through FFI. It returns a `std::vector<const char*>`, which the x86-64 SysV ABI
 * returns through a hidden first argument (24 bytes: begin, end, end of storage; the same in libstdc++ and libc++);
 * the vector's 8-byte-per-toggle storage is left allocated (one small leak per call).
 */
export async function dawnTogglesInForce(device: GPUDevice): Promise<string[] | undefined> {
  const devicePtr = (device as unknown as { devicePtr?: number }).devicePtr;
  if (!devicePtr || process.arch !== "x64") return undefined;
  const { CString, read } = await import("bun:ffi");
  if (togglesUsed === undefined) {
    togglesUsed = null;
    try {
      const { dlopen, FFIType } = await import("bun:ffi");
      const spec = `bun-webgpu-${process.platform}-${process.arch}/index.ts`;
      let path = ((await import(spec)) as { default: string }).default;
      if (/\$bunfs/.test(path)) path = path.replace("../", ""); // as bun-webgpu resolves it inside a compiled binary
      const sym = "_ZN4dawn6native14GetTogglesUsedEP14WGPUDeviceImpl";
      const { symbols } = dlopen(path, { [sym]: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.ptr } });
      togglesUsed = symbols[sym] as unknown as TogglesUsedFn;
    } catch {
      togglesUsed = null;
    }
  }
  if (!togglesUsed) return undefined;
  const vec = new BigUint64Array(3);
  togglesUsed(vec, devicePtr);
  const begin = Number(vec[0]);
  const n = Number(vec[1]! - vec[0]!) / 8;
  if (!begin || !Number.isInteger(n) || n < 0 || n > 4096) return undefined;
  const names: string[] = [];
  for (let i = 0; i < n; i++) names.push(new CString(read.ptr(begin as never, i * 8) as never).toString());
  return names;
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

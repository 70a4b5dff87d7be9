/**
 * WebGPU globals for users' own scripts, as `deno run` provides them: `navigator.gpu` and the `GPU*`
 * constants and classes. `alignx run FILE.ts` installs them before importing FILE; with plain Bun,
 * `import "alignx/globals"` (src/globals.ts) or `preload = ["./src/globals.ts"]` in bunfig.toml does the same.
 *
 * On top of the binding's own globals it:
 *   - honours `ALIGNX_ADAPTER` / `ALIGNX_CPU` (and `--adapter` / `--cpu` of `alignx run`) in `requestAdapter`;
 *   - passes the limits bun-webgpu reports as 0 as 0 in `requestDevice` (it throws otherwise), and converts
 *     required features to strings as WebIDL does;
 *   - defines `GPUBuffer` (and a few other interface objects bun-webgpu lacks) for `instanceof` checks;
 *   - fails the run on a GPU error the script does not capture: an error outside any error scope whose
 *     `uncapturederror` event no handler cancels (`preventDefault()`) is printed and ends the process with exit 1,
 *     as an uncaught exception would; bun-webgpu's own print of it is silenced;
 *   - gives shader modules a working `getCompilationInfo()` where the binding lacks one (bun-webgpu aborts the
 *     process): the module's code is compiled again inside a validation error scope and Dawn's error text
 *     becomes the messages (line, column, offset, length), as src/gpu/kernel.ts reads it for the runtime's
 *     kernels. Dawn reports errors only, the first one; columns count UTF-16 code units as the code's string does.
 */
import { loadBinding, type Binding } from "./binding.ts";
import { chooseAdapter, resolveOptions } from "./device.ts";
import { wgslDiagnostics } from "./errors.ts";

const DUCK: Record<string, (x: Record<string, unknown>) => boolean> = {
  GPUBuffer: (x) => typeof x.mapAsync === "function" && typeof x.getMappedRange === "function",
  GPUAdapter: (x) => typeof x.requestDevice === "function",
  GPUQueue: (x) => typeof x.submit === "function" && typeof x.writeBuffer === "function",
  GPUCommandEncoder: (x) => typeof x.beginComputePass === "function",
  GPUComputePassEncoder: (x) => typeof x.dispatchWorkgroups === "function",
  GPUComputePipeline: (x) => typeof x.getBindGroupLayout === "function" && !("fragment" in x),
  GPUShaderModule: (x) => typeof x.getCompilationInfo === "function" || x.__brand === "GPUShaderModule",
  GPUCompilationInfo: (x) => x.__brand === "GPUCompilationInfo",
  GPUCompilationMessage: (x) => x.__brand === "GPUCompilationMessage",
};

/** `alignx: uncaptured WebGPU validation error: …` on stderr, then exit 1 (the errors of one turn, together). */
let pendingUncaptured: GPUError[] = [];
function failOnUncaptured(error: GPUError): void {
  pendingUncaptured.push(error);
  if (pendingUncaptured.length > 1) return;
  queueMicrotask(() => {
    const errors = pendingUncaptured;
    pendingUncaptured = [];
    for (const e of errors) {
      const kind = { GPUValidationError: "validation", GPUOutOfMemoryError: "out-of-memory", GPUInternalError: "internal" }[e.constructor?.name] ?? "";
      console.error(`alignx: uncaptured WebGPU ${kind ? kind + " " : ""}error: ${String(e.message).trimEnd()}`);
    }
    process.exit(1);
  });
}

/**
 * The script's device, watched: uncaptured errors fail the run unless a handler cancels them. The check waits
 * for a microtask, after every handler has seen the event (listeners and `onuncapturederror`); bun-webgpu
 * delivers each event twice to listeners, hence the set.
 */
function watchUncaptured(device: GPUDevice): void {
  const seen = new WeakSet<Event>();
  device.addEventListener("uncapturederror", (ev) => {
    if (seen.has(ev)) return;
    seen.add(ev);
    const error = (ev as GPUUncapturedErrorEvent).error;
    queueMicrotask(() => {
      if (!ev.defaultPrevented) failOnUncaptured(error);
    });
  });
  // bun-webgpu prints every uncaptured error unless `onuncapturederror` is set: this run prints it itself (above).
  // A script's own `device.onuncapturederror = f` replaces this one, as it should.
  device.onuncapturederror = () => {};
}

/** GPUShaderModule.getCompilationInfo() from a second compile of the code inside a validation error scope. */
function addCompilationInfo(device: GPUDevice): void {
  const create = device.createShaderModule.bind(device);
  const destroy = device.destroy.bind(device);
  let destroyed = false;
  device.destroy = () => {
    destroyed = true;
    destroy();
  };
  device.createShaderModule = (desc: GPUShaderModuleDescriptor) => {
    const module = create(desc);
    let info: Promise<GPUCompilationInfo> | undefined;
    const compile = async (): Promise<GPUCompilationInfo> => {
      if (destroyed) throw new Error("getCompilationInfo: the device is destroyed (alignx compiles the module again to answer: ask before device.destroy())");
      device.pushErrorScope("validation");
      create(desc);
      const error = await device.popErrorScope();
      return compilationInfo(String(desc.code), error?.message);
    };
    Object.defineProperty(module, "getCompilationInfo", { configurable: true, writable: true, value: () => (info ??= compile()) });
    return module;
  };
}

/** The messages of Dawn's WGSL error text, as GPUCompilationMessage objects (none when it compiled). */
export function compilationInfo(code: string, error: string | undefined): GPUCompilationInfo {
  const starts = [0];
  for (let i = 0; i < code.length; i++) if (code[i] === "\n") starts.push(i + 1);
  const diagnostics = error === undefined ? [] : wgslDiagnostics(error);
  const messages = diagnostics.map((d) => {
    const offset = Math.min(code.length, (starts[d.line - 1] ?? code.length) + d.column - 1);
    return Object.freeze({ __brand: "GPUCompilationMessage", message: d.text, type: d.type, lineNum: d.line, linePos: d.column, offset, length: d.length });
  });
  // An error without a location (Dawn's text changed, or not a WGSL error): one message at 0:0 with the text.
  if (error !== undefined && messages.length === 0)
    messages.push(Object.freeze({ __brand: "GPUCompilationMessage", message: error.split("\n")[0]!, type: "error" as const, lineNum: 0, linePos: 0, offset: 0, length: 0 }));
  return Object.freeze({ __brand: "GPUCompilationInfo", messages: Object.freeze(messages) }) as unknown as GPUCompilationInfo;
}

function patchDevice(device: GPUDevice, b: Binding): GPUDevice {
  watchUncaptured(device);
  if (b.quirks.noCompilationInfo) addCompilationInfo(device);
  return device;
}

function patchAdapter(adapter: GPUAdapter, b: Binding): GPUAdapter {
  const request = adapter.requestDevice.bind(adapter);
  adapter.requestDevice = async (desc?: GPUDeviceDescriptor) => {
    // WebIDL converts each feature to a string (tfjs passes ['bgra8unorm-storage'], which browsers accept);
    // bun-webgpu does not, so convert here.
    if (desc?.requiredFeatures) desc = { ...desc, requiredFeatures: [...desc.requiredFeatures].map(String) as GPUFeatureName[] };
    if (desc?.requiredLimits) {
      const limits: Record<string, unknown> = { ...desc.requiredLimits };
      for (const k of b.quirks.zeroLimits) limits[k] = 0;
      desc = { ...desc, requiredLimits: limits as GPUDeviceDescriptor["requiredLimits"] };
    }
    return patchDevice(await request(desc), b);
  };
  return adapter;
}

export async function installGlobals(): Promise<GPU> {
  const b = await loadBinding();
  const g = globalThis as Record<string, unknown>;
  for (const [k, v] of Object.entries(b.globals)) if (g[k] === undefined) g[k] = v;
  for (const [name, test] of Object.entries(DUCK)) {
    if (g[name] !== undefined) continue;
    const cls = class {
      static [Symbol.hasInstance](x: unknown): boolean {
        return typeof x === "object" && x !== null && test(x as Record<string, unknown>);
      }
    };
    Object.defineProperty(cls, "name", { value: name });
    g[name] = cls;
  }
  const gpu = b.gpu;
  const requestAdapter = gpu.requestAdapter.bind(gpu);
  const wrapped: GPU = Object.create(gpu, {
    requestAdapter: {
      value: async (opts?: GPURequestAdapterOptions) => {
        const o = resolveOptions();
        if (o.adapter || o.cpu) return patchAdapter((await chooseAdapter(o, b)).adapter, b);
        const a = await requestAdapter(opts);
        return a ? patchAdapter(a, b) : null;
      },
    },
  });
  const nav = (g.navigator ?? {}) as Record<string, unknown>;
  try {
    Object.defineProperty(nav, "gpu", { value: wrapped, configurable: true, enumerable: true });
    if (g.navigator !== nav) g.navigator = nav;
  } catch {
    g.navigator = { ...nav, gpu: wrapped };
  }
  return wrapped;
}

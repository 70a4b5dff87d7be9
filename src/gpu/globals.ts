/**
 * WebGPU globals for users' own scripts, as `deno run` provides them: `navigator.gpu` and the `GPU*`
 * constants and classes. `alignx run FILE.ts` installs them before importing FILE; with plain Bun,
 * `import "alignx/globals"` (src/globals.ts) or `preload = ["./src/globals.ts"]` in bunfig.toml does the same.
 *
 * On top of the binding's own globals it:
 *   - honours `ALIGNX_ADAPTER` / `ALIGNX_CPU` (and `--adapter` / `--cpu` of `alignx run`) in `requestAdapter`;
 *   - passes the limits bun-webgpu reports as 0 as 0 in `requestDevice` (it throws otherwise), and converts
 *     required features to strings as WebIDL does;
 *   - defines `GPUBuffer` (and a few other interface objects bun-webgpu lacks) for `instanceof` checks.
 */
import { loadBinding, type Binding } from "./binding.ts";
import { chooseAdapter, resolveOptions } from "./device.ts";

const DUCK: Record<string, (x: Record<string, unknown>) => boolean> = {
  GPUBuffer: (x) => typeof x.mapAsync === "function" && typeof x.getMappedRange === "function",
  GPUAdapter: (x) => typeof x.requestDevice === "function",
  GPUQueue: (x) => typeof x.submit === "function" && typeof x.writeBuffer === "function",
  GPUCommandEncoder: (x) => typeof x.beginComputePass === "function",
  GPUComputePassEncoder: (x) => typeof x.dispatchWorkgroups === "function",
  GPUComputePipeline: (x) => typeof x.getBindGroupLayout === "function" && !("fragment" in x),
  GPUShaderModule: (x) => typeof x.getCompilationInfo === "function" || x.__brand === "GPUShaderModule",
};

function patchAdapter(adapter: GPUAdapter, b: Binding): GPUAdapter {
  const request = adapter.requestDevice.bind(adapter);
  adapter.requestDevice = (desc?: GPUDeviceDescriptor) => {
    // WebIDL converts each feature to a string (tfjs passes ['bgra8unorm-storage'], which browsers accept);
    // bun-webgpu does not, so convert here.
    if (desc?.requiredFeatures) desc = { ...desc, requiredFeatures: [...desc.requiredFeatures].map(String) as GPUFeatureName[] };
    if (desc?.requiredLimits) {
      const limits: Record<string, unknown> = { ...desc.requiredLimits };
      for (const k of b.quirks.zeroLimits) limits[k] = 0;
      desc = { ...desc, requiredLimits: limits as GPUDeviceDescriptor["requiredLimits"] };
    }
    return request(desc);
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

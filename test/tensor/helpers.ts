// Shared by the tensor tests: one Gpu for every test file (the same lazy singleton as test/helpers.ts, so
// `bun test` opens one device in all), NaN poisoning of every fresh tensor, seeded inputs, float64
// references, and a comparison that names the first bad element.
import { expect, spyOn } from "bun:test";
import type { Gpu } from "../../src/gpu/index.ts";
import { debug, Tensor } from "../../src/tensor/index.ts";
import { subgroupKernelFits, type MatmulKernel } from "../../src/kernels/matmul.ts";
import { getGpu as sharedGpu } from "../helpers.ts";

/** The shared device, with poisoning on: every uninitialized tensor starts as NaN. */
export async function getGpu(): Promise<Gpu> {
  debug.poison = true;
  return sharedGpu();
}

export type Shape = readonly number[];

export const numel = (s: Shape) => s.reduce((a, b) => a * b, 1);

/** Uniform values in [lo, hi), rounded to f32 so the GPU and the float64 reference see the same inputs. */
export function uniform(r: () => number, n: number, lo = -1, hi = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.fround(lo + (hi - lo) * r());
  return out;
}

/** Magnitudes in [lo, hi) with a random sign (divisors, values away from 0). */
export function awayFromZero(r: () => number, n: number, lo = 0.5, hi = 2): Float64Array {
  const out = uniform(r, n, lo, hi);
  for (let i = 0; i < n; i++) if (r() < 0.5) out[i] = -out[i]!;
  return out;
}

export function upload(gpu: Gpu, data: Float64Array, shape: Shape, requiresGrad = false): Tensor {
  return Tensor.fromArray(gpu, Float32Array.from(data), shape, { requiresGrad });
}

// ---- a float64 broadcasting reference, written independently of src/tensor/shape.ts (test/reference/broadcast.ts) ----

export { refBroadcastShape, sourceIndex } from "../reference/broadcast.ts";

// ---- comparison ----

export interface CloseOpts {
  rtol?: number;
  atol?: number;
  /** Per-element scale the relative tolerance applies to (default |ref|): for sums, the sum of |terms|. */
  mag?: ArrayLike<number>;
}

/**
 * Every element within atol + rtol * max(|ref|, mag); NaN only where the reference is NaN, ±inf only where it is
 * that infinity. Failure names the first bad element and how many there are.
 */
export function expectClose(what: string, got: ArrayLike<number>, ref: ArrayLike<number>, o: CloseOpts = {}): void {
  const rtol = o.rtol ?? 1e-4;
  const atol = o.atol ?? 1e-6;
  if (got.length !== ref.length) throw new Error(`${what}: ${got.length} values, expected ${ref.length}`);
  let bad = 0;
  let first = "";
  for (let i = 0; i < ref.length; i++) {
    const g = got[i]!;
    const r = ref[i]!;
    const scale = Math.max(Math.abs(r), o.mag ? Math.abs(o.mag[i]!) : 0);
    // An infinite reference wants that infinity exactly (|g - r| and the tolerance would be NaN or infinite).
    const ok = Number.isNaN(r) ? Number.isNaN(g) : !Number.isFinite(r) ? g === r : Math.abs(g - r) <= atol + rtol * scale;
    if (!ok) {
      if (!bad) first = `[${i}] got ${g}, expected ${r} (tolerance ${(atol + rtol * scale).toExponential(2)})`;
      bad++;
    }
  }
  if (bad) throw new Error(`${what}: ${bad} of ${ref.length} elements wrong; first ${first}`);
  expect(bad).toBe(0);
}

/** Central differences of a float64 function, d f(x) / d x_i for every i. */
export function centralDiff(f: (x: Float64Array) => number, x: Float64Array, h = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    const step = h * Math.max(1, Math.abs(v));
    x[i] = v + step;
    const up = f(x);
    x[i] = v - step;
    const down = f(x);
    x[i] = v;
    g[i] = (up - down) / (2 * step);
  }
  return g;
}

export { rng } from "../helpers.ts";

/** A deterministic seed per test name, so a failure repeats. */
export function seedOf(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0;
}

/**
 * The matrix-product kernels every matmul/linear test runs on (`gpu.withPolicy({ matmul: kc }, ...)`):
 * direct with 4 and 8 rows per invocation, tiled (64 and 128 blocks), and subgroup where the device has
 * 8-lane subgroups (16 rows per subgroup, 8 for products of at most 8 rows: src/kernels/matmul.ts subgroupRows;
 * its `tm` here is that label only) (`runs` says which run here; a test of one that cannot run is skipped, by name).
 */
export type MatmulKernelConfig = { kernel: MatmulKernel; tm: number };
export const MATMUL_KERNELS: readonly MatmulKernelConfig[] = [
  { kernel: "direct", tm: 4 },
  { kernel: "direct", tm: 8 },
  { kernel: "tiled", tm: 4 },
  { kernel: "tiled128", tm: 8 },
  { kernel: "subgroup", tm: 16 },
];
export const matmulKernelRuns = (gpu: Gpu, k: MatmulKernelConfig): boolean => k.kernel !== "subgroup" || subgroupKernelFits(gpu);

/** Names of the dispatches `fn` records (a spy on gpu.dispatch). */
export function dispatchNames(gpu: Gpu, fn: () => void): string[] {
  const spy = spyOn(gpu, "dispatch");
  try {
    fn();
    return spy.mock.calls.map((c) => c[4]?.name ?? c[1]);
  } finally {
    spy.mockRestore();
  }
}

/** How many of `names` are the autograd engine's separate gradient sums (`grad.accumulate`). */
export const accumulates = (names: readonly string[]): number => names.filter((n) => n === "grad.accumulate").length;

/**
 * Kernel policy: every choice of kernel variant and every launch limit the ops read, in one plain object
 * owned by a device (`gpu.policy`). `Gpu.open({ policy })` patches the defaults for one device and
 * `gpu.withPolicy(patch, fn)` overrides settings while `fn` runs (tests, tuning, benchmarks); nothing else
 * writes it. Under "auto", the matmul kernel and the attention path follow the autotuned choice for this
 * adapter (src/gpu/autotune.ts; `Gpu.open({ tune: true })` fills it), else a built-in heuristic.
 *
 * A patch names a family and some of its settings, e.g. `{ rows: { wg: 8 }, grid: { maxX: 2 } }`; an unknown
 * family or setting, or a bad value, is a GpuError naming it (`mergePolicy`). A policy is deep-frozen.
 */
import { GpuError } from "./errors.ts";

export type MatmulKernel = "direct" | "tiled" | "tiled128" | "subgroup";
export type AttentionKernel = "flash" | "unfused";

export interface KernelPolicy {
  /** Matrix products (src/kernels/matmul.ts: kernels/matmul.wgsl, matmul_subgroup.wgsl). */
  readonly matmul: {
    /**
     * Which entry point runs: `direct` (register-blocked, no workgroup memory: for CPU Vulkan drivers),
     * `subgroup` (direct's idea with 8-lane subgroup broadcasts sharing the loads of A: CPU drivers with 8-wide
     * subgroups), `tiled` / `tiled128` (workgroup-memory tiling, 64 or 128 square blocks: what a real GPU
     * wants), or `auto` (the tuned choice per dtype and size class; untuned: subgroup where 8-lane subgroups
     * exist on a CPU adapter, direct on other CPU adapters, tiled on GPUs).
     */
    readonly kernel: "auto" | MatmulKernel;
    /** Rows per invocation of the direct kernel (a positive multiple of 4; 8 measured best on lavapipe). */
    readonly tm: number;
    /** Workgroup shape of the direct kernel (WGSL overrides WG_X, WG_Y). */
    readonly wgx: number;
    readonly wgy: number;
    /** Batches per dispatch, at most the device's workgroups per dimension (tests lower it to split batches). */
    readonly maxBatch: number;
  };
  /** Attention (src/kernels/attention.ts `attentionPath`). */
  readonly attention: {
    /**
     * `flash` (the fused kernels: no T x T buffer), `unfused` (scores as a batched matmul, a masked softmax,
     * a second matmul), or `auto`: a call with T >= `minUnfusedT` whose probabilities fit in
     * `maxUnfusedBytes` runs the tuned choice (untuned: unfused on CPU adapters, flash on GPUs); everything
     * else runs flash.
     */
    readonly kernel: "auto" | AttentionKernel;
    /** Budget of the unfused path's probabilities, in bytes; 0 = per device kind (64 MiB on CPU adapters, 1 GiB on GPUs). */
    readonly maxUnfusedBytes: number;
    readonly minUnfusedT: number;
  };
  /** The row kernels' workgroup reduction (src/gpu/row_reduce.ts `rowLaunch`). */
  readonly rows: {
    /** Workgroup size, a power of two in [1, 256]; `auto` = per adapter (8 on CPU adapters, 256 on GPUs). */
    readonly wg: "auto" | number;
    /** Subgroup reductions: `auto` = wherever the workgroup is exactly one subgroup; true fails where it is not. */
    readonly subgroups: "auto" | boolean;
  };
  /** 1-D launch geometry (src/gpu/grid.ts). */
  readonly grid: {
    /** Workgroups per grid row before the second dimension (tests lower it to exercise that on small sizes). */
    readonly maxX: number;
  };
  /** How norms split the parameter gradient over rows (src/kernels/norm.ts normParamGrads; tests lower it for ragged chunks). */
  readonly norm: {
    /** Rows per chunk at least (a chunk is one invocation's serial sum). */
    readonly minChunk: number;
    /** Chunks at most (the second pass sums this many partials per column). */
    readonly maxChunks: number;
    /** Up to this many rows, one chunk: a single pass writes dweight itself (no bias) and no sum pass runs. */
    readonly singlePassRows: number;
  };
  /** Geometry of clipGradNorm's `sumsq` pass (src/optim/clip.ts). */
  readonly clip: {
    /** Elements per workgroup before a gradient gets another workgroup. */
    readonly perGroup: number;
    /** Workgroups per gradient at most (larger gradients loop): bounds the partials the final pass sums. */
    readonly maxGroups: number;
  };
}

/** Some settings of some families: what `Gpu.open({ policy })` and `gpu.withPolicy` take. */
export type PartialPolicy = { readonly [F in keyof KernelPolicy]?: Partial<KernelPolicy[F]> };

function deepFreeze<T extends object>(p: T): T {
  for (const v of Object.values(p)) if (v && typeof v === "object") Object.freeze(v);
  return Object.freeze(p);
}

/** Today's kernel choices and limits. */
export const DEFAULT_POLICY: KernelPolicy = deepFreeze({
  matmul: { kernel: "auto", tm: 8, wgx: 8, wgy: 8, maxBatch: 65535 },
  attention: { kernel: "auto", maxUnfusedBytes: 0, minUnfusedT: 128 },
  rows: { wg: "auto", subgroups: "auto" },
  grid: { maxX: 65535 },
  norm: { minChunk: 16, maxChunks: 256, singlePassRows: 256 },
  clip: { perGroup: 256 * 16, maxGroups: 512 },
});

// ---- validation: one check per setting, which says what a good value is ----

type Check = (v: unknown) => string | null;

const int = (min: number, what = `an integer >= ${min}`): Check => (v) => (typeof v === "number" && Number.isInteger(v) && v >= min ? null : `must be ${what}`);
const oneOf = (...xs: readonly unknown[]): Check => (v) => (xs.includes(v) ? null : `must be one of ${xs.map((x) => JSON.stringify(x)).join(", ")}`);
const pow2 = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= 256 && (v & (v - 1)) === 0;

const CHECKS: { [F in keyof KernelPolicy]: Record<keyof KernelPolicy[F], Check> } = {
  matmul: {
    kernel: oneOf("auto", "direct", "tiled", "tiled128", "subgroup"),
    tm: (v) => (typeof v === "number" && Number.isInteger(v) && v >= 4 && v % 4 === 0 ? null : "must be a positive multiple of 4"),
    wgx: int(1),
    wgy: int(1),
    maxBatch: int(1),
  },
  attention: { kernel: oneOf("auto", "flash", "unfused"), maxUnfusedBytes: int(0), minUnfusedT: int(0) },
  rows: {
    wg: (v) => (v === "auto" || pow2(v) ? null : `must be "auto" or a power of two in [1, 256]`),
    subgroups: oneOf("auto", true, false),
  },
  grid: { maxX: int(1) },
  norm: { minChunk: int(1), maxChunks: int(1), singlePassRows: int(0) },
  clip: { perGroup: int(1), maxGroups: int(1) },
};

const show = (v: unknown): string => (typeof v === "string" ? JSON.stringify(v) : String(v));

/**
 * `base` with `patch` applied, validated and frozen (a new object; `base` is unchanged). Throws a GpuError
 * naming the first unknown family or setting, or the setting with a bad value and what it must be.
 */
export function mergePolicy(base: KernelPolicy, patch: PartialPolicy): KernelPolicy {
  if (!patch || typeof patch !== "object") throw new GpuError(`kernel policy: a patch must be an object, got ${show(patch)}`);
  const out = Object.fromEntries(Object.entries(base).map(([f, s]) => [f, { ...s }])) as Record<string, Record<string, unknown>>;
  for (const [family, settings] of Object.entries(patch)) {
    const checks = (CHECKS as Record<string, Record<string, Check>>)[family];
    if (!checks) throw new GpuError(`kernel policy: unknown family "${family}" (families: ${Object.keys(CHECKS).join(", ")})`);
    if (settings === undefined) continue;
    if (!settings || typeof settings !== "object") throw new GpuError(`kernel policy: ${family} must be an object of settings, got ${show(settings)}`);
    for (const [key, value] of Object.entries(settings)) {
      const check = checks[key];
      if (!check) throw new GpuError(`kernel policy: unknown setting "${family}.${key}" (${family} settings: ${Object.keys(checks).join(", ")})`);
      if (value === undefined) continue;
      const bad = check(value);
      if (bad) throw new GpuError(`kernel policy: ${family}.${key} ${bad}, got ${show(value)}`);
      out[family]![key] = value;
    }
  }
  return deepFreeze(out as unknown as KernelPolicy);
}

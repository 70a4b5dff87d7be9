/**
 * Launchers of the matrix-product kernels: kernels/matmul.wgsl (entries `matmul`, `matmul_tiled`,
 * `matmul_tiled128`) and kernels/matmul_subgroup.wgsl (`matmul_sg`), both with the library
 * kernels/matmul_common.wgsl appended: one templated source whose operand layouts (transposed or not,
 * vec4-aligned or not) and element types are `defines`; transposes are read in place, never copied.
 *
 *   matmulProduct(gpu, { a, b, c, bias? }, { M, N, K, batch, sharedA, sharedB, transA, transB, dtypes, name })
 *     c[z] = op(a[z]) · op(b[z]) (+ bias) for z < batch, op(X) = Xᵀ where transA / transB say:
 *     a [batch, M, K] (transA: [batch, K, M]), b [batch, K, N] (transB: [batch, N, K]), bias [N], c [batch, M, N];
 *     a shared operand (sharedA / sharedB: a 2-D weight) is one matrix read by every z (batch stride 0).
 *     Operands are f32 or f16 (read as f16 and converted); every product accumulates in f32, the bias is added
 *     in f32, and c is stored as dtypes.c.
 *     With `accumulate`: c[z] += op(a[z]) · op(b[z]) (+ bias) (beta = 1): each store first loads c's element and
 *     adds it in f32, rounding once (autograd's in-place gradient accumulation, src/tensor/ops/matmul.ts). It is
 *     the C_ST define, so every variant below has it; c must not alias a, b or the bias.
 *
 * Variant: the device's `policy.matmul.kernel` (src/gpu/policy.ts) when explicit; under "auto", the variant
 * `tuneMatmul` timed fastest on this adapter for the operand dtype and size class (src/gpu/autotune.ts), else a
 * heuristic (tiled on GPUs; on CPU adapters subgroup where 8-lane subgroups exist, else direct).
 */
import commonSrc from "../../kernels/matmul_common.wgsl" with { type: "text" };
import matmulSrc from "../../kernels/matmul.wgsl" with { type: "text" };
import subgroupSrc from "../../kernels/matmul_subgroup.wgsl" with { type: "text" };
import { defineKernel, defineLibrary, describeSubgroups, GpuError, hasSubgroupsOf, hashText, type Binding, type Gpu, type MatmulKernel, type TuneResult } from "../gpu/index.ts";

const MATMUL_COMMON = defineLibrary("kernels/matmul_common.wgsl", commonSrc);
export const MATMUL_OPS = defineKernel("kernels/matmul.wgsl", matmulSrc, [MATMUL_COMMON]);
export const MATMUL_SUBGROUP = defineKernel("kernels/matmul_subgroup.wgsl", subgroupSrc, [MATMUL_COMMON]);

export type { MatmulKernel };

/** Element types the matrix kernels read and write. */
export type MatmulDType = "f32" | "f16";

/** The problem one launch solves: `batch` products C[z] = op(A[z]) · op(B[z]) of M x K by K x N. */
export interface MatmulProblem {
  M: number;
  N: number;
  K: number;
  batch: number;
  /** Operands shared by every batch (a 2-D weight): batch stride 0. */
  sharedA: boolean;
  sharedB: boolean;
  transA: boolean;
  transB: boolean;
}

export interface MatmulLaunchOptions extends MatmulProblem {
  /** Element types of the operands, the result and the bias (when one is bound). */
  dtypes: { a: MatmulDType; b: MatmulDType; c: MatmulDType; bias?: MatmulDType };
  /** The dispatches' name (profiles, errors). */
  name: string;
  /** Tuning: run this variant instead of the device's choice. */
  variant?: MatmulVariant;
  /** Add the product into c's current contents instead of overwriting them (beta = 1). Default false. */
  accumulate?: boolean;
}

/**
 * WGSL for operand `v` of `dtype`: its binding's element type and loads, converted to f32 (vec4 bindings
 * when the contiguous size is a multiple of 4).
 */
function access(v: string, vec: boolean, dtype: MatmulDType): { T: string; LD: string; LD4: string } {
  const e = dtype === "f16" ? "f16" : "f32";
  const f = (x: string) => (e === "f32" ? x : `f32(${x})`);
  return vec
    ? { T: `vec4<${e}>`, LD: f(`${v}[i >> 2u][i & 3u]`), LD4: e === "f32" ? `${v}[i >> 2u]` : `vec4<f32>(${v}[i >> 2u])` }
    : { T: e, LD: f(`${v}[i]`), LD4: `vec4<f32>(${f(`${v}[i]`)}, ${f(`${v}[i + 1u]`)}, ${f(`${v}[i + 2u]`)}, ${f(`${v}[i + 3u]`)})` };
}

/**
 * The C_T / C_ST defines: f32 accumulators v stored as `dtype`, as one vec4 or per valid column; with `acc`,
 * added to the stored values first (read as f32: one more load per element, one rounding).
 */
function store(vec: boolean, dtype: MatmulDType, acc: boolean): { C_T: string; C_ST: string } {
  const e = dtype === "f16" ? "f16" : "f32";
  const v4 = acc ? (e === "f32" ? "c[i >> 2u] + v" : "vec4<f32>(c[i >> 2u]) + v") : "v";
  const v1 = acc ? (e === "f32" ? "c[i + j] + v[j]" : "f32(c[i + j]) + v[j]") : "v[j]";
  const cv = e === "f32" ? v4 : `vec4<f16>(${v4})`;
  const cs = e === "f32" ? v1 : `f16(${v1})`;
  return vec
    ? { C_T: `vec4<${e}>`, C_ST: `c[i >> 2u] = ${cv};` }
    : { C_T: e, C_ST: `for (var j = 0u; j < cols; j++) { c[i + j] = ${cs}; }` };
}

/**
 * Rows of C one `matmul_sg` workgroup covers (its TM): 16 (twice the FMAs per load of B; 1.2–1.7× the 8-row
 * block at 1024³ on lavapipe, bench/NOTES.md), or 8 when the product has at most 8 rows (decode steps: the
 * second 8 would only load clamped rows of A).
 */
const subgroupRows = (M: number): number => (M <= 8 ? 8 : 16);

/** The TM define and the [columns, rows] block of an entry other than `direct`, for a product of M rows. */
function fixedShape(kind: Exclude<MatmulKernel, "direct">, M: number): { tm: number; block: [number, number] } {
  if (kind !== "subgroup") return FIXED[kind];
  const tm = subgroupRows(M);
  return { tm, block: [FIXED.subgroup.block[0], tm] };
}

/** Whether `matmul_sg` can run here: the subgroups feature, and subgroups of exactly 8 lanes. */
export function subgroupKernelFits(gpu: Gpu): boolean {
  return hasSubgroupsOf(gpu, 8);
}

/** One kernel variant: an entry point and, for `direct`, its rows per invocation. */
export interface MatmulVariant {
  kernel: MatmulKernel;
  tm: number;
}

export const variantName = (v: MatmulVariant): string => (v.kernel === "direct" ? `direct-tm${v.tm}` : v.kernel);

/**
 * The entries other than `direct` (whose rows per invocation are `policy.matmul.tm` and whose block follows
 * its workgroup shape): their fixed TM define and the [columns, rows] block of C one workgroup covers.
 * `subgroup`'s is for products of more than 8 rows (`fixedShape`: 8 rows for at most 8).
 */
const FIXED: Record<Exclude<MatmulKernel, "direct">, { tm: number; block: [number, number] }> = {
  tiled: { tm: 4, block: [64, 64] },
  tiled128: { tm: 8, block: [128, 128] },
  subgroup: { tm: 16, block: [32, 16] },
};

/** The variants that can run on this device: what `tuneMatmul` times. */
export function matmulVariants(gpu: Gpu): MatmulVariant[] {
  const fixed: Exclude<MatmulKernel, "direct">[] = ["tiled", "tiled128"];
  if (subgroupKernelFits(gpu)) fixed.push("subgroup");
  return [{ kernel: "direct", tm: 8 }, { kernel: "direct", tm: 4 }, ...fixed.map((kernel) => ({ kernel, tm: FIXED[kernel].tm }))];
}

/** The default where nothing is tuned: tiled on GPUs; on CPU adapters subgroup where it fits, else direct. */
function heuristic(gpu: Gpu): MatmulVariant {
  if (gpu.adapter.kind !== "cpu") return { kernel: "tiled", tm: FIXED.tiled.tm };
  return subgroupKernelFits(gpu) ? { kernel: "subgroup", tm: FIXED.subgroup.tm } : { kernel: "direct", tm: 8 };
}

type Size = Pick<MatmulProblem, "M" | "N" | "K" | "batch">;

/** Tuning is remembered per operand dtype and size class (FLOPs below / above 2^25, e.g. 256 x 256 x 512). */
const sizeClass = (pr: Size): "small" | "large" => (pr.M * pr.N * pr.K * pr.batch < 2 ** 25 ? "small" : "large");
/** Hash of the kernels' WGSL: editing a matmul kernel re-tunes it. */
const KERNELS_VERSION = hashText(commonSrc + matmulSrc + subgroupSrc);
export const matmulTuneKey = (dtype: MatmulDType, cls: "small" | "large"): string => `matmul/${dtype}/${cls}/${KERNELS_VERSION}`;

/**
 * The variant a product runs with: the device's `policy.matmul.kernel` when set; under "auto", the tuned
 * choice for its dtype and size class when `tuneMatmul` has run on this adapter (now or in an earlier
 * process), else the heuristic default.
 */
export function matmulVariantFor(gpu: Gpu, pr: Size, dtype: MatmulDType, name = "matmul"): MatmulVariant {
  const { kernel: k, tm } = gpu.policy.matmul;
  if (k === "subgroup" && !subgroupKernelFits(gpu))
    throw new GpuError(`${name}: the subgroup matmul kernel needs 8-lane subgroups; ${describeSubgroups(gpu)}`);
  if (k !== "auto") return { kernel: k, tm: k === "direct" ? tm : FIXED[k].tm };
  const t = gpu.tuner.lookup(matmulTuneKey(dtype, sizeClass(pr)));
  return (t && matmulVariants(gpu).find((v) => variantName(v) === t.choice)) || heuristic(gpu);
}

/**
 * Record the dispatch(es) of c = op(a) · op(b) (+ bias): see the module comment. Nothing for an empty result;
 * a batch larger than `policy.matmul.maxBatch` (or the device's workgroups per dimension) is split over
 * several dispatches.
 */
export function matmulProduct(gpu: Gpu, io: { a: Binding; b: Binding; c: Binding; bias?: Binding }, o: MatmulLaunchOptions): void {
  const { M, N, K, transA, transB, name } = o;
  if (M * N * o.batch === 0) return;
  // Contiguous dimension of each operand: k when A is not transposed / B is; else its outer size.
  const aKc = !transA;
  const bKc = transB;
  // (An empty operand, K = 0, is never read: bind it as f32, which a 4-byte buffer satisfies.)
  const aVec = (aKc ? K : M) % 4 === 0 && K > 0;
  const bVec = (bKc ? K : N) % 4 === 0 && K > 0;
  const cVec = N % 4 === 0;
  const A = access("a", aVec, o.dtypes.a);
  const B = access("b", bVec, o.dtypes.b);
  const variant = o.variant ?? matmulVariantFor(gpu, o, o.dtypes.a, name);
  const kind = variant.kernel;
  const { wgx: wx, wgy: wy, maxBatch } = gpu.policy.matmul;
  const { tm, block } = kind === "direct" ? { tm: variant.tm, block: [4 * wx, wy * variant.tm] } : fixedShape(kind, M);
  const hasBias = io.bias !== undefined;
  const defines = {
    TM: tm,
    A_T: A.T,
    A_LD: A.LD,
    A_LD4: A.LD4,
    A_KC: String(aKc),
    A_VEC: String(aVec),
    B_T: B.T,
    B_LD: B.LD,
    B_LD4: B.LD4,
    B_KC: String(bKc),
    B_VEC: String(bVec),
    ...store(cVec, o.dtypes.c, o.accumulate ?? false),
    BIAS: hasBias ? (o.dtypes.bias === "f16" ? "f32(bias[n])" : "bias[n]") : "0.0",
    BIAS_T: hasBias && o.dtypes.bias === "f16" ? "f16" : "f32",
  };
  const [bn, bm] = block;
  const [gx, gy] = [Math.ceil(N / bn), Math.ceil(M / bm)];
  const maxWg = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (gx > maxWg || gy > maxWg)
    throw new GpuError(`${name}: a ${M} x ${N} output needs ${gx} x ${gy} workgroups; the device allows ${maxWg} per dimension`);
  if (Math.max(o.batch * M * N, (o.sharedA ? 1 : o.batch) * M * K, (o.sharedB ? 1 : o.batch) * K * N) >= 2 ** 32)
    throw new GpuError(`${name}: operands of 2^32 or more elements are not supported`);
  const bindings: Record<string, Binding> = { a: io.a, b: io.b, c: io.c };
  if (io.bias) bindings.bias = io.bias;
  const [source, entry] = kind === "subgroup" ? [MATMUL_SUBGROUP, "matmul_sg"] : [MATMUL_OPS, kind === "direct" ? "matmul" : `matmul_${kind}`];
  const constants: Record<string, number> = kind === "direct" ? { WG_X: wx, WG_Y: wy } : {};
  const perDispatch = Math.max(1, Math.min(maxWg, maxBatch));
  const params = { M, N, K, sA: o.sharedA ? 0 : M * K, sB: o.sharedB ? 0 : K * N, batch0: 0 };
  for (let z = 0; z < o.batch; z += perDispatch) {
    params.batch0 = z;
    gpu.dispatch(source, entry, bindings, [gx, gy, Math.min(perDispatch, o.batch - z)], { params: { ...params }, defines, constants, name });
  }
}

/** The 32-bit fill word of 0.5 and 0.25 in each dtype (f16: the half twice). */
const TUNE_WORDS: Record<MatmulDType, [number, number]> = { f32: [0x3f000000, 0x3e800000], f16: [0x38003800, 0x34003400] };

/**
 * Time every variant that runs here on a small and a large product (NT, as `linear` runs it: x [M, K] = 0.5,
 * w [N, K] = 0.25) per dtype and remember the fastest (src/gpu/autotune.ts: cached per adapter on disk, so
 * later runs only read the file). Returns the results by key. Takes ~1 s on lavapipe the first time, nothing
 * once cached. Registered with the GPU layer by src/tensor/index.ts.
 */
export async function tuneMatmul(gpu: Gpu, tuner = gpu.tuner): Promise<Record<string, TuneResult>> {
  const out: Record<string, TuneResult> = {};
  const cpu = gpu.adapter.kind === "cpu";
  const shapes = { small: cpu ? [128, 128, 256] : [256, 256, 512], large: cpu ? [512, 512, 512] : [2048, 2048, 2048] } as const;
  for (const dtype of ["f32", ...(gpu.features.has("shader-f16") ? ["f16"] : [])] as MatmulDType[])
    for (const cls of ["small", "large"] as const) {
      const key = matmulTuneKey(dtype, cls);
      const [M, N, K] = shapes[cls];
      const bytes = dtype === "f16" ? 2 : 4;
      const x = gpu.alloc(M * K * bytes, "tensor");
      gpu.fillBits(x, TUNE_WORDS[dtype][0]);
      const w = gpu.alloc(N * K * bytes, "tensor");
      gpu.fillBits(w, TUNE_WORDS[dtype][1]);
      try {
        const o: MatmulLaunchOptions = {
          M,
          N,
          K,
          batch: 1,
          sharedA: false,
          sharedB: false,
          transA: false,
          transB: true,
          dtypes: { a: dtype, b: dtype, c: dtype },
          name: "matmul.tune",
        };
        const candidates = matmulVariants(gpu).map((v) => ({
          name: variantName(v),
          run: () => {
            const c = gpu.alloc(M * N * bytes, "tensor");
            matmulProduct(gpu, { a: x, b: w, c }, { ...o, variant: v });
            gpu.release(c);
          },
        }));
        const r = await tuner.tune(key, candidates);
        if (r) out[key] = r;
      } finally {
        gpu.release(w);
        gpu.release(x);
      }
    }
  return out;
}

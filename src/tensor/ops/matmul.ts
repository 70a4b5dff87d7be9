/**
 * Matrix products: `matmul(a, b, { transA, transB })` (2-D and batched) and `linear(x, w, bias)` (HF/PyTorch
 * `nn.Linear`: y = x · wᵀ + bias, weight [out, in]). Kernels: kernels/matmul.wgsl, one templated source
 * whose operand layouts (transposed or not, vec4-aligned or not) are `defines`; transposes are read in
 * place, never copied.
 *
 * Batching: a [...batch, M, K] and b [...batch, K, N] with equal batch dimensions, or one of them 2-D and
 * shared across the other's batch (a weight, as PyTorch broadcasts it), give [...batch, M, N].
 *
 * Backward, with op(X) = X or Xᵀ as the flags say and C = op(A) · op(B):
 *   d op(A) = dC · op(B)ᵀ     d op(B) = op(A)ᵀ · dC
 * each one product of the same kernel with the transposes folded into its flags. A 2-D operand shared by a
 * batch gets the sum over the batch: when the batch can be folded into the reduction dimension (the other
 * operand and dC flattened to [batch * M, ...]) that is one product; otherwise one batched product followed
 * by a sum over the batch.
 *
 * Half precision (needs the device feature `shader-f16`): f16 operands are read as f16 and converted, every
 * product accumulates in f32, and the result is stored as `outDtype`: by default the inputs' dtype (f16 in,
 * f16 out, as under torch.autocast), or f32 on request (e.g. logits for a loss). Public operands (and a
 * linear's bias) must share one dtype; backward products mix them freely (an f32 dC with an f16 operand),
 * and each input's gradient comes out in that input's dtype. f16 gradient sums (a bias, a weight shared by a
 * batch) reduce in f32 and round once.
 *
 * Kernel variant: the device's `policy.matmul` (src/gpu/policy.ts): an explicit kernel, or under "auto" the
 * variant `tuneMatmul` timed fastest on this adapter for the dtype and size class, else a heuristic.
 */
import commonSrc from "../../../kernels/matmul_common.wgsl" with { type: "text" };
import matmulSrc from "../../../kernels/matmul.wgsl" with { type: "text" };
import subgroupSrc from "../../../kernels/matmul_subgroup.wgsl" with { type: "text" };
import { defineKernel, defineLibrary, describeSubgroups, hasSubgroupsOf, hashText, type Gpu, type MatmulKernel, type PooledBuffer, type TuneResult } from "../../gpu/index.ts";
import { attach } from "../autograd.ts";
import { fmtShape, numel, sameShape, TensorError, type Shape } from "../shape.ts";
import { Tensor, type DType } from "../tensor.ts";
import { cast } from "./cast.ts";
import { sum } from "./reduce.ts";

const MATMUL_COMMON = defineLibrary("kernels/matmul_common.wgsl", commonSrc);
export const MATMUL_OPS = defineKernel("kernels/matmul.wgsl", matmulSrc, [MATMUL_COMMON]);
export const MATMUL_SUBGROUP = defineKernel("kernels/matmul_subgroup.wgsl", subgroupSrc, [MATMUL_COMMON]);

export type { MatmulKernel };

export interface MatmulOptions {
  /** Use aᵀ: a is [..., K, M]. */
  transA?: boolean;
  /** Use bᵀ: b is [..., N, K] (a weight in [out, in] layout). */
  transB?: boolean;
  /** The result's dtype (f32 or f16); default: the operands'. Accumulation is f32 either way. */
  outDtype?: DType;
}

/** The problem one kernel launch solves: `batch` products C[z] = op(A[z]) · op(B[z]) of M x K by K x N. */
interface Problem {
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

/**
 * WGSL for operand `v` of `dtype`: its binding's element type and loads, converted to f32 (vec4 bindings
 * when the contiguous size is a multiple of 4).
 */
function access(v: string, vec: boolean, dtype: DType): { T: string; LD: string; LD4: string } {
  const e = dtype === "f16" ? "f16" : "f32";
  const f = (x: string) => (e === "f32" ? x : `f32(${x})`);
  return vec
    ? { T: `vec4<${e}>`, LD: f(`${v}[i >> 2u][i & 3u]`), LD4: e === "f32" ? `${v}[i >> 2u]` : `vec4<f32>(${v}[i >> 2u])` }
    : { T: e, LD: f(`${v}[i]`), LD4: `vec4<f32>(${f(`${v}[i]`)}, ${f(`${v}[i + 1u]`)}, ${f(`${v}[i + 2u]`)}, ${f(`${v}[i + 3u]`)})` };
}

/** The C_T / C_ST defines: f32 accumulators v stored as `dtype`, as one vec4 or per valid column. */
function store(vec: boolean, dtype: DType): { C_T: string; C_ST: string } {
  const e = dtype === "f16" ? "f16" : "f32";
  const cv = e === "f32" ? "v" : "vec4<f16>(v)";
  const cs = e === "f32" ? "v[j]" : "f16(v[j])";
  return vec
    ? { C_T: `vec4<${e}>`, C_ST: `c[i >> 2u] = ${cv};` }
    : { C_T: e, C_ST: `for (var j = 0u; j < cols; j++) { c[i + j] = ${cs}; }` };
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
 */
const FIXED: Record<Exclude<MatmulKernel, "direct">, { tm: number; block: [number, number] }> = {
  tiled: { tm: 4, block: [64, 64] },
  tiled128: { tm: 8, block: [128, 128] },
  subgroup: { tm: 8, block: [32, 8] },
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

/** Tuning is remembered per operand dtype and size class (FLOPs below / above 2^25, e.g. 256 x 256 x 512). */
const sizeClass = (pr: Problem): "small" | "large" => (pr.M * pr.N * pr.K * pr.batch < 2 ** 25 ? "small" : "large");
/** Hash of the kernels' WGSL: editing a matmul kernel re-tunes it. */
const KERNELS_VERSION = hashText(commonSrc + matmulSrc + subgroupSrc);
export const matmulTuneKey = (dtype: DType, cls: "small" | "large"): string => `matmul/${dtype}/${cls}/${KERNELS_VERSION}`;

/**
 * The variant a product runs with: the device's `policy.matmul.kernel` when set; under "auto", the tuned
 * choice for its dtype and size class when `tuneMatmul` has run on this adapter (now or in an earlier
 * process), else the heuristic default.
 */
export function matmulVariantFor(gpu: Gpu, pr: Pick<Problem, "M" | "N" | "K" | "batch">, dtype: DType, name = "matmul"): MatmulVariant {
  const { kernel: k, tm } = gpu.policy.matmul;
  if (k === "subgroup" && !subgroupKernelFits(gpu))
    throw new TensorError(`${name}: the subgroup matmul kernel needs 8-lane subgroups; ${describeSubgroups(gpu)}`);
  if (k !== "auto") return { kernel: k, tm: k === "direct" ? tm : FIXED[k].tm };
  const t = gpu.tuner.lookup(matmulTuneKey(dtype, sizeClass(pr as Problem)));
  return (t && matmulVariants(gpu).find((v) => variantName(v) === t.choice)) || heuristic(gpu);
}

/**
 * Time every variant that runs here on a small and a large product (NT, as `linear` runs it) per dtype and
 * remember the fastest (src/gpu/autotune.ts: cached per adapter on disk, so later runs only read the file).
 * Returns the results by key. Takes ~1 s on lavapipe the first time, nothing once cached.
 */
export async function tuneMatmul(gpu: Gpu, tuner = gpu.tuner): Promise<Record<string, TuneResult>> {
  const out: Record<string, TuneResult> = {};
  const cpu = gpu.adapter.kind === "cpu";
  const shapes = { small: cpu ? [128, 128, 256] : [256, 256, 512], large: cpu ? [512, 512, 512] : [2048, 2048, 2048] } as const;
  for (const dtype of ["f32", ...(gpu.features.has("shader-f16") ? ["f16"] : [])] as DType[])
    for (const cls of ["small", "large"] as const) {
      const key = matmulTuneKey(dtype, cls);
      const [M, N, K] = shapes[cls];
      using x = Tensor.full(gpu, [M, K], 0.5, { dtype });
      using w = Tensor.full(gpu, [N, K], 0.25, { dtype });
      const pr: Problem = { M, N, K, batch: 1, sharedA: false, sharedB: false, transA: false, transB: true };
      const candidates = matmulVariants(gpu).map((v) => ({
        name: variantName(v),
        run: () => {
          const c = Tensor.empty(gpu, [M, N], { dtype });
          launch("matmul.tune", pr, x, w, null, c, v);
          c.release();
        },
      }));
      const r = await tuner.tune(key, candidates);
      if (r) out[key] = r;
    }
  return out;
}

/** Record the launch(es) of `pr` into `out` ([batch, M, N] elements), reading a, b and optionally bias [N]. */
function launch(name: string, pr: Problem, a: Tensor, b: Tensor, bias: Tensor | null, out: Tensor, variant?: MatmulVariant): void {
  const { M, N, K, transA, transB } = pr;
  if (M * N * pr.batch === 0) return;
  const gpu = out.gpu;
  // Contiguous dimension of each operand: k when A is not transposed / B is; else its outer size.
  const aKc = !transA;
  const bKc = transB;
  // (An empty operand, K = 0, is never read: bind it as f32, which a 4-byte buffer satisfies.)
  const aVec = (aKc ? K : M) % 4 === 0 && K > 0;
  const bVec = (bKc ? K : N) % 4 === 0 && K > 0;
  const cVec = N % 4 === 0;
  const A = access("a", aVec, a.dtype);
  const B = access("b", bVec, b.dtype);
  const { kernel: kind, tm } = variant ?? matmulVariantFor(gpu, pr, a.dtype, name);
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
    ...store(cVec, out.dtype),
    BIAS: bias ? (bias.dtype === "f16" ? "f32(bias[n])" : "bias[n]") : "0.0",
    BIAS_T: bias?.dtype === "f16" ? "f16" : "f32",
  };
  const { wgx: wx, wgy: wy, maxBatch } = gpu.policy.matmul;
  const [bn, bm] = kind === "direct" ? [4 * wx, wy * tm] : FIXED[kind].block;
  const [gx, gy] = [Math.ceil(N / bn), Math.ceil(M / bm)];
  const maxWg = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (gx > maxWg || gy > maxWg)
    throw new TensorError(`${name}: a ${M} x ${N} output needs ${gx} x ${gy} workgroups; the device allows ${maxWg} per dimension`);
  if (Math.max(pr.batch * M * N, (pr.sharedA ? 1 : pr.batch) * M * K, (pr.sharedB ? 1 : pr.batch) * K * N) >= 2 ** 32)
    throw new TensorError(`${name}: operands of 2^32 or more elements are not supported`);
  const bindings: Record<string, PooledBuffer> = { a: a.buffer, b: b.buffer, c: out.buffer };
  if (bias) bindings.bias = bias.buffer;
  const [source, entry] = kind === "subgroup" ? [MATMUL_SUBGROUP, "matmul_sg"] : [MATMUL_OPS, kind === "direct" ? "matmul" : `matmul_${kind}`];
  const constants: Record<string, number> = kind === "direct" ? { WG_X: wx, WG_Y: wy } : {};
  const perDispatch = Math.max(1, Math.min(maxWg, maxBatch));
  const params = { M, N, K, sA: pr.sharedA ? 0 : M * K, sB: pr.sharedB ? 0 : K * N, batch0: 0 };
  for (let z = 0; z < pr.batch; z += perDispatch) {
    params.batch0 = z;
    gpu.dispatch(source, entry, bindings, [gx, gy, Math.min(perDispatch, pr.batch - z)], { params: { ...params }, defines, constants, name });
  }
}

const describe = (x: string, t: Tensor, trans: boolean) => `${x} ${fmtShape(t.shape)}${trans ? " (transposed)" : ""}`;

/**
 * Check operands (and the result dtype) for `op`: live, one device, f32 or f16, f16 only where the device
 * has shader-f16, and (for the public entry points, `same`) one dtype for all.
 */
function checkFloat(op: string, ts: readonly Tensor[], out: DType, same: boolean): void {
  const gpu = ts[0]!.gpu;
  for (const t of ts) {
    t.assertLive();
    if (t.gpu !== gpu) throw new TensorError(`${op}: operands live on different GPU devices`);
    if (t.dtype !== "f32" && t.dtype !== "f16") throw new TensorError(`${op}: ${t} has dtype ${t.dtype}; matrix products take f32 or f16`);
    if (same && t.dtype !== ts[0]!.dtype) throw new TensorError(`${op}: operands have different dtypes: ${ts.map(String).join(", ")}`);
  }
  if (out !== "f32" && out !== "f16") throw new TensorError(`${op}: outDtype must be f32 or f16, got ${out}`);
  if ((out === "f16" || ts.some((t) => t.dtype === "f16")) && !gpu.features.has("shader-f16"))
    throw new TensorError(`${op}: f16 needs the device feature shader-f16, which ${gpu.adapter.description} lacks`);
}

/** Shapes of op(a) · op(b): the launch problem and the output shape. Throws naming `op` and both shapes. */
function plan(op: string, a: Tensor, b: Tensor, transA: boolean, transB: boolean): { pr: Problem; shape: number[] } {
  const both = `${describe("a", a, transA)} and ${describe("b", b, transB)}`;
  if (a.rank < 2 || b.rank < 2) throw new TensorError(`${op}: needs operands of rank >= 2 (matrices or batches of them), got ${both}`);
  const [ra, ca] = a.shape.slice(-2) as [number, number];
  const [rb, cb] = b.shape.slice(-2) as [number, number];
  const [M, Ka] = transA ? [ca, ra] : [ra, ca];
  const [Kb, N] = transB ? [cb, rb] : [rb, cb];
  if (Ka !== Kb) throw new TensorError(`${op}: inner dimensions differ: ${both} (K = ${Ka} vs ${Kb})`);
  const ba = a.shape.slice(0, -2);
  const bb = b.shape.slice(0, -2);
  let batchShape: Shape;
  if (sameShape(ba, bb)) batchShape = ba;
  else if (bb.length === 0) batchShape = ba;
  else if (ba.length === 0) batchShape = bb;
  else throw new TensorError(`${op}: batch dimensions differ: ${both} (they must be equal, or one operand 2-D)`);
  const batch = numel(batchShape);
  const pr = { M, N, K: Ka, batch, sharedA: ba.length === 0 && batch > 1, sharedB: bb.length === 0 && batch > 1, transA, transB };
  return { pr, shape: [...batchShape, M, N] };
}

/** op(a) · op(b) as a new `dtype` tensor, no autograd (operand dtypes may differ). */
function product(op: string, a: Tensor, b: Tensor, transA: boolean, transB: boolean, dtype: DType): Tensor {
  checkFloat(op, [a, b], dtype, false);
  const { pr, shape } = plan(op, a, b, transA, transB);
  const out = Tensor.empty(a.gpu, shape, { dtype });
  launch(op, pr, a, b, null, out);
  return out;
}

/** Sum t [n, ...rest] over its first dimension in f32, consuming t; the result in `dtype`. */
function sumFirst(t: Tensor, rest: Shape, dtype: DType): Tensor {
  const flat = t.reshape([numel(t.shape) / numel(rest), ...rest]);
  t.release();
  const wide = flat.dtype === "f32" ? flat : cast(flat, "f32");
  if (wide !== flat) flat.release();
  const s = sum(wide, 0);
  wide.release();
  if (dtype === "f32") return s;
  const r = cast(s, dtype);
  s.release();
  return r;
}

/**
 * Gradient of op(X) (X = A when `which` is "a"), in X's stored layout, from dC and the other operand.
 * d op(A) = dC · op(B)ᵀ, so dA = dC · op(B)ᵀ, or its transpose op(B) · dCᵀ when A is stored transposed;
 * likewise dB = op(A)ᵀ · dC, or dCᵀ · op(A) when B is stored transposed.
 */
function gradOf(which: "a" | "b", g: Tensor, other: Tensor, tA: boolean, tB: boolean, xShape: Shape, xDtype: DType): Tensor {
  const name = `matmul.grad_${which}`;
  const sharedX = xShape.length === 2 && other.rank > 2;
  const one = (gg: Tensor, o: Tensor, dt = xDtype): Tensor =>
    which === "a"
      ? tA
        ? product(name, o, gg, tB, true, dt)
        : product(name, gg, o, false, !tB, dt)
      : tB
        ? product(name, gg, o, true, tA, dt)
        : product(name, o, gg, !tA, false, dt);
  if (!sharedX) return one(g, other);
  // X is a 2-D weight shared by the batch. When `other` is not transposed relative to the flattening
  // (A not transposed for dB; never for dA), fold the batch into the reduction: one 2-D product.
  if (which === "b" && !tA) {
    const K = xShape[tB ? 1 : 0]!;
    const o2 = other.reshape(-1, K);
    const g2 = g.reshape(-1, g.shape[g.rank - 1]!);
    const r = one(g2, o2);
    o2.release();
    g2.release();
    return r;
  }
  return sumFirst(one(g, other, "f32"), xShape, xDtype);
}

/**
 * Matrix product op(a) · op(b), op = transpose where `transA` / `transB` say. a [...batch, M, K] (or
 * [..., K, M] with transA), b [...batch, K, N] (or [..., N, K] with transB); batch dimensions equal, or one
 * operand 2-D and shared across the batch. Returns [...batch, M, N] in `outDtype` (default: a's dtype).
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const tA = opts.transA ?? false;
  const tB = opts.transB ?? false;
  const dtype = opts.outDtype ?? a.dtype;
  checkFloat("matmul", [a, b], dtype, true);
  const out = product("matmul", a, b, tA, tB, dtype);
  const [aShape, bShape, aDtype, bDtype] = [a.shape, b.shape, a.dtype, b.dtype];
  return attach(out, {
    op: "matmul",
    inputs: [a, b],
    save: (needs) => [needs[1] ? a : null, needs[0] ? b : null],
    backward: (g, [sa, sb], needs) => [
      needs[0] ? gradOf("a", g, sb!, tA, tB, aShape, aDtype) : null,
      needs[1] ? gradOf("b", g, sa!, tA, tB, bShape, bDtype) : null,
    ],
  });
}

/**
 * PyTorch `F.linear` / HF `nn.Linear`: y = x · wᵀ (+ bias). x [..., in] (any leading dimensions, or none),
 * w [out, in], bias [out], one dtype (f32 or f16). Returns [..., out] in `opts.outDtype` (default: x's
 * dtype). The bias is added in the product's epilogue, before the result is rounded to its dtype.
 */
export function linear(x: Tensor, w: Tensor, bias?: Tensor | null, opts: { outDtype?: DType } = {}): Tensor {
  const op = "linear";
  const ins = bias ? [x, w, bias] : [x, w];
  const dtype = opts.outDtype ?? x.dtype;
  checkFloat(op, ins, dtype, true);
  const shapes = `x ${fmtShape(x.shape)}, w ${fmtShape(w.shape)}${bias ? `, bias ${fmtShape(bias.shape)}` : ""}`;
  if (w.rank !== 2 || x.rank < 1) throw new TensorError(`${op}: needs x [..., in] and w [out, in], got ${shapes}`);
  const [nOut, nIn] = w.shape as [number, number];
  if (x.shape[x.rank - 1] !== nIn) throw new TensorError(`${op}: x's last dimension must equal w's in-features (w is [out, in]), got ${shapes}`);
  if (bias && !sameShape(bias.shape, [nOut])) throw new TensorError(`${op}: bias must be [out] = [${nOut}], got ${shapes}`);
  const lead = x.shape.slice(0, -1);
  const rows = numel(lead);
  const out = Tensor.empty(x.gpu, [...lead, nOut], { dtype });
  const pr: Problem = { M: rows, N: nOut, K: nIn, batch: 1, sharedA: false, sharedB: false, transA: false, transB: true };
  launch(op, pr, x, w, bias ?? null, out);
  const [xShape, xDtype] = [x.shape, x.dtype];
  return attach(out, {
    op,
    inputs: ins,
    save: (needs) => [needs[1] ? x : null, needs[0] ? w : null],
    backward: (g, [sx, sw], needs) => {
      const g2 = g.reshape(rows, nOut);
      let dx: Tensor | null = null;
      if (needs[0]) {
        const d = product(`${op}.grad_x`, g2, sw!, false, false, sw!.dtype);
        dx = d.reshape(xShape);
        d.release();
      }
      let dw: Tensor | null = null;
      if (needs[1]) {
        const x2 = sx!.reshape(rows, nIn);
        dw = product(`${op}.grad_w`, g2, x2, true, false, x2.dtype);
        x2.release();
      }
      const db = needs[2] ? sumFirst(g2.detach(), [nOut], xDtype) : null;
      g2.release();
      return bias ? [dx, dw, db] : [dx, dw];
    },
  });
}

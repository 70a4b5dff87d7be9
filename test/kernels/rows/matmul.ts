// matmul rows: matmulProduct (src/kernels/matmul.ts) against test/reference/matmul.ts on every kernel variant
// (direct with 4 and 8 rows per invocation, tiled, tiled128, subgroup where the device has 8-lane subgroups:
// test/tensor/helpers.ts MATMUL_KERNELS) × every operand layout (NN, NT, TN, TT), on shapes that are and are
// not multiples of 4 and of the blocks (the shapes the matmul op tests use), batches with and without a shared
// operand, a bias (f32 and f16), f16 operands with f16 or f32 results (where the device has shader-f16), and a
// batch split over several dispatches / another direct workgroup shape, and NaN operands; `accumulate` (c += the product:
// autograd's in-place gradient sums) on every kernel variant, every layout, shapes with partial blocks, vec4 and K
// tails, K = 0, a bias, a batch, and f16 results and f16 operands with f32 results (c's prior contents random, not
// poisoned: they are an input). Tolerances are the op tests':
// f32 |err| <= 1e-6 + 1e-4 sum|terms|; f16 result 1e-7 + 2e-3 sum|terms|; f16 operands, f32 result
// 1e-7 + 1e-5 sum|terms| (test/tensor/f16.test.ts explains them). f16 outputs are poisoned with f16 NaN.
import { describeSubgroups, type Gpu, type PooledBuffer } from "../../../src/gpu/index.ts";
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import { matmulProduct, type MatmulDType, type MatmulLaunchOptions } from "../../../src/kernels/matmul.ts";
import * as ref from "../../reference/matmul.ts";
import { MATMUL_KERNELS, matmulKernelRuns, uniform, type CloseOpts, type MatmulKernelConfig } from "../../tensor/helpers.ts";
import type { Check, LauncherRow, RowIo } from "../harness.ts";

const F32_TOL = { rtol: 1e-4, atol: 1e-6 };
const F16_TOL = { rtol: 2e-3, atol: 1e-7 };
const F16_IN_F32_OUT_TOL = { rtol: 1e-5, atol: 1e-7 };

// ---- f16 buffers (RowIo holds 32-bit words) -------------------------------------------------------------

/** An f16 input: the values rounded to f16, packed two per word. */
function inputHalf(io: RowIo, data: Float64Array): PooledBuffer {
  const h = new Float16Array(data.length + (data.length % 2));
  h.set(data);
  return io.input(new Uint32Array(h.buffer));
}

/** An f16 output of n elements, poisoned with f16 NaN in every half. */
function outputHalf(gpu: Gpu, io: RowIo, n: number): PooledBuffer {
  const b = io.output(Math.ceil(n / 2));
  gpu.fillBits(b, 0x7e007e00);
  return b;
}

async function readHalf(gpu: Gpu, b: PooledBuffer, n: number): Promise<Float64Array> {
  return n ? Float64Array.from(new Float16Array(await gpu.read(b, 2 * n))) : new Float64Array(0);
}

// ---- rows ------------------------------------------------------------------------------------------------

type Layout = "NN" | "NT" | "TN" | "TT";
const LAYOUTS: Layout[] = ["NN", "NT", "TN", "TT"];

interface Case {
  M: number;
  N: number;
  K: number;
  batch?: number;
  sharedA?: boolean;
  sharedB?: boolean;
  layout: Layout;
  bias?: boolean;
  /** Operand dtype (a, b, bias) and result dtype; default f32. */
  input?: MatmulDType;
  output?: MatmulDType;
  /** Extra matmul policy (maxBatch, workgroup shape) and a label for it. */
  policy?: PartialPolicy["matmul"];
  label?: string;
  /** A NaN in a (its element 5), in b (its last element) and in the bias (element 1): NaN exactly where the reference's sums have it. */
  nan?: boolean;
  /** The launcher's `accumulate`: c holds random prior values and gets the product added. */
  acc?: boolean;
}

const kernelName = (kc: MatmulKernelConfig) => (kc.kernel === "direct" ? `direct-tm${kc.tm}` : kc.kernel);

function row(kc: MatmulKernelConfig, c: Case): LauncherRow {
  const batch = c.batch ?? 1;
  const [inp, outp] = [c.input ?? "f32", c.output ?? "f32"];
  const o: MatmulLaunchOptions = {
    M: c.M,
    N: c.N,
    K: c.K,
    batch,
    sharedA: c.sharedA ?? false,
    sharedB: c.sharedB ?? false,
    transA: c.layout[0] === "T",
    transB: c.layout[1] === "T",
    dtypes: { a: inp, b: inp, c: outp, ...(c.bias ? { bias: inp } : {}) },
    name: "matmul.row",
    accumulate: c.acc ?? false,
  };
  const batchTag = batch > 1 ? ` batch ${batch}${o.sharedA ? " shared a" : ""}${o.sharedB ? " shared b" : ""}` : "";
  const dtypeTag = inp === "f32" && outp === "f32" ? "" : ` ${inp}->${outp}`;
  const tol: CloseOpts = outp === "f16" ? F16_TOL : inp === "f16" ? F16_IN_F32_OUT_TOL : F32_TOL;
  return {
    family: "matmul",
    name: `matmul matmulProduct ${kernelName(kc)} ${c.layout} ${c.M}x${c.N}x${c.K}${batchTag}${c.bias ? " bias" : ""}${dtypeTag}${c.nan ? " with NaN" : ""}${c.acc ? " accumulate" : ""}${c.label ? ` (${c.label})` : ""}`,
    variant: { matmul: { ...kc, ...c.policy } },
    skip: (gpu) => {
      if (!matmulKernelRuns(gpu, kc)) return `the subgroup kernel needs 8-lane subgroups; ${describeSubgroups(gpu)}`;
      if ((inp === "f16" || outp === "f16") && !gpu.features.has("shader-f16")) return `f16 needs shader-f16, which ${gpu.adapter.description} lacks`;
      return null;
    },
    async run(gpu, io, r): Promise<Check[]> {
      const draw = (n: number) => (inp === "f16" ? ref.toHalf(uniform(r, n)) : uniform(r, n));
      const A = draw((o.sharedA ? 1 : batch) * o.M * o.K);
      const B = draw((o.sharedB ? 1 : batch) * o.K * o.N);
      const bias = c.bias ? draw(o.N) : undefined;
      if (c.nan) {
        A[Math.min(5, A.length - 1)] = NaN;
        B[B.length - 1] = NaN;
        if (bias) bias[Math.min(1, bias.length - 1)] = NaN;
      }
      const up = (x: Float64Array) => (inp === "f16" ? inputHalf(io, x) : io.input(x));
      const n = batch * o.M * o.N;
      // accumulate: c's prior contents (in c's dtype) are an input, so not poisoned.
      const C0 = c.acc ? (outp === "f16" ? ref.toHalf(uniform(r, n)) : uniform(r, n)) : undefined;
      const out = C0 ? (outp === "f16" ? inputHalf(io, C0) : io.input(C0)) : outp === "f16" ? outputHalf(gpu, io, n) : io.output(n);
      matmulProduct(gpu, { a: up(A), b: up(B), c: out, ...(bias ? { bias: up(bias) } : {}) }, o);
      const got = outp === "f16" ? await readHalf(gpu, out, n) : await io.read(out, n);
      const want = ref.matmulProduct({ a: A, b: B, bias, acc: C0 && Float64Array.from(new Float32Array(C0)) }, o);
      return [{ what: "c", got, ref: want.c, opts: { ...tol, mag: want.cMag } }];
    },
  };
}

export const rows: LauncherRow[] = [];

// [M, N, K] of op(a) [M, K] · op(b) [K, N] (the matmul op tests' shapes).
/** [M, N, K] of the 2-D products (the op tests sweep them through autograd too). */
export const SHAPES_2D: [number, number, number][] = [
  [1, 1, 1],
  [37, 29, 20], // partial blocks everywhere; K % 4 == 0, M and N odd
  [64, 64, 64], // every operand vec4-aligned, exact blocks
  [20, 36, 16], // vec4-aligned with partial blocks: M % 8 == 4, N % 32 == 4 (clamped loads of edge lanes)
  [130, 136, 9], // more than one 128-block each way (tiled128), the second ones partial; K tail of 1
  [13, 12, 300], // long K with a tail of 0; N % 4 == 0
  [6, 5, 7], // K tail of 3
  [9, 8, 3], // K < 4: the tail loop alone
  [3, 4, 0], // empty reduction: zeros
];

// Batches: equal batches, and a 2-D operand shared by every z (batch stride 0).
const BATCHED: Omit<Case, "layout">[] = [
  { M: 3, N: 9, K: 7, batch: 5 },
  { M: 4, N: 8, K: 12, batch: 6 }, // vec4 paths with batch offsets
  { M: 5, N: 6, K: 7, batch: 6, sharedB: true },
  { M: 5, N: 6, K: 7, batch: 4, sharedA: true },
  { M: 8, N: 4, K: 4, batch: 3, sharedB: true }, // shared and vec4
];

// linear's products, x [rows, in] · wᵀ + bias (NT): the linear op tests' shapes.
const LINEAR: [number, number, number][] = [
  [6, 7, 10], // nothing aligned
  [5, 12, 16], // vec4 loads and stores
  [1, 5, 9], // one row
  [37, 29, 20],
  [4, 3, 300], // long K
];

// f16 operands (the f16 op tests' shapes): 2-D, K past one tile, batches and shared operands.
const HALF: Omit<Case, "layout">[] = [
  { M: 5, N: 3, K: 7 },
  { M: 4, N: 4, K: 8 }, // vec4 loads and stores
  { M: 9, N: 13, K: 67 }, // K past one tile
  { M: 3, N: 6, K: 5, batch: 2 },
  { M: 3, N: 2, K: 5, batch: 2, sharedB: true },
  { M: 3, N: 2, K: 5, batch: 3, sharedA: true },
];

for (const kc of MATMUL_KERNELS) {
  for (const layout of LAYOUTS) {
    for (const [M, N, K] of SHAPES_2D) rows.push(row(kc, { M, N, K, layout }));
    for (const c of BATCHED) rows.push(row(kc, { ...c, layout }));
    for (const c of HALF) rows.push(row(kc, { ...c, layout, input: "f16", output: "f16" }));
  }
  for (const [M, N, K] of LINEAR) rows.push(row(kc, { M, N, K, layout: "NT", bias: true }));
  rows.push(row(kc, { M: 6, N: 5, K: 7, layout: "NT", bias: true, input: "f16", output: "f16" }));
  // f16 operands, f32 result (outDtype f32: logits for a loss).
  for (const c of [HALF[0]!, HALF[1]!, HALF[4]!, HALF[5]!]) rows.push(row(kc, { ...c, layout: c.sharedA ? "NN" : "NT", input: "f16", output: "f32" }));
  // NaN propagation: every layout, a bias, a batch with a shared operand, f16.
  for (const layout of LAYOUTS) rows.push(row(kc, { M: 37, N: 29, K: 20, layout, nan: true }));
  rows.push(row(kc, { M: 6, N: 7, K: 10, layout: "NT", bias: true, nan: true }));
  rows.push(row(kc, { M: 5, N: 6, K: 7, batch: 4, sharedA: true, layout: "NN", nan: true }));
  rows.push(row(kc, { M: 9, N: 13, K: 67, layout: "NN", input: "f16", output: "f16", nan: true }));
  // accumulate (c += op(a) · op(b)): the layouts the backward runs (NN grad_x, TN grad_w, NT; and TT), partial
  // blocks and vec4 paths, K tails and K = 0, a bias, a batch, f16 results and f16 operands into f32.
  for (const layout of LAYOUTS) rows.push(row(kc, { M: 37, N: 29, K: 20, layout, acc: true }));
  for (const layout of ["NN", "NT", "TN"] as const) {
    rows.push(row(kc, { M: 20, N: 36, K: 16, layout, acc: true }));
    rows.push(row(kc, { M: 130, N: 136, K: 9, layout, acc: true }));
  }
  rows.push(row(kc, { M: 6, N: 5, K: 7, layout: "TN", acc: true }));
  rows.push(row(kc, { M: 3, N: 4, K: 0, layout: "NN", acc: true }));
  rows.push(row(kc, { M: 6, N: 7, K: 10, layout: "NT", bias: true, acc: true }));
  rows.push(row(kc, { M: 4, N: 8, K: 12, batch: 6, layout: "NN", acc: true }));
  rows.push(row(kc, { M: 9, N: 13, K: 67, layout: "NN", input: "f16", output: "f16", acc: true }));
  rows.push(row(kc, { M: 4, N: 4, K: 8, layout: "TN", input: "f16", output: "f16", acc: true }));
  rows.push(row(kc, { M: 5, N: 3, K: 7, layout: "NT", input: "f16", output: "f32", acc: true }));
  rows.push(row(kc, { M: 4, N: 4, K: 8, layout: "NN", input: "f16", output: "f32", acc: true }));
}

// A batch larger than one dispatch runs as several (batch0 offsets); the direct kernel with another workgroup shape.
for (const layout of LAYOUTS) {
  const split = { policy: { maxBatch: 2 }, label: "maxBatch 2" };
  rows.push(row({ kernel: "direct", tm: 4 }, { M: 3, N: 5, K: 6, batch: 5, layout, ...split }));
  rows.push(row({ kernel: "direct", tm: 4 }, { M: 3, N: 5, K: 6, batch: 5, sharedB: true, layout, ...split }));
}
rows.push(row({ kernel: "direct", tm: 4 }, { M: 37, N: 70, K: 9, batch: 2, layout: "NN", policy: { wgx: 16, wgy: 2 }, label: "workgroup 16x2" }));

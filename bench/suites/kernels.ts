/**
 * One case per op family, run through the library's exported ops (what the model calls), each with its FLOP
 * and byte counts:
 *   - flops: the algorithm's multiply-adds × 2 (matmul 2·M·N·K; causal attention forward 4·Dh per visible
 *     (query, key) pair, backward 10·Dh: FlashAttention's convention, recomputation of the scores not
 *     counted — the kernels here recompute P in both backward kernels, so they do ~14·Dh of work);
 *   - bytes: the least traffic the op needs (each input read once, each output written once; f32 = 4 B).
 * A case is `compute`-bound (reported in GFLOP/s against the matmul ceiling) or `memory`-bound (GB/s
 * against the copy ceiling). Both floors are kept in the JSON (`floor_ms`) for bench/NOTES.md.
 */
import type { Gpu } from "../../src/gpu/index.ts";
import { AdamW } from "../../src/optim/index.ts";
import {
  add,
  attention,
  crossEntropy,
  embedding,
  matmul,
  rmsnorm,
  softmax,
  sum,
  Tensor,
  type DType,
} from "../../src/tensor/index.ts";
import { ids, normal, uniform } from "../lib/data.ts";
import type { Prepared } from "../lib/measure.ts";

export interface Case {
  name: string;
  shape: number[];
  dtype: string;
  flops: number;
  bytes: number;
  bound: "compute" | "memory";
  setup(gpu: Gpu): Prepared;
}

const F32 = 4;

/** A case whose timed run is one op producing `out`; `inputs` are released at the end. */
function forwardCase(inputs: Tensor[], op: () => Tensor): Prepared {
  let out: Tensor | null = null;
  return {
    run: () => void (out = op()),
    cleanup: () => (out?.release(), (out = null)),
    dispose: () => inputs.forEach((t) => t.release()),
  };
}

/** A case whose timed run is the backward of `op` (its forward runs untimed first); `leaves` get zeroed. */
function backwardCase(gpu: Gpu, leaves: Tensor[], others: Tensor[], op: () => Tensor): Prepared {
  let out: Tensor | null = null;
  let g: Tensor | null = null;
  return {
    prepare: () => {
      out = op();
      g ??= Tensor.ones(gpu, out.shape);
    },
    run: () => out!.backward(g!),
    cleanup: () => {
      out?.release();
      out = null;
      for (const t of leaves) t.zeroGrad();
    },
    dispose: () => {
      g?.release();
      for (const t of [...leaves, ...others]) t.release();
    },
  };
}

// ---- matmul ---------------------------------------------------------------------------------------------

export function matmulCase(M: number, N: number, K: number, o: { transA?: boolean; transB?: boolean; batch?: number; dtype?: DType } = {}): Case {
  const { transA = false, transB = false, batch = 1, dtype = "f32" } = o;
  const lead = batch > 1 ? [batch] : [];
  const el = dtype === "f16" ? 2 : F32;
  return {
    name: `matmul_${transA ? "t" : "n"}${transB ? "t" : "n"}${batch > 1 ? "_batched" : ""}`,
    shape: [...lead, M, N, K],
    dtype,
    flops: 2 * batch * M * N * K,
    bytes: el * batch * (M * K + K * N + M * N),
    bound: "compute",
    setup(gpu) {
      const a = uniform(gpu, [...lead, ...(transA ? [K, M] : [M, K])], dtype, 1);
      const b = uniform(gpu, [...lead, ...(transB ? [N, K] : [K, N])], dtype, 2);
      return forwardCase([a, b], () => matmul(a, b, { transA, transB }));
    },
  };
}

/** Whether the matmul op takes f16 operands here: null if so, else why not. */
export async function f16MatmulUnsupported(gpu: Gpu): Promise<string | null> {
  if (!gpu.features.has("shader-f16")) return "the adapter has no shader-f16";
  let a: Tensor | null = null;
  let b: Tensor | null = null;
  try {
    a = uniform(gpu, [8, 8], "f16", 1);
    b = uniform(gpu, [8, 8], "f16", 2);
    const c = matmul(a, b);
    await gpu.sync();
    c.release();
    return null;
  } catch (e) {
    return `matmul does not accept f16 operands: ${e instanceof Error ? e.message.split("\n")[0] : e}`;
  } finally {
    a?.release();
    b?.release();
  }
}

// ---- attention ------------------------------------------------------------------------------------------

/** `kernel` forces one implementation (the device's `policy.attention.kernel`); the default name is what "auto" picks on the device. */
export function attentionCase(dir: "fwd" | "bwd", B: number, Hq: number, Hkv: number, T: number, Dh: number, kernel: "auto" | "flash" = "auto"): Case {
  const pairs = (T * (T + 1)) / 2; // causal
  const qBytes = F32 * B * Hq * T * Dh;
  const kvBytes = F32 * B * Hkv * T * Dh;
  return {
    name: kernel === "auto" ? `attention_${dir}` : `attention_${kernel}_${dir}`,
    shape: [B, Hq, Hkv, T, Dh],
    dtype: "f32",
    flops: (dir === "fwd" ? 4 : 10) * B * Hq * pairs * Dh,
    // fwd: q, k, v in; out, lse out. bwd: q, k, v, out, dout, lse in; dq, dk, dv out.
    bytes: dir === "fwd" ? 2 * qBytes + 2 * kvBytes + F32 * B * Hq * T : 4 * qBytes + 4 * kvBytes + F32 * B * Hq * T,
    bound: "compute",
    setup(gpu) {
      const grad = dir === "bwd";
      const q = normal(gpu, [B, Hq, T, Dh], { requiresGrad: grad });
      const k = normal(gpu, [B, Hkv, T, Dh], { requiresGrad: grad });
      const v = normal(gpu, [B, Hkv, T, Dh], { requiresGrad: grad });
      const op = () => gpu.withPolicy({ attention: { kernel } }, () => attention(q, k, v, { causal: true }));
      return grad ? backwardCase(gpu, [q, k, v], [], op) : forwardCase([q, k, v], op);
    },
  };
}

// ---- row ops: softmax, rmsnorm, cross-entropy ----------------------------------------------------------

export function softmaxCase(rows: number, n: number): Case {
  return {
    name: "softmax",
    shape: [rows, n],
    dtype: "f32",
    flops: 5 * rows * n,
    bytes: 2 * F32 * rows * n,
    bound: "memory",
    setup(gpu) {
      const x = normal(gpu, [rows, n]);
      return forwardCase([x], () => softmax(x));
    },
  };
}

export function rmsnormCase(dir: "fwd" | "bwd", rows: number, d: number): Case {
  return {
    name: `rmsnorm_${dir}`,
    shape: [rows, d],
    dtype: "f32",
    flops: (dir === "fwd" ? 4 : 8) * rows * d,
    // fwd: x, w in; y, rstd out. bwd: x, dy, w, rstd in; dx, dw out.
    bytes: dir === "fwd" ? F32 * (2 * rows * d + d + rows) : F32 * (3 * rows * d + 2 * d + rows),
    bound: "memory",
    setup(gpu) {
      const grad = dir === "bwd";
      const x = normal(gpu, [rows, d], { requiresGrad: grad });
      const w = normal(gpu, [d], { requiresGrad: grad });
      const op = () => rmsnorm(x, w, { eps: 1e-5 });
      return grad ? backwardCase(gpu, [x, w], [], op) : forwardCase([x, w], op);
    },
  };
}

export function crossEntropyCase(dir: "fwd" | "bwd", n: number, v: number): Case {
  return {
    name: `cross_entropy_${dir}`,
    shape: [n, v],
    dtype: "f32",
    flops: 4 * n * v,
    // fwd: logits (+ targets) in. bwd: logits in, dlogits out.
    bytes: dir === "fwd" ? F32 * (n * v + n) : F32 * (2 * n * v + n),
    bound: "memory",
    setup(gpu) {
      const grad = dir === "bwd";
      const x = normal(gpu, [n, v], { requiresGrad: grad });
      const t = Tensor.fromArray(gpu, ids(n, v, 7), [n], { dtype: "i32" });
      const op = () => crossEntropy(x, t);
      return grad ? backwardCase(gpu, [x], [t], op) : forwardCase([x, t], op);
    },
  };
}

// ---- embedding ----------------------------------------------------------------------------------------------

/**
 * Forward gathers with ids on the GPU (no upload in the timed run). Backward uses host ids, as LlamaModel
 * does: the sort by id runs on the host during the backward's recording and its upload is a queue write, not
 * a kernel; the GPU time is the bounds search plus the dense scatter of dTable [V, D].
 */
export function embeddingCase(dir: "fwd" | "bwd", n: number, v: number, d: number): Case {
  return {
    name: `embedding_${dir}`,
    shape: [n, v, d],
    dtype: "f32",
    flops: dir === "fwd" ? 0 : n * d,
    bytes: dir === "fwd" ? F32 * (2 * n * d + n) : F32 * (v * d + n * d + 2 * n),
    bound: "memory",
    setup(gpu) {
      const host = ids(n, v, 11);
      const table = normal(gpu, [v, d], { requiresGrad: dir === "bwd" });
      if (dir === "bwd") return backwardCase(gpu, [table], [], () => embedding(host, table, { shape: [n] }));
      const idT = Tensor.fromArray(gpu, host, [n], { dtype: "i32" });
      return forwardCase([table, idT], () => embedding(idT, table));
    },
  };
}

// ---- optimizer, elementwise, reduction -------------------------------------------------------------------

/** One fused AdamW update of an n-element parameter: reads p, g, m, v; writes p, m, v. */
export function adamwCase(n: number): Case {
  return {
    name: "adamw",
    shape: [n],
    dtype: "f32",
    flops: 14 * n,
    bytes: 7 * F32 * n,
    bound: "memory",
    setup(gpu) {
      const p = normal(gpu, [n], { requiresGrad: true });
      p.grad = normal(gpu, [n]);
      const opt = new AdamW([p], { lr: 1e-3 });
      opt.step(); // creates and zero-fills the state outside the timed runs
      return {
        run: () => opt.step(),
        dispose: () => {
          opt.release();
          p.release();
        },
      };
    },
  };
}

export function addCase(n: number): Case {
  return {
    name: "add",
    shape: [n],
    dtype: "f32",
    flops: n,
    bytes: 3 * F32 * n,
    bound: "memory",
    setup(gpu) {
      const a = normal(gpu, [n]);
      const b = normal(gpu, [n]);
      return forwardCase([a, b], () => add(a, b));
    },
  };
}

/** sum of everything (axis undefined) or over axis 0 of [rows, cols] (a bias gradient's shape). */
export function sumCase(shape: [number] | [number, number]): Case {
  const n = shape.reduce((a, b) => a * b, 1);
  const rows = shape.length === 2;
  return {
    name: rows ? "sum_axis0" : "sum",
    shape,
    dtype: "f32",
    flops: n,
    bytes: F32 * (n + (rows ? shape[1]! : 1)),
    bound: "memory",
    setup(gpu) {
      const x = normal(gpu, shape);
      return forwardCase([x], () => (rows ? sum(x, 0) : sum(x)));
    },
  };
}

// ---- the suite ---------------------------------------------------------------------------------------------

export interface SuiteSizes {
  /** GPU sizes (else CPU-adapter sizes). */
  gpu: boolean;
  quick: boolean;
}

/** Every case for this device and mode; `f16` adds the f16 matmuls. */
export function kernelCases(s: SuiteSizes, f16: boolean): Case[] {
  const { gpu, quick } = s;
  const cases: Case[] = [];
  // matmul: the ceiling size NN is measured with the ceilings; here the other layouts and shapes.
  if (gpu) {
    const n = 4096;
    cases.push(
      matmulCase(n, n, n, { transB: true }),
      matmulCase(n, n, n, { transA: true }),
      matmulCase(4095, 4093, 4094),
      matmulCase(8192, 4096, 4096, { transB: true }), // a linear of 8k tokens, 4096 → 4096
      matmulCase(2048, 11008, 4096, { transB: true }), // LLaMA-7B's MLP up projection, 2k tokens
      matmulCase(512, 512, 128, { batch: 64 }), // attention-shaped batches
      matmulCase(1024, 1024, 1024),
    );
    if (f16) cases.push(matmulCase(n, n, n, { dtype: "f16" }), matmulCase(n, n, n, { transB: true, dtype: "f16" }));
  } else {
    cases.push(
      matmulCase(256, 256, 256),
      matmulCase(1023, 1024, 1021),
      matmulCase(512, 512, 512, { transB: true }),
      matmulCase(512, 512, 512, { transA: true }),
      matmulCase(509, 510, 511, { transB: true }),
      matmulCase(128, 128, 64, { batch: 16 }),
    );
    if (!quick) cases.push(matmulCase(2048, 2048, 2048), matmulCase(1024, 1024, 1024, { transB: true }), matmulCase(1024, 1024, 1024, { transA: true }));
    if (f16) cases.push(matmulCase(512, 512, 512, { dtype: "f16" }), matmulCase(512, 512, 512, { transB: true, dtype: "f16" }));
  }
  // attention: LLaMA-like heads (Dh 64, GQA 16:4 on a GPU, 8:2 on a CPU); T up to 2048 on a GPU without --quick.
  const seqs = gpu && !quick ? [128, 256, 512, 1024, 2048] : [128, 256];
  for (const T of seqs) {
    if (gpu) cases.push(attentionCase("fwd", 4, 16, 4, T, 64), attentionCase("bwd", 4, 16, 4, T, 64));
    else cases.push(attentionCase("fwd", 1, 8, 2, T, 64), attentionCase("bwd", 1, 8, 2, T, 64));
  }
  // On a CPU adapter "auto" runs the unfused attention at these T: the fused kernels beside it, same run.
  if (!gpu) cases.push(attentionCase("fwd", 1, 8, 2, 256, 64, "flash"), attentionCase("bwd", 1, 8, 2, 256, 64, "flash"));
  if (gpu && !quick) cases.push(attentionCase("fwd", 1, 32, 8, 2048, 128), attentionCase("bwd", 1, 32, 8, 2048, 128));
  // Row ops at LLaMA-like widths: tokens × hidden, tokens × vocab.
  const [tok, hid, voc] = gpu ? [16384, 4096, 32000] : quick ? [1024, 512, 8000] : [2048, 1024, 32000];
  const ceTok = gpu ? 4096 : quick ? 256 : 512;
  cases.push(
    softmaxCase(gpu ? 8192 : 1024, gpu ? 8192 : 1024),
    rmsnormCase("fwd", tok, hid),
    rmsnormCase("bwd", tok, hid),
    crossEntropyCase("fwd", ceTok, voc),
    crossEntropyCase("bwd", ceTok, voc),
    embeddingCase("fwd", gpu ? 8192 : 1024, voc, gpu ? 4096 : 512),
    embeddingCase("bwd", gpu ? 8192 : 1024, voc, gpu ? 4096 : 512),
  );
  const n = gpu ? 64 << 20 : quick ? 1 << 20 : 4 << 20;
  cases.push(adamwCase(n), addCase(n), sumCase([n]), sumCase(gpu ? [8192, 4096] : [1024, 1024]));
  return cases;
}

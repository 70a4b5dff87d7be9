/**
 * What AlignX's losses need: cross-entropy (fused with log-softmax), masked mean pooling, L2 normalization
 * and the cosine-similarity matrix. Launchers: src/kernels/loss.ts.
 *
 * crossEntropy(logits [N, V], targets [N] i32, { ignoreIndex = -100 }) is F.cross_entropy with
 * reduction="mean": the mean over rows whose target is not ignoreIndex of logsumexp(row) - row[target].
 *   - Forward never stores the N x V probabilities: one pass per row keeps (max, sum of exp) for the row's
 *     loss and saves those two numbers per row; backward writes (softmax - onehot) * g / kept in one kernel.
 *   - Every target ignored (or N = 0): the loss is NaN and the gradient is zero, exactly as PyTorch 1.13.
 *   - Targets outside [0, V) other than ignoreIndex: PyTorch raises. Targets given as host data (an array)
 *     are checked here and raise a TensorError at the call site. Targets already on the GPU (an i32 Tensor)
 *     cannot be checked without a readback, so they are not: the kernel writes NaN for such a row instead
 *     (loss NaN, that row's gradient NaN). `checkTargets()` reads a GPU tensor back and raises, for debugging.
 *
 * maskedMean(x [B, T, D], mask [B, T]) → [B, D]: the mean of x over the positions t where mask != 0 (a
 * sentence's span); mask values are weights (use 0/1), and a row whose mask is all zero gives zeros (not
 * NaN). Gradient flows to x only; the mask is treated as a constant even if it requires grad.
 *
 * l2Normalize(x, eps = 1e-12) over the last axis is F.normalize(x, dim=-1): x / max(||x||, eps).
 * cosineSimilarityMatrix(a [N, D], b [M, D], eps = 1e-12) → [N, M] = l2Normalize(a) · l2Normalize(b)ᵀ,
 * with gradients to both (a zero row has similarity 0 with everything).
 *
 * linearCrossEntropy(h [N, D], w [V, D], targets [N], { ignoreIndex = -100, chunk }) is
 * crossEntropy(linear(h, w), targets, { ignoreIndex }) without ever holding the [N, V] logits or their gradient
 * (an LM head over a 128k vocabulary): the vocabulary is walked in chunks of `chunk` columns.
 *   - Forward, per chunk c: logits_c = h · w_cᵀ [N, chunk] (the matmul launchers, reading w_c in place), then
 *     an online log-sum-exp per row (running max and sum of exp) and the target's logit from the chunk that
 *     holds it (kernels/linear_cross_entropy.wgsl). Saves h, w, the targets, 3N + 1 statistics and the one
 *     [N, chunk] buffer, which still holds the last chunk's logits.
 *   - Backward walks the chunks from the last (whose logits are still there) to the first, recomputing the
 *     others' logits, turns them in place into dlogits_c = (softmax_c − onehot_c) · g / kept, accumulates
 *     dh += dlogits_c · w_c (f32) and writes dw_c = dlogits_cᵀ · h into its rows of dw. So K chunks cost K − 1
 *     extra h · w_cᵀ products (none for one chunk) over crossEntropy(linear(h, w)).
 *   - Extra memory: that [N, chunk] f32 buffer (from forward to backward), [N, D] f32 for the dh sum (two in
 *     backward) and O(N) statistics.
 *     The default chunk keeps N · chunk · 4 bytes within 64 MiB (at least 1024 columns, at most V; a multiple
 *     of 256). Every chunk of w (and dw) is bound in place, so it must start on the device's storage-offset
 *     alignment A (minStorageBufferOffsetAlignment, at most 256): a chunk is rounded up to a multiple of
 *     A / gcd(D · bytes, A) columns (1 column when D · 4 is a multiple of 256; the default always is).
 *   - h and w are f32, or both f16 (autocast: the products read f16 and accumulate in f32, the logits and the
 *     statistics are f32); each gradient comes out in its input's dtype (dh summed in f32, rounded once).
 *   - Same semantics as crossEntropy: NaN loss and zero gradients when nothing is kept (or N = 0), host targets
 *     checked at the call site, GPU targets outside [0, V) give NaN; a NaN or +inf in a row's logits (a NaN in
 *     h or w) makes that row's loss and gradient NaN, as torch.
 */
import {
  contract as contractLaunch,
  crossEntropyBackward,
  crossEntropyForward,
  l2NormalizeBackward,
  l2NormalizeForward,
  maskedMeanBackward,
  maskedMeanForward,
  type ContractOptions,
} from "../../kernels/loss.ts";
import { f32ToF16 } from "../../kernels/cast.ts";
import { lceChunkGrad, lceChunkStats, lceMean } from "../../kernels/linear_cross_entropy.ts";
import { matmulProduct, type MatmulDType } from "../../kernels/matmul.ts";
import { accumulate } from "../../kernels/tensor.ts";
import type { Binding, Gpu } from "../../gpu/index.ts";
import { attach } from "../autograd.ts";
import { fmtShape, TensorError } from "../shape.ts";
import { checkOperands, DTYPE_BYTES, Tensor } from "../tensor.ts";
import { lastAxisRows } from "./softmax.ts";

const I32_MIN = -(2 ** 31);
const I32_MAX = 2 ** 31 - 1;

// ---- cross-entropy ------------------------------------------------------------------------------------

export interface CrossEntropyOptions {
  /** Rows whose target equals this are left out of the mean and get zero gradient (PyTorch: -100). */
  ignoreIndex?: number;
}

/** A TensorError naming the first target outside [0, numClasses) that is not ignoreIndex, if any. */
function checkTargetValues(op: string, t: ArrayLike<number>, numClasses: number, ignoreIndex: number): void {
  for (let i = 0; i < t.length; i++) {
    const v = t[i]!;
    if (v === ignoreIndex) continue;
    if (!Number.isInteger(v) || v < 0 || v >= numClasses)
      throw new TensorError(`${op}: target ${v} at index ${i} is out of range [0, ${numClasses}) (ignoreIndex ${ignoreIndex})`);
  }
}

/**
 * Mean cross-entropy of `logits` [N, V] against class indices `targets` [N]: an i32 Tensor (not
 * validated; an invalid target makes the loss NaN) or host values (validated here). See the module comment.
 */
export function crossEntropy(logits: Tensor, targets: Tensor | ArrayLike<number>, opts: CrossEntropyOptions = {}): Tensor {
  const op = "cross_entropy";
  const gpu = checkOperands(op, logits);
  const ignore = opts.ignoreIndex ?? -100;
  if (!Number.isInteger(ignore) || ignore < I32_MIN || ignore > I32_MAX) throw new TensorError(`${op}: ignoreIndex must be an i32 integer, got ${ignore}`);
  if (logits.rank !== 2) throw new TensorError(`${op}: logits must be [N, V], got ${fmtShape(logits.shape)}`);
  const [N, V] = logits.shape as [number, number];
  if (targets instanceof Tensor) {
    targets.assertLive();
    if (targets.gpu !== gpu) throw new TensorError(`${op}: logits and targets live on different GPU devices`);
    if (targets.dtype !== "i32") throw new TensorError(`${op}: targets ${targets} must have dtype i32`);
    if (targets.rank !== 1 || targets.shape[0] !== N)
      throw new TensorError(`${op}: targets ${fmtShape(targets.shape)} do not match logits ${fmtShape(logits.shape)} (expected [${N}])`);
  } else {
    if (targets.length !== N) throw new TensorError(`${op}: ${targets.length} targets do not match logits ${fmtShape(logits.shape)} (expected ${N})`);
    checkTargetValues(op, targets, V, ignore);
  }
  if (N === 0) {
    // Nothing kept: NaN, zero gradient (no kernel: empty buffers cannot be bound).
    const out = Tensor.full(gpu, [], Number.NaN);
    return attach(out, { op, inputs: [logits], backward: () => [Tensor.zeros(gpu, logits.shape)] });
  }
  if (V === 0) throw new TensorError(`${op}: logits ${fmtShape(logits.shape)} have no classes`);

  // Intermediates are released when this block ends (`using`); the node keeps its own views of them.
  using owned = targets instanceof Tensor ? null : Tensor.fromArray(gpu, targets, [N], { dtype: "i32" });
  const t = owned ?? (targets as Tensor);
  /** Per row (max, sum of exp(x - max)), then the number of kept rows. */
  using stats = Tensor.empty(gpu, [2 * N + 1]);
  const out = Tensor.empty(gpu, []);
  const o = { rows: N, classes: V, ignoreIndex: ignore };
  crossEntropyForward(gpu, { logits: logits.buffer, targets: t.buffer, loss: out.buffer, stats: stats.buffer }, o);
  return attach(out, {
    op,
    inputs: [logits],
    save: () => [logits, t, stats],
    backward: (g, [x, tt, st]) => {
      const dx = Tensor.empty(gpu, x!.shape);
      crossEntropyBackward(gpu, { logits: x!.buffer, targets: tt!.buffer, stats: st!.buffer, dloss: g.buffer, dlogits: dx.buffer }, o);
      return [dx];
    },
  });
}

/**
 * Read `targets` back and raise a TensorError naming the first value outside [0, numClasses) that is not
 * ignoreIndex (a debugging aid: crossEntropy does not read GPU targets back, it yields NaN for them).
 */
export async function checkTargets(targets: Tensor, numClasses: number, ignoreIndex = -100): Promise<void> {
  if (targets.dtype !== "i32") throw new TensorError(`checkTargets: targets ${targets} must have dtype i32`);
  checkTargetValues("cross_entropy", await targets.data(), numClasses, ignoreIndex);
}

// ---- cross-entropy of a linear layer, chunked over the vocabulary ---------------------------------------

export interface LinearCrossEntropyOptions extends CrossEntropyOptions {
  /** Vocabulary columns per chunk (rounded up to the alignment multiple, see the module comment). Default: linearCrossEntropyChunk. */
  chunk?: number;
}

/** What the default chunk keeps N · chunk f32 logits within: 64 MiB. */
export const LINEAR_CROSS_ENTROPY_CHUNK_BYTES = 64 * 2 ** 20;

/**
 * The default chunk for N rows over a vocabulary of V: the most columns whose N · chunk f32 logits fit 64 MiB (and
 * one buffer binding of `maxBinding` bytes), a multiple of 256, at least 1024 (unless the binding forbids it), at
 * most V.
 */
export function linearCrossEntropyChunk(N: number, V: number, maxBinding = Infinity): number {
  const rows = Math.max(1, N);
  let c = Math.max(1024, Math.floor(LINEAR_CROSS_ENTROPY_CHUNK_BYTES / (4 * rows) / 256) * 256);
  c = Math.min(c, Math.max(1, Math.floor(maxBinding / (4 * rows))));
  return Math.max(1, Math.min(V, c));
}

const gcd = (a: number, b: number): number => (b ? gcd(b, a % b) : a);

/**
 * Mean cross-entropy of the logits h · wᵀ [N, V] against `targets` [N] (an i32 Tensor, not validated, or host
 * values, validated here), computed chunk by chunk over the vocabulary: the same value and gradients as
 * crossEntropy(linear(h, w), targets, opts) without the [N, V] logits. See the module comment.
 */
export function linearCrossEntropy(h: Tensor, w: Tensor, targets: Tensor | ArrayLike<number>, opts: LinearCrossEntropyOptions = {}): Tensor {
  const op = "linear_cross_entropy";
  const gpu = h.gpu;
  for (const t of [h, w]) {
    t.assertLive();
    if (t.gpu !== gpu) throw new TensorError(`${op}: operands live on different GPU devices`);
    if (t.dtype !== "f32" && t.dtype !== "f16") throw new TensorError(`${op}: ${t} has dtype ${t.dtype}; h and w must be f32, or both f16`);
  }
  if (h.dtype !== w.dtype) throw new TensorError(`${op}: h ${h} and w ${w} have different dtypes (both f32, or both f16)`);
  if (h.dtype === "f16" && !gpu.features.has("shader-f16"))
    throw new TensorError(`${op}: f16 needs the device feature shader-f16, which ${gpu.adapter.description} lacks`);
  const ignore = opts.ignoreIndex ?? -100;
  if (!Number.isInteger(ignore) || ignore < I32_MIN || ignore > I32_MAX) throw new TensorError(`${op}: ignoreIndex must be an i32 integer, got ${ignore}`);
  if (h.rank !== 2 || w.rank !== 2 || h.shape[1] !== w.shape[1])
    throw new TensorError(`${op}: needs h [N, D] and w [V, D] (w is [out, in], as linear's), got h ${fmtShape(h.shape)} and w ${fmtShape(w.shape)}`);
  const [N, D] = h.shape as [number, number];
  const V = w.shape[0]!;
  if (targets instanceof Tensor) {
    targets.assertLive();
    if (targets.gpu !== gpu) throw new TensorError(`${op}: h and targets live on different GPU devices`);
    if (targets.dtype !== "i32") throw new TensorError(`${op}: targets ${targets} must have dtype i32`);
    if (targets.rank !== 1 || targets.shape[0] !== N) throw new TensorError(`${op}: targets ${fmtShape(targets.shape)} do not match h ${fmtShape(h.shape)} (expected [${N}])`);
  } else {
    if (targets.length !== N) throw new TensorError(`${op}: ${targets.length} targets do not match h ${fmtShape(h.shape)} (expected ${N})`);
    checkTargetValues(op, targets, V, ignore);
  }
  if (opts.chunk !== undefined && !(Number.isInteger(opts.chunk) && opts.chunk >= 1))
    throw new TensorError(`${op}: chunk must be a positive integer, got ${opts.chunk}`);
  if (N === 0) {
    // Nothing kept: NaN, zero gradients (no kernel: empty buffers cannot be bound).
    const out = Tensor.full(gpu, [], Number.NaN);
    return attach(out, {
      op,
      inputs: [h, w],
      backward: () => [Tensor.zeros(gpu, h.shape, { dtype: h.dtype }), Tensor.zeros(gpu, w.shape, { dtype: w.dtype })],
    });
  }
  if (V === 0) throw new TensorError(`${op}: w ${fmtShape(w.shape)} has no classes`);

  // Chunks of w start on the storage-offset alignment: a multiple of `q` columns.
  const rowBytes = D * DTYPE_BYTES[w.dtype];
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const q = align / gcd(rowBytes || align, align);
  const want = opts.chunk ?? linearCrossEntropyChunk(N, V, gpu.limits.maxStorageBufferBindingSize);
  const C = Math.min(V, Math.ceil(want / q) * q);
  const o = { N, D, V, C, ignoreIndex: ignore, dtype: h.dtype as MatmulDType };

  using owned = targets instanceof Tensor ? null : Tensor.fromArray(gpu, targets, [N], { dtype: "i32" });
  const t = owned ?? (targets as Tensor);
  using stats = Tensor.empty(gpu, [3 * N + 1]);
  const out = Tensor.empty(gpu, []);
  // One [N, C] buffer: each chunk's logits in turn. The last chunk's stay in it for the backward, which walks the
  // chunks from the last one and so recomputes all but that one (none for a single chunk).
  using logits = Tensor.empty(gpu, [N, C]);
  for (let c0 = 0; c0 < V; c0 += C) {
    const n = Math.min(C, V - c0);
    chunkLogits(gpu, h.buffer, w.buffer, logits.buffer, c0, n, o);
    lceChunkStats(gpu, { logits: logits.buffer, targets: t.buffer, stats: stats.buffer }, { rows: N, cols: n, col0: c0, vocab: V, first: c0 === 0, ignoreIndex: ignore });
  }
  lceMean(gpu, { targets: t.buffer, stats: stats.buffer, loss: out.buffer }, { rows: N, vocab: V, ignoreIndex: ignore });
  const last = Math.floor((V - 1) / C) * C;
  /** Whether the saved buffer still holds the last chunk's logits (a backward turns them into dlogits in place). */
  let kept = true;
  return attach(out, {
    op,
    inputs: [h, w],
    save: () => [h, w, t, stats, logits],
    backward: (g, [sh, sw, st, ss, buf], needs) => {
      const [hb, wb] = [sh!.buffer, sw!.buffer];
      const dh32 = needs[0] ? Tensor.empty(gpu, [N, D]) : null;
      const part = needs[0] && C < V ? Tensor.empty(gpu, [N, D]) : null;
      const dw = needs[1] ? Tensor.empty(gpu, [V, D], { dtype: sw!.dtype }) : null;
      const dt = o.dtype;
      for (let c0 = last; c0 >= 0; c0 -= C) {
        const n = Math.min(C, V - c0);
        if (c0 !== last || !kept) chunkLogits(gpu, hb, wb, buf!.buffer, c0, n, o);
        lceChunkGrad(gpu, { logits: buf!.buffer, targets: st!.buffer, stats: ss!.buffer, dloss: g.buffer }, { rows: N, cols: n, col0: c0, vocab: V, ignoreIndex: ignore });
        if (dh32) {
          // dh (+)= dlogits_c [N, n] · w_c [n, D]
          const dst = c0 === last ? dh32 : part!;
          matmulProduct(gpu, { a: buf!.buffer, b: wRows(wb, c0, n, rowBytes), c: dst.buffer }, {
            M: N, N: D, K: n, batch: 1, sharedA: false, sharedB: false, transA: false, transB: false,
            dtypes: { a: "f32", b: dt, c: "f32" }, name: `${op}.grad_h`,
          });
          if (c0 !== last) accumulate(gpu, { src: part!.buffer, dst: dh32.buffer }, { n: N * D });
        }
        if (dw) {
          // dw_c [n, D] = dlogits_cᵀ · h, into its rows of dw
          matmulProduct(gpu, { a: buf!.buffer, b: hb, c: wRows(dw.buffer, c0, n, rowBytes) }, {
            M: n, N: D, K: N, batch: 1, sharedA: false, sharedB: false, transA: true, transB: false,
            dtypes: { a: "f32", b: dt, c: dt }, name: `${op}.grad_w`,
          });
        }
      }
      kept = false; // (retainGraph: a second backward recomputes the last chunk too)
      part?.release();
      let dh = dh32;
      if (dh32 && dt === "f16") {
        dh = Tensor.empty(gpu, [N, D], { dtype: "f16" });
        f32ToF16(gpu, { x32: dh32.buffer, y16: dh.buffer }, { n: N * D });
        dh32.release();
      }
      return [dh, dw];
    },
  });
}

/** Rows c0 .. c0 + n of a [V, D] matrix (rows of `rowBytes`) as a binding, in place. */
function wRows(buffer: Tensor["buffer"], c0: number, n: number, rowBytes: number): Binding {
  return rowBytes === 0 ? buffer : { buffer, offset: c0 * rowBytes, size: n * rowBytes };
}

/** logits [N, n] (f32) = h [N, D] · (rows c0 .. c0 + n of w)ᵀ. */
function chunkLogits(gpu: Gpu, h: Tensor["buffer"], w: Tensor["buffer"], logits: Tensor["buffer"], c0: number, n: number, o: { N: number; D: number; dtype: MatmulDType }): void {
  const rowBytes = o.D * (o.dtype === "f16" ? 2 : 4);
  matmulProduct(gpu, { a: h, b: wRows(w, c0, n, rowBytes), c: logits }, {
    M: o.N, N: n, K: o.D, batch: 1, sharedA: false, sharedB: false, transA: false, transB: true,
    dtypes: { a: o.dtype, b: o.dtype, c: "f32" }, name: "linear_cross_entropy.logits",
  });
}

// ---- masked mean --------------------------------------------------------------------------------------

/** Mean of x [B, T, D] over the positions where mask [B, T] is nonzero → [B, D]; see the module comment. */
export function maskedMean(x: Tensor, mask: Tensor): Tensor {
  const op = "masked_mean";
  const gpu = checkOperands(op, x, mask);
  const [B, T, D] = x.shape as [number, number, number];
  if (x.rank !== 3 || mask.rank !== 2 || mask.shape[0] !== B || mask.shape[1] !== T)
    throw new TensorError(`${op}: x must be [B, T, D] and mask [B, T]; got x ${fmtShape(x.shape)} and mask ${fmtShape(mask.shape)}`);
  if (x.size === 0) {
    const out = Tensor.zeros(gpu, [B, D]); // an empty mean is 0 here, as for an all-zero mask
    return attach(out, { op, inputs: [x], backward: () => [Tensor.zeros(gpu, [B, T, D])] });
  }
  const out = Tensor.empty(gpu, [B, D]);
  /** 1 / (sum of the row's mask), 0 for an empty row; released at the end of this block (the node keeps a view). */
  using inv = Tensor.empty(gpu, [B]);
  maskedMeanForward(gpu, { x: x.buffer, mask: mask.buffer, out: out.buffer, inv: inv.buffer }, { B, T, D });
  return attach(out, {
    op,
    inputs: [x],
    save: () => [mask, inv],
    backward: (gy, [m, iv]) => {
      const dx = Tensor.empty(gpu, [B, T, D]);
      maskedMeanBackward(gpu, { dout: gy.buffer, mask: m!.buffer, inv: iv!.buffer, dx: dx.buffer }, { B, T, D });
      return [dx];
    },
  });
}

// ---- L2 normalization and cosine similarity -----------------------------------------------------------

/** x / max(||x||, eps) over the last axis (F.normalize(x, dim=-1, eps=eps)). Saves x. */
export function l2Normalize(x: Tensor, eps = 1e-12): Tensor {
  const op = "l2_normalize";
  const gpu = checkOperands(op, x);
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new TensorError(`${op}: eps must be finite and >= 0, got ${eps}`);
  const { rows, n } = lastAxisRows(x);
  const out = Tensor.empty(gpu, x.shape);
  l2NormalizeForward(gpu, { x: x.buffer, y: out.buffer }, { rows, n, eps });
  return attach(out, {
    op,
    inputs: [x],
    save: () => [x],
    backward: (g, [sx]) => {
      const dx = Tensor.empty(gpu, sx!.shape);
      l2NormalizeBackward(gpu, { x: sx!.buffer, dy: g.buffer, dx: dx.buffer }, { rows, n, eps });
      return [dx];
    },
  });
}

/**
 * A new [rows, cols] tensor: out[r, c] = sum_k lhs[r * lr + k * lk] * rhs[k * rk + c * rc] over k < depth.
 */
function contract(name: string, lhs: Tensor, rhs: Tensor, rows: number, cols: number, depth: number, s: Omit<ContractOptions, "rows" | "cols" | "depth" | "name">): Tensor {
  const gpu = lhs.gpu;
  if (depth === 0) return Tensor.zeros(gpu, [rows, cols]);
  const out = Tensor.empty(gpu, [rows, cols]);
  contractLaunch(gpu, { lhs: lhs.buffer, rhs: rhs.buffer, out: out.buffer }, { rows, cols, depth, ...s, name });
  return out;
}

/** a [N, D] · b [M, D]ᵀ → [N, M] with gradients to both (the matrix product the cosine matrix needs). */
function dotRows(a: Tensor, b: Tensor): Tensor {
  const op = "cosine_similarity_matrix.dot";
  const [N, D] = a.shape as [number, number];
  const M = b.shape[0]!;
  const out = contract(op, a, b, N, M, D, { lr: D, lk: 1, rk: 1, rc: D });
  return attach(out, {
    op,
    inputs: [a, b],
    save: (needs) => [needs[1] ? a : null, needs[0] ? b : null],
    backward: (g, [sa, sb], needs) => [
      // dA[i, d] = sum_j G[i, j] B[j, d];  dB[j, d] = sum_i G[i, j] A[i, d]
      needs[0] ? contract(`${op}.grad_a`, g, sb!, N, D, M, { lr: M, lk: 1, rk: D, rc: 1 }) : null,
      needs[1] ? contract(`${op}.grad_b`, g, sa!, M, D, N, { lr: 1, lk: M, rk: D, rc: 1 }) : null,
    ],
  });
}

/** Cosine similarity of every row of a [N, D] with every row of b [M, D] → [N, M]. */
export function cosineSimilarityMatrix(a: Tensor, b: Tensor, eps = 1e-12): Tensor {
  const op = "cosine_similarity_matrix";
  checkOperands(op, a, b);
  if (a.rank !== 2 || b.rank !== 2 || a.shape[1] !== b.shape[1])
    throw new TensorError(`${op}: expected a [N, D] and b [M, D]; got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  using an = l2Normalize(a, eps);
  using bn = l2Normalize(b, eps);
  return dotRows(an, bn);
}

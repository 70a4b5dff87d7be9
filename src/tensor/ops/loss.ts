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
import { attach } from "../autograd.ts";
import { fmtShape, TensorError } from "../shape.ts";
import { checkOperands, Tensor } from "../tensor.ts";
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

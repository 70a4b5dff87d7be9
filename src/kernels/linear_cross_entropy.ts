/**
 * Launchers of kernels/linear_cross_entropy.wgsl (with kernels/row_reduce.wgsl and kernels/online_softmax.wgsl
 * appended): the per-chunk steps of a cross-entropy whose logits [rows, vocab] are produced and consumed one chunk
 * of columns at a time (linearCrossEntropy, src/tensor/ops/loss.ts, makes each chunk's logits with the matmul
 * launchers). `stats` is [3 rows + 1]: per row (M, S, x_t) = the running max, the sum of exp(x - M) over the
 * columns seen so far and the target's logit (NaN until its chunk is seen), then the number of kept rows.
 *
 *   lceChunkStats(gpu, { logits, targets, stats }, { rows, cols, col0, vocab, first, ignoreIndex })
 *     logits [rows, cols] = columns col0 .. col0 + cols of the vocabulary: merge the chunk's (max, sum of exp) into
 *     each row's (M, S) (`first`: start them from this chunk), and take x_t from the chunk holding the target.
 *     A NaN or +inf logit makes its row's S NaN (torch's softmax of such a row); M is then unspecified.
 *   lceMean(gpu, { targets, stats, loss }, { rows, vocab, ignoreIndex })
 *     loss [1] = mean over kept rows of (M - x_t) + log(S) (NaN when none is kept, or for a target outside
 *     [0, vocab): its x_t was never taken); stats[3 rows] = kept.
 *   lceChunkGrad(gpu, { logits, targets, stats, dloss }, { rows, cols, col0, vocab, ignoreIndex })
 *     in place: logits[r, k] <- dloss[0] / kept * (exp(x - M) / S - [col0 + k == t]); ignored rows 0 (NaN
 *     throughout when 1 / S is not finite), NaN for a target outside [0, vocab): crossEntropyBackward
 *     (src/kernels/loss.ts) on the chunk's columns.
 * lceChunkStats and lceChunkGrad are row kernels (one workgroup per row, the device's row policy: src/gpu/row_reduce.ts);
 * lceMean is one workgroup. All f32 except the targets (i32); rows * cols < 2^32.
 */
import src from "../../kernels/linear_cross_entropy.wgsl" with { type: "text" };
import { defineKernel, ROW_REDUCE, rowLaunch, type Binding, type Gpu } from "../gpu/index.ts";
import { dispatchRows, ONLINE_SOFTMAX } from "./softmax.ts";

export const LINEAR_CROSS_ENTROPY = defineKernel("kernels/linear_cross_entropy.wgsl", src, [ROW_REDUCE, ONLINE_SOFTMAX]);

export interface LceChunkOptions {
  rows: number;
  /** Columns of this chunk. */
  cols: number;
  /** The chunk's first column. */
  col0: number;
  /** All columns (the vocabulary). */
  vocab: number;
  /** Rows whose target equals this are left out of the mean and get zero gradient. */
  ignoreIndex: number;
}

/** Merge one chunk's statistics into `stats` (see the module comment). Needs cols >= 1. */
export function lceChunkStats(gpu: Gpu, io: { logits: Binding; targets: Binding; stats: Binding }, o: LceChunkOptions & { first: boolean }): void {
  dispatchRows(gpu, LINEAR_CROSS_ENTROPY, "lce_stats", { a: io.logits, targets: io.targets, stats: io.stats }, o.rows, o.cols, {
    name: "linear_cross_entropy.stats",
    params: { col0: o.col0, v: o.vocab, first: o.first ? 1 : 0, ignore: o.ignoreIndex, nan: Number.NaN },
  });
}

/** The mean loss over kept rows from the final statistics, and their count (see the module comment). Needs rows >= 1. */
export function lceMean(gpu: Gpu, io: { targets: Binding; stats: Binding; loss: Binding }, o: { rows: number; vocab: number; ignoreIndex: number }): void {
  gpu.dispatch(LINEAR_CROSS_ENTROPY, "lce_mean", { targets: io.targets, stats: io.stats, out: io.loss }, 1, {
    params: { ...LINEAR_CROSS_ENTROPY.zeroParams, rows: o.rows, v: o.vocab, gx: 1, ignore: o.ignoreIndex, nan: Number.NaN },
    ...rowLaunch(gpu),
    name: "linear_cross_entropy.mean",
  });
}

/** Turn one chunk's logits into its dlogits, in place (see the module comment). */
export function lceChunkGrad(gpu: Gpu, io: { logits: Binding; targets: Binding; stats: Binding; dloss: Binding }, o: LceChunkOptions): void {
  dispatchRows(gpu, LINEAR_CROSS_ENTROPY, "lce_grad", { x: io.logits, targets: io.targets, st: io.stats, gout: io.dloss }, o.rows, o.cols, {
    name: "linear_cross_entropy.grad",
    params: { col0: o.col0, v: o.vocab, ignore: o.ignoreIndex, nan: Number.NaN },
  });
}

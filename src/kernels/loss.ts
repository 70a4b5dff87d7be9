/**
 * Launchers of AlignX's loss kernels: kernels/loss.wgsl (cross-entropy, fused with log-softmax, as row
 * kernels with kernels/row_reduce.wgsl and kernels/online_softmax.wgsl appended; masked mean; `contract`)
 * and, for l2_normalize, the generic row kernel row_sum_map of kernels/softmax.wgsl (src/kernels/softmax.ts).
 *
 *   crossEntropyForward(gpu, { logits, targets, loss, stats }, { rows, classes, ignoreIndex })
 *     logits [rows, classes] f32, targets [rows] i32. Per row r with target t, m = max, s = sum(exp(x - m)):
 *     l_r = (m - x[t]) + log(s) (0 for t == ignoreIndex, NaN for t outside [0, classes));
 *     loss [1] = sum of l_r over kept rows / kept (NaN when none is kept); stats [2 rows + 1] = (m, s) per
 *     row, then kept: what the backward reads. The per-row losses are scratch, allocated and released here.
 *   crossEntropyBackward(gpu, { logits, targets, stats, dloss, dlogits }, { rows, classes, ignoreIndex })
 *     dlogits[r, i] = dloss[0] / kept * (exp(x - m) / s - [i == t]); 0 for ignored rows, NaN for invalid targets.
 *   maskedMeanForward(gpu, { x, mask, out, inv }, { B, T, D })
 *     out[b, d] = sum_t mask[b,t] x[b,t,d] / sum_t mask[b,t] over mask != 0 (0 for an all-zero row) for
 *     x [B, T, D], mask [B, T], out [B, D]; inv [B] = 1 / sum_t mask[b,t] (0 for an empty row)
 *   maskedMeanBackward(gpu, { dout, mask, inv, dx }, { B, T, D })      dx[b,t,d] = dout[b,d] mask[b,t] inv[b]
 *   l2NormalizeForward(gpu, { x, y }, { rows, n, eps })                y = x / max(||x||, eps) per row of n
 *   l2NormalizeBackward(gpu, { x, dy, dx }, { rows, n, eps })
 *     with ||x|| = r, d = max(r, eps): dx = (dy - x (dy · x) / r^2) / d when r >= eps (PyTorch's clamp_min
 *     passes the gradient at r == eps), else dy / eps
 *   contract(gpu, { lhs, rhs, out }, { rows, cols, depth, lr, lk, rk, rc, name })
 *     out [rows, cols] = sum_k lhs[r * lr + k * lk] * rhs[k * rk + c * rc] over k < depth: the small strided
 *     product of the cosine-similarity matrix and its gradients (sentence batches, not LLM-sized matmuls)
 * All f32 except the targets; sizes < 2^32 elements.
 */
import lossSrc from "../../kernels/loss.wgsl" with { type: "text" };
import { defineKernel, grid1d, ROW_REDUCE, rowLaunch, type Binding, type Gpu } from "../gpu/index.ts";
import { dispatchRows, ONLINE_SOFTMAX, rowSumMap, type RowSumMap } from "./softmax.ts";

export const LOSS = defineKernel("kernels/loss.wgsl", lossSrc, [ROW_REDUCE, ONLINE_SOFTMAX]);

/** kernels/loss.wgsl's params with the fields an entry does not read set to 0. */
function lossParams(p: Record<string, number>): Record<string, number> {
  return { ...LOSS.zeroParams, ...p };
}

// ---- cross-entropy ------------------------------------------------------------------------------------

export interface CrossEntropyLaunchOptions {
  rows: number;
  classes: number;
  /** Rows whose target equals this are left out of the mean and get zero gradient. */
  ignoreIndex: number;
}

/** Record the mean cross-entropy and the statistics its backward reads (see the module comment). Needs rows >= 1. */
export function crossEntropyForward(gpu: Gpu, io: { logits: Binding; targets: Binding; loss: Binding; stats: Binding }, o: CrossEntropyLaunchOptions): void {
  const { rows, classes: n, ignoreIndex: ignore } = o;
  const rowloss = gpu.alloc(rows * 4, "tensor");
  dispatchRows(gpu, LOSS, "ce_fwd", { a: io.logits, targets: io.targets, rowloss, stats: io.stats }, rows, n, {
    name: "cross_entropy",
    params: { ignore, nan: Number.NaN },
  });
  // One workgroup: the mean over kept rows, and their count for the backward.
  gpu.dispatch(LOSS, "ce_mean", { targets: io.targets, rowloss, out: io.loss, stats: io.stats }, 1, {
    params: lossParams({ rows, n, gx: 1, ignore, nan: Number.NaN }),
    ...rowLaunch(gpu),
    name: "cross_entropy.mean",
  });
  gpu.release(rowloss);
}

/** Record dlogits from the forward's statistics and the loss gradient dloss [1] (see the module comment). */
export function crossEntropyBackward(
  gpu: Gpu,
  io: { logits: Binding; targets: Binding; stats: Binding; dloss: Binding; dlogits: Binding },
  o: CrossEntropyLaunchOptions,
): void {
  dispatchRows(gpu, LOSS, "ce_bwd", { a: io.logits, gout: io.dloss, targets: io.targets, stats: io.stats, out: io.dlogits }, o.rows, o.classes, {
    name: "cross_entropy.backward",
    params: { ignore: o.ignoreIndex, nan: Number.NaN },
  });
}

// ---- masked mean --------------------------------------------------------------------------------------

/** Record out [B, D] and inv [B] (see the module comment). Needs B * T * D >= 1. */
export function maskedMeanForward(gpu: Gpu, io: { x: Binding; mask: Binding; out: Binding; inv: Binding }, o: { B: number; T: number; D: number }): void {
  const g = grid1d(gpu, o.B * o.D);
  gpu.dispatch(LOSS, "masked_mean_fwd", { x_in: io.x, mask: io.mask, out: io.out, inv: io.inv }, g.workgroups, {
    params: lossParams({ b: o.B, t: o.T, d: o.D, row: g.row }),
    name: "masked_mean",
  });
}

/** Record dx [B, T, D] (see the module comment). */
export function maskedMeanBackward(gpu: Gpu, io: { dout: Binding; mask: Binding; inv: Binding; dx: Binding }, o: { B: number; T: number; D: number }): void {
  const g = grid1d(gpu, o.B * o.T * o.D);
  gpu.dispatch(LOSS, "masked_mean_bwd", { gout: io.dout, mask: io.mask, inv: io.inv, out: io.dx }, g.workgroups, {
    params: lossParams({ b: o.B, t: o.T, d: o.D, row: g.row }),
    name: "masked_mean.backward",
  });
}

// ---- L2 normalization ---------------------------------------------------------------------------------

// With n = ||x|| (s.x = n^2) and d = max(n, eps): y = x / d; dx = (g - x (g.x) / n^2) / d when n >= eps
// (PyTorch's clamp_min passes the gradient at n == eps), else g / eps. d is NaN when n is (clamp_min keeps a NaN:
// nan_max, kernels/nan.wgsl), so a NaN in a row makes the whole row NaN, as F.normalize.
const L2_FORWARD: RowSumMap = { load: "let x = a[i];", term: "vec2f(x * x, 0.0)", map: "x / nan_max(sqrt(s.x), p.eps)" };
const L2_BACKWARD: RowSumMap = {
  load: "let x = a[i]; let g = b[i];",
  term: "vec2f(x * x, g * x)",
  map: "(g - x * select(0.0, s.y / s.x, sqrt(s.x) >= p.eps)) / nan_max(sqrt(s.x), p.eps)",
};

/** Record y = x / max(||x||, eps) per row of n. */
export function l2NormalizeForward(gpu: Gpu, io: { x: Binding; y: Binding }, o: { rows: number; n: number; eps: number }): void {
  rowSumMap(gpu, { a: io.x, out: io.y }, { rows: o.rows, n: o.n, def: L2_FORWARD, eps: o.eps, name: "l2_normalize" });
}

/** Record dx from x and dy (see the module comment). */
export function l2NormalizeBackward(gpu: Gpu, io: { x: Binding; dy: Binding; dx: Binding }, o: { rows: number; n: number; eps: number }): void {
  rowSumMap(gpu, { a: io.x, b: io.dy, out: io.dx }, { rows: o.rows, n: o.n, def: L2_BACKWARD, eps: o.eps, name: "l2_normalize.backward" });
}

// ---- contract -----------------------------------------------------------------------------------------

export interface ContractOptions {
  rows: number;
  cols: number;
  depth: number;
  /** Strides: lhs[r * lr + k * lk], rhs[k * rk + c * rc]. */
  lr: number;
  lk: number;
  rk: number;
  rc: number;
  name: string;
}

/** Record out [rows, cols] = sum_k lhs[r * lr + k * lk] * rhs[k * rk + c * rc] (nothing for an empty out). */
export function contract(gpu: Gpu, io: { lhs: Binding; rhs: Binding; out: Binding }, o: ContractOptions): void {
  const { rows, cols, depth, lr, lk, rk, rc } = o;
  if (rows * cols === 0) return;
  const g = grid1d(gpu, rows * cols);
  gpu.dispatch(LOSS, "contract", { lhs: io.lhs, rhs: io.rhs, out: io.out }, g.workgroups, {
    params: lossParams({ rows, cols, depth, lr, lk, rk, rc, row: g.row }),
    name: o.name,
  });
}

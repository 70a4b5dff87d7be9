/**
 * Launchers of kernels/norm.wgsl (with the row-reduction library kernels/row_reduce.wgsl appended):
 * normalization over the last dimension, x viewed as [rows, d], weight w and bias b [d], all f32.
 *
 *   normForward     y = xhat * W + B with xhat = (x - mean) * rstd, rstd = 1 / sqrt(mean_j (x - mean)^2 + eps);
 *                   mean = mean_j x for layernorm, 0 for rmsnorm; W = w, or 1 + w with `unitOffset` (Gemma);
 *                   B = b, or 0 without a bias. Writes y [rows, d] and stats [rows, 2] = (mean, rstd) per row.
 *   addRmsnormForward  sum = x + res [rows, d], then normForward of sum (rmsnorm only, no bias): one dispatch
 *                   writing sum, y and stats (the residual add that feeds a RMSNorm, src/tensor/ops/norm.ts
 *                   addRmsnorm); its backward is normDx / normParamGrads of sum.
 *   normDx          dx [rows, d] = rstd * (gw - [layernorm] mean_j gw - xhat * mean_j (gw * xhat)), gw = gout * W,
 *                   from x, w, gout and the forward's stats (no reduction over x is recomputed); with
 *                   `accumulate`, dx += that instead (one more load per element: autograd adding into a gradient
 *                   the input already has, src/tensor/ops/norm.ts).
 *   normParamGrads  dw [d] = sum over rows of gout * xhat, db [d] = sum over rows of gout: partial sums over
 *                   chunks of rows (norm_dparams_partial), then each parameter's chunks summed in a fixed
 *                   order (norm_dparams_sum); deterministic, no atomics. Chunking: the device's `policy.norm`
 *                   (src/gpu/policy.ts); with a single chunk and no bias the partial pass writes dw directly.
 *
 * The row kernels (forward, dx) run one workgroup per row, their width and reduction chosen per device by
 * `rowLaunch` (`policy.rows`, src/gpu/row_reduce.ts), and move rows in vec4s when d % 4 == 0 (`vec4Units`: 4x fewer
 * loads, what CPU drivers pay for); the parameter passes one invocation per element, in f32.
 * Limits: rows * d < 2^32 (checked by the op).
 */
import normSrc from "../../kernels/norm.wgsl" with { type: "text" };
import { defineKernel, GpuError, grid1d, ROW_REDUCE, rowGrid, rowLaunch, vec4Units, type Binding, type Gpu } from "../gpu/index.ts";

export const NORM = defineKernel("kernels/norm.wgsl", normSrc, [ROW_REDUCE]);

/** rmsnorm: no centering (HF LlamaRMSNorm); layernorm: centered (torch.nn.LayerNorm). */
export type NormKind = "rmsnorm" | "layernorm";

export interface NormOptions {
  /** Rows (every leading dimension folded) and the normalized length; rows * d < 2^32. */
  rows: number;
  d: number;
  /** Added to the mean square before the rsqrt. */
  eps: number;
  kind: NormKind;
  /** Gemma's RMSNorm: the weight applied as (1 + w). Default false. */
  unitOffset?: boolean;
  /** Whether there is a bias b (layernorm): the forward then reads io.b, and normParamGrads sums db too. */
  bias: boolean;
}

/**
 * The specialization every norm.wgsl entry of one op shares (placeholders, CENTER, and the row reduction); `rowUnits`:
 * a row entry's, which also moves rows in `vec4Units(d)` (VT, VEC).
 */
function specialize(gpu: Gpu, o: NormOptions, rowUnits = false) {
  const { defines, constants } = rowLaunch(gpu, {
    defines: { W: o.unitOffset ? "(1.0 + w[j])" : "w[j]", B: o.bias ? "b[j]" : "0.0", ...(rowUnits ? vec4Units(o.d).defines : {}) },
    constants: { CENTER: o.kind === "layernorm" ? 1 : 0 },
  });
  return { defines, constants, params: { rows: o.rows, d: o.d, eps: o.eps, gx: 0, row: 0, chunk: 0, chunks: 0, np: o.bias ? 2 : 1, base: 0 } };
}

/** y [rows, d] and stats [rows, 2] = (mean, rstd) from x [rows, d], w [d] and, with o.bias, b [d]. */
export function normForward(gpu: Gpu, io: { x: Binding; w: Binding; b?: Binding; y: Binding; stats: Binding }, o: NormOptions): void {
  if (o.bias !== (io.b !== undefined)) throw new GpuError(`normForward: bias ${o.bias} but ${io.b ? "a" : "no"} bias buffer`);
  if (o.rows === 0) return;
  const { defines, constants, params } = specialize(gpu, o, true);
  const bind: Record<string, Binding> = { x: io.x, w: io.w, y: io.y, stats_out: io.stats };
  if (io.b) bind.b = io.b;
  const grid = rowGrid(gpu, o.rows);
  gpu.dispatch(NORM, "norm_forward", bind, grid.workgroups, { params: { ...params, gx: grid.gx }, defines, constants, name: o.kind });
}

/** sum = x + res [rows, d], and y [rows, d], stats [rows, 2] as normForward of sum; rmsnorm without a bias only. */
export function addRmsnormForward(gpu: Gpu, io: { x: Binding; res: Binding; w: Binding; sum: Binding; y: Binding; stats: Binding }, o: NormOptions): void {
  if (o.kind !== "rmsnorm" || o.bias) throw new GpuError(`addRmsnormForward: rmsnorm without a bias only, got ${o.kind}${o.bias ? " with a bias" : ""}`);
  if (o.rows === 0) return;
  const { defines, constants, params } = specialize(gpu, o, true);
  const grid = rowGrid(gpu, o.rows);
  gpu.dispatch(NORM, "add_rmsnorm_forward", { x: io.x, res: io.res, w: io.w, sum_out: io.sum, y: io.y, stats_out: io.stats }, grid.workgroups, {
    params: { ...params, gx: grid.gx },
    defines,
    constants,
    name: "add_rmsnorm",
  });
}

/**
 * dx [rows, d] from x [rows, d], w [d], the upstream gradient gout [rows, d] and the forward's stats [rows, 2];
 * `accumulate`: dx += it (dx distinct from the other buffers).
 */
export function normDx(gpu: Gpu, io: { x: Binding; w: Binding; gout: Binding; stats: Binding; dx: Binding }, o: NormOptions, accumulate = false): void {
  if (o.rows === 0) return;
  const { defines: base, constants, params } = specialize(gpu, o, true);
  const defines = accumulate ? { ...base, DX_ADD: "dx[base + j] + v" } : base;
  const grid = rowGrid(gpu, o.rows);
  gpu.dispatch(NORM, "norm_dx", { x: io.x, w: io.w, gout: io.gout, stats: io.stats, dx: io.dx }, grid.workgroups, {
    params: { ...params, gx: grid.gx },
    defines,
    constants,
    name: `${o.kind}.dx`,
  });
}

/**
 * dw [d] (when io.dw is given) and db [d] (when io.db is given; needs o.bias) from x [rows, d], gout [rows, d]
 * and stats [rows, 2]. rows > 0. Allocates the chunks' partial sums itself and releases them after recording.
 */
export function normParamGrads(gpu: Gpu, io: { x: Binding; gout: Binding; stats: Binding; dw?: Binding; db?: Binding }, o: NormOptions): void {
  if (io.db && !o.bias) throw new GpuError("normParamGrads: db asked for without a bias");
  const { defines, constants, params } = specialize(gpu, o);
  const { rows, d } = o;
  const np = params.np;
  const lim = gpu.policy.norm;
  const chunk = rows <= lim.singlePassRows ? rows : Math.max(lim.minChunk, Math.ceil(rows / lim.maxChunks));
  const chunks = Math.ceil(rows / chunk);
  // One chunk and no bias: the partial sums [1, 1, d] are dweight itself.
  const direct = chunks === 1 && np === 1;
  if (direct && !io.dw) return;
  const part = direct ? null : gpu.alloc(chunks * np * d * 4, "norm.part");
  const p1 = grid1d(gpu, chunks * d);
  gpu.dispatch(NORM, "norm_dparams_partial", { x: io.x, gout: io.gout, stats: io.stats, part_out: part ?? io.dw! }, p1.workgroups, {
    params: { ...params, row: p1.row, chunk, chunks },
    defines,
    constants,
    name: `${o.kind}.dparams`,
  });
  if (!part) return;
  const p2 = grid1d(gpu, d);
  for (const [which, dst] of [[0, io.dw], [1, io.db]] as const)
    if (dst)
      gpu.dispatch(NORM, "norm_dparams_sum", { part, dst }, p2.workgroups, {
        params: { ...params, row: p2.row, chunks, base: which * d },
        defines,
        constants,
        name: `${o.kind}.dparams_sum`,
      });
  gpu.release(part);
}

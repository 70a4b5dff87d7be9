/**
 * Launchers of the row kernels in kernels/softmax.wgsl (with kernels/row_reduce.wgsl and the WGSL library
 * kernels/online_softmax.wgsl appended, which kernels/loss.wgsl's cross-entropy appends too). One workgroup
 * per row of `rows` contiguous rows of `n` f32 (the last axis), so a row may have any length. With m the
 * row's max and s = sum(exp(x - m)) (one online read pass):
 *
 *   softmaxForward(gpu, { x, y }, { rows, n, kind })
 *     softmax      y = exp(x - m) / s             log_softmax  y = (x - m) - log(s)
 *   softmaxBackward(gpu, { y, dy, dx }, { rows, n, kind })     (from the forward's output y)
 *     softmax      dx = y * (dy - sum(dy * y))    log_softmax  dx = dy - exp(y) * sum(dy)
 *   attentionSoftmaxForward(gpu, { scores, mask?, probs }, { rows, n, scale, causal, batchRows })
 *     row r = query i = r % n against keys 0 .. n - 1: probs = softmax of scale * scores over the visible
 *     keys (j <= i if causal, and mask[r / batchRows, j] != 0 with a mask [rows / batchRows, n]), 0 for the
 *     others and for rows with none (the unfused attention of src/tensor/ops/attention.ts)
 *   attentionSoftmaxBackward(gpu, { probs, dprobs, dscores }, { rows, n, scale })
 *     dscores = scale * probs * (dprobs - sum(dprobs * probs)), 0 at the masked keys since probs is
 *   rowSumMap(gpu, { a, b?, out }, { rows, n, def, eps, name })
 *     the generic "reduce the row, then map it" (entry row_sum_map) the backwards and l2_normalize
 *     (src/kernels/loss.ts) are made of: out[i] = def.map(a[i], b[i], sum over the row of def.term)
 *
 * The workgroup size and reduction (tree or subgroup) are the device's row policy (src/gpu/row_reduce.ts).
 */
import onlineSoftmaxSrc from "../../kernels/online_softmax.wgsl" with { type: "text" };
import softmaxSrc from "../../kernels/softmax.wgsl" with { type: "text" };
import { defineKernel, defineLibrary, ROW_REDUCE, rowGrid, rowLaunch, type Binding, type Gpu, type KernelSource } from "../gpu/index.ts";

/** Online (max, sum of exp) pairs of a row: a library appended after ROW_REDUCE (kernels/online_softmax.wgsl). */
export const ONLINE_SOFTMAX = defineLibrary("kernels/online_softmax.wgsl", onlineSoftmaxSrc);
export const SOFTMAX = defineKernel("kernels/softmax.wgsl", softmaxSrc, [ROW_REDUCE, ONLINE_SOFTMAX]);

/**
 * Record one dispatch of a row kernel of `kernel` (an entry reducing with kernels/row_reduce.wgsl): one
 * workgroup per row, `rows`, `n` and `gx` set in its params over the kernel's zeroParams; nothing for 0 rows.
 */
export function dispatchRows(
  gpu: Gpu,
  kernel: KernelSource,
  entry: string,
  bindings: Record<string, Binding>,
  rows: number,
  n: number,
  o: { name: string; defines?: Record<string, string>; params?: Record<string, number> },
): void {
  if (rows === 0) return;
  const g = rowGrid(gpu, rows);
  gpu.dispatch(kernel, entry, bindings, g.workgroups, {
    params: { ...kernel.zeroParams, rows, n, gx: g.gx, ...o.params },
    ...rowLaunch(gpu, { defines: o.defines }),
    name: o.name,
  });
}

/**
 * "Reduce the row, then map it" (entry row_sum_map): in WGSL, `load` declares per-element values from `a`
 * and `b` at index i (`let y = a[i]; let g = b[i];`), `term` is a vec2f summed over the row into `s`, and
 * `map` is the output element, in those values, `s` and `p.eps`.
 */
export interface RowSumMap {
  load: string;
  term: string;
  map: string;
}

/** Record row_sum_map over `rows` rows of `n`: out (shaped like a) from a and, when given, b (same shape). */
export function rowSumMap(gpu: Gpu, io: { a: Binding; b?: Binding; out: Binding }, o: { rows: number; n: number; def: RowSumMap; eps?: number; name: string }): void {
  const bindings: Record<string, Binding> = { a: io.a, out: io.out };
  if (io.b) bindings.b = io.b;
  dispatchRows(gpu, SOFTMAX, "row_sum_map", bindings, o.rows, o.n, {
    name: o.name,
    params: { eps: o.eps ?? 0 },
    defines: { LOAD: o.def.load, TERM: o.def.term, MAP: o.def.map },
  });
}

export type SoftmaxKind = "softmax" | "log_softmax";

const SOFTMAX_DEFS = {
  softmax: {
    out: "exp(x - m) / s",
    backward: { load: "let y = a[i]; let g = b[i];", term: "vec2f(g * y, 0.0)", map: "y * (g - s.x)" },
  },
  log_softmax: {
    out: "(x - m) - log(s)",
    backward: { load: "let y = a[i]; let g = b[i];", term: "vec2f(g, 0.0)", map: "g - exp(y) * s.x" },
  },
} satisfies Record<SoftmaxKind, { out: string; backward: RowSumMap }>;

/** Record y = softmax(x) or log_softmax(x) over rows of n (see the module comment). */
export function softmaxForward(gpu: Gpu, io: { x: Binding; y: Binding }, o: { rows: number; n: number; kind: SoftmaxKind }): void {
  dispatchRows(gpu, SOFTMAX, "softmax_fwd", { a: io.x, out: io.y }, o.rows, o.n, { name: o.kind, defines: { OUT: SOFTMAX_DEFS[o.kind].out } });
}

/** Record dx from the forward's output y and the output gradient dy (see the module comment). */
export function softmaxBackward(gpu: Gpu, io: { y: Binding; dy: Binding; dx: Binding }, o: { rows: number; n: number; kind: SoftmaxKind }): void {
  rowSumMap(gpu, { a: io.y, b: io.dy, out: io.dx }, { rows: o.rows, n: o.n, def: SOFTMAX_DEFS[o.kind].backward, name: `${o.kind}.backward` });
}

export interface AttentionSoftmaxOptions {
  rows: number;
  /** Keys per row; also the queries per batch element's head (row r is query r % n). */
  n: number;
  scale: number;
  causal: boolean;
  /** Rows per batch element: row r reads mask row r / batchRows. */
  batchRows: number;
}

/** Record the attention probabilities from raw scores (see the module comment). */
export function attentionSoftmaxForward(gpu: Gpu, io: { scores: Binding; mask?: Binding; probs: Binding }, o: AttentionSoftmaxOptions): void {
  dispatchRows(gpu, SOFTMAX, "attn_softmax", { a: io.scores, b: io.mask ?? io.scores, out: io.probs }, o.rows, o.n, {
    name: "attention.softmax",
    params: { eps: 0, scale: o.scale, causal: o.causal ? 1 : 0, has_mask: io.mask ? 1 : 0, batch_rows: o.batchRows },
  });
}

/** Record dscores = scale * probs * (dprobs - sum(dprobs * probs)) (see the module comment). */
export function attentionSoftmaxBackward(gpu: Gpu, io: { probs: Binding; dprobs: Binding; dscores: Binding }, o: { rows: number; n: number; scale: number }): void {
  rowSumMap(gpu, { a: io.probs, b: io.dprobs, out: io.dscores }, {
    rows: o.rows,
    n: o.n,
    def: { ...SOFTMAX_DEFS.softmax.backward, map: "p.eps * y * (g - s.x)" },
    eps: o.scale,
    name: "attention.softmax.backward",
  });
}

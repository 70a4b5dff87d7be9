/**
 * softmax and log_softmax over the last axis, and the row-kernel plumbing they share with the losses
 * (src/tensor/ops/loss.ts: cross-entropy, l2_normalize). Kernels: kernels/softmax.wgsl, one workgroup per
 * row of the last axis, so a row may have any length.
 *
 * Both forwards are max-subtracted (stable for large logits) and read their row once for the max and the sum
 * of exponentials together (online softmax), then once more to write. Both save only their OUTPUT:
 *   softmax      y = exp(x - m) / s             dx = y * (g - sum(g * y))
 *   log_softmax  y = (x - m) - log(s)           dx = g - exp(y) * sum(g)
 * where m is the row's max and s = sum(exp(x - m)).
 */
import softmaxSrc from "../../../kernels/softmax.wgsl" with { type: "text" };
import { defineKernel, ROW_REDUCE, rowLaunch, type Binding, type Gpu } from "../../gpu/index.ts";
import { attach } from "../autograd.ts";
import { rowGrid } from "../../gpu/grid.ts";
import { checkOperands, Tensor } from "../tensor.ts";

export const SOFTMAX = defineKernel("kernels/softmax.wgsl", softmaxSrc, [ROW_REDUCE]);


/** The last axis as rows: `rows` rows of `n` elements (a 0-d tensor is one row of one). */
export function lastAxisRows(x: Tensor): { rows: number; n: number } {
  const n = x.rank ? x.shape[x.rank - 1]! : 1;
  return { rows: n === 0 ? 0 : x.size / n, n };
}

export interface RowLaunchOptions {
  name: string;
  defines?: Record<string, string>;
  /** ce_* kernels: the target value that marks an ignored row. */
  ignore?: number;
  /** row_sum_map expressions may read it as `p.eps`. */
  eps?: number;
  /** Further fields of the kernels' params (attn_softmax's). */
  params?: Record<string, number>;
}

/** Record one dispatch of a kernels/softmax.wgsl entry: one workgroup per row (nothing for 0 rows). */
export function dispatchRows(gpu: Gpu, entry: string, bindings: Record<string, Binding>, rows: number, n: number, o: RowLaunchOptions): void {
  if (rows === 0) return;
  const g = rowGrid(gpu, rows);
  gpu.dispatch(SOFTMAX, entry, bindings, g.workgroups, {
    params: { ...SOFTMAX.zeroParams, rows, n, gx: g.gx, ignore: o.ignore ?? 0, eps: o.eps ?? 0, nan: Number.NaN, ...o.params },
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

/** A new tensor shaped like `a`: row_sum_map over its last axis, with `b` (same shape) bound alongside. */
export function rowSumMap(name: string, def: RowSumMap, a: Tensor, b: Tensor | null, eps = 0): Tensor {
  const out = Tensor.empty(a.gpu, a.shape);
  const { rows, n } = lastAxisRows(a);
  const bindings: Record<string, Binding> = { a: a.buffer, out: out.buffer };
  if (b) bindings.b = b.buffer;
  dispatchRows(a.gpu, "row_sum_map", bindings, rows, n, { name, eps, defines: { LOAD: def.load, TERM: def.term, MAP: def.map } });
  return out;
}

const SOFTMAX_OPS = {
  softmax: {
    out: "exp(x - m) / s",
    backward: { load: "let y = a[i]; let g = b[i];", term: "vec2f(g * y, 0.0)", map: "y * (g - s.x)" },
  },
  log_softmax: {
    out: "(x - m) - log(s)",
    backward: { load: "let y = a[i]; let g = b[i];", term: "vec2f(g, 0.0)", map: "g - exp(y) * s.x" },
  },
} satisfies Record<string, { out: string; backward: RowSumMap }>;

function rowSoftmax(op: keyof typeof SOFTMAX_OPS, x: Tensor): Tensor {
  const gpu = checkOperands(op, x);
  const def = SOFTMAX_OPS[op];
  const out = Tensor.empty(gpu, x.shape);
  const { rows, n } = lastAxisRows(x);
  dispatchRows(gpu, "softmax_fwd", { a: x.buffer, out: out.buffer }, rows, n, { name: op, defines: { OUT: def.out } });
  return attach(out, {
    op,
    inputs: [x],
    save: () => [out],
    backward: (g, [y]) => [rowSumMap(`${op}.backward`, def.backward, y!, g)],
  });
}

/** softmax over the last axis (F.softmax(x, dim=-1)). */
export const softmax = (x: Tensor): Tensor => rowSoftmax("softmax", x);

/** log(softmax(x)) over the last axis, computed directly as (x - max) - log(sum(exp(x - max))). */
export const logSoftmax = (x: Tensor): Tensor => rowSoftmax("log_softmax", x);

export interface AttentionSoftmaxOptions {
  scale: number;
  causal: boolean;
  /** f32 [batch, n]: 1 keep, 0 pad; rows r / batchRows belong to batch element r / batchRows. */
  keyPaddingMask?: Tensor;
  batchRows: number;
}

/**
 * Attention probabilities from raw scores [..., n] (row r = query r % n against keys 0 .. n - 1): softmax of
 * scale * scores over the visible keys (causal, key padding), 0 for the others and for rows with none. The
 * backward is scale * y * (g - sum(g * y)), which is 0 at the masked keys since y is.
 */
export function attentionSoftmax(scores: Tensor, o: AttentionSoftmaxOptions): Tensor {
  const gpu = checkOperands("attention.softmax", scores, ...(o.keyPaddingMask ? [o.keyPaddingMask] : []));
  const out = Tensor.empty(gpu, scores.shape);
  const { rows, n } = lastAxisRows(scores);
  const mask = o.keyPaddingMask;
  dispatchRows(gpu, "attn_softmax", { a: scores.buffer, b: (mask ?? scores).buffer, out: out.buffer }, rows, n, {
    name: "attention.softmax",
    params: { scale: o.scale, causal: o.causal ? 1 : 0, has_mask: mask ? 1 : 0, batch_rows: o.batchRows },
  });
  const scale = o.scale;
  return attach(out, {
    op: "attention.softmax",
    inputs: [scores],
    save: () => [out],
    backward: (g, [y]) => [rowSumMap("attention.softmax.backward", { ...SOFTMAX_OPS.softmax.backward, map: "p.eps * y * (g - s.x)" }, y!, g, scale)],
  });
}

/**
 * softmax and log_softmax over the last axis, and the attention probabilities of the unfused attention
 * (src/tensor/ops/attention.ts). Launchers: src/kernels/softmax.ts (row kernels: one workgroup per row of
 * the last axis, so a row may have any length).
 *
 * Both forwards are max-subtracted (stable for large logits) and read their row once for the max and the sum
 * of exponentials together (online softmax), then once more to write. Both save only their OUTPUT:
 *   softmax      y = exp(x - m) / s             dx = y * (g - sum(g * y))
 *   log_softmax  y = (x - m) - log(s)           dx = g - exp(y) * sum(g)
 * where m is the row's max and s = sum(exp(x - m)).
 */
import { attentionSoftmaxBackward, attentionSoftmaxForward, softmaxBackward, softmaxForward, type SoftmaxKind } from "../../kernels/softmax.ts";
import { attach } from "../autograd.ts";
import { checkOperands, Tensor } from "../tensor.ts";

/** The last axis as rows: `rows` rows of `n` elements (a 0-d tensor is one row of one). */
export function lastAxisRows(x: Tensor): { rows: number; n: number } {
  const n = x.rank ? x.shape[x.rank - 1]! : 1;
  return { rows: n === 0 ? 0 : x.size / n, n };
}

function rowSoftmax(op: SoftmaxKind, x: Tensor): Tensor {
  const gpu = checkOperands(op, x);
  const out = Tensor.empty(gpu, x.shape);
  const { rows, n } = lastAxisRows(x);
  softmaxForward(gpu, { x: x.buffer, y: out.buffer }, { rows, n, kind: op });
  return attach(out, {
    op,
    inputs: [x],
    save: () => [out],
    backward: (g, [y]) => {
      const dx = Tensor.empty(gpu, y!.shape);
      softmaxBackward(gpu, { y: y!.buffer, dy: g.buffer, dx: dx.buffer }, { rows, n, kind: op });
      return [dx];
    },
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
  attentionSoftmaxForward(gpu, { scores: scores.buffer, mask: mask?.buffer, probs: out.buffer }, { rows, n, scale: o.scale, causal: o.causal, batchRows: o.batchRows });
  const scale = o.scale;
  return attach(out, {
    op: "attention.softmax",
    inputs: [scores],
    save: () => [out],
    backward: (g, [y]) => {
      const dx = Tensor.empty(gpu, y!.shape);
      attentionSoftmaxBackward(gpu, { probs: y!.buffer, dprobs: g.buffer, dscores: dx.buffer }, { rows, n, scale });
      return [dx];
    },
  });
}

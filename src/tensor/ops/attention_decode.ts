/**
 * Decode attention: a few new queries against a key/value cache. Forward only, for generation under
 * noGrad(); the training path is `attention` (src/tensor/ops/attention.ts). Launchers:
 * src/kernels/attention_decode.ts.
 *
 *   attentionDecode(q [B, Hq, Tq, Dh], k [B, Hkv, S, Dh], v [B, Hkv, S, Dh],
 *                   { keyLength = S, offset = keyLength - Tq, causal = true, keyPaddingMask, scale })
 *     → out [B, Hq, Tq, Dh]
 *
 * The queries sit at cache slots offset .. offset+Tq-1; the first `keyLength` (Tk) rows of each k/v head are
 * the valid keys (a cache allocated for S >= Tk slots is passed as it is: no copy). Query i sees key j when
 * j < Tk, j <= offset + i (causal), and keyPaddingMask[b, j] != 0 (f32 [B, M] with M >= Tk, HF's
 * attention_mask over the cache slots: 1 keep, 0 pad). Grouped-query heads as in `attention`: head h reads
 * kv head floor(h / (Hq / Hkv)). Equal to `attention` on the visible keys; a query row that sees no key
 * gives 0.
 *
 * Performance: one workgroup per (kv head, block of query rows) reads that head's keys once for all the
 * Hq / Hkv query heads sharing it; the keys are split over up to `splits` workgroups (flash-decoding) when
 * B * Hkv alone would leave the GPU idle, and a second small kernel merges the splits' softmax partials.
 *
 * No autograd: inputs that require gradients are refused (a TensorError saying so) rather than silently
 * cut from the graph. Limits: Dh a multiple of 4; B * Hkv <= 65535; splits <= 65535.
 */
import { attentionDecodeForward, planAttentionDecode, type DecodeBlocks } from "../../kernels/attention_decode.ts";
import { fmtShape, TensorError } from "../shape.ts";
import { checkOperands, Tensor } from "../tensor.ts";

export interface DecodeAttentionOptions {
  /** Valid keys Tk: rows 0 .. Tk-1 of every k/v head (default: all S rows). */
  keyLength?: number;
  /** Cache slot of query 0 (default Tk - Tq: the queries are the last Tq keys). */
  offset?: number;
  /** Query i sees keys j <= offset + i (default true). */
  causal?: boolean;
  /** f32 [B, M], M >= Tk: 1 keep, 0 pad; masks keys. */
  keyPaddingMask?: Tensor;
  /** Score scale (default 1 / sqrt(Dh)). */
  scale?: number;
  /** Tuning and tests: key splits (default: chosen from the grid size), tile sizes. */
  splits?: number;
  blocks?: DecodeBlocks;
}

function checkInputs(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | undefined) {
  const shapes = `q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)}${mask ? `, keyPaddingMask ${fmtShape(mask.shape)}` : ""}`;
  const fail = (why: string) => new TensorError(`attentionDecode: ${why} (${shapes})`);
  for (const [name, t] of [["q", q], ["k", k], ["v", v], ["keyPaddingMask", mask]] as const)
    if (t?.requiresGrad)
      throw fail(`${name} requires grad, but decode attention has no backward (it is for inference: run it under noGrad() or pass detached tensors; train with attention())`);
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) throw fail("q, k and v must be 4-D [B, heads, T, Dh]");
  const [B, Hq, Tq, Dh] = q.shape as [number, number, number, number];
  const [, Hkv, S] = k.shape as [number, number, number, number];
  if (k.shape.some((d, i) => d !== v.shape[i])) throw fail("k and v must have the same shape");
  if (k.shape[0] !== B || k.shape[3] !== Dh) throw fail("k and v must match q in batch and head dim");
  if (Hkv === 0 || Hq % Hkv !== 0) throw fail(`query heads (${Hq}) must be a multiple of key/value heads (${Hkv})`);
  if (Dh % 4 !== 0) throw fail(`head dim ${Dh} must be a multiple of 4`);
  return { B, Hq, Hkv, Tq, S, Dh, fail };
}

export function attentionDecode(q: Tensor, k: Tensor, v: Tensor, opts: DecodeAttentionOptions = {}): Tensor {
  const mask = opts.keyPaddingMask;
  const gpu = checkOperands("attentionDecode", q, k, v, ...(mask ? [mask] : []));
  const { B, Hq, Hkv, Tq, S, Dh, fail } = checkInputs(q, k, v, mask);
  const Tk = opts.keyLength ?? S;
  if (!Number.isInteger(Tk) || Tk < 0 || Tk > S) throw fail(`keyLength ${Tk} must be an integer in [0, ${S}] (the cache's rows)`);
  const offset = opts.offset ?? Tk - Tq;
  if (!Number.isInteger(offset) || offset < 0) throw fail(`offset ${offset} must be an integer >= 0 (the cache slot of the first query)`);
  if (mask && (mask.rank !== 2 || mask.shape[0] !== B || mask.shape[1]! < Tk)) throw fail(`keyPaddingMask must be [B, M] with B = ${B} and M >= keyLength ${Tk}`);
  const scale = opts.scale ?? 1 / Math.sqrt(Dh);
  if (!Number.isFinite(scale)) throw fail(`scale must be finite, got ${scale}`);
  if (B * Hkv > 65535) throw fail(`B * Hkv = ${B * Hkv} exceeds 65535 (workgroups per grid dimension)`);
  const splits = opts.splits;
  if (splits !== undefined && (!Number.isInteger(splits) || splits < 1 || splits > 65535)) throw fail(`splits ${splits} must be an integer in [1, 65535]`);
  const plan = planAttentionDecode(gpu, { Hq, Hkv, Tq, Dh, blocks: opts.blocks });
  const out = Tensor.empty(gpu, q.shape);
  const io = { q: q.buffer, k: k.buffer, v: v.buffer, mask: mask?.buffer, out: out.buffer };
  const maskStride = mask ? mask.shape[1]! : 0;
  attentionDecodeForward(gpu, io, { B, Hq, Hkv, Tq, S, Tk, Dh, offset, causal: opts.causal ?? true, scale, maskStride, splits, plan });
  return out;
}

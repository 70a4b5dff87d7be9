/**
 * Fused scaled-dot-product attention with grouped-query heads, causal and key-padding masks, flash-attention
 * style: the T x T score matrix is never stored; the forward keeps the per-row logsumexp for the backward,
 * which recomputes the probabilities (FlashAttention-2: one kernel for dK/dV parallel over key blocks, one for
 * dQ parallel over query blocks, no atomics). Launchers: src/kernels/attention.ts (which also chooses between
 * these kernels and the unfused path built here from ops).
 *
 *   attention(q [B, Hq, T, Dh], k [B, Hkv, T, Dh], v [B, Hkv, T, Dh], { causal = true, keyPaddingMask, scale })
 *     → out [B, Hq, T, Dh]
 *   attention(q [B, T, Hq, Dh], k [B, T, Hkv, Dh], v [B, T, Hkv, Dh], { layout: "bthd", ... }) → out [B, T, Hq, Dh]
 *     the projections' own layout ([B, T, H*Dh] viewed as [B, T, H, Dh]; src/nn/llama.ts decoderLayer): the fused
 *     kernels read and write it with strides, forward and backward, so no transposed copy is made anywhere; the
 *     unfused path (a fallback for long T on some devices) transposes to [B, H, T, Dh] and back around its
 *     matmuls. `attentionLayout(gpu, dims)` says which layout a call of these dimensions runs without copies.
 *
 * Equal to torch's scaled_dot_product_attention(q, k', v', attn_mask) with k', v' the kv heads repeated
 * `Hq / Hkv` times (head h reads kv head floor(h / (Hq / Hkv))) and the boolean mask
 * (j <= i if causal) AND keyPaddingMask[b, j] != 0 (HF attention_mask: 1 keep, 0 pad). Difference: a query
 * row that sees no key at all (a left-padded position under causal + padding) gives out = 0 and zero
 * gradients, where torch gives NaN. The mask is a constant: it gets no gradient.
 *
 * Limits: Dh a multiple of 4 (rows are read as vec4; every LLaMA/Gemma head dim is); block sizes are chosen
 * to fit the device's workgroup memory (Dh = 256 in 32 KiB: 8-key tiles forward, 4-row tiles backward);
 * B * Hq <= 65535. Kernels compile once per (Dh, block sizes): about 1 s each on lavapipe when cold.
 *
 * `tuneAttention` (registered by src/tensor/index.ts) times the two paths through this op, forward and
 * backward; the launcher's `attentionPath` follows its result.
 */
import {
  attentionBackward,
  attentionForward,
  attentionPath,
  attentionTuneKey,
  planAttention,
  type AttentionBlocks,
  type AttentionDims,
  type AttentionLaunchOptions,
  type AttentionLayout,
} from "../../kernels/attention.ts";
import type { Gpu, TuneResult } from "../../gpu/index.ts";
import { attach, isGradEnabled } from "../autograd.ts";
import { fmtShape, TensorError } from "../shape.ts";
import { checkOperands, Tensor } from "../tensor.ts";
import { matmul } from "./matmul.ts";
import { transpose } from "./shape_ops.ts";
import { attentionSoftmax } from "./softmax.ts";

export type { AttentionBlocks, AttentionDims, AttentionLayout };

/**
 * The layout in which attention of these dimensions runs without transposed copies on this device: "bthd" where
 * the fused kernels run, "bhtd" where the unfused path does (its batched matmuls need [B, H, T, Dh]; given
 * "bthd" it would transpose q, k, v and out). A model that can produce either (rope's outLayout) asks this.
 */
export function attentionLayout(gpu: Gpu, d: AttentionDims): AttentionLayout {
  return attentionPath(gpu, d) === "unfused" ? "bhtd" : "bthd";
}

export interface AttentionOptions {
  /** Query i sees keys j <= i (default true). */
  causal?: boolean;
  /** f32 [B, T]: 1 keep, 0 pad (HF attention_mask); masks keys. */
  keyPaddingMask?: Tensor;
  /** Score scale (default 1 / sqrt(Dh)). */
  scale?: number;
  /** Tuning and tests: override the block sizes (each kernel checks they fit the device). */
  blocks?: Partial<AttentionBlocks>;
  /** "bhtd" (default): q, k, v and the result are [B, H, T, Dh]; "bthd": [B, T, H, Dh]. */
  layout?: AttentionLayout;
}

function checkShapes(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | undefined, layout: AttentionLayout): AttentionDims {
  const shapes = `q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)}${mask ? `, keyPaddingMask ${fmtShape(mask.shape)}` : ""}`;
  const fail = (why: string) => new TensorError(`attention: ${why} (${shapes})`);
  if (layout !== "bhtd" && layout !== "bthd") throw new TensorError(`attention: layout must be "bhtd" or "bthd", got ${String(layout)}`);
  const [h, t] = layout === "bhtd" ? [1, 2] : [2, 1];
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) throw fail(`q, k and v must be 4-D ${layout === "bhtd" ? "[B, heads, T, Dh]" : "[B, T, heads, Dh]"}`);
  const [B, Hq, T, Dh] = [q.shape[0]!, q.shape[h]!, q.shape[t]!, q.shape[3]!];
  const Hkv = k.shape[h]!;
  if (k.shape.some((d, i) => d !== v.shape[i])) throw fail("k and v must have the same shape");
  if (k.shape[0] !== B || k.shape[t] !== T || k.shape[3] !== Dh) throw fail("k and v must match q in batch, sequence length and head dim");
  if (Hkv === 0 ? Hq !== 0 : Hq % Hkv !== 0) throw fail(`query heads (${Hq}) must be a multiple of key/value heads (${Hkv})`);
  if (Dh % 4 !== 0) throw fail(`head dim ${Dh} must be a multiple of 4`);
  if (mask && (mask.rank !== 2 || mask.shape[0] !== B || mask.shape[1] !== T)) throw fail(`keyPaddingMask must be [B, T] = [${B}, ${T}]`);
  return { B, Hq, Hkv, T, Dh };
}

interface Flags {
  causal: boolean;
  scale: number;
}

/**
 * Time flash against unfused attention (forward + backward, causal, GQA 8:2, Dh 64; T 256 on CPU adapters,
 * 1024 on GPUs) and remember the faster for calls where unfused fits (src/gpu/autotune.ts: cached per adapter).
 */
export async function tuneAttention(gpu: Gpu, tuner = gpu.tuner): Promise<Record<string, TuneResult>> {
  const T = gpu.adapter.kind === "cpu" ? 256 : 1024;
  const [B, Hq, Hkv, Dh] = [1, 8, 2, 64];
  const make = (shape: number[]) => Tensor.full(gpu, shape, 0.01, { requiresGrad: true });
  using q = make([B, Hq, T, Dh]);
  using k = make([B, Hkv, T, Dh]);
  using v = make([B, Hkv, T, Dh]);
  using g = Tensor.full(gpu, [B, Hq, T, Dh], 1);
  const candidates = (["flash", "unfused"] as const).map((kernel) => ({
    name: kernel,
    run: () =>
      gpu.withPolicy({ attention: { kernel } }, () => {
        const out = attention(q, k, v);
        out.backward(g);
        out.release();
        for (const t of [q, k, v]) t.zeroGrad();
      }),
  }));
  const r = await tuner.tune(attentionTuneKey(), candidates);
  return r ? { [attentionTuneKey()]: r } : {};
}

/**
 * Attention from ops: with G = Hq / Hkv query heads per kv head laid out next to each other, q viewed as
 * [B * Hkv, G * T, Dh] shares its kv head's k and v [B * Hkv, T, Dh], so the scores are one batched
 * product, S = q kᵀ [B * Hkv, G * T, T]; then P = attentionSoftmax(S) (scale, causal, padding), out = P v.
 */
function attentionUnfused(q: Tensor, k: Tensor, v: Tensor, d: AttentionDims, f: Flags, mask: Tensor | undefined, layout: AttentionLayout): Tensor {
  if (layout === "bthd") {
    // The fallback's price: [B, T, H, Dh] to [B, H, T, Dh] and back (their backward transposes the gradients).
    using qh = transpose(q, 1, 2);
    using kh = transpose(k, 1, 2);
    using vh = transpose(v, 1, 2);
    using o = attentionUnfused(qh, kh, vh, d, f, mask, "bhtd");
    return transpose(o, 1, 2);
  }
  const G = d.Hq / d.Hkv;
  const z = d.B * d.Hkv;
  using q3 = q.reshape([z, G * d.T, d.Dh]);
  using k3 = k.reshape([z, d.T, d.Dh]);
  using v3 = v.reshape([z, d.T, d.Dh]);
  using s = matmul(q3, k3, { transB: true });
  using pr = attentionSoftmax(s, { scale: f.scale, causal: f.causal, keyPaddingMask: mask, batchRows: d.Hq * d.T });
  using o = matmul(pr, v3);
  return o.reshape([d.B, d.Hq, d.T, d.Dh]);
}

export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const mask = opts.keyPaddingMask;
  const gpu = checkOperands("attention", q, k, v, ...(mask ? [mask] : []));
  const layout = opts.layout ?? "bhtd";
  const d = checkShapes(q, k, v, mask, layout);
  const f: Flags = { causal: opts.causal ?? true, scale: opts.scale ?? 1 / Math.sqrt(d.Dh) };
  if (!Number.isFinite(f.scale)) throw new TensorError(`attention: scale must be finite, got ${f.scale}`);
  if (attentionPath(gpu, d) === "unfused") return attentionUnfused(q, k, v, d, f, mask, layout);
  if (d.B * d.Hq > 65535) throw new TensorError(`attention: B * Hq = ${d.B * d.Hq} exceeds 65535 (workgroups per grid dimension)`);
  // Plan the kernels before allocating anything (a block size that does not fit throws here); the backward
  // ones only when a backward can follow (not under noGrad, not in inference).
  const training = isGradEnabled() && [q, k, v].some((t) => t.requiresGrad);
  const o: AttentionLaunchOptions = { ...d, ...f, layout, plan: planAttention(gpu, d.Dh, { blocks: opts.blocks, backward: training }) };
  const out = Tensor.empty(gpu, q.shape);
  const lse = Tensor.empty(gpu, [d.B, d.Hq, d.T]);
  attentionForward(gpu, { q: q.buffer, k: k.buffer, v: v.buffer, mask: mask?.buffer, out: out.buffer, lse: lse.buffer }, o);
  const res = attach(out, {
    op: "attention",
    inputs: [q, k, v],
    save: () => [q, k, v, out, lse, mask ?? null],
    backward: (g, [sq, sk, sv, so, slse, smask], needs) => backwardRule(g, { q: sq!, k: sk!, v: sv!, o: so!, lse: slse!, mask: smask }, needs, o),
  });
  lse.release();
  return res;
}

interface Saved {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  o: Tensor;
  lse: Tensor;
  mask: Tensor | null;
}

/** dq, dk, dv as `needs` says (dk and dv come from one kernel: both are computed when either is needed). */
function backwardRule(g: Tensor, s: Saved, needs: readonly boolean[], o: AttentionLaunchOptions): (Tensor | null)[] {
  const gpu = g.gpu;
  const dq = needs[0] ? Tensor.empty(gpu, s.q.shape) : null;
  let dk = needs[1] || needs[2] ? Tensor.empty(gpu, s.k.shape) : null;
  let dv = dk ? Tensor.empty(gpu, s.v.shape) : null;
  attentionBackward(
    gpu,
    { q: s.q.buffer, k: s.k.buffer, v: s.v.buffer, mask: s.mask?.buffer, out: s.o.buffer, lse: s.lse.buffer, dout: g.buffer, dq: dq?.buffer, dk: dk?.buffer, dv: dv?.buffer },
    o,
  );
  if (!needs[1]) (dk?.release(), (dk = null));
  if (!needs[2]) (dv?.release(), (dv = null));
  return [dq, dk, dv];
}

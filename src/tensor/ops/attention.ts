/**
 * Fused scaled-dot-product attention with grouped-query heads, causal and key-padding masks, flash-attention
 * style (kernels/attention.wgsl): the T x T score matrix is never stored; the forward keeps the per-row
 * logsumexp for the backward, which recomputes the probabilities (FlashAttention-2: one kernel for dK/dV
 * parallel over key blocks, one for dQ parallel over query blocks, no atomics).
 *
 *   attention(q [B, Hq, T, Dh], k [B, Hkv, T, Dh], v [B, Hkv, T, Dh], { causal = true, keyPaddingMask, scale })
 *     → out [B, Hq, T, Dh]
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
 */
import attentionSrc from "../../../kernels/attention.wgsl" with { type: "text" };
import { defineKernel, hashText, type Gpu, type PooledBuffer, type TuneResult } from "../../gpu/index.ts";
import { attach, isGradEnabled } from "../autograd.ts";
import { fmtShape, TensorError } from "../shape.ts";
import { checkOperands, grid1d, Tensor } from "../tensor.ts";
import { matmul, MATMUL_OPS } from "./matmul.ts";
import { attentionSoftmax, SOFTMAX } from "./softmax.ts";

export const ATTENTION = defineKernel("kernels/attention.wgsl", attentionSrc);

/** Block sizes (see the kernel's header). */
export interface AttentionBlocks {
  /** Query rows per block: resident rows of forward and dQ workgroups, the streamed tile of dK/dV. */
  bq: number;
  /** Key rows per block: the streamed tile of forward and dQ, resident rows of dK/dV workgroups. */
  bk: number;
  /** Lanes per resident row; each owns every tpr-th vec4 of the head dim. */
  tpr: number;
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
}

type Kind = "fwd" | "dq" | "dkdv";

const PARTS: Record<Kind, number> = { fwd: 1, dq: 2, dkdv: 2 };

interface Tiles {
  rows: number;
  cols: number;
  tpr: number;
}

/** Workgroup memory of one tiled kernel, in bytes (matches the declarations in the kernel). */
function sharedBytes(kind: Kind, t: Tiles, dh4: number): number {
  return 16 * 2 * t.cols * dh4 + 4 * PARTS[kind] * t.rows * t.cols * (t.tpr + 1) + (kind === "dkdv" ? 8 * t.cols : 0);
}

/** One tiled kernel's launch: its specialization and the rows per workgroup / per tile. */
interface Launch {
  kind: Kind;
  rows: number;
  cols: number;
  constants: Record<string, number>;
  defines: Record<string, number>;
}

/**
 * Block sizes for one kernel: the requested ones, or defaults (16-row blocks, enough lanes per row that
 * each lane holds <= 4 vec4 of a row vector), shrunk (streamed tiles first) until they fit the device.
 */
function plan(gpu: Gpu, kind: Kind, dh4: number, want: Partial<AttentionBlocks> = {}): Launch {
  for (const [k, x] of Object.entries(want))
    if (x !== undefined && (!Number.isInteger(x) || x < 1)) throw new TensorError(`attention: block size ${k}=${x} must be a positive integer`);
  const [wantRows, wantCols] = kind === "dkdv" ? [want.bk, want.bq] : [want.bq, want.bk];
  const t: Tiles = {
    rows: wantRows ?? 16,
    cols: wantCols ?? 16,
    tpr: want.tpr ?? Math.min(16, 2 ** Math.ceil(Math.log2(Math.ceil(dh4 / 4)))),
  };
  const lim = gpu.limits;
  const maxWg = Math.min(lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX);
  const fits = () => sharedBytes(kind, t, dh4) <= lim.maxComputeWorkgroupStorageSize && t.rows * t.tpr <= maxWg;
  while (!fits()) {
    if (wantCols === undefined && t.cols > 4) t.cols /= 2;
    else if (wantRows === undefined && t.rows > 1) t.rows /= 2;
    else
      throw new TensorError(
        `attention: ${kind} tiles ${JSON.stringify(t)} for Dh=${4 * dh4} need ${sharedBytes(kind, t, dh4)} bytes of workgroup memory ` +
          `and ${t.rows * t.tpr} invocations; the device allows ${lim.maxComputeWorkgroupStorageSize} and ${maxWg}`,
      );
  }
  return {
    kind,
    rows: t.rows,
    cols: t.cols,
    constants: { ROWS: t.rows, COLS: t.cols, TPR: t.tpr, DH4: dh4, PARTS: PARTS[kind] },
    defines: { OV: Math.ceil(dh4 / t.tpr) },
  };
}

interface Dims {
  B: number;
  Hq: number;
  Hkv: number;
  T: number;
  Dh: number;
}

function checkShapes(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | undefined): Dims {
  const shapes = `q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)}${mask ? `, keyPaddingMask ${fmtShape(mask.shape)}` : ""}`;
  const fail = (why: string) => new TensorError(`attention: ${why} (${shapes})`);
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) throw fail("q, k and v must be 4-D [B, heads, T, Dh]");
  const [B, Hq, T, Dh] = q.shape as [number, number, number, number];
  const Hkv = k.shape[1]!;
  if (k.shape.some((d, i) => d !== v.shape[i])) throw fail("k and v must have the same shape");
  if (k.shape[0] !== B || k.shape[2] !== T || k.shape[3] !== Dh) throw fail("k and v must match q in batch, sequence length and head dim");
  if (Hkv === 0 ? Hq !== 0 : Hq % Hkv !== 0) throw fail(`query heads (${Hq}) must be a multiple of key/value heads (${Hkv})`);
  if (Dh % 4 !== 0) throw fail(`head dim ${Dh} must be a multiple of 4`);
  if (mask && (mask.rank !== 2 || mask.shape[0] !== B || mask.shape[1] !== T)) throw fail(`keyPaddingMask must be [B, T] = [${B}, ${T}]`);
  return { B, Hq, Hkv, T, Dh };
}

interface Flags {
  causal: boolean;
  hasMask: boolean;
  scale: number;
}

/** The kernel's uniform parameters; `cols` is the launch's COLS, `n` and `row` only matter to attn_bwd_prep. */
function params(d: Dims, f: Flags, extra: { cols?: number; n?: number; row?: number }): Record<string, number> {
  const { cols = 0, n = 0, row = 0 } = extra;
  return { t: d.T, hq: d.Hq, hkv: d.Hkv, group: d.Hq / d.Hkv, causal: f.causal ? 1 : 0, has_mask: f.hasMask ? 1 : 0, scale: f.scale, n, row, cols };
}

const ENTRY: Record<Kind, string> = { fwd: "attn_fwd", dq: "attn_bwd_dq", dkdv: "attn_bwd_dkdv" };
const NAME: Record<Kind, string> = { fwd: "attention", dq: "attention.backward_dq", dkdv: "attention.backward_dkdv" };

/** Record one tiled kernel: a workgroup per `rows` resident rows of each (batch, head). */
function launch(gpu: Gpu, L: Launch, d: Dims, f: Flags, bindings: Record<string, PooledBuffer>): void {
  const heads = L.kind === "dkdv" ? d.Hkv : d.Hq;
  const grid: [number, number] = [Math.ceil(d.T / L.rows), d.B * heads];
  gpu.dispatch(ATTENTION, ENTRY[L.kind], bindings, grid, {
    params: params(d, f, { cols: L.cols }),
    constants: L.constants,
    defines: L.defines,
    name: NAME[L.kind],
  });
}

/*
 * Which implementation runs is the device's `policy.attention` (src/gpu/policy.ts): `flash` (the fused kernels
 * above: no T x T buffer), `unfused` (scores as a batched matmul, a masked softmax row kernel, a second matmul;
 * autograd composes the backward from those ops), or `auto`. Under auto, a call with T >= `minUnfusedT` whose
 * probabilities fit in `maxUnfusedBytes` (0: per device kind, 64 MiB on CPU adapters, 1 GiB on GPUs) runs what
 * `tuneAttention` measured faster on this adapter, or, untuned, unfused on CPU adapters and flash on GPUs;
 * everything else runs flash. On lavapipe the fused kernels' workgroup-memory tiles and barriers run at
 * ~1.5 GFLOP/s while the subgroup matmul runs at ~18, so computing all T x T scores (twice the causal work) wins
 * once T amortizes the extra dispatches (bench/NOTES.md); on a GPU only a measurement can say.
 */

/** Hash of the attention implementations' WGSL (with the matmul and softmax they use): editing one re-tunes. */
const ATTENTION_VERSION = hashText(attentionSrc + MATMUL_OPS.code + SOFTMAX.code);
export const attentionTuneKey = (): string => `attention/long/${ATTENTION_VERSION}`;

function unfusedFits(gpu: Gpu, d: Dims): boolean {
  const p = gpu.policy.attention;
  const budget = p.maxUnfusedBytes || (gpu.adapter.kind === "cpu" ? 64 : 1024) * 2 ** 20;
  return d.T >= p.minUnfusedT && d.B * d.Hq * d.T * d.T * 4 <= budget;
}

function useUnfused(gpu: Gpu, d: Dims): boolean {
  const kernel = gpu.policy.attention.kernel;
  if (kernel !== "auto") return kernel === "unfused";
  if (!unfusedFits(gpu, d)) return false;
  const tuned = gpu.tuner.lookup(attentionTuneKey());
  return tuned ? tuned.choice === "unfused" : gpu.adapter.kind === "cpu";
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
function attentionUnfused(q: Tensor, k: Tensor, v: Tensor, d: Dims, f: Flags, mask: Tensor | undefined): Tensor {
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
  const d = checkShapes(q, k, v, mask);
  const f: Flags = { causal: opts.causal ?? true, hasMask: !!mask, scale: opts.scale ?? 1 / Math.sqrt(d.Dh) };
  if (!Number.isFinite(f.scale)) throw new TensorError(`attention: scale must be finite, got ${f.scale}`);
  if (useUnfused(gpu, d)) return attentionUnfused(q, k, v, d, f, mask);
  if (d.B * d.Hq > 65535) throw new TensorError(`attention: B * Hq = ${d.B * d.Hq} exceeds 65535 (workgroups per grid dimension)`);
  // Plan the kernels before allocating anything (a block size that does not fit throws here); the backward
  // ones only when a backward can follow (not under noGrad, not in inference).
  const training = isGradEnabled() && [q, k, v].some((t) => t.requiresGrad);
  const fwd = plan(gpu, "fwd", d.Dh / 4, opts.blocks);
  const dq = training ? plan(gpu, "dq", d.Dh / 4, opts.blocks) : undefined;
  const dkdv = training ? plan(gpu, "dkdv", d.Dh / 4, opts.blocks) : undefined;
  const out = Tensor.empty(gpu, q.shape);
  const lse = Tensor.empty(gpu, [d.B, d.Hq, d.T]);
  if (out.size) launch(gpu, fwd, d, f, { q: q.buffer, k: k.buffer, v: v.buffer, mask: (mask ?? q).buffer, out: out.buffer, lse: lse.buffer });
  const res = attach(out, {
    op: "attention",
    inputs: [q, k, v],
    save: () => [q, k, v, out, lse, mask ?? null],
    backward: (g, [sq, sk, sv, so, slse, smask], needs) => attentionBackward(g, { q: sq!, k: sk!, v: sv!, o: so!, lse: slse!, mask: smask }, needs, d, f, dq!, dkdv!),
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

function attentionBackward(g: Tensor, s: Saved, needs: readonly boolean[], d: Dims, f: Flags, dqPlan: Launch, dkdvPlan: Launch): (Tensor | null)[] {
  const gpu = g.gpu;
  const dq = needs[0] ? Tensor.empty(gpu, s.q.shape) : null;
  let dk = needs[1] || needs[2] ? Tensor.empty(gpu, s.k.shape) : null;
  let dv = dk ? Tensor.empty(gpu, s.v.shape) : null;
  if (g.size) {
    // (lse, D = rowsum(dout * out)) per query row.
    const rows = d.B * d.Hq * d.T;
    const stats = Tensor.empty(gpu, [d.B, d.Hq, d.T, 2]);
    const grid = grid1d(gpu, rows, 64);
    gpu.dispatch(ATTENTION, "attn_bwd_prep", { dout: g.buffer, out: s.o.buffer, lse: s.lse.buffer, stats_w: stats.buffer }, grid.workgroups, {
      params: params(d, f, { n: rows, row: grid.row }),
      constants: { DH4: d.Dh / 4 },
      name: "attention.backward_prep",
    });
    const common = { q: s.q.buffer, k: s.k.buffer, v: s.v.buffer, mask: (s.mask ?? s.q).buffer, dout: g.buffer, stats: stats.buffer };
    if (dq) launch(gpu, dqPlan, d, f, { ...common, dq: dq.buffer });
    if (dk && dv) launch(gpu, dkdvPlan, d, f, { ...common, dk: dk.buffer, dv: dv.buffer });
    stats.release();
  }
  if (!needs[1]) (dk?.release(), (dk = null));
  if (!needs[2]) (dv?.release(), (dv = null));
  return [dq, dk, dv];
}

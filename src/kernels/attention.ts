/**
 * Launchers of the fused scaled-dot-product attention kernels, kernels/attention.wgsl (flash-attention style:
 * the T x T score matrix is never stored; FlashAttention-2 backward, no atomics), and the choice between them
 * and the unfused path. With G = Hq / Hkv query heads per kv head (head h reads kv head floor(h / G)) and
 * visible(i, j) = (!causal or j <= i) and (no mask or mask[b, j] != 0):
 *
 *   attentionForward(gpu, { q, k, v, mask?, out, lse }, { B, Hq, Hkv, T, Dh, causal, scale, plan })
 *     P[i, j] = softmax_j(scale * q[b,h,i] · k[b,kvh,j]) over visible j (0 elsewhere)
 *     out[b,h,i] = sum_j P[i, j] v[b,kvh,j]            lse[b,h,i] = logsumexp_j of the visible scaled scores
 *   attentionBackward(gpu, { q, k, v, mask?, out, lse, dout, dq?, dk?, dv? }, { same options })
 *     D_i = dout_i · out_i,  dS = P (dout_i · v_j - D_i)  (P recomputed from q, k and lse)
 *     dq_i = scale * sum_j dS[i,j] k_j;  dv_j = sum_i P[i,j] dout_i,  dk_j = scale * sum_i dS[i,j] q_i,
 *     dk/dv summed over the G query heads sharing a kv head. dk and dv are written together (pass both or
 *     neither); the (lse, D) scratch is allocated and released here.
 *   Shapes (`layout`, default "bhtd"): q, out, dout, dq [B, Hq, T, Dh]; k, v, dk, dv [B, Hkv, T, Dh]; or
 *   "bthd": q, out, dout, dq [B, T, Hq, Dh]; k, v, dk, dv [B, T, Hkv, Dh] (the projections' layout: the kernels
 *   read and write it with strides, no transposed copies). lse [B, Hq, T] in both; mask [B, T] f32 (1 keep,
 *   0 pad); all f32, Dh a multiple of 4, B * Hq <= 65535. A query row that sees no key gets out = 0 and zero
 *   gradients.
 *
 * `planAttention` chooses the block sizes (and checks them against the device) before anything is allocated;
 * `attentionPath` chooses between these kernels (`flash`) and the unfused composition of a batched matmul, a
 * masked softmax row kernel (src/kernels/softmax.ts `attentionSoftmaxForward`) and a second matmul, which the
 * op builds from ops (src/tensor/ops/attention.ts).
 *
 * Which path runs is the device's `policy.attention` (src/gpu/policy.ts): `flash`, `unfused`, or `auto`.
 * Under auto, a call with T >= `minUnfusedT` whose probabilities fit in `maxUnfusedBytes` (0: per device
 * kind, 64 MiB on CPU adapters, 1 GiB on GPUs) runs what `tuneAttention` (src/tensor/ops/attention.ts)
 * measured faster on this adapter, or, untuned, unfused on CPU adapters and flash on GPUs; everything else
 * runs flash. On lavapipe the fused kernels' workgroup-memory tiles and barriers run at ~1.5 GFLOP/s while
 * the subgroup matmul runs at ~18, so computing all T x T scores (twice the causal work) wins once T
 * amortizes the extra dispatches (bench/NOTES.md); on a GPU only a measurement can say.
 */
import attentionSrc from "../../kernels/attention.wgsl" with { type: "text" };
import { defineKernel, GpuError, grid1d, hashText, NAN, type Binding, type Gpu } from "../gpu/index.ts";
import { MATMUL_OPS } from "./matmul.ts";
import { SOFTMAX } from "./softmax.ts";

export const ATTENTION = defineKernel("kernels/attention.wgsl", attentionSrc, [NAN]);

/** Block sizes (see the kernel's header). */
export interface AttentionBlocks {
  /** Query rows per block: resident rows of forward and dQ workgroups, the streamed tile of dK/dV. */
  bq: number;
  /** Key rows per block: the streamed tile of forward and dQ, resident rows of dK/dV workgroups. */
  bk: number;
  /** Lanes per resident row; each owns every tpr-th vec4 of the head dim. */
  tpr: number;
}

export interface AttentionDims {
  B: number;
  Hq: number;
  Hkv: number;
  T: number;
  Dh: number;
}

/** "bhtd": q/k/v/out [B, H, T, Dh]; "bthd": [B, T, H, Dh] (see the module comment). */
export type AttentionLayout = "bhtd" | "bthd";

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

/** The launches of one attention call: the forward's, and the backward's when one can follow. */
export interface AttentionPlan {
  readonly fwd: Launch;
  readonly dq?: Launch;
  readonly dkdv?: Launch;
}

/**
 * Block sizes for one kernel: the requested ones, or defaults (16-row blocks, enough lanes per row that
 * each lane holds <= 4 vec4 of a row vector), shrunk (streamed tiles first) until they fit the device.
 */
function planOne(gpu: Gpu, kind: Kind, dh4: number, want: Partial<AttentionBlocks> = {}): Launch {
  for (const [k, x] of Object.entries(want))
    if (x !== undefined && (!Number.isInteger(x) || x < 1)) throw new GpuError(`attention: block size ${k}=${x} must be a positive integer`);
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
      throw new GpuError(
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

/**
 * The block sizes of the forward kernel and, when `backward`, of the two backward kernels, for head dim `Dh`:
 * the requested ones (`blocks`, tuning and tests) or defaults that fit the device. Throws (a GpuError naming
 * the kernel and what it needs) when a requested size is invalid or cannot fit.
 */
export function planAttention(gpu: Gpu, Dh: number, o: { blocks?: Partial<AttentionBlocks>; backward: boolean }): AttentionPlan {
  const dh4 = Dh / 4;
  const fwd = planOne(gpu, "fwd", dh4, o.blocks);
  if (!o.backward) return { fwd };
  return { fwd, dq: planOne(gpu, "dq", dh4, o.blocks), dkdv: planOne(gpu, "dkdv", dh4, o.blocks) };
}

export interface AttentionLaunchOptions extends AttentionDims {
  causal: boolean;
  scale: number;
  plan: AttentionPlan;
  /** The layout of q, k, v, out and their gradients (default "bhtd"). */
  layout?: AttentionLayout;
}

/** vec4 strides of a head and of a token of an H-head tensor in `layout` (the kernel's q_sh/q_st, kv_sh/kv_st). */
function strides(layout: AttentionLayout, H: number, T: number, dh4: number): [number, number] {
  return layout === "bthd" ? [dh4, H * dh4] : [T * dh4, dh4];
}

/** The kernel's uniform parameters; `cols` is the launch's COLS, `n` and `row` only matter to attn_bwd_prep. */
function params(o: AttentionLaunchOptions, hasMask: boolean, extra: { cols?: number; n?: number; row?: number }): Record<string, number> {
  const { cols = 0, n = 0, row = 0 } = extra;
  const layout = o.layout ?? "bhtd";
  const [q_sh, q_st] = strides(layout, o.Hq, o.T, o.Dh / 4);
  const [kv_sh, kv_st] = strides(layout, o.Hkv, o.T, o.Dh / 4);
  return {
    t: o.T,
    hq: o.Hq,
    hkv: o.Hkv,
    group: o.Hq / o.Hkv,
    causal: o.causal ? 1 : 0,
    has_mask: hasMask ? 1 : 0,
    scale: o.scale,
    n,
    row,
    cols,
    q_sh,
    q_st,
    kv_sh,
    kv_st,
  };
}

const ENTRY: Record<Kind, string> = { fwd: "attn_fwd", dq: "attn_bwd_dq", dkdv: "attn_bwd_dkdv" };
const NAME: Record<Kind, string> = { fwd: "attention", dq: "attention.backward_dq", dkdv: "attention.backward_dkdv" };

/** Record one tiled kernel: a workgroup per `rows` resident rows of each (batch, head). */
function launch(gpu: Gpu, L: Launch, o: AttentionLaunchOptions, hasMask: boolean, bindings: Record<string, Binding>): void {
  const heads = L.kind === "dkdv" ? o.Hkv : o.Hq;
  const grid: [number, number] = [Math.ceil(o.T / L.rows), o.B * heads];
  gpu.dispatch(ATTENTION, ENTRY[L.kind], bindings, grid, {
    params: params(o, hasMask, { cols: L.cols }),
    constants: L.constants,
    defines: L.defines,
    name: NAME[L.kind],
  });
}

const empty = (o: AttentionDims) => o.B * o.Hq * o.T * o.Dh === 0;

/** Record the forward: out and lse (see the module comment). Nothing for an empty output. */
export function attentionForward(gpu: Gpu, io: { q: Binding; k: Binding; v: Binding; mask?: Binding; out: Binding; lse: Binding }, o: AttentionLaunchOptions): void {
  if (empty(o)) return;
  launch(gpu, o.plan.fwd, o, !!io.mask, { q: io.q, k: io.k, v: io.v, mask: io.mask ?? io.q, out: io.out, lse: io.lse });
}

/**
 * Record the backward: dq when given, dk and dv when both are given (see the module comment). `plan` must have
 * been made with `backward: true`. Nothing for an empty output.
 */
export function attentionBackward(
  gpu: Gpu,
  io: { q: Binding; k: Binding; v: Binding; mask?: Binding; out: Binding; lse: Binding; dout: Binding; dq?: Binding; dk?: Binding; dv?: Binding },
  o: AttentionLaunchOptions,
): void {
  if (empty(o)) return;
  const { dq: dqPlan, dkdv: dkdvPlan } = o.plan;
  if (!dqPlan || !dkdvPlan) throw new GpuError("attention.backward: the plan has no backward kernels (planAttention with backward: true)");
  const hasMask = !!io.mask;
  // (lse, D = rowsum(dout * out)) per query row.
  const rows = o.B * o.Hq * o.T;
  const stats = gpu.alloc(rows * 2 * 4, "tensor");
  const grid = grid1d(gpu, rows, 64);
  gpu.dispatch(ATTENTION, "attn_bwd_prep", { dout: io.dout, out: io.out, lse: io.lse, stats_w: stats }, grid.workgroups, {
    params: params(o, hasMask, { n: rows, row: grid.row }),
    constants: { DH4: o.Dh / 4 },
    name: "attention.backward_prep",
  });
  const common = { q: io.q, k: io.k, v: io.v, mask: io.mask ?? io.q, dout: io.dout, stats };
  if (io.dq) launch(gpu, dqPlan, o, hasMask, { ...common, dq: io.dq });
  if (io.dk && io.dv) launch(gpu, dkdvPlan, o, hasMask, { ...common, dk: io.dk, dv: io.dv });
  gpu.release(stats);
}

/** Hash of the attention implementations' WGSL (with the matmul and softmax they use): editing one re-tunes. */
const ATTENTION_VERSION = hashText(attentionSrc + MATMUL_OPS.code + SOFTMAX.code);
export const attentionTuneKey = (): string => `attention/long/${ATTENTION_VERSION}`;

/** Whether the unfused path may run: T long enough and the probabilities within the budget. */
function unfusedFits(gpu: Gpu, d: AttentionDims): boolean {
  const p = gpu.policy.attention;
  const budget = p.maxUnfusedBytes || (gpu.adapter.kind === "cpu" ? 64 : 1024) * 2 ** 20;
  return d.T >= p.minUnfusedT && d.B * d.Hq * d.T * d.T * 4 <= budget;
}

export type AttentionPath = "flash" | "unfused";

/** Which path an attention call of these dimensions runs on this device (see the module comment). */
export function attentionPath(gpu: Gpu, d: AttentionDims): AttentionPath {
  const kernel = gpu.policy.attention.kernel;
  if (kernel !== "auto") return kernel;
  if (!unfusedFits(gpu, d)) return "flash";
  const tuned = gpu.tuner.lookup(attentionTuneKey());
  return (tuned ? tuned.choice === "unfused" : gpu.adapter.kind === "cpu") ? "unfused" : "flash";
}

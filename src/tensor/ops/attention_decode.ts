/**
 * Decode attention: a few new queries against a key/value cache (kernels/attention_decode.wgsl). Forward
 * only, for generation under noGrad(); the training path is `attention` (src/tensor/ops/attention.ts).
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
import decodeSrc from "../../../kernels/attention_decode.wgsl" with { type: "text" };
import { defineKernel, type Gpu } from "../../gpu/index.ts";
import { fmtShape, TensorError } from "../shape.ts";
import { checkOperands, grid1d, Tensor } from "../tensor.ts";

export const ATTENTION_DECODE = defineKernel("kernels/attention_decode.wgsl", decodeSrc);

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
  blocks?: { cols?: number; tpr?: number };
}

/** Workgroups the default split count aims for (a few per SM of a large GPU). */
const TARGET_WORKGROUPS = 256;
/** A split gets at least this many key tiles. */
const MIN_TILES_PER_SPLIT = 4;

interface Plan {
  rows: number;
  cols: number;
  tpr: number;
  constants: Record<string, number>;
  defines: Record<string, number>;
}

const sharedBytes = (rows: number, cols: number, tpr: number, dh4: number) => 16 * 2 * cols * dh4 + 4 * cols * rows * tpr + 4 * rows * cols;

/**
 * Tile sizes: TPR lanes per query row (each lane holds <= 2 vec4 of a row vector, at most 32 lanes),
 * ROWS = the kv head's query rows (at most 256 / TPR), COLS = 32 keys per tile; COLS, then ROWS, shrink
 * until the workgroup fits the device.
 */
function plan(gpu: Gpu, rowsPerHead: number, dh4: number, want: DecodeAttentionOptions["blocks"] = {}): Plan {
  for (const [key, x] of Object.entries(want))
    if (x !== undefined && (!Number.isInteger(x) || x < 1)) throw new TensorError(`attentionDecode: block size ${key}=${x} must be a positive integer`);
  const lim = gpu.limits;
  const maxWg = Math.min(lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX, 256);
  const tpr = want.tpr ?? Math.min(32, 2 ** Math.ceil(Math.log2(Math.ceil(dh4 / 2))));
  let rows = Math.max(1, Math.min(rowsPerHead, Math.floor(maxWg / tpr)));
  let cols = want.cols ?? 32;
  const fits = () => sharedBytes(rows, cols, tpr, dh4) <= lim.maxComputeWorkgroupStorageSize && rows * tpr <= Math.min(lim.maxComputeInvocationsPerWorkgroup, lim.maxComputeWorkgroupSizeX);
  while (!fits()) {
    if (want.cols === undefined && cols > 4) cols /= 2;
    else if (rows > 1) rows = Math.ceil(rows / 2);
    else
      throw new TensorError(
        `attentionDecode: tiles (rows ${rows}, cols ${cols}, tpr ${tpr}) for Dh=${4 * dh4} need ${sharedBytes(rows, cols, tpr, dh4)} bytes of workgroup memory ` +
          `and ${rows * tpr} invocations; the device allows ${lim.maxComputeWorkgroupStorageSize} and ${lim.maxComputeInvocationsPerWorkgroup}`,
      );
  }
  return { rows, cols, tpr, constants: { ROWS: rows, COLS: cols, TPR: tpr, DH4: dh4 }, defines: { OV: Math.ceil(dh4 / tpr) } };
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
  const causal = opts.causal ?? true;
  const dh4 = Dh / 4;
  const rowsPerHead = (Hq / Hkv) * Tq;
  const pl = plan(gpu, rowsPerHead, dh4, opts.blocks);

  const out = Tensor.empty(gpu, q.shape);
  if (out.size === 0) return out;
  // Split the keys any query can see (causal: up to offset + Tq) over enough workgroups.
  const keyEnd = causal ? Math.min(Tk, offset + Tq) : Tk;
  const rowBlocks = Math.ceil(rowsPerHead / pl.rows);
  const maxSplits = Math.max(1, Math.ceil(keyEnd / (MIN_TILES_PER_SPLIT * pl.cols)));
  let splits = opts.splits ?? Math.min(maxSplits, Math.ceil(TARGET_WORKGROUPS / (rowBlocks * B * Hkv)));
  if (!Number.isInteger(splits) || splits < 1 || splits > 65535) throw fail(`splits ${splits} must be an integer in [1, 65535]`);
  const chunk = Math.max(pl.cols, Math.ceil(Math.ceil(keyEnd / splits) / pl.cols) * pl.cols);
  splits = Math.max(1, Math.ceil(keyEnd / chunk));

  const nr = B * Hq * Tq;
  const params = {
    tq: Tq,
    tk: Tk,
    s: S,
    offset,
    hkv: Hkv,
    rows: rowsPerHead,
    causal: causal ? 1 : 0,
    has_mask: mask ? 1 : 0,
    mask_stride: mask ? mask.shape[1]! : 0,
    scale,
    chunk,
    splits,
    nr,
    n: nr * dh4,
    row: 0,
    cols: pl.cols,
  };
  const direct = splits === 1;
  const oPart = direct ? out : Tensor.empty(gpu, [splits, nr, Dh]);
  const mlPart = Tensor.empty(gpu, [splits, nr, 2]);
  gpu.dispatch(
    ATTENTION_DECODE,
    "decode_attn",
    { q: q.buffer, k: k.buffer, v: v.buffer, mask: (mask ?? q).buffer, o_part: oPart.buffer, ml_part: mlPart.buffer },
    [rowBlocks, B * Hkv, splits],
    { params, constants: pl.constants, defines: pl.defines, name: "attention_decode" },
  );
  if (!direct) {
    const g = grid1d(gpu, nr * dh4, 64);
    gpu.dispatch(ATTENTION_DECODE, "decode_combine", { po: oPart.buffer, pml: mlPart.buffer, out: out.buffer }, g.workgroups, {
      params: { ...params, row: g.row },
      constants: { DH4: dh4 },
      name: "attention_decode.combine",
    });
    oPart.release();
  }
  mlPart.release();
  return out;
}

/**
 * Launchers of decode attention, kernels/attention_decode.wgsl: a few new queries against a key/value cache,
 * forward only (generation).
 *
 *   attentionDecodeForward(gpu, { q, k, v, mask?, out }, { B, Hq, Hkv, Tq, S, Tk, Dh, offset, causal, scale, maskStride, splits?, plan })
 *     q, out [B, Hq, Tq, Dh]; k, v [B, Hkv, S, Dh] of which rows 0 .. Tk-1 are the valid keys; query i sits
 *     at cache slot offset + i and sees key j when j < Tk, (!causal or j <= offset + i) and (no mask or
 *     mask[b, j] != 0), mask [B, maskStride] f32 with maskStride >= Tk (1 keep, 0 pad). Head h reads kv head
 *     floor(h / (Hq / Hkv)). out = softmax_j(scale * q_i · k_j over the visible j) · v; a row that sees no
 *     key gives 0. All f32; Dh a multiple of 4; B * Hkv <= 65535.
 *
 * One workgroup per (kv head, block of query rows) reads that head's keys once for all the Hq / Hkv query
 * heads sharing it (`decode_attn`); the keys are split over up to `splits` workgroups (flash-decoding) when
 * B * Hkv alone would leave the GPU idle (default: chosen from the grid size), and `decode_combine` merges
 * the splits' softmax partials, which are scratch allocated and released here. `planAttentionDecode` picks
 * the tile sizes (and checks them against the device) before anything is allocated.
 */
import decodeSrc from "../../kernels/attention_decode.wgsl" with { type: "text" };
import { defineKernel, GpuError, grid1d, NAN, type Binding, type Gpu } from "../gpu/index.ts";

export const ATTENTION_DECODE = defineKernel("kernels/attention_decode.wgsl", decodeSrc, [NAN]);

/** Workgroups the default split count aims for (a few per SM of a large GPU). */
const TARGET_WORKGROUPS = 256;
/** A split gets at least this many key tiles. */
const MIN_TILES_PER_SPLIT = 4;

/** Tile sizes of one decode call: from `planAttentionDecode`. */
export interface DecodePlan {
  readonly rows: number;
  readonly cols: number;
  readonly tpr: number;
  readonly constants: Record<string, number>;
  readonly defines: Record<string, number>;
}

/** Tuning and tests: tile sizes (keys per tile, lanes per query row). */
export interface DecodeBlocks {
  cols?: number;
  tpr?: number;
}

const sharedBytes = (rows: number, cols: number, tpr: number, dh4: number) => 16 * 2 * cols * dh4 + 4 * cols * rows * tpr + 4 * rows * cols;

/**
 * Tile sizes for query rows of Hq / Hkv heads x Tq queries per kv head: TPR lanes per query row (each lane
 * holds <= 2 vec4 of a row vector, at most 32 lanes), ROWS = the kv head's query rows (at most 256 / TPR),
 * COLS = 32 keys per tile; COLS, then ROWS, shrink until the workgroup fits the device (a GpuError when they
 * cannot, or when a requested size is not a positive integer).
 */
export function planAttentionDecode(gpu: Gpu, o: { Hq: number; Hkv: number; Tq: number; Dh: number; blocks?: DecodeBlocks }): DecodePlan {
  const want = o.blocks ?? {};
  const rowsPerHead = (o.Hq / o.Hkv) * o.Tq;
  const dh4 = o.Dh / 4;
  for (const [key, x] of Object.entries(want))
    if (x !== undefined && (!Number.isInteger(x) || x < 1)) throw new GpuError(`attentionDecode: block size ${key}=${x} must be a positive integer`);
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
      throw new GpuError(
        `attentionDecode: tiles (rows ${rows}, cols ${cols}, tpr ${tpr}) for Dh=${4 * dh4} need ${sharedBytes(rows, cols, tpr, dh4)} bytes of workgroup memory ` +
          `and ${rows * tpr} invocations; the device allows ${lim.maxComputeWorkgroupStorageSize} and ${lim.maxComputeInvocationsPerWorkgroup}`,
      );
  }
  return { rows, cols, tpr, constants: { ROWS: rows, COLS: cols, TPR: tpr, DH4: dh4 }, defines: { OV: Math.ceil(dh4 / tpr) } };
}

export interface DecodeLaunchOptions {
  B: number;
  Hq: number;
  Hkv: number;
  Tq: number;
  /** Rows of the k/v cache per head. */
  S: number;
  /** Valid keys: rows 0 .. Tk-1 of every k/v head. */
  Tk: number;
  Dh: number;
  /** Cache slot of query 0. */
  offset: number;
  causal: boolean;
  scale: number;
  /** The mask's row length M >= Tk (read when a mask is bound). */
  maskStride: number;
  /** Key splits, an integer in [1, 65535] (default: chosen from the grid size). */
  splits?: number;
  plan: DecodePlan;
}

/** Record decode attention into `out` (see the module comment). Nothing for an empty output. */
export function attentionDecodeForward(gpu: Gpu, io: { q: Binding; k: Binding; v: Binding; mask?: Binding; out: Binding }, o: DecodeLaunchOptions): void {
  const { B, Hq, Hkv, Tq, Tk, offset, causal, plan: pl } = o;
  if (B * Hq * Tq * o.Dh === 0) return;
  const dh4 = o.Dh / 4;
  const rowsPerHead = (Hq / Hkv) * Tq;
  // Split the keys any query can see (causal: up to offset + Tq) over enough workgroups.
  const keyEnd = causal ? Math.min(Tk, offset + Tq) : Tk;
  const rowBlocks = Math.ceil(rowsPerHead / pl.rows);
  const maxSplits = Math.max(1, Math.ceil(keyEnd / (MIN_TILES_PER_SPLIT * pl.cols)));
  let splits = o.splits ?? Math.min(maxSplits, Math.ceil(TARGET_WORKGROUPS / (rowBlocks * B * Hkv)));
  if (!Number.isInteger(splits) || splits < 1 || splits > 65535) throw new GpuError(`attentionDecode: splits ${splits} must be an integer in [1, 65535]`);
  const chunk = Math.max(pl.cols, Math.ceil(Math.ceil(keyEnd / splits) / pl.cols) * pl.cols);
  splits = Math.max(1, Math.ceil(keyEnd / chunk));

  const nr = B * Hq * Tq;
  const params = {
    tq: Tq,
    tk: Tk,
    s: o.S,
    offset,
    hkv: Hkv,
    rows: rowsPerHead,
    causal: causal ? 1 : 0,
    has_mask: io.mask ? 1 : 0,
    mask_stride: io.mask ? o.maskStride : 0,
    scale: o.scale,
    chunk,
    splits,
    nr,
    n: nr * dh4,
    row: 0,
    cols: pl.cols,
  };
  const direct = splits === 1; // the one split writes out itself
  const part = direct ? null : gpu.alloc(splits * nr * o.Dh * 4, "tensor");
  const oPart = part ?? io.out;
  const mlPart = gpu.alloc(splits * nr * 2 * 4, "tensor");
  gpu.dispatch(
    ATTENTION_DECODE,
    "decode_attn",
    { q: io.q, k: io.k, v: io.v, mask: io.mask ?? io.q, o_part: oPart, ml_part: mlPart },
    [rowBlocks, B * Hkv, splits],
    { params, constants: pl.constants, defines: pl.defines, name: "attention_decode" },
  );
  if (part) {
    const g = grid1d(gpu, nr * dh4, 64);
    gpu.dispatch(ATTENTION_DECODE, "decode_combine", { po: oPart, pml: mlPart, out: io.out }, g.workgroups, {
      params: { ...params, row: g.row },
      constants: { DH4: dh4 },
      name: "attention_decode.combine",
    });
    gpu.release(part);
  }
  gpu.release(mlPart);
}

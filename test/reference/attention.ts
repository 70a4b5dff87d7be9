/**
 * float64 reference of the fused attention launchers (src/kernels/attention.ts), same names and io/option
 * shapes; inputs are Float64Array, outputs are returned, each with its per-element magnitude (the sum of
 * |terms|) for tolerances. q, out, dout, dq [B, Hq, T, Dh]; k, v, dk, dv [B, Hkv, T, Dh]; lse [B, Hq, T];
 * mask [B, T] (1 keep, 0 pad). Head h reads kv head floor(h / (Hq / Hkv)); query i sees key j when
 * (!causal or j <= i) and (no mask or mask[b, j] != 0). With s_ij = scale q_i · k_j over the visible j:
 *
 *   attentionForward   P_ij = softmax_j(s_ij) (an explicit softmax per row), out_i = sum_j P_ij v_j,
 *                      lse_i = log sum_j exp(s_ij); a row with no visible key: out = 0, lse = LSE_NONE.
 *   attentionBackward  from the forward's out and lse, as the kernels read them: P_ij = exp(s_ij - lse_i),
 *                      D_i = dout_i · out_i, dS_ij = P_ij (dout_i · v_j - D_i);
 *                      dq_i = scale sum_j dS_ij k_j, dk_j = scale sum_i dS_ij q_i, dv_j = sum_i P_ij dout_i,
 *                      dk and dv summed over the query heads sharing a kv head. Given the reference forward's
 *                      out and lse these are the gradients of sum(out * dout) (checked by central differences).
 *                      Magnitudes: dS_ij is scaled by P_ij (|dout_i · v_j| + |D_i|).
 *
 * NaN, as torch: a NaN among a row's visible scores (a NaN in q_i, or in k_j of a visible j) makes its max, P, out
 * and lse NaN (Math.max of a NaN is NaN), and the gradients that read them; a NaN in v, dout, out or lse reaches
 * what it multiplies. Invisible pairs are never read (as torch's flash kernels skip masked blocks; its math path,
 * which adds -inf to the scores, would spread a NaN there too).
 */
import type { AttentionDims } from "../../src/kernels/attention.ts";

export type { AttentionDims } from "../../src/kernels/attention.ts";

/** The options the references read (the launchers' AttentionLaunchOptions, without the plan). */
export interface AttentionRefOptions extends AttentionDims {
  causal: boolean;
  scale: number;
}

/** lse of a query row that sees no key (kernels/attention.wgsl LSE_NONE): exp(s - LSE_NONE) is 0. */
export const LSE_NONE = 1e30;

/** For query row (b, h, i): its offset into q, the offset of key row j's kv head, and its visible keys. */
function rowsOf(o: AttentionRefOptions, mask: Float64Array | undefined) {
  const { B, Hq, Hkv, T, Dh } = o;
  const group = Hq / Hkv;
  const out: { b: number; h: number; i: number; qi: number; kj: (j: number) => number; js: number[] }[] = [];
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / group);
      for (let i = 0; i < T; i++) {
        const js: number[] = [];
        for (let j = 0; j < T; j++) if ((!o.causal || j <= i) && (!mask || mask[b * T + j] !== 0)) js.push(j);
        out.push({ b, h, i, qi: ((b * Hq + h) * T + i) * Dh, kj: (j) => ((b * Hkv + kh) * T + j) * Dh, js });
      }
    }
  return out;
}

const dot = (x: Float64Array, xi: number, y: Float64Array, yi: number, n: number) => {
  let s = 0;
  for (let c = 0; c < n; c++) s += x[xi + c]! * y[yi + c]!;
  return s;
};

/** out with outMag = sum_j P_ij |v_j|, lse, and hasKey [B, Hq, T] (whether the row sees any key). */
export function attentionForward(io: { q: Float64Array; k: Float64Array; v: Float64Array; mask?: Float64Array }, o: AttentionRefOptions) {
  const { Dh } = o;
  const n = o.B * o.Hq * o.T;
  const out = new Float64Array(n * Dh);
  const outMag = new Float64Array(n * Dh);
  const lse = new Float64Array(n).fill(LSE_NONE);
  const hasKey: boolean[] = [];
  rowsOf(o, io.mask).forEach(({ qi, kj, js }, row) => {
    hasKey.push(js.length > 0);
    if (!js.length) return;
    const s = js.map((j) => o.scale * dot(io.q, qi, io.k, kj(j), Dh));
    const m = Math.max(...s);
    const e = s.map((x) => Math.exp(x - m));
    const Z = e.reduce((a, x) => a + x, 0);
    lse[row] = m + Math.log(Z);
    js.forEach((j, t) => {
      const p = e[t]! / Z;
      for (let c = 0; c < Dh; c++) {
        out[qi + c] += p * io.v[kj(j) + c]!;
        outMag[qi + c] += p * Math.abs(io.v[kj(j) + c]!);
      }
    });
  });
  return { out, outMag, lse, hasKey };
}

/** dq, dk, dv (each with its magnitude) from the forward's out and lse and the output gradient dout. */
export function attentionBackward(
  io: { q: Float64Array; k: Float64Array; v: Float64Array; mask?: Float64Array; out: Float64Array; lse: Float64Array; dout: Float64Array },
  o: AttentionRefOptions,
) {
  const { Dh, scale } = o;
  const z = (x: Float64Array) => new Float64Array(x.length);
  const [dq, dqMag, dk, dkMag, dv, dvMag] = [z(io.q), z(io.q), z(io.k), z(io.k), z(io.v), z(io.v)];
  rowsOf(o, io.mask).forEach(({ qi, kj, js }, row) => {
    if (!js.length) return;
    let D = 0;
    for (let c = 0; c < Dh; c++) D += io.dout[qi + c]! * io.out[qi + c]!;
    for (const j of js) {
      const p = Math.exp(scale * dot(io.q, qi, io.k, kj(j), Dh) - io.lse[row]!);
      const dp = dot(io.dout, qi, io.v, kj(j), Dh);
      const ds = p * (dp - D);
      const dsMag = p * (Math.abs(dp) + Math.abs(D));
      for (let c = 0; c < Dh; c++) {
        const [qc, kc] = [qi + c, kj(j) + c];
        dq[qc] += scale * ds * io.k[kc]!;
        dqMag[qc] += scale * dsMag * Math.abs(io.k[kc]!);
        dk[kc] += scale * ds * io.q[qc]!;
        dkMag[kc] += scale * dsMag * Math.abs(io.q[qc]!);
        dv[kc] += p * io.dout[qc]!;
        dvMag[kc] += p * Math.abs(io.dout[qc]!);
      }
    }
  });
  return { dq, dqMag, dk, dkMag, dv, dvMag };
}

export type Padding = "none" | "left" | "right";

/**
 * A key-padding mask [B, T] for tests (1 keep, 0 padded): batch 0 pads ceil(T/4) positions, batch 1 floor(T/2), on
 * the left or the right (T = 1 pads all of batch 0); `none` gives no mask.
 */
export function paddingMask(B: number, T: number, side: Padding): Float64Array | undefined {
  if (side === "none") return undefined;
  const m = new Float64Array(B * T).fill(1);
  for (let b = 0; b < B; b++) {
    const pad = b % 2 === 0 ? Math.ceil(T / 4) : Math.floor(T / 2);
    for (let n = 0; n < pad; n++) m[b * T + (side === "left" ? n : T - 1 - n)] = 0;
  }
  return m;
}

/**
 * x [n0, n1, n2, n3] (row-major) with dimensions 1 and 2 swapped, [n0, n2, n1, n3]: [B, H, T, Dh] data to the
 * launchers' "bthd" layout [B, T, H, Dh] (shape [B, H, T, Dh]) and back (shape [B, T, H, Dh]).
 */
export function swap12(x: ArrayLike<number>, [n0, n1, n2, n3]: readonly number[]): Float64Array {
  const out = new Float64Array(x.length);
  for (let a = 0; a < n0!; a++)
    for (let b = 0; b < n1!; b++)
      for (let c = 0; c < n2!; c++)
        for (let e = 0; e < n3!; e++) out[((a * n2! + c) * n1! + b) * n3! + e] = x[((a * n1! + b) * n2! + c) * n3! + e]!;
  return out;
}

/**
 * float64 reference of the decode-attention launcher (src/kernels/attention_decode.ts), same name and
 * io/option shapes; inputs are Float64Array, the output is returned with its per-element magnitude (the sum
 * of |terms|) for tolerances. q, out [B, Hq, Tq, Dh]; k, v [B, Hkv, S, Dh] of which rows 0 .. Tk-1 are the
 * valid keys (rows past Tk are never read: they may hold NaN); mask [B, maskStride] (1 keep, 0 pad).
 *
 *   attentionDecodeForward  query i (cache slot offset + i) of head h sees key j of kv head floor(h / (Hq / Hkv))
 *                           when j < Tk, (!causal or j <= offset + i) and (no mask or mask[b, j] != 0);
 *                           out_i = sum_j softmax_j(scale q_i · k_j) v_j (an explicit softmax over the visible
 *                           keys), 0 for a row that sees none. Key splits are the kernel's business: the result
 *                           does not depend on them. NaN: a NaN among a row's visible scores, or in a visible
 *                           value row, makes its out NaN (torch's rule); invisible keys are never read.
 */
import type { DecodeLaunchOptions } from "../../src/kernels/attention_decode.ts";

/** The options the reference reads (the launcher's, without the plan and the split count). */
export type DecodeRefOptions = Omit<DecodeLaunchOptions, "plan" | "splits">;

/** out [B, Hq, Tq, Dh] with outMag = sum_j P_ij |v_j|, and hasKey [B, Hq, Tq] (whether the row sees a key). */
export function attentionDecodeForward(io: { q: Float64Array; k: Float64Array; v: Float64Array; mask?: Float64Array }, o: DecodeRefOptions) {
  const { B, Hq, Hkv, Tq, Tk, S, Dh, offset } = o;
  const group = Hq / Hkv;
  const out = new Float64Array(B * Hq * Tq * Dh);
  const outMag = new Float64Array(out.length);
  const hasKey: boolean[] = [];
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++)
      for (let i = 0; i < Tq; i++) {
        const qi = ((b * Hq + h) * Tq + i) * Dh;
        const kv = (j: number) => ((b * Hkv + Math.floor(h / group)) * S + j) * Dh;
        const js: number[] = [];
        for (let j = 0; j < Tk; j++) if ((!o.causal || j <= offset + i) && (!io.mask || io.mask[b * o.maskStride + j] !== 0)) js.push(j);
        hasKey.push(js.length > 0);
        if (!js.length) continue;
        const s = js.map((j) => {
          let acc = 0;
          for (let d = 0; d < Dh; d++) acc += io.q[qi + d]! * io.k[kv(j) + d]!;
          return acc * o.scale;
        });
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const Z = e.reduce((a, x) => a + x, 0);
        js.forEach((j, n) => {
          for (let d = 0; d < Dh; d++) {
            out[qi + d] += (e[n]! / Z) * io.v[kv(j) + d]!;
            outMag[qi + d] += (e[n]! / Z) * Math.abs(io.v[kv(j) + d]!);
          }
        });
      }
  return { out, outMag, hasKey };
}

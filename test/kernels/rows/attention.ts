// attention rows: the fused (flash) kernels' launchers attentionForward and attentionBackward
// (src/kernels/attention.ts) against test/reference/attention.ts: T in {1, 5, 17, 64}, Dh in {8, 16, 64, 256},
// Hq/Hkv in {2/2, 4/2, 4/1} (grouped-query attention), B in {1, 2}, causal or not, no / left / right key padding,
// query rows that see no key (out 0, lse LSE_NONE, zero gradients), block sizes that divide nothing, and a
// backward that writes dq alone or dk/dv alone, and a NaN in q, k, v and dout (NaN exactly where the reference
// has NaN: a NaN among a row's visible scores makes the row NaN, as in torch; invisible pairs take no part). The backward reads the reference
// forward's out and lse (rounded to f32, NaN included), so each launcher is checked on its own. Rows marked
// "bthd" run the launchers in the [B, T, H, Dh] layout (strided rows): the reference's [B, H, T, Dh] arrays are
// transposed on the host going in and coming out (lse stays [B, Hq, T]). The unfused path's own piece (attentionSoftmax) is in
// rows/softmax.ts; its matrix products in rows/matmul.ts. Tolerance: the attention op tests',
// |err| <= 1e-6 + 1e-3 sum|terms|.
import {
  attentionBackward,
  attentionForward,
  planAttention,
  type AttentionBlocks,
  type AttentionLaunchOptions,
  type AttentionLayout,
} from "../../../src/kernels/attention.ts";
import * as ref from "../../reference/attention.ts";
import { uniform } from "../../tensor/helpers.ts";
import type { Check, LauncherRow } from "../harness.ts";


interface Case {
  B: number;
  Hq: number;
  Hkv: number;
  T: number;
  Dh: number;
  causal: boolean;
  /** A padding side, or an explicit mask [B, T]. */
  pad: ref.Padding | { label: string; mask: number[] };
  scale?: number;
  blocks?: Partial<AttentionBlocks>;
  /** Backward outputs: all (default), dq only, or dk and dv only. */
  grads?: "all" | "dq" | "dkdv";
  /**
   * A NaN in one element each of q (batch 0, head 0, query min(2, T - 1)), k (the last batch and kv head, key T/2),
   * v (batch 0, kv head 0, the last key: masked under right padding) and dout (the last batch and head, query T - 2),
   * and the mask's first 1 made NaN (still a kept key).
   */
  nan?: boolean;
  /** q, k, v, out, dout and the gradients as [B, H, T, Dh] (default) or [B, T, H, Dh]. */
  layout?: AttentionLayout;
}

const TOL = { rtol: 1e-3, atol: 1e-6 };

function row(launcher: "attentionForward" | "attentionBackward", c: Case): LauncherRow {
  const padTag = typeof c.pad === "string" ? `pad=${c.pad}` : `mask ${c.pad.label}`;
  const grads = c.grads ?? "all";
  const name =
    `attention ${launcher} B${c.B} H${c.Hq}/${c.Hkv} T${c.T} Dh${c.Dh} ${c.causal ? "causal" : "full"} ${padTag}` +
    (c.scale !== undefined ? ` scale=${c.scale}` : "") +
    (c.blocks ? ` blocks=${JSON.stringify(c.blocks)}` : "") +
    (grads !== "all" ? ` (${grads} only)` : "") +
    (c.nan ? " with NaN in q k v dout" : "") +
    (c.layout ? ` ${c.layout}` : "");
  return {
    family: "attention",
    name,
    async run(gpu, io, r): Promise<Check[]> {
      const { B, Hq, Hkv, T, Dh } = c;
      const [nq, nk] = [B * Hq * T * Dh, B * Hkv * T * Dh];
      const Q = uniform(r, nq, -2, 2); // wide enough that softmax rows are far from uniform
      const K = uniform(r, nk, -2, 2);
      const V = uniform(r, nk);
      const dout = uniform(r, nq);
      if (c.nan) {
        Q[Math.min(2, T - 1) * Dh] = NaN; // every score of that query row: its out, lse and dq are NaN
        K[((B * Hkv - 1) * T + (T >> 1)) * Dh + 1] = NaN; // that key's score in every row that sees it
        V[(T - 1) * Dh + 2] = NaN; // out of the rows that see the last key (none when it is padded)
        dout[((B * Hq - 1) * T + Math.max(0, T - 2)) * Dh + 3] = NaN; // that row's dq; dk and dv of the keys it sees
      }
      const mask = typeof c.pad === "string" ? ref.paddingMask(B, T, c.pad) : Float64Array.from(c.pad.mask);
      if (c.nan && mask) mask[mask.indexOf(1)] = NaN; // a NaN mask value keeps its key (NaN != 0, torch's bool(NaN))
      const o: AttentionLaunchOptions = {
        B,
        Hq,
        Hkv,
        T,
        Dh,
        causal: c.causal,
        scale: c.scale ?? 1 / Math.sqrt(Dh),
        plan: planAttention(gpu, Dh, { blocks: c.blocks, backward: launcher === "attentionBackward" }),
        layout: c.layout,
      };
      // [B, H, T, Dh] (the reference's) to the row's layout, and back.
      const bthd = c.layout === "bthd";
      const to = (x: Float64Array, H: number) => (bthd ? ref.swap12(x, [B, H, T, Dh]) : x);
      const from = (x: ArrayLike<number>, H: number): ArrayLike<number> => (bthd ? ref.swap12(x, [B, T, H, Dh]) : x);
      const fwd = ref.attentionForward({ q: Q, k: K, v: V, mask }, o);
      const [q, k, v] = [io.input(to(Q, Hq)), io.input(to(K, Hkv)), io.input(to(V, Hkv))];
      const m = mask && io.input(mask);
      if (launcher === "attentionForward") {
        const [out, lse] = [io.output(nq), io.output(B * Hq * T)];
        attentionForward(gpu, { q, k, v, mask: m, out, lse }, o);
        return [
          { what: "out", got: from(await io.read(out, nq), Hq), ref: fwd.out, opts: { ...TOL, mag: fwd.outMag } },
          // lse = m + log(s): its f32 error is relative to |m| + |log s| <= |lse| + 2 |m| (scores here are O(1)).
          { what: "lse", got: await io.read(lse, B * Hq * T), ref: Float64Array.from(new Float32Array(fwd.lse)), opts: { rtol: 1e-5, atol: 1e-5 } },
        ];
      }
      // The backward from the reference forward's out and lse, as f32 buffers hold them.
      const out32 = Float64Array.from(new Float32Array(fwd.out));
      const lse32 = Float64Array.from(new Float32Array(fwd.lse));
      const want = ref.attentionBackward({ q: Q, k: K, v: V, mask, out: out32, lse: lse32, dout }, o);
      const dq = grads !== "dkdv" ? io.output(nq) : undefined;
      const [dk, dv] = grads !== "dq" ? [io.output(nk), io.output(nk)] : [undefined, undefined];
      attentionBackward(gpu, { q, k, v, mask: m, out: io.input(to(out32, Hq)), lse: io.input(lse32), dout: io.input(to(dout, Hq)), dq, dk, dv }, o);
      const checks: Check[] = [];
      if (dq) checks.push({ what: "dq", got: from(await io.read(dq, nq), Hq), ref: want.dq, opts: { ...TOL, mag: want.dqMag } });
      if (dk && dv) {
        checks.push({ what: "dk", got: from(await io.read(dk, nk), Hkv), ref: want.dk, opts: { ...TOL, mag: want.dkMag } });
        checks.push({ what: "dv", got: from(await io.read(dv, nk), Hkv), ref: want.dv, opts: { ...TOL, mag: want.dvMag } });
      }
      return checks;
    },
  };
}

const HEADS: [number, number][] = [
  [2, 2],
  [4, 2],
  [4, 1],
];

const cases: Case[] = [];
// Every T with every Dh of 8/16/64, cycling heads and batch over them (the attention op tests' cases), each with
// every causal x padding combination.
[1, 5, 17, 64].forEach((T, ti) =>
  [8, 16, 64].forEach((Dh, di) => {
    const [Hq, Hkv] = HEADS[(ti + di) % 3]!;
    const B = 1 + ((ti + di) % 2);
    for (const causal of [true, false]) for (const pad of ["none", "left", "right"] as const) cases.push({ B, Hq, Hkv, T, Dh, causal, pad });
  }),
);
cases.push(
  // Block sizes that divide nothing: Dh 8 = 2 vec4 over 3 lanes (lane 2 owns none); tiles of 5 queries and 7 keys.
  { B: 2, Hq: 4, Hkv: 2, T: 17, Dh: 8, causal: true, pad: "left", blocks: { bq: 5, bk: 7, tpr: 3 } },
  // Dh 16 = 4 vec4 over 3 lanes (2, 1, 1 each); one query per forward/dQ workgroup, one per dK/dV tile.
  { B: 1, Hq: 4, Hkv: 1, T: 23, Dh: 16, causal: false, pad: "right", scale: 0.5, blocks: { bq: 1, bk: 3, tpr: 3 } },
  // 32 x 8 lanes = 256 invocations, tiles of 2 keys; in dK/dV 2 x 8 = 16 invocations load 32-query tiles.
  { B: 2, Hq: 2, Hkv: 2, T: 64, Dh: 64, causal: true, pad: "right", blocks: { bq: 32, bk: 2, tpr: 8 } },
  // Dh = 256 (Gemma) fits by shrinking the tiles to the device's workgroup memory.
  { B: 1, Hq: 2, Hkv: 1, T: 19, Dh: 256, causal: true, pad: "right" },
  // Rows with no visible key: batch 0 left-padded by 3 (queries 0-2 see nothing under causal), batch 1 all padded.
  { B: 2, Hq: 2, Hkv: 1, T: 5, Dh: 8, causal: true, pad: { label: "3 left / all", mask: [0, 0, 0, 1, 1, 0, 0, 0, 0, 0] } },
  { B: 2, Hq: 2, Hkv: 1, T: 5, Dh: 8, causal: false, pad: { label: "3 left / all", mask: [0, 0, 0, 1, 1, 0, 0, 0, 0, 0] } },
);

export const rows: LauncherRow[] = [];
for (const c of cases) for (const l of ["attentionForward", "attentionBackward"] as const) rows.push(row(l, c));
// A backward that writes only dq, or only dk and dv.
rows.push(row("attentionBackward", { B: 2, Hq: 4, Hkv: 2, T: 17, Dh: 16, causal: true, pad: "left", grads: "dq" }));
rows.push(row("attentionBackward", { B: 2, Hq: 4, Hkv: 2, T: 17, Dh: 16, causal: true, pad: "left", grads: "dkdv" }));
// NaN propagation: a NaN in q and in k, causal with padding (the NaN key is masked for some rows) and not, over
// several tiles (blocks that divide nothing).
for (const c of [
  { B: 2, Hq: 4, Hkv: 2, T: 17, Dh: 16, causal: true, pad: "left", blocks: { bq: 5, bk: 7, tpr: 3 }, nan: true },
  { B: 2, Hq: 2, Hkv: 1, T: 23, Dh: 8, causal: false, pad: "right", nan: true },
] satisfies Case[])
  for (const l of ["attentionForward", "attentionBackward"] as const) rows.push(row(l, c));
// The [B, T, H, Dh] layout: GQA 4:2 and 4:1, causal with left padding (rows with no key) and not, T that no block
// divides, odd blocks and lanes, Dh 64, a backward of dq alone and of dk/dv alone, and NaN propagation.
for (const c of [
  { B: 2, Hq: 4, Hkv: 2, T: 17, Dh: 16, causal: true, pad: "left" },
  { B: 1, Hq: 4, Hkv: 1, T: 23, Dh: 16, causal: false, pad: "right", scale: 0.5, blocks: { bq: 1, bk: 3, tpr: 3 } },
  { B: 2, Hq: 4, Hkv: 2, T: 17, Dh: 8, causal: true, pad: "left", blocks: { bq: 5, bk: 7, tpr: 3 } },
  { B: 2, Hq: 2, Hkv: 2, T: 64, Dh: 64, causal: true, pad: "none" },
  { B: 2, Hq: 2, Hkv: 1, T: 5, Dh: 8, causal: true, pad: { label: "3 left / all", mask: [0, 0, 0, 1, 1, 0, 0, 0, 0, 0] } },
  { B: 2, Hq: 4, Hkv: 2, T: 17, Dh: 16, causal: true, pad: "left", blocks: { bq: 5, bk: 7, tpr: 3 }, nan: true },
] satisfies Case[])
  for (const l of ["attentionForward", "attentionBackward"] as const) rows.push(row(l, { ...c, layout: "bthd" }));
rows.push(row("attentionBackward", { B: 2, Hq: 4, Hkv: 2, T: 17, Dh: 16, causal: true, pad: "left", grads: "dq", layout: "bthd" }));
rows.push(row("attentionBackward", { B: 2, Hq: 4, Hkv: 2, T: 17, Dh: 16, causal: true, pad: "left", grads: "dkdv", layout: "bthd" }));

// attention_decode rows: attentionDecodeForward (src/kernels/attention_decode.ts) against
// test/reference/attention_decode.ts: Tq in {1, 3}, Tk up to 40 inside caches with spare rows that hold NaN
// (never to be read), Hq/Hkv in {2/2, 4/2, 4/1}, Dh in {8, 16, 64}, causal with a cache offset or not, key
// padding (mask rows of the cache's length), the key splits chosen by the launcher and forced ones (1, 2, 3, 5:
// the split-merge kernel), small tiles, rows that see no key (0, never NaN), and a NaN in q, k and a padded v
// (NaN rows exactly where the reference's are). Tolerance: the decode op tests', |err| <= 1e-5 + 1e-3 sum|terms|.
import { attentionDecodeForward, planAttentionDecode, type DecodeBlocks, type DecodeLaunchOptions } from "../../../src/kernels/attention_decode.ts";
import * as ref from "../../reference/attention_decode.ts";
import { uniform } from "../../tensor/helpers.ts";
import type { Check, LauncherRow } from "../harness.ts";

interface Case {
  B: number;
  Hq: number;
  Hkv: number;
  Tq: number;
  Tk: number;
  /** Rows allocated per kv head (>= Tk); rows past Tk hold NaN. */
  S: number;
  Dh: number;
  causal?: boolean;
  /** Default Tk - Tq (the queries are the last Tq keys). */
  offset?: number;
  /** Key padding: "pad" = row b pads its first b + 1 slots and one in the middle; "empty" = row 1 pads every slot. */
  mask?: "pad" | "empty";
  splits?: number;
  blocks?: DecodeBlocks;
  /**
   * A NaN in q (batch 0, head 0, query 0), in k (the last batch and kv head, key `offset`: seen by every query) and
   * in v (batch 0, kv head 0, key 0: padded under "pad", so it must not be read); the mask's first 1 made NaN (kept).
   */
  nan?: boolean;
}

const label = (c: Case) =>
  `attention_decode attentionDecodeForward B${c.B} H${c.Hq}/${c.Hkv} Tq${c.Tq} Tk${c.Tk} S${c.S} Dh${c.Dh}${c.causal === false ? " full" : ""}` +
  `${c.offset !== undefined ? ` offset${c.offset}` : ""}${c.mask ? ` ${c.mask}` : ""}${c.splits ? ` splits${c.splits}` : ""}${c.blocks ? ` ${JSON.stringify(c.blocks)}` : ""}${c.nan ? " with NaN in q k v" : ""}`;

/** Cache-sized k/v [B, Hkv, S, Dh] with rows >= Tk NaN. */
function cacheData(r: () => number, c: Case): Float64Array {
  const x = uniform(r, c.B * c.Hkv * c.S * c.Dh, -1, 1);
  for (let bh = 0; bh < c.B * c.Hkv; bh++) x.fill(Number.NaN, (bh * c.S + c.Tk) * c.Dh, (bh + 1) * c.S * c.Dh);
  return x;
}

/** The key mask [B, S]. */
function maskOf(c: Case): Float64Array | undefined {
  if (!c.mask) return undefined;
  const m = new Float64Array(c.B * c.S).fill(1);
  if (c.mask === "empty") return m.fill(0, c.S, 2 * c.S);
  for (let b = 0; b < c.B; b++) {
    for (let j = 0; j <= b && j < c.Tk; j++) m[b * c.S + j] = 0;
    if (c.Tk > 6) m[b * c.S + Math.floor(c.Tk / 2)] = 0;
  }
  return m;
}

function row(c: Case): LauncherRow {
  return {
    family: "attention_decode",
    name: label(c),
    async run(gpu, io, r): Promise<Check[]> {
      const Q = uniform(r, c.B * c.Hq * c.Tq * c.Dh, -2, 2);
      const [K, V] = [cacheData(r, c), cacheData(r, c)];
      const M = maskOf(c);
      if (c.nan) {
        if (M) M[M.indexOf(1)] = NaN; // a NaN mask value keeps its key (NaN != 0)
        Q[0] = NaN;
        K[((c.B * c.Hkv - 1) * c.S + (c.offset ?? c.Tk - c.Tq)) * c.Dh + 1] = NaN;
        V[2] = NaN;
      }
      const o: DecodeLaunchOptions = {
        B: c.B,
        Hq: c.Hq,
        Hkv: c.Hkv,
        Tq: c.Tq,
        S: c.S,
        Tk: c.Tk,
        Dh: c.Dh,
        offset: c.offset ?? c.Tk - c.Tq,
        causal: c.causal ?? true,
        scale: 1 / Math.sqrt(c.Dh),
        maskStride: M ? c.S : 0,
        splits: c.splits,
        plan: planAttentionDecode(gpu, { Hq: c.Hq, Hkv: c.Hkv, Tq: c.Tq, Dh: c.Dh, blocks: c.blocks }),
      };
      const n = Q.length;
      const out = io.output(n);
      attentionDecodeForward(gpu, { q: io.input(Q), k: io.input(K), v: io.input(V), mask: M && io.input(M), out }, o);
      const want = ref.attentionDecodeForward({ q: Q, k: K, v: V, mask: M }, o);
      return [{ what: "out", got: await io.read(out, n), ref: want.out, opts: { rtol: 1e-3, atol: 1e-5, mag: want.outMag } }];
    },
  };
}

const cases: Case[] = [
  { B: 1, Hq: 2, Hkv: 2, Tq: 1, Tk: 1, S: 4, Dh: 8 },
  { B: 2, Hq: 4, Hkv: 2, Tq: 1, Tk: 17, S: 24, Dh: 16, mask: "pad" },
  { B: 2, Hq: 4, Hkv: 1, Tq: 3, Tk: 40, S: 45, Dh: 16, mask: "pad" },
  { B: 1, Hq: 4, Hkv: 2, Tq: 3, Tk: 40, S: 40, Dh: 64 },
  { B: 2, Hq: 4, Hkv: 2, Tq: 3, Tk: 33, S: 40, Dh: 8, mask: "pad", splits: 3 },
  { B: 2, Hq: 4, Hkv: 1, Tq: 1, Tk: 40, S: 48, Dh: 16, mask: "pad", splits: 5, blocks: { cols: 4 } },
  { B: 1, Hq: 4, Hkv: 2, Tq: 3, Tk: 29, S: 32, Dh: 16, blocks: { cols: 4, tpr: 2 } },
  { B: 2, Hq: 2, Hkv: 1, Tq: 3, Tk: 20, S: 24, Dh: 8, causal: false, mask: "pad" },
  { B: 2, Hq: 2, Hkv: 2, Tq: 3, Tk: 20, S: 20, Dh: 8, offset: 9, mask: "pad", splits: 2, blocks: { cols: 4 } },
];
// One shape under several split counts: the launcher's choice, one split (no merge), and 2, 3 and 5 merged.
for (const splits of [undefined, 1, 2, 3, 5]) cases.push({ B: 2, Hq: 4, Hkv: 2, Tq: 2, Tk: 37, S: 40, Dh: 16, mask: "pad", splits, blocks: { cols: 4 } });
// A batch row that sees no key (every slot padded): 0, never NaN, with and without splits.
for (const splits of [1, 3]) cases.push({ B: 2, Hq: 2, Hkv: 2, Tq: 1, Tk: 12, S: 12, Dh: 8, mask: "empty", splits, blocks: { cols: 4 } });

// NaN propagation (NaN exactly where the reference has NaN): one split and three merged.
for (const splits of [1, 3]) cases.push({ B: 2, Hq: 4, Hkv: 2, Tq: 3, Tk: 33, S: 40, Dh: 8, mask: "pad", splits, blocks: { cols: 4 }, nan: true });

export const rows: LauncherRow[] = cases.map(row);

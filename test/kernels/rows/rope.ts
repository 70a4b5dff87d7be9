// rope rows: ropeForward and ropeBackward (src/kernels/rope.ts) against test/reference/rope.ts in every layout
// pair (bhtd/bthd in, bhtd/bthd out), with [T] and [B, T] positions, odd half sizes (dh 6, 10), dh up to 128,
// large and negative positions (the in-kernel sin/cos range reduction, angles up to 2^21), a 2-D workgroup
// grid (grid.maxX 2), and NaN inputs (NaN in their rotated pairs only). ropeForwardPair / ropeBackwardPair (q and
// k in one dispatch) the same way, each tensor against the reference, with k's heads fewer than q's (GQA) and more
// (the second tensor the larger grid). Tolerance: relative to |x1| + |x2|, the kernel's sin/cos within ~1 ulp of the exact ones.
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import { ropeBackward, ropeBackwardPair, ropeForward, ropeForwardPair, type RopeDims, type RopeLayout } from "../../../src/kernels/rope.ts";
import { ropeInvFreq } from "../../../src/tensor/ops/rope.ts";
import * as ref from "../../reference/rope.ts";
import { uniform } from "../../tensor/helpers.ts";
import type { LauncherRow } from "../harness.ts";

interface Case {
  b: number;
  h: number;
  t: number;
  dh: number;
  theta?: number;
  layout: RopeLayout;
  outLayout: RopeLayout;
  /** Positions: [T] or [B, T] (by length), drawn from the row's generator, or 0..T-1 when absent. */
  pos?: number[] | ((r: () => number) => number[]);
  variant?: PartialPolicy;
  label?: string;
  /** A NaN in the input's element 3 and the last one: NaN exactly in their rotated pairs. */
  nan?: boolean;
  /** With the pair launchers: k's heads (q has h). */
  pairHeads?: number;
}

const TOL = { rtol: 5e-7, atol: 0 };

function row(launcher: "ropeForward" | "ropeBackward" | "ropeForwardPair" | "ropeBackwardPair", c: Case): LauncherRow {
  const posTag = c.pos === undefined ? "" : typeof c.pos === "function" ? " random positions" : ` pos [${c.pos.join(",")}]`;
  const tags = `${c.theta ? ` theta ${c.theta}` : ""}${posTag}${c.nan ? " with NaN" : ""}${c.label ? ` (${c.label})` : ""}`;
  return {
    family: "rope",
    name: `rope ${launcher} ${c.layout}->${c.outLayout} b ${c.b} h ${c.h}${c.pairHeads ? ` and ${c.pairHeads}` : ""} t ${c.t} dh ${c.dh}${tags}`,
    variant: c.variant,
    async run(gpu, io, r) {
      const posArr = typeof c.pos === "function" ? c.pos(r) : (c.pos ?? Array.from({ length: c.t }, (_, i) => i));
      const pos = Int32Array.from(posArr);
      const o: RopeDims = { b: c.b, h: c.h, t: c.t, dh: c.dh, layout: c.layout, outLayout: c.outLayout, batchedPositions: pos.length !== c.t };
      const invFreq = Float64Array.from(ropeInvFreq(c.dh, c.theta ?? 10000));
      const n = c.b * c.h * c.t * c.dh;
      const X = uniform(r, n);
      if (c.nan) (X[3] = NaN), (X[n - 1] = NaN);
      const [p, f, out] = [io.input(pos), io.input(invFreq), io.output(n)];
      if (launcher === "ropeForwardPair" || launcher === "ropeBackwardPair") {
        const h2 = c.pairHeads!;
        const o2: RopeDims = { ...o, h: h2 };
        const n2 = c.b * h2 * c.t * c.dh;
        const X2 = uniform(r, n2);
        if (c.nan) X2[0] = NaN;
        const out2 = io.output(n2);
        const fwd = launcher === "ropeForwardPair";
        if (fwd) ropeForwardPair(gpu, { x: io.input(X), x2: io.input(X2), pos: p, invFreq: f, out, out2 }, o, h2);
        else ropeBackwardPair(gpu, { gout: io.input(X), gout2: io.input(X2), pos: p, invFreq: f, dx: out, dx2: out2 }, o, h2);
        const want = (x: Float64Array, d: RopeDims) => {
          const w = fwd ? ref.ropeForward({ x, pos, invFreq }, d) : ref.ropeBackward({ gout: x, pos, invFreq }, d);
          return "out" in w ? { v: w.out, mag: w.outMag } : { v: w.dx, mag: w.dxMag };
        };
        const [w1, w2] = [want(X, o), want(X2, o2)];
        return [
          { what: fwd ? "out (q)" : "dx (q)", got: await io.read(out, n), ref: w1.v, opts: { ...TOL, mag: w1.mag } },
          { what: fwd ? "out2 (k)" : "dx2 (k)", got: await io.read(out2, n2), ref: w2.v, opts: { ...TOL, mag: w2.mag } },
        ];
      }
      if (launcher === "ropeForward") {
        ropeForward(gpu, { x: io.input(X), pos: p, invFreq: f, out }, o);
        const want = ref.ropeForward({ x: X, pos, invFreq }, o);
        return [{ what: "out", got: await io.read(out, n), ref: want.out, opts: { ...TOL, mag: want.outMag } }];
      }
      ropeBackward(gpu, { gout: io.input(X), pos: p, invFreq: f, dx: out }, o);
      const want = ref.ropeBackward({ gout: X, pos, invFreq }, o);
      return [{ what: "dx", got: await io.read(out, n), ref: want.dx, opts: { ...TOL, mag: want.dxMag } }];
    },
  };
}

const CASES: Case[] = [];
for (const [layout, outLayout] of [["bhtd", "bhtd"], ["bthd", "bthd"], ["bthd", "bhtd"], ["bhtd", "bthd"]] as const) {
  CASES.push({ b: 2, h: 3, t: 5, dh: 8, layout, outLayout });
  CASES.push({ b: 1, h: 2, t: 7, dh: 6, layout, outLayout, theta: 500000 }); // half = 3
}
// [B, T] and [T] positions; dh up to 128.
CASES.push({ b: 2, h: 2, t: 4, dh: 16, layout: "bhtd", outLayout: "bhtd", pos: [5, 6, 7, 8, 0, 1, 2, 100] });
CASES.push({ b: 2, h: 2, t: 4, dh: 16, layout: "bthd", outLayout: "bhtd", pos: [9, 3, 0, 4000] });
CASES.push({ b: 1, h: 3, t: 3, dh: 128, layout: "bhtd", outLayout: "bhtd", pos: [0, 17, 8191], theta: 500000 });
// Large and negative positions: the sin/cos range reduction (dh 2: inv_freq = [1], angle = position, up to 2^21).
const big = (r: () => number) => Array.from({ length: 64 }, () => Math.floor(r() * 2_000_000) - 1000);
CASES.push({ b: 1, h: 1, t: 64, dh: 2, layout: "bhtd", outLayout: "bhtd", pos: big });
CASES.push({ b: 1, h: 2, t: 64, dh: 64, layout: "bhtd", outLayout: "bhtd", pos: (r) => big(r).map((p) => p % 131072) });
// A 2-D grid of workgroups (x capped at 2): 900 pairs on a 2x2 grid.
CASES.push({ b: 2, h: 3, t: 30, dh: 10, layout: "bthd", outLayout: "bhtd", variant: { grid: { maxX: 2 } }, label: "grid.maxX 2" });

// NaN propagation (a NaN reaches its rotated pair, nothing else), both layouts in and out.
CASES.push({ b: 2, h: 3, t: 5, dh: 8, layout: "bthd", outLayout: "bhtd", nan: true });
CASES.push({ b: 1, h: 2, t: 7, dh: 6, layout: "bhtd", outLayout: "bthd", nan: true });

// q and k in one dispatch: k with fewer heads than q (GQA) and with more, every layout pair; [B, T] positions; a
// 2-D grid; NaN.
const PAIRS: Case[] = [];
for (const [layout, outLayout] of [["bhtd", "bhtd"], ["bthd", "bthd"], ["bthd", "bhtd"], ["bhtd", "bthd"]] as const) {
  PAIRS.push({ b: 2, h: 4, t: 5, dh: 8, layout, outLayout, pairHeads: 2 });
  PAIRS.push({ b: 1, h: 1, t: 7, dh: 6, layout, outLayout, pairHeads: 3 });
}
PAIRS.push({ b: 2, h: 2, t: 4, dh: 16, layout: "bthd", outLayout: "bhtd", pos: [9, 3, 0, 4000, 5, 6, 7, 8], pairHeads: 1 });
PAIRS.push({ b: 2, h: 3, t: 30, dh: 10, layout: "bthd", outLayout: "bhtd", variant: { grid: { maxX: 2 } }, label: "grid.maxX 2", pairHeads: 5 });
PAIRS.push({ b: 2, h: 3, t: 5, dh: 8, layout: "bthd", outLayout: "bhtd", nan: true, pairHeads: 1 });

export const rows: LauncherRow[] = [
  ...CASES.flatMap((c) => [row("ropeForward", c), row("ropeBackward", c)]),
  ...PAIRS.flatMap((c) => [row("ropeForwardPair", c), row("ropeBackwardPair", c)]),
];

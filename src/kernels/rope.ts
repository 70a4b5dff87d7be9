/**
 * Launchers of kernels/rope.wgsl: rotary position embedding in HF LLaMA's rotate-half convention, f32.
 * For each (b, h, t) row of head dimension dh = 2 * half and i < half, angle = f32(pos[b, t]) * invFreq[i]:
 *
 *   ropeForward   out[.., i]        = x[.., i] * cos(angle) - x[.., i + half] * sin(angle)
 *                 out[.., i + half] = x[.., i + half] * cos(angle) + x[.., i] * sin(angle)
 *                 x in `layout`, out in `outLayout` (a [B, T, H, dh] projection becomes attention's
 *                 [B, H, T, dh] in the same pass).
 *   ropeBackward  dx = gout rotated by -angle, from `outLayout` back to `layout`.
 *   ropeForwardPair / ropeBackwardPair   the same for two tensors (q and k) in one dispatch.
 *
 * pos is int32 [B, T] (`batchedPositions`) or [T] shared by the batch; invFreq is f32 [dh / 2]. sin and cos
 * are computed in-kernel, accurate for |angle| < ROPE_MAX_ANGLE. Limits: B * H * T * half < 2^32.
 */
import ropeSrc from "../../kernels/rope.wgsl" with { type: "text" };
import { defineKernel, grid1d, type Binding, type Gpu } from "../gpu/index.ts";

export const ROPE = defineKernel("kernels/rope.wgsl", ropeSrc);

/** The largest |angle| the kernel's sin/cos reduction is accurate for. */
export const ROPE_MAX_ANGLE = 2 ** 21;

/** "bhtd": [B, H, T, Dh] (attention's); "bthd": [B, T, H, Dh] (a projection's output, reshaped). */
export type RopeLayout = "bhtd" | "bthd";

export interface RopeDims {
  b: number;
  h: number;
  t: number;
  /** The head dimension (even). */
  dh: number;
  /** The layout of the op's input x, and of its result. */
  layout: RopeLayout;
  outLayout: RopeLayout;
  /** pos is [B, T] (true) or [T], shared by the batch (false). */
  batchedPositions: boolean;
}

/** out (in outLayout) = x (in layout) rotated by pos * invFreq. */
export function ropeForward(gpu: Gpu, io: { x: Binding; pos: Binding; invFreq: Binding; out: Binding }, o: RopeDims): void {
  rotate(gpu, [{ src: io.x, out: io.out, h: o.h }], io.pos, io.invFreq, o.layout, o.outLayout, o, 1, "rope");
}

/** dx (in layout) = gout (in outLayout) rotated back by -pos * invFreq. */
export function ropeBackward(gpu: Gpu, io: { gout: Binding; pos: Binding; invFreq: Binding; dx: Binding }, o: RopeDims): void {
  rotate(gpu, [{ src: io.gout, out: io.dx, h: o.h }], io.pos, io.invFreq, o.outLayout, o.layout, o, -1, "rope.backward");
}

/**
 * Two tensors of the same B, T, dh and layouts (q with `o.h` heads, k with `h2`) in one dispatch: ropeForward of
 * each (HF's apply_rotary_pos_emb).
 */
export function ropeForwardPair(gpu: Gpu, io: { x: Binding; x2: Binding; pos: Binding; invFreq: Binding; out: Binding; out2: Binding }, o: RopeDims, h2: number): void {
  const pair = [{ src: io.x, out: io.out, h: o.h }, { src: io.x2, out: io.out2, h: h2 }];
  rotate(gpu, pair, io.pos, io.invFreq, o.layout, o.outLayout, o, 1, "rope.pair");
}

/** ropeBackward of both tensors of ropeForwardPair in one dispatch. */
export function ropeBackwardPair(gpu: Gpu, io: { gout: Binding; gout2: Binding; pos: Binding; invFreq: Binding; dx: Binding; dx2: Binding }, o: RopeDims, h2: number): void {
  const pair = [{ src: io.gout, out: io.dx, h: o.h }, { src: io.gout2, out: io.dx2, h: h2 }];
  rotate(gpu, pair, io.pos, io.invFreq, o.outLayout, o.layout, o, -1, "rope.pair.backward");
}

/** Rotate each src (in layout `from`, `h` heads) by dir * angle into its out (in layout `to`): one dispatch. */
function rotate(gpu: Gpu, ts: readonly { src: Binding; out: Binding; h: number }[], pos: Binding, invFreq: Binding, from: RopeLayout, to: RopeLayout, d: RopeDims, dir: 1 | -1, name: string): void {
  const half = d.dh / 2;
  const each = ts.map(({ h }) => ({
    n: d.b * h * d.t * half,
    heads: h,
    sb: h * d.t * d.dh,
    sh: from === "bhtd" ? d.t * d.dh : d.dh, // stride of h in src
    st: from === "bhtd" ? d.dh : h * d.dh, // stride of t in src
  }));
  const n = Math.max(...each.map((e) => e.n));
  if (n === 0) return;
  const g = grid1d(gpu, n);
  const [a, b] = [each[0]!, each[1] ?? { n: 0, heads: 1, sb: 0, sh: 0, st: 0 }];
  const bindings: Record<string, Binding> = { x: ts[0]!.src, pos, inv_freq: invFreq, out: ts[0]!.out };
  if (ts[1]) Object.assign(bindings, { x2: ts[1].src, out2: ts[1].out });
  gpu.dispatch(ROPE, "rope", bindings, [g.workgroups[0], g.workgroups[1], ts.length], {
    params: {
      n: a.n,
      row: g.row,
      half,
      heads: a.heads,
      seq: d.t,
      hmajor: to === "bhtd" ? 1 : 0,
      sb: a.sb,
      sh: a.sh,
      st: a.st,
      pb: d.batchedPositions ? d.t : 0,
      dir,
      n2: b.n,
      heads2: b.heads,
      sb2: b.sb,
      sh2: b.sh,
      st2: b.st,
    },
    defines: { PAIR: ts.length > 1 ? 1 : 0 },
    name,
  });
}

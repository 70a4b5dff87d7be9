/**
 * Launchers of kernels/rope.wgsl: rotary position embedding in HF LLaMA's rotate-half convention, f32.
 * For each (b, h, t) row of head dimension dh = 2 * half and i < half, angle = f32(pos[b, t]) * invFreq[i]:
 *
 *   ropeForward   out[.., i]        = x[.., i] * cos(angle) - x[.., i + half] * sin(angle)
 *                 out[.., i + half] = x[.., i + half] * cos(angle) + x[.., i] * sin(angle)
 *                 x in `layout`, out in `outLayout` (a [B, T, H, dh] projection becomes attention's
 *                 [B, H, T, dh] in the same pass).
 *   ropeBackward  dx = gout rotated by -angle, from `outLayout` back to `layout`.
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
  rotate(gpu, io.x, io.pos, io.invFreq, io.out, o.layout, o.outLayout, o, 1, "rope");
}

/** dx (in layout) = gout (in outLayout) rotated back by -pos * invFreq. */
export function ropeBackward(gpu: Gpu, io: { gout: Binding; pos: Binding; invFreq: Binding; dx: Binding }, o: RopeDims): void {
  rotate(gpu, io.gout, io.pos, io.invFreq, io.dx, o.outLayout, o.layout, o, -1, "rope.backward");
}

/** Rotate src (in layout `from`) by dir * angle into out (in layout `to`). */
function rotate(gpu: Gpu, src: Binding, pos: Binding, invFreq: Binding, out: Binding, from: RopeLayout, to: RopeLayout, d: RopeDims, dir: 1 | -1, name: string): void {
  const half = d.dh / 2;
  const n = d.b * d.h * d.t * half;
  if (n === 0) return;
  const rowT = from === "bhtd" ? d.dh : d.h * d.dh; // stride of t in src
  const rowH = from === "bhtd" ? d.t * d.dh : d.dh; // stride of h in src
  const g = grid1d(gpu, n);
  gpu.dispatch(ROPE, "rope", { x: src, pos, inv_freq: invFreq, out }, g.workgroups, {
    params: {
      n,
      row: g.row,
      half,
      heads: d.h,
      seq: d.t,
      hmajor: to === "bhtd" ? 1 : 0,
      sb: d.h * d.t * d.dh,
      sh: rowH,
      st: rowT,
      pb: d.batchedPositions ? d.t : 0,
      dir,
    },
    name,
  });
}

/**
 * Rotary position embedding as HF LLaMA applies it (LlamaRotaryEmbedding + apply_rotary_pos_emb, default
 * rope_type): rotate-half convention, out = x * cos + rotate_half(x) * sin with rotate_half(x) = cat(-x2, x1),
 * cos/sin of pos * inv_freq[i] repeated over both halves. Launchers: src/kernels/rope.ts.
 *
 *   rope(x [B, H, T, Dh], positions [B, T] or [T], { theta })              attention's layout
 *   rope(x [B, T, H, Dh], positions, { theta, layout: "bthd", outLayout: "bhtd" })
 *       a [B, T, H*Dh] projection viewed as [B, T, H, Dh], rotated AND transposed to [B, H, T, Dh] in one
 *       pass (attention, written concurrently, takes [B, H, T, Dh]); any combination of the two layouts works.
 *
 * inv_freq = 1 / (theta ** (arange(0, Dh, 2) / Dh)) is computed on the host in float32 as HF does (each step
 * correctly rounded to f32; see ropeInvFreq), not with WGSL's pow, whose error is implementation-defined and
 * would be multiplied by the position (8192 * 1 ulp of inv_freq = 5e-4 rad). torch's own float32 pow is a
 * 1-ulp one, so a few of its values are 1 ulp off ours (3 of the 792 in the goldens' survey of common Dh and
 * theta; 63 of 4816 in a wider sweep): pass HF's buffer as `invFreq` where bit-identical angles matter.
 * `invFreq` also serves rope scaling variants (e.g. Llama 3's rope_type "llama3" rescales inv_freq).
 * The angle pos * inv_freq is formed in f32 in-kernel as HF forms it, and its sin/cos computed in-kernel to
 * within ~1 ulp of torch's float32 sin/cos (kernels/rope.wgsl explains why not with WGSL's sin/cos).
 * Backward: the inverse rotation (by -angle) of the output gradient, from outLayout back to layout.
 *
 *   ropePair(q, k, positions, opts)   both at once, one dispatch each way (an op with two outputs).
 * Positions given as host data are checked at the call site (integers, |angle| < 2^21); positions in a GPU
 * tensor are not (the kernel stays in bounds; angles past 2^21 lose accuracy).
 */
import { ROPE_MAX_ANGLE, ropeBackward, ropeBackwardPair, ropeForward, ropeForwardPair, type RopeDims, type RopeLayout } from "../../kernels/rope.ts";
import { attach, attachOutputs } from "../autograd.ts";
import { fmtShape, sameShape, TensorError } from "../shape.ts";
import { checkOperands, Tensor } from "../tensor.ts";

/** The largest |angle| the kernel's sin/cos reduction is accurate for. */
export { ROPE_MAX_ANGLE };
/** "bhtd": [B, H, T, Dh] (attention's); "bthd": [B, T, H, Dh] (a projection's output, reshaped). */
export type { RopeLayout };

export interface RopeOptions {
  /** rope_theta (HF `config.rope_theta`). Default 10000. */
  theta?: number;
  /** The layout of x. Default "bhtd". */
  layout?: RopeLayout;
  /** The layout of the result. Default: x's layout. */
  outLayout?: RopeLayout;
  /**
   * Use these Dh/2 inverse frequencies instead of theta's (rope scaling). A host array is uploaded per call; a
   * f32 Tensor of Dh/2 values (uploaded once by the caller, e.g. once per forward for every layer) is used as is.
   */
  invFreq?: ArrayLike<number> | Tensor;
}

/** HF's float32 inv_freq: 1.0 / (theta ** (arange(0, dh, 2).float() / dh)), every step rounded to f32. */
export function ropeInvFreq(dh: number, theta = 10000): Float32Array {
  const f = Math.fround;
  const out = new Float32Array(dh / 2);
  for (let i = 0; i < dh / 2; i++) out[i] = f(1 / f(Math.pow(f(theta), f(f(2 * i) / dh))));
  return out;
}

interface Dims {
  b: number;
  h: number;
  t: number;
  dh: number;
}

const shapeOf = (l: RopeLayout, d: Dims) => (l === "bhtd" ? [d.b, d.h, d.t, d.dh] : [d.b, d.t, d.h, d.dh]);

/** x's dims in `layout`, checked. */
function dimsOf(op: string, x: Tensor, layout: RopeLayout): Dims {
  if (x.rank !== 4) throw new TensorError(`${op}: x must be ${layout === "bhtd" ? "[B, H, T, Dh]" : "[B, T, H, Dh]"}, got ${fmtShape(x.shape)}`);
  const [b, h, t, dh] = layout === "bhtd" ? x.shape : [x.shape[0]!, x.shape[2]!, x.shape[1]!, x.shape[3]!];
  const dims: Dims = { b: b!, h: h!, t: t!, dh: dh! };
  if (dims.dh % 2) throw new TensorError(`${op}: the head dimension must be even, got ${fmtShape(x.shape)} (Dh = ${dims.dh})`);
  return dims;
}

/** The checks and uploads shared by rope and ropePair: inv_freq and positions as GPU tensors (owned). */
function prepare(op: string, x: Tensor, dims: Dims, positions: Tensor | ArrayLike<number>, opts: RopeOptions, { layout, outLayout }: Layouts) {
  const gpu = x.gpu;
  const theta = opts.theta ?? 10000;
  if (!(Number.isFinite(theta) && theta > 0)) throw new TensorError(`${op}: theta must be finite and > 0, got ${theta}`);
  const given = opts.invFreq;
  if (given instanceof Tensor) {
    given.assertLive();
    if (given.gpu !== gpu || given.dtype !== "f32" || given.rank !== 1)
      throw new TensorError(`${op}: an invFreq tensor must be a 1-D f32 tensor on x's device, got ${given}`);
  }
  const inv = given instanceof Tensor ? null : given ? Float32Array.from(given) : ropeInvFreq(dims.dh, theta);
  const invLength = given instanceof Tensor ? given.size : inv!.length;
  if (invLength !== dims.dh / 2) throw new TensorError(`${op}: invFreq has ${invLength} values; Dh = ${dims.dh} needs ${dims.dh / 2}`);

  let pos: Tensor;
  if (positions instanceof Tensor) {
    positions.assertLive();
    if (positions.gpu !== gpu) throw new TensorError(`${op}: x and positions live on different GPU devices`);
    if (positions.dtype !== "i32") throw new TensorError(`${op}: positions must be int32, got ${positions}`);
    if (!sameShape(positions.shape, [dims.t]) && !sameShape(positions.shape, [dims.b, dims.t]))
      throw new TensorError(`${op}: positions ${fmtShape(positions.shape)} must be [T] or [B, T] = [${dims.t}] or [${dims.b}, ${dims.t}] for x ${fmtShape(x.shape)} (${layout})`);
    pos = positions.detach();
  } else {
    const n = positions.length;
    if (n !== dims.t && n !== dims.b * dims.t)
      throw new TensorError(`${op}: ${n} positions for x ${fmtShape(x.shape)} (${layout}); expected T = ${dims.t} or B*T = ${dims.b * dims.t}`);
    // With a device-side invFreq the caller bounds the angles (it knows the frequencies); check integers here.
    const maxInv = inv ? inv.reduce((m, v) => Math.max(m, Math.abs(v)), 0) : 0;
    for (let i = 0; i < n; i++) {
      const v = positions[i]!;
      if (!Number.isInteger(v) || Math.abs(v * maxInv) >= ROPE_MAX_ANGLE)
        throw new TensorError(`${op}: position ${v} at index ${i} must be an integer with |position * inv_freq| < 2^21`);
    }
    pos = Tensor.fromArray(gpu, positions, n === dims.t ? [dims.t] : [dims.b, dims.t], { dtype: "i32" });
  }
  const invT = given instanceof Tensor ? given.detach() : Tensor.fromArray(gpu, inv!, [inv!.length]);
  const o: RopeDims = { ...dims, layout, outLayout, batchedPositions: pos.rank === 2 };
  return { gpu, pos, invT, o };
}

interface Layouts {
  layout: RopeLayout;
  outLayout: RopeLayout;
}

/** opts' layouts (defaults: "bhtd", out as in), checked. */
function checkLayouts(op: string, opts: RopeOptions): Layouts {
  const layout = opts.layout ?? "bhtd";
  const outLayout = opts.outLayout ?? layout;
  for (const l of [layout, outLayout]) if (l !== "bhtd" && l !== "bthd") throw new TensorError(`${op}: layout must be "bhtd" or "bthd", got ${String(l)}`);
  return { layout, outLayout };
}

export function rope(x: Tensor, positions: Tensor | ArrayLike<number>, opts: RopeOptions = {}): Tensor {
  checkOperands("rope", x);
  const layouts = checkLayouts("rope", opts);
  const { layout, outLayout } = layouts;
  const dims = dimsOf("rope", x, layout);
  const { gpu, pos, invT, o } = prepare("rope", x, dims, positions, opts, layouts);
  const out = Tensor.empty(gpu, shapeOf(outLayout, dims));
  ropeForward(gpu, { x: x.buffer, pos: pos.buffer, invFreq: invT.buffer, out: out.buffer }, o);
  const r = attach(out, {
    op: "rope",
    inputs: [x],
    save: () => [pos, invT],
    backward: (g, [sp, si]) => {
      const dx = Tensor.empty(g.gpu, shapeOf(layout, dims));
      ropeBackward(g.gpu, { gout: g.buffer, pos: sp!.buffer, invFreq: si!.buffer, dx: dx.buffer }, o);
      return [dx];
    },
  });
  pos.release();
  invT.release();
  return r;
}

/**
 * rope of q and k at the same positions, in one dispatch each way (HF's apply_rotary_pos_emb(q, k, cos, sin)):
 * q [B, Hq, T, Dh] and k [B, Hkv, T, Dh] (or both [B, T, H, Dh] with `layout: "bthd"`); same B, T and Dh.
 * Returns [rope(q), rope(k)], each as `rope` would.
 */
export function ropePair(q: Tensor, k: Tensor, positions: Tensor | ArrayLike<number>, opts: RopeOptions = {}): [Tensor, Tensor] {
  checkOperands("ropePair", q, k);
  const layouts = checkLayouts("ropePair", opts);
  const { layout, outLayout } = layouts;
  const dq = dimsOf("ropePair", q, layout);
  const dk = dimsOf("ropePair", k, layout);
  if (dq.b !== dk.b || dq.t !== dk.t || dq.dh !== dk.dh)
    throw new TensorError(`ropePair: q ${fmtShape(q.shape)} and k ${fmtShape(k.shape)} must have the same B, T and Dh (${layout})`);
  const { gpu, pos, invT, o } = prepare("ropePair", q, dq, positions, opts, layouts);
  const outs = [Tensor.empty(gpu, shapeOf(outLayout, dq)), Tensor.empty(gpu, shapeOf(outLayout, dk))];
  ropeForwardPair(gpu, { x: q.buffer, x2: k.buffer, pos: pos.buffer, invFreq: invT.buffer, out: outs[0]!.buffer, out2: outs[1]!.buffer }, o, dk.h);
  attachOutputs(outs, {
    op: "rope.pair",
    inputs: [q, k],
    save: () => [pos, invT],
    backward: ([gq, gk], [sp, si]) => {
      const dx = [Tensor.empty(gpu, shapeOf(layout, dq)), Tensor.empty(gpu, shapeOf(layout, dk))];
      ropeBackwardPair(gpu, { gout: gq!.buffer, gout2: gk!.buffer, pos: sp!.buffer, invFreq: si!.buffer, dx: dx[0]!.buffer, dx2: dx[1]!.buffer }, o, dk.h);
      return dx;
    },
  });
  pos.release();
  invT.release();
  return [outs[0]!, outs[1]!];
}

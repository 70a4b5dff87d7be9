/**
 * float64 reference of the shape_ops launchers (src/kernels/shape_ops.ts), same names and io/option shapes;
 * data are Float64Array (or the words of i32/u32 as numbers), ids Int32Array, outputs returned. Shapes are
 * row-major; c runs over the coordinates of the iteration shape.
 *
 *   stridedCopy          dst[dst.offset + Σ c_d dst.strides[d]] = src[src.offset + Σ c_d src.strides[d]]; the
 *                        other elements of dst keep their values (the returned dst starts as a copy of io.dst).
 *   whereForward         out[c] = cond[c · cs] != 0 ? a[c · as] : b[c · bs] (element strides cs, as, bs); a NaN
 *                        condition is true (NaN != 0, torch's bool(NaN)), -0 false.
 *   whereBackward        ga[c] = cond != 0 ? gout[c] : 0, gb[c] = cond != 0 ? 0 : gout[c] (both over `shape`).
 *   clampForward         out = NaN for NaN, else min(max(x, lo), hi) (lo > hi gives hi).
 *   clampBackward        dx = lo <= x <= hi ? gout : 0 (NaN x: 0).
 *   indexSelectForward   dst[o, j, k] = src[o, ids[j], k]; an id outside [0, rows) gives NaN (f32) or the NaN bit
 *                        pattern 0x7fc00000 (i32, u32).
 *   indexSelectBackward  acc[o, ids[j], k] += gout[o, j, k] (invalid ids skipped); accMag = |acc in| + Σ |terms|.
 *
 * Also the op-level reference of every copying op (slice, concat, permute, ...): `copyByMap`, an output
 * coordinate → input element map, with its gradient as the scatter-add of the upstream gradient.
 */
import type { CopyDType, IndexSelectDims, StridedView } from "../../src/kernels/shape_ops.ts";

export type { CopyDType, IndexSelectDims, StridedView } from "../../src/kernels/shape_ops.ts";

type Shape = readonly number[];
const numel = (s: Shape) => s.reduce((a, b) => a * b, 1);

/** Row-major coordinates of flat index i in `shape`. */
export function coords(i: number, shape: Shape): number[] {
  const c = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    c[d] = i % shape[d]!;
    i = Math.floor(i / shape[d]!);
  }
  return c;
}

/** Flat row-major index of coordinates c in `shape`. */
export const flatIndex = (c: readonly number[], shape: Shape) => c.reduce((acc, v, d) => acc * shape[d]! + v, 0);

/** Element strides of `s` read through the broadcast shape `out` (0 along broadcast and missing leading dimensions). */
export function broadcastStrides(s: Shape, out: Shape): number[] {
  const pad = out.length - s.length;
  return out.map((_, i) => (i < pad || s[i - pad] === 1 ? 0 : s.slice(i - pad + 1).reduce((a, b) => a * b, 1)));
}

const dot = (c: readonly number[], st: readonly number[]) => c.reduce((a, v, d) => a + v * st[d]!, 0);

export function stridedCopy(io: { src: ArrayLike<number>; dst: ArrayLike<number> }, o: { shape: Shape; src: StridedView; dst: StridedView; dtype: CopyDType }) {
  const dst = Float64Array.from(io.dst);
  for (let i = 0; i < numel(o.shape); i++) {
    const c = coords(i, o.shape);
    dst[(o.dst.offset ?? 0) + dot(c, o.dst.strides)] = io.src[(o.src.offset ?? 0) + dot(c, o.src.strides)]!;
  }
  return { dst };
}

export function whereForward(io: { cond: Float64Array; a: Float64Array; b: Float64Array }, o: { shape: Shape; strides: readonly [Shape, Shape, Shape] }) {
  const out = new Float64Array(numel(o.shape));
  for (let i = 0; i < out.length; i++) {
    const c = coords(i, o.shape);
    out[i] = io.cond[dot(c, o.strides[0])] !== 0 ? io.a[dot(c, o.strides[1])]! : io.b[dot(c, o.strides[2])]!;
  }
  return { out };
}

export function whereBackward(io: { cond: Float64Array; gout: Float64Array }, o: { shape: Shape; condStrides: Shape }) {
  const n = numel(o.shape);
  const [ga, gb] = [new Float64Array(n), new Float64Array(n)];
  for (let i = 0; i < n; i++) (io.cond[dot(coords(i, o.shape), o.condStrides)] !== 0 ? ga : gb)[i] = io.gout[i]!;
  return { ga, gb };
}

export function clampForward(io: { x: Float64Array }, o: { n: number; lo: number; hi: number }) {
  return { out: io.x.map((v) => (Number.isNaN(v) ? v : Math.min(Math.max(v, o.lo), o.hi))) };
}

export function clampBackward(io: { x: Float64Array; gout: Float64Array }, o: { n: number; lo: number; hi: number }) {
  return { dx: io.x.map((v, i) => (o.lo <= v && v <= o.hi ? io.gout[i]! : 0)) };
}

export function indexSelectForward(io: { src: ArrayLike<number>; ids: Int32Array }, o: IndexSelectDims & { dtype: CopyDType }) {
  const { outer, rows, m, inner } = o;
  const dst = new Float64Array(outer * m * inner);
  const bad = o.dtype === "f32" ? NaN : 0x7fc00000;
  for (let a = 0; a < outer; a++)
    for (let j = 0; j < m; j++) {
      const id = io.ids[j]!;
      for (let k = 0; k < inner; k++) dst[(a * m + j) * inner + k] = id >= 0 && id < rows ? io.src[(a * rows + id) * inner + k]! : bad;
    }
  return { dst };
}

export function indexSelectBackward(io: { gout: Float64Array; ids: Int32Array; acc: Float64Array }, o: IndexSelectDims) {
  const { outer, rows, m, inner } = o;
  const acc = Float64Array.from(io.acc);
  const accMag = io.acc.map(Math.abs);
  for (let a = 0; a < outer; a++)
    for (let j = 0; j < m; j++) {
      const id = io.ids[j]!;
      if (id < 0 || id >= rows) continue;
      for (let k = 0; k < inner; k++) {
        const g = io.gout[(a * m + j) * inner + k]!;
        acc[(a * rows + id) * inner + k] += g;
        accMag[(a * rows + id) * inner + k] += Math.abs(g);
      }
    }
  return { acc, accMag };
}

/**
 * A copying op as a map: output coordinates → [which input, flat index in it], or null (a NaN output).
 * Forward: out = inputs[k][idx]; the gradient of sum(out * R): grads[k][idx] += R, with the sums of |terms|.
 */
export type SourceMap = (c: number[]) => [number, number] | null;
export function copyByMap(inputs: Float64Array[], outShape: Shape, map: SourceMap, R: Float64Array) {
  const n = numel(outShape);
  const out = new Float64Array(n);
  const grads = inputs.map((x) => new Float64Array(x.length));
  const mags = inputs.map((x) => new Float64Array(x.length));
  for (let i = 0; i < n; i++) {
    const src = map(coords(i, outShape));
    if (!src) {
      out[i] = Number.NaN;
      continue;
    }
    const [k, idx] = src;
    out[i] = inputs[k]![idx]!;
    grads[k]![idx] += R[i]!;
    mags[k]![idx] += Math.abs(R[i]!);
  }
  return { out, grads, mags };
}

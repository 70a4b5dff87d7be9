/**
 * float64 reference of src/kernels/binary.ts: elementwise add, sub, mul, div with NumPy broadcasting.
 *
 *   binaryForward({ a, b }, { op, aShape, bShape, outShape })  → { out }
 *       out[i] = f(a[ia], b[ib]) over outShape, a and b broadcast to it (ia, ib: the element of each operand
 *       broadcast onto i, test/reference/broadcast.ts `sourceIndex`).
 *   binaryGrad({ gout, a, b }, { op, wrt, aShape, bShape, outShape })  → { out }
 *       out[i] = g[i] · ∂f/∂wrt (a[ia], b[ib]) over the OUTPUT's shape (not summed: the launcher's contract).
 *   sumToShape(x, outShape, shape)  → { y, yMag }
 *       what the op's backward rule does next: x (outShape) summed over the dimensions broadcasting expanded,
 *       down to `shape`, with yMag the sum of |terms| (the scale a relative tolerance needs).
 *
 * The math, per op (x from a, y from b):
 *   add: f = x + y,  ∂x = 1,    ∂y = 1
 *   sub: f = x − y,  ∂x = 1,    ∂y = −1
 *   mul: f = x · y,  ∂x = y,    ∂y = x
 *   div: f = x / y,  ∂x = 1/y,  ∂y = −x / y²
 * (BINARY_REF, checked against central differences in test/tensor/binary.test.ts).
 */
import type { BinaryOp } from "../../src/kernels/binary.ts";
import { sourceIndex } from "./broadcast.ts";

type Shape = readonly number[];
const numel = (s: Shape) => s.reduce((a, b) => a * b, 1);

type F2 = (x: number, y: number) => number;

/** Per op: the forward f(x, y) and its partial derivatives. */
export const BINARY_REF: Record<BinaryOp, { f: F2; dx: F2; dy: F2 }> = {
  add: { f: (x, y) => x + y, dx: () => 1, dy: () => 1 },
  sub: { f: (x, y) => x - y, dx: () => 1, dy: () => -1 },
  mul: { f: (x, y) => x * y, dx: (_, y) => y, dy: (x) => x },
  div: { f: (x, y) => x / y, dx: (_, y) => 1 / y, dy: (x, y) => -x / (y * y) },
};

export const BINARY_OPS = Object.keys(BINARY_REF) as BinaryOp[];

interface Shapes {
  aShape: Shape;
  bShape: Shape;
  outShape: Shape;
}

/** out = f(a, b) over outShape. */
export function binaryForward(io: { a: Float64Array; b: Float64Array }, o: { op: BinaryOp } & Shapes): { out: Float64Array } {
  const ia = sourceIndex(o.aShape, o.outShape);
  const ib = sourceIndex(o.bShape, o.outShape);
  const f = BINARY_REF[o.op].f;
  const out = new Float64Array(numel(o.outShape));
  for (let i = 0; i < out.length; i++) out[i] = f(io.a[ia[i]!]!, io.b[ib[i]!]!);
  return { out };
}

/**
 * out = g · ∂f/∂wrt over outShape. a and b may be omitted where the derivative does not read them (as the
 * launcher's bindings); a missing operand reads as NaN, so a derivative that needs it cannot pass.
 */
export function binaryGrad(
  io: { gout: Float64Array; a?: Float64Array; b?: Float64Array },
  o: { op: BinaryOp; wrt: "a" | "b" } & Shapes,
): { out: Float64Array } {
  const ia = sourceIndex(o.aShape, o.outShape);
  const ib = sourceIndex(o.bShape, o.outShape);
  const d = o.wrt === "a" ? BINARY_REF[o.op].dx : BINARY_REF[o.op].dy;
  const out = new Float64Array(numel(o.outShape));
  for (let i = 0; i < out.length; i++) out[i] = io.gout[i]! * d(io.a ? io.a[ia[i]!]! : NaN, io.b ? io.b[ib[i]!]! : NaN);
  return { out };
}

/** x (outShape) summed down to `shape` (a shape broadcast to outShape), with the sums of |terms|. */
export function sumToShape(x: ArrayLike<number>, outShape: Shape, shape: Shape): { y: Float64Array; yMag: Float64Array } {
  const idx = sourceIndex(shape, outShape);
  const y = new Float64Array(numel(shape));
  const yMag = new Float64Array(y.length);
  for (let i = 0; i < idx.length; i++) {
    y[idx[i]!] += x[i]!;
    yMag[idx[i]!] += Math.abs(x[i]!);
  }
  return { y, yMag };
}

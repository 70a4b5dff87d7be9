/**
 * Launchers of kernels/binary.wgsl: elementwise binary ops with NumPy broadcasting over f32 operands.
 * Each op is one row of BINARY_OPS: its forward expression f in x (from a) and y (from b), and each input's
 * gradient expression in g (the output's gradient), x and y.
 *
 *   binaryForward(gpu, { a, b, out }, { op, aShape, bShape, outShape })
 *       out[i] = f(a[ia], b[ib]) over outShape, a and b broadcast to it (ia, ib: i seen through each operand's
 *       broadcast strides). Same-shape operands run the flat entry (in vec4 units when the size allows),
 *       others the strided one (dimensions coalesced first: at most 6 may remain, else a TensorError).
 *   binaryGrad(gpu, { gout, a?, b?, out }, { op, wrt, aShape, bShape, outShape })
 *       out[i] = g[i] · ∂f/∂wrt (a[ia], b[ib]) over the OUTPUT's shape: the caller sums it down to the input's
 *       shape where broadcasting expanded it. Bind the operands the caller saved (binaryGradReads says which
 *       the expression reads); every bound operand must be outShape-shaped for the flat entry.
 *
 * binaryGradReads(op, wrt) tells which operands a gradient expression reads, and whether it is g itself
 * (add, and sub's first input: no kernel needed).
 */
import binarySrc from "../../kernels/binary.wgsl" with { type: "text" };
import { defineKernel, elementwise, grid1d, type Binding, type Gpu } from "../gpu/index.ts";
import { broadcastStrides, sameShape, stridedParams } from "../gpu/strided.ts";

export const BINARY = defineKernel("kernels/binary.wgsl", binarySrc);

type Shape = readonly number[];

interface BinaryDef {
  /** Forward: out = f(x, y). */
  f: string;
  /** Gradient wrt a: g * d f/dx. */
  da: string;
  /** Gradient wrt b: g * d f/dy. */
  db: string;
}

export const BINARY_OPS = {
  add: { f: "x + y", da: "g", db: "g" },
  sub: { f: "x - y", da: "g", db: "-g" },
  mul: { f: "x * y", da: "g * y", db: "g * x" },
  div: { f: "x / y", da: "g / y", db: "-(g / y) * (x / y)" },
} satisfies Record<string, BinaryDef>;

export type BinaryOp = keyof typeof BINARY_OPS;

const reads = (expr: string, v: "x" | "y") => new RegExp(`\\b${v}\\b`).test(expr);
const gradExpr = (op: BinaryOp, wrt: "a" | "b"): string => (BINARY_OPS[op] as BinaryDef)[wrt === "a" ? "da" : "db"];

/** Which operands the gradient of `op` wrt `wrt` reads (a: x, b: y), and whether it is just g. */
export function binaryGradReads(op: BinaryOp, wrt: "a" | "b"): { a: boolean; b: boolean; identity: boolean } {
  const e = gradExpr(op, wrt);
  return { a: reads(e, "x"), b: reads(e, "y"), identity: e === "g" };
}

/** out = f(a, b) over outShape, with a and b broadcast to it. */
export function binaryForward(gpu: Gpu, io: { a: Binding; b: Binding; out: Binding }, o: { op: BinaryOp; aShape: Shape; bShape: Shape; outShape: Shape }): void {
  const same = sameShape(o.aShape, o.outShape) && sameShape(o.bShape, o.outShape);
  launch(gpu, same ? "binary" : "binary_bcast", o.op, BINARY_OPS[o.op].f, "", io, o);
}

/** out = g · ∂f/∂wrt over outShape (not summed down to the input's shape). */
export function binaryGrad(
  gpu: Gpu,
  io: { gout: Binding; a?: Binding; b?: Binding; out: Binding },
  o: { op: BinaryOp; wrt: "a" | "b"; aShape: Shape; bShape: Shape; outShape: Shape },
): void {
  const expr = gradExpr(o.op, o.wrt);
  const load = (reads(expr, "x") ? "let x = a[o.x]; " : "") + (reads(expr, "y") ? "let y = b[o.y];" : "");
  launch(gpu, "binary_grad", `${o.op}.grad_${o.wrt}`, expr, load, io, o);
}

/** Record one binary_* dispatch over `outShape`, with a and b (either may be unbound) broadcast to it. */
function launch(
  gpu: Gpu,
  entry: "binary" | "binary_bcast" | "binary_grad",
  name: string,
  expr: string,
  load: string,
  io: { a?: Binding; b?: Binding; gout?: Binding; out: Binding },
  o: { aShape: Shape; bShape: Shape; outShape: Shape },
): void {
  const outShape = o.outShape;
  const n = outShape.reduce((p, d) => p * d, 1);
  if (n === 0) return;
  const bindings: Record<string, Binding> = { out: io.out };
  if (io.a) bindings.a = io.a;
  if (io.b) bindings.b = io.b;
  if (io.gout) bindings.gout = io.gout;
  const bound: (Shape | undefined)[] = [io.a && o.aShape, io.b && o.bShape];
  // The module holds every entry: the expressions a dispatch does not use are zeros of the element type.
  const exprs = (vt: string) => (entry === "binary_grad" ? { F: `${vt}(0.0)`, D: expr, LOAD: load } : { F: expr, D: `${vt}(0.0)`, LOAD: "" });
  // Every bound operand the output's shape: flat entries in vec4 units where the size allows.
  const flat = entry === "binary" || bound.every((s) => !s || sameShape(s, outShape));
  if (flat) {
    const e = elementwise(gpu, n);
    const params = { ...BINARY.zeroParams, n: e.units, row: e.row };
    gpu.dispatch(BINARY, entry === "binary" ? "binary" : "binary_grad_flat", bindings, e.workgroups, { params, defines: { ...exprs(e.defines.VT), ...e.defines }, name });
    return;
  }
  const strides = bound.map((s) => (s ? broadcastStrides(s, outShape) : outShape.map(() => 0)));
  const g = grid1d(gpu, n);
  const params = { ...stridedParams(name, outShape, strides, "ab"), row: g.row };
  gpu.dispatch(BINARY, entry, bindings, g.workgroups, { params, defines: exprs("f32"), name });
}


/**
 * Elementwise binary ops with NumPy broadcasting: add, sub, mul, div. Kernels: kernels/binary.wgsl.
 *
 * Each op is one row of OPS: its forward expression in x (from a) and y (from b), and each input's local
 * gradient expression in g (the output's gradient), x and y. Backward evaluates that expression over the
 * output's shape and sums it down to the input's shape where broadcasting expanded it. Which of a and b a
 * node saves follows from which variables the needed gradient expressions read.
 */
import binarySrc from "../../../kernels/binary.wgsl" with { type: "text" };
import { defineKernel, elementwise, type Gpu, type PooledBuffer } from "../../gpu/index.ts";
import { attach } from "../autograd.ts";
import { broadcastShapes, broadcastStrides, sameShape, stridedParams, type Shape } from "../shape.ts";
import { checkOperands, grid1d, Tensor } from "../tensor.ts";
import { sumTo } from "./reduce.ts";

export const BINARY = defineKernel("kernels/binary.wgsl", binarySrc);

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

/** Record one binary_* dispatch over `outShape`, with a and b (either may be absent) broadcast to it. */
function launch(
  gpu: Gpu,
  entry: "binary" | "binary_bcast" | "binary_grad",
  name: string,
  expr: string,
  load: string,
  bind: { a?: Tensor; b?: Tensor; gout?: Tensor },
  outShape: Shape,
  out: Tensor,
): void {
  const n = out.size;
  if (n === 0) return;
  const bindings: Record<string, PooledBuffer> = { out: out.buffer };
  if (bind.a) bindings.a = bind.a.buffer;
  if (bind.b) bindings.b = bind.b.buffer;
  if (bind.gout) bindings.gout = bind.gout.buffer;
  // The module holds every entry: the expressions a dispatch does not use are zeros of the element type.
  const exprs = (vt: string) => (entry === "binary_grad" ? { F: `${vt}(0.0)`, D: expr, LOAD: load } : { F: expr, D: `${vt}(0.0)`, LOAD: "" });
  // Every bound operand the output's shape: flat entries in vec4 units where the size allows.
  const flat = entry === "binary" || [bind.a, bind.b].every((t) => !t || sameShape(t.shape, outShape));
  if (flat) {
    const e = elementwise(gpu, n);
    const params = { ...BINARY.zeroParams, n: e.units, row: e.row };
    gpu.dispatch(BINARY, entry === "binary" ? "binary" : "binary_grad_flat", bindings, e.workgroups, { params, defines: { ...exprs(e.defines.VT), ...e.defines }, name });
    return;
  }
  const strides = [bind.a, bind.b].map((t) => (t ? broadcastStrides(t.shape, outShape) : outShape.map(() => 0)));
  const g = grid1d(gpu, n);
  const params = { ...stridedParams(name, outShape, strides, "ab"), row: g.row };
  gpu.dispatch(BINARY, entry, bindings, g.workgroups, { params, defines: exprs("f32"), name });
}

/** One input's gradient: evaluate `expr` over the output's shape, then sum down to `inShape`. */
function gradient(name: string, expr: string, g: Tensor, a: Tensor | null, b: Tensor | null, inShape: Shape): Tensor {
  let full: Tensor;
  if (expr === "g") full = g.detach();
  else {
    full = Tensor.empty(g.gpu, g.shape);
    const load = (reads(expr, "x") ? "let x = a[o.x]; " : "") + (reads(expr, "y") ? "let y = b[o.y];" : "");
    launch(g.gpu, "binary_grad", name, expr, load, { a: a ?? undefined, b: b ?? undefined, gout: g }, g.shape, full);
  }
  if (sameShape(full.shape, inShape)) return full;
  const r = sumTo(full, inShape);
  full.release();
  return r;
}

export function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const gpu = checkOperands(op, a, b);
  const def: BinaryDef = BINARY_OPS[op];
  const shape = broadcastShapes(op, a.shape, b.shape);
  const out = Tensor.empty(gpu, shape);
  const same = sameShape(a.shape, shape) && sameShape(b.shape, shape);
  launch(gpu, same ? "binary" : "binary_bcast", op, def.f, "", { a, b }, shape, out);
  const [aShape, bShape] = [a.shape, b.shape];
  // Gradient expressions each needed input's gradient reads: save x (a) or y (b) only for those.
  const needed = (needs: readonly boolean[]) => [needs[0] ? def.da : "", needs[1] ? def.db : ""].join(" ");
  return attach(out, {
    op,
    inputs: [a, b],
    save: (needs) => [reads(needed(needs), "x") ? a : null, reads(needed(needs), "y") ? b : null],
    backward: (g, [sa, sb], needs) => [
      needs[0] ? gradient(`${op}.grad_a`, def.da, g, sa, sb, aShape) : null,
      needs[1] ? gradient(`${op}.grad_b`, def.db, g, sa, sb, bShape) : null,
    ],
  });
}

/** a + b, broadcasting. */
export const add = (a: Tensor, b: Tensor): Tensor => binary("add", a, b);
/** a - b, broadcasting. */
export const sub = (a: Tensor, b: Tensor): Tensor => binary("sub", a, b);
/** a * b (elementwise), broadcasting. */
export const mul = (a: Tensor, b: Tensor): Tensor => binary("mul", a, b);
/** a / b, broadcasting. */
export const div = (a: Tensor, b: Tensor): Tensor => binary("div", a, b);

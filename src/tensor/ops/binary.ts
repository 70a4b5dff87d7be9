/**
 * Elementwise binary ops with NumPy broadcasting: add, sub, mul, div. Launchers: src/kernels/binary.ts (the
 * forward and gradient expressions of every op, kernels/binary.wgsl).
 *
 * Backward evaluates each needed input's gradient expression over the output's shape and sums it down to
 * the input's shape where broadcasting expanded it. Which of a and b a node saves follows from which
 * operands the needed gradient expressions read.
 */
import { binaryForward, binaryGrad, binaryGradReads, type BinaryOp } from "../../kernels/binary.ts";
import { attach } from "../autograd.ts";
import { broadcastShapes, sameShape, type Shape } from "../shape.ts";
import { checkOperands, Tensor } from "../tensor.ts";
import { sumTo } from "./reduce.ts";

export { BINARY_OPS, type BinaryOp } from "../../kernels/binary.ts";

/** One input's gradient: its expression over the output's shape (g itself for add), summed down to its shape. */
function gradient(op: BinaryOp, wrt: "a" | "b", g: Tensor, a: Tensor | null, b: Tensor | null, shapes: { aShape: Shape; bShape: Shape }): Tensor {
  let full: Tensor;
  if (binaryGradReads(op, wrt).identity) full = g.detach();
  else {
    full = Tensor.empty(g.gpu, g.shape);
    binaryGrad(g.gpu, { gout: g.buffer, a: a?.buffer, b: b?.buffer, out: full.buffer }, { op, wrt, ...shapes, outShape: g.shape });
  }
  const inShape = wrt === "a" ? shapes.aShape : shapes.bShape;
  if (sameShape(full.shape, inShape)) return full;
  const r = sumTo(full, inShape);
  full.release();
  return r;
}

export function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const gpu = checkOperands(op, a, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const out = Tensor.empty(gpu, shape);
  const shapes = { aShape: a.shape, bShape: b.shape };
  binaryForward(gpu, { a: a.buffer, b: b.buffer, out: out.buffer }, { op, ...shapes, outShape: shape });
  // Operands the needed inputs' gradient expressions read: save a or b only for those.
  const uses = [binaryGradReads(op, "a"), binaryGradReads(op, "b")];
  const reads = (needs: readonly boolean[], k: "a" | "b") => needs.some((n, i) => n && uses[i]![k]);
  return attach(out, {
    op,
    inputs: [a, b],
    save: (needs) => [reads(needs, "a") ? a : null, reads(needs, "b") ? b : null],
    backward: (g, [sa, sb], needs) => [
      needs[0] ? gradient(op, "a", g, sa ?? null, sb ?? null, shapes) : null,
      needs[1] ? gradient(op, "b", g, sa ?? null, sb ?? null, shapes) : null,
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

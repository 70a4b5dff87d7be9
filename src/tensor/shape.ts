/**
 * Shapes: NumPy broadcasting, axis normalization, checks. Row-major strides, dimension coalescing (the step that
 * lets one rank-limited kernel serve every broadcast pattern) and the strided kernels' params are launch
 * machinery, in src/gpu/strided.ts, re-exported here.
 */
import { TensorError } from "../gpu/errors.ts";
import { fmtShape } from "../gpu/strided.ts";

/** A usage error at an op's call site (bad shapes, axes, a released tensor, ...); defined in src/gpu/errors.ts. */
export { TensorError };
export { broadcastStrides, coalesce, fmtShape, MAX_RANK, sameShape, stridedParams, stridesOf } from "../gpu/strided.ts";

export type Shape = readonly number[];

export function numel(s: Shape): number {
  let n = 1;
  for (const d of s) n *= d;
  return n;
}

export function checkShape(s: Shape, what = "shape"): number[] {
  for (const d of s)
    if (!Number.isInteger(d) || d < 0) throw new TensorError(`${what} ${fmtShape(s)}: every dimension must be an integer >= 0`);
  return [...s];
}



/** NumPy broadcasting of two shapes; throws naming `op` and both shapes. */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1)
      throw new TensorError(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} cannot be broadcast together (dimension ${i - n}: ${da} vs ${db})`);
    out[i] = da === 1 ? db : da;
  }
  return out;
}


/** Resolve a possibly negative axis against `rank`; throws naming the op. */
export function normalizeAxis(op: string, axis: number, shape: Shape): number {
  const r = shape.length;
  if (!Number.isInteger(axis) || axis < -r || axis >= r)
    throw new TensorError(`${op}: axis ${axis} is out of range for shape ${fmtShape(shape)} (rank ${r}; valid: ${-r}..${r - 1})`);
  return axis < 0 ? axis + r : axis;
}

/** Resolve one -1 in a reshape target. */
export function inferShape(op: string, from: Shape, to: Shape): number[] {
  const n = numel(from);
  const holes = to.filter((d) => d === -1).length;
  if (holes > 1) throw new TensorError(`${op}: only one dimension may be -1 in ${fmtShape(to)}`);
  const known = to.reduce((a, d) => (d === -1 ? a : a * d), 1);
  checkShape(to.filter((d) => d !== -1), `${op}: target shape`);
  const out = to.map((d) => (d === -1 ? (known === 0 ? 0 : n / known) : d));
  if (!out.every(Number.isInteger) || numel(out) !== n || (holes === 1 && known === 0 && n !== 0))
    throw new TensorError(`${op}: cannot reshape ${fmtShape(from)} (${n} elements) into ${fmtShape(to)}`);
  return out;
}

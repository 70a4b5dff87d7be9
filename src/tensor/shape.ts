/**
 * Shapes: row-major strides, NumPy broadcasting, axis normalization, and dimension coalescing (the step that
 * lets one rank-limited kernel serve every broadcast pattern).
 */
import { GpuError } from "../gpu/errors.ts";

export type Shape = readonly number[];

/** A usage error at an op's call site (bad shapes, axes, a released tensor, ...). */
export class TensorError extends GpuError {}

export function fmtShape(s: Shape): string {
  return `[${s.join(", ")}]`;
}

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

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Row-major (C-contiguous) strides in elements. */
export function stridesOf(s: Shape): number[] {
  const st = new Array<number>(s.length);
  let acc = 1;
  for (let i = s.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= s[i]!;
  }
  return st;
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

/** Strides of `s` (contiguous) seen through the broadcast shape `out`: 0 along broadcast dimensions. */
export function broadcastStrides(s: Shape, out: Shape): number[] {
  const st = stridesOf(s);
  const pad = out.length - s.length;
  return out.map((_, i) => (i < pad || s[i - pad] === 1 ? 0 : st[i - pad]!));
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

/**
 * Merge adjacent dimensions that every operand walks contiguously, drop size-1 dimensions, and return them
 * innermost first (what the kernels want). `strides[k][d]` is operand k's stride along dimension d of `shape`.
 * The result has at least one dimension. E.g. out [3,4,5] with a [3,4,5] and b [4,1] → sizes [5,4,3],
 * a strides [1,5,20], b strides [0,1,0]; out [6,5] with a [6,5] and b [5] → sizes [5,6] (already minimal).
 */
export function coalesce(shape: Shape, strides: readonly (readonly number[])[]): { sizes: number[]; strides: number[][] } {
  const sizes: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let d = shape.length - 1; d >= 0; d--) {
    const n = shape[d]!;
    if (n === 1) continue;
    const last = sizes.length - 1;
    if (last >= 0 && strides.every((s, k) => s[d] === st[k]![last]! * sizes[last]!)) {
      sizes[last] = sizes[last]! * n;
      continue;
    }
    sizes.push(n);
    strides.forEach((s, k) => st[k]!.push(s[d]!));
  }
  if (sizes.length === 0) {
    sizes.push(1);
    st.forEach((s) => s.push(0));
  }
  return { sizes, strides: st };
}

/** Dimensions the strided kernels (binary.wgsl, shape_ops.wgsl) walk after coalescing. */
export const MAX_RANK = 6;

/**
 * The params of a kernel that walks `shape` with strided operands named by `operands` (e.g. "ab" or "abc"):
 * n, rank, coalesced sizes s0..s5 and per-operand strides a0..a5, b0..b5, …. Throws naming `op` when more
 * than MAX_RANK dimensions survive coalescing.
 */
export function stridedParams(op: string, shape: Shape, strides: (readonly number[])[], operands: string): Record<string, number> {
  const c = coalesce(shape, strides);
  if (c.sizes.length > MAX_RANK)
    throw new TensorError(`${op}: ${fmtShape(shape)} needs ${c.sizes.length} dimensions after merging contiguous ones; kernels handle ${MAX_RANK}`);
  const p: Record<string, number> = { n: numel(shape), rank: c.sizes.length };
  for (let d = 0; d < MAX_RANK; d++) {
    p[`s${d}`] = c.sizes[d] ?? 1;
    [...operands].forEach((k, j) => (p[`${k}${d}`] = c.strides[j]?.[d] ?? 0));
  }
  return p;
}

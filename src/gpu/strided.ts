/**
 * Parameters of the strided-walk kernels (kernels/binary.wgsl, shape_ops.wgsl): each invocation walks one
 * element of an iteration shape and reads or writes its operands at per-operand strides. Shapes are first
 * coalesced (contiguous runs merged, size-1 dimensions dropped) so that one rank-limited kernel serves every
 * broadcast and view pattern. Launch machinery shared by several op families (src/tensor/shape.ts re-exports it).
 */
import { TensorError } from "./errors.ts";

type Shape = readonly number[];

/** `[2, 3]`: a shape as messages print it. */
export function fmtShape(s: Shape): string {
  return `[${s.join(", ")}]`;
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

/** Strides of `s` read through the broadcast shape `out` (0 along broadcast and missing leading dimensions). */
export function broadcastStrides(s: Shape, out: Shape): number[] {
  const st = stridesOf(s);
  const pad = out.length - s.length;
  return out.map((_, i) => (i < pad || s[i - pad] === 1 ? 0 : st[i - pad]!));
}

/**
 * Merge adjacent dimensions that every operand walks contiguously, drop size-1 dimensions, and return them
 * innermost first (what the kernels want). `strides[k][d]` is operand k's stride along dimension d of `shape`.
 * The result has at least one dimension. E.g. out [3,4,5] with a [3,4,5] and b [4,1] → sizes [5,4,3],
 * a strides [1,5,20], b strides [0,1,0]; out [6,5] with a [6,5] and b [5] → sizes [5,6] (already minimal).
 */
export function coalesce(shape: readonly number[], strides: readonly (readonly number[])[]): { sizes: number[]; strides: number[][] } {
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
 * n, rank, coalesced sizes s0..s5 and per-operand strides a0..a5, b0..b5, …. Throws a TensorError naming `op`
 * when more than MAX_RANK dimensions survive coalescing.
 */
export function stridedParams(op: string, shape: readonly number[], strides: (readonly number[])[], operands: string): Record<string, number> {
  const c = coalesce(shape, strides);
  if (c.sizes.length > MAX_RANK)
    throw new TensorError(`${op}: ${fmtShape(shape)} needs ${c.sizes.length} dimensions after merging contiguous ones; kernels handle ${MAX_RANK}`);
  let n = 1;
  for (const d of shape) n *= d;
  const p: Record<string, number> = { n, rank: c.sizes.length };
  for (let d = 0; d < MAX_RANK; d++) {
    p[`s${d}`] = c.sizes[d] ?? 1;
    [...operands].forEach((k, j) => (p[`${k}${d}`] = c.strides[j]?.[d] ?? 0));
  }
  return p;
}

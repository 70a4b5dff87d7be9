/**
 * NumPy broadcasting in plain TypeScript, written independently of src/tensor/shape.ts: the shape two operands
 * broadcast to, and for each element of a broadcast result the flat index of the operand element broadcast onto it.
 * Used by the references of broadcasting families (test/reference/binary.ts) and, through test/tensor/helpers.ts,
 * by the op tests.
 */

type Shape = readonly number[];
const numel = (s: Shape) => s.reduce((a, b) => a * b, 1);

/** The shape a and b broadcast to (a reference error if they cannot). */
export function refBroadcastShape(a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = i - (n - a.length) >= 0 ? a[i - (n - a.length)]! : 1;
    const db = i - (n - b.length) >= 0 ? b[i - (n - b.length)]! : 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`reference: ${a} vs ${b}`);
    out.push(Math.max(da, db));
  }
  return out;
}

/** For each element of `out` (row-major), the flat index of the element of `s` broadcast onto it. */
export function sourceIndex(s: Shape, out: Shape): Int32Array {
  const n = numel(out);
  const idx = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let rem = i;
    let src = 0;
    let mult = 1;
    for (let d = out.length - 1; d >= 0; d--) {
      const c = rem % out[d]!;
      rem = Math.floor(rem / out[d]!);
      const sd = d - (out.length - s.length);
      if (sd >= 0) {
        if (s[sd] !== 1) src += c * mult;
        mult *= s[sd]!;
      }
    }
    idx[i] = src;
  }
  return idx;
}

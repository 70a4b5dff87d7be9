// shape_ops rows: stridedCopy, whereForward/Backward, clampForward/Backward and indexSelectForward/Backward
// (src/kernels/shape_ops.ts) against test/reference/shape_ops.ts. The strided copy on the views the copying ops
// make (a diagonal gather, a strided scatter into part of a buffer, permutations up to the kernels' six
// dimensions, a broadcast, a stepped slice, a concat's destination block) in f32, and i32 / u32 words that f32
// cannot hold; where with every operand broadcast (NaN gradients must not leak into the unselected branch);
// clamp at and inside its bounds, one-sided, lo > hi, NaN; index_select with repeated and out-of-range ids,
// along any axis, in f32 and i32; a 2-D workgroup grid (grid.maxX 2) for each entry. Elements a launcher must
// not write stay NaN (poisoned) in both; index_select's accumulator starts at random values, not 0, so a
// store in place of an add fails.
import type { Gpu, PooledBuffer } from "../../../src/gpu/index.ts";
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import {
  clampBackward,
  clampForward,
  indexSelectBackward,
  indexSelectForward,
  stridedCopy,
  whereBackward,
  whereForward,
  type CopyDType,
  type IndexSelectDims,
  type StridedView,
} from "../../../src/kernels/shape_ops.ts";
import * as ref from "../../reference/shape_ops.ts";
import { uniform } from "../../tensor/helpers.ts";
import { labelSuffix, type Check, type LauncherRow, type RowExtra } from "../harness.ts";

type Shape = readonly number[];
const numel = (s: Shape) => s.reduce((a, b) => a * b, 1);
const EXACT = { rtol: 0, atol: 0 };
const fmt = (s: Shape) => `[${s.join(", ")}]`;
const GRID: RowExtra = { variant: { grid: { maxX: 2 } }, label: "grid.maxX 2" };
const tail = labelSuffix;
/** Row-major strides. */
const contiguous = (s: Shape) => s.map((_, i) => numel(s.slice(i + 1)));

/** The 32-bit words of a dtype's buffer as numbers, and the NaN poison as that dtype reads it. */
const readAs = async (gpu: Gpu, b: PooledBuffer, n: number, dtype: CopyDType): Promise<ArrayLike<number>> => {
  const bytes = await gpu.read(b, 4 * n);
  return dtype === "f32" ? new Float32Array(bytes) : dtype === "i32" ? new Int32Array(bytes) : new Uint32Array(bytes);
};
const POISON: Record<CopyDType, number> = { f32: NaN, i32: 0x7fc00000, u32: 0x7fc00000 };

function copyRow(what: string, shape: Shape, srcLen: number, src: StridedView, dstLen: number, dst: StridedView, dtype: CopyDType = "f32", e: RowExtra = {}): LauncherRow {
  return {
    family: "shape_ops",
    name: `shape_ops stridedCopy ${what} ${fmt(shape)} ${dtype}${tail(e)}`,
    variant: e.variant,
    async run(gpu, io, r) {
      const S =
        dtype === "f32" ? uniform(r, srcLen) : dtype === "i32" ? Int32Array.from({ length: srcLen }, (_, i) => i * 1000003 - 7 * srcLen) : Uint32Array.from({ length: srcLen }, (_, i) => 0xfffffff0 - i * 4099);
      const out = io.output(dstLen);
      const o = { shape, src, dst, dtype, name: "copy" };
      stridedCopy(gpu, { src: io.input(S), dst: out }, o);
      const want = ref.stridedCopy({ src: S, dst: new Float64Array(dstLen).fill(POISON[dtype]) }, o).dst;
      return [{ what: "dst", got: await readAs(gpu, out, dstLen, dtype), ref: want, opts: EXACT }];
    },
  };
}

/** nan: conditions include NaN (true, as torch's bool(NaN)) and -0 (false); a and b hold a NaN each (kept only where selected). */
function whereRows(cs: Shape, as: Shape, bs: Shape, e: RowExtra & { nan?: boolean } = {}): LauncherRow[] {
  const nd = Math.max(cs.length, as.length, bs.length);
  const shape = Array.from({ length: nd }, (_, i) => Math.max(...[cs, as, bs].map((s) => s[i - (nd - s.length)] ?? 1)));
  const strides = [cs, as, bs].map((s) => ref.broadcastStrides(s, shape)) as [number[], number[], number[]];
  const values = e.nan ? [0, 1, -2.5, NaN, -0] : [0, 1, -2.5];
  const cond = (r: () => number) => Float64Array.from({ length: numel(cs) }, () => values[Math.floor(r() * values.length)]!);
  const name = (l: string) => `shape_ops ${l} cond ${fmt(cs)} a ${fmt(as)} b ${fmt(bs)}${e.nan ? " with NaN" : ""}${tail(e)}`;
  return [
    {
      family: "shape_ops",
      name: name("whereForward"),
      variant: e.variant,
      async run(gpu, io, r) {
        const [C, A, B] = [cond(r), uniform(r, numel(as)), uniform(r, numel(bs))];
        if (e.nan) (A[0] = NaN), (B[numel(bs) - 1] = NaN);
        const out = io.output(numel(shape));
        whereForward(gpu, { cond: io.input(C), a: io.input(A), b: io.input(B), out }, { shape, strides });
        return [{ what: "out", got: await io.read(out, numel(shape)), ref: ref.whereForward({ cond: C, a: A, b: B }, { shape, strides }).out, opts: EXACT }];
      },
    },
    {
      family: "shape_ops",
      name: name("whereBackward"),
      variant: e.variant,
      async run(gpu, io, r) {
        const C = cond(r);
        const G = uniform(r, numel(shape));
        G[numel(shape) >> 1] = NaN; // must reach one branch only
        const [ga, gb] = [io.output(numel(shape)), io.output(numel(shape))];
        const o = { shape, condStrides: strides[0] };
        whereBackward(gpu, { cond: io.input(C), gout: io.input(G), ga, gb }, o);
        const want = ref.whereBackward({ cond: C, gout: G }, o);
        return [
          { what: "ga", got: await io.read(ga, numel(shape)), ref: want.ga, opts: EXACT },
          { what: "gb", got: await io.read(gb, numel(shape)), ref: want.gb, opts: EXACT },
        ];
      },
    },
  ];
}

function clampRows(n: number, lo: number, hi: number, e: RowExtra = {}): LauncherRow[] {
  const o = { n, lo, hi };
  /** Values in [-2, 2) with every 10th at 0.5, every 10th (from 3) at -0.25 (the bounds), and one NaN. */
  const input = (r: () => number) => {
    const X = uniform(r, n, -2, 2);
    for (let i = 0; i < n; i += 10) X[i] = 0.5;
    for (let i = 3; i < n; i += 10) X[i] = -0.25;
    X[5] = NaN;
    return X;
  };
  const name = (l: string) => `shape_ops ${l} n ${n} lo ${lo} hi ${hi}${tail(e)}`;
  return [
    {
      family: "shape_ops",
      name: name("clampForward"),
      variant: e.variant,
      async run(gpu, io, r) {
        const X = input(r);
        const out = io.output(n);
        clampForward(gpu, { x: io.input(X), out }, o);
        return [{ what: "out", got: await io.read(out, n), ref: ref.clampForward({ x: X }, o).out, opts: EXACT }];
      },
    },
    {
      family: "shape_ops",
      name: name("clampBackward"),
      variant: e.variant,
      async run(gpu, io, r) {
        const X = input(r);
        const G = uniform(r, n);
        const dx = io.output(n);
        clampBackward(gpu, { x: io.input(X), gout: io.input(G), dx }, o);
        return [{ what: "dx", got: await io.read(dx, n), ref: ref.clampBackward({ x: X, gout: G }, o).dx, opts: EXACT }];
      },
    },
  ];
}

function indexRows(d: IndexSelectDims, ids: number[], e: RowExtra & { dtype?: CopyDType; backward?: boolean } = {}): LauncherRow[] {
  const dtype = e.dtype ?? "f32";
  const { outer, rows: nr, m, inner } = d;
  const I = Int32Array.from(ids);
  const tag = `[${outer}, ${nr}, ${inner}] ids ${ids.length > 12 ? `${m} repeated` : `[${ids.join(",")}]`}`;
  const out: LauncherRow[] = [
    {
      family: "shape_ops",
      name: `shape_ops indexSelectForward ${tag} ${dtype}${tail(e)}`,
      variant: e.variant,
      async run(gpu, io, r) {
        const S = dtype === "f32" ? uniform(r, outer * nr * inner) : Int32Array.from({ length: outer * nr * inner }, (_, i) => i * 1000003 - 7);
        const dst = io.output(outer * m * inner);
        indexSelectForward(gpu, { src: io.input(S), ids: io.input(I), dst }, { ...d, dtype });
        const want = ref.indexSelectForward({ src: S, ids: I }, { ...d, dtype }).dst;
        return [{ what: "dst", got: await readAs(gpu, dst, outer * m * inner, dtype), ref: want, opts: EXACT }];
      },
    },
  ];
  if (e.backward !== false)
    out.push({
      family: "shape_ops",
      name: `shape_ops indexSelectBackward ${tag}${tail(e)}`,
      variant: e.variant,
      async run(gpu, io, r): Promise<Check[]> {
        const G = uniform(r, outer * m * inner);
        const A0 = uniform(r, outer * nr * inner);
        const acc = io.input(A0);
        indexSelectBackward(gpu, { gout: io.input(G), ids: io.input(I), acc }, d);
        const want = ref.indexSelectBackward({ gout: G, ids: I, acc: A0 }, d);
        return [{ what: "acc", got: await io.read(acc, outer * nr * inner), ref: want.acc, opts: { mag: want.accMag } }];
      },
    });
  return out;
}

export const rows: LauncherRow[] = [];

// The strided copy on the views the copying ops make.
rows.push(copyRow("diagonal m[i, i+1] of a 6x6", [5], 36, { strides: [7], offset: 1 }, 5, { strides: [1] }));
rows.push(copyRow("a [2, 3] block into rows 1, 4 and columns 0, 2, 4 of a 6x6", [2, 3], 6, { strides: [3, 1] }, 36, { strides: [18, 2], offset: 6 }));
rows.push(copyRow("permute [2, 3, 4, 5] by [2, 0, 3, 1]", [4, 2, 5, 3], 120, { strides: [5, 60, 1, 20] }, 120, { strides: contiguous([4, 2, 5, 3]) }));
rows.push(copyRow("permute [2, 3, 2, 3, 2, 3] by [5, 3, 1, 4, 2, 0] (six dimensions)", [3, 3, 3, 2, 2, 2], 216, { strides: [1, 6, 36, 3, 18, 108] }, 216, { strides: contiguous([3, 3, 3, 2, 2, 2]) }));
rows.push(copyRow("expand [3, 1, 5] (broadcast)", [2, 3, 4, 5], 15, { strides: [0, 5, 0, 1] }, 120, { strides: contiguous([2, 3, 4, 5]) }));
rows.push(copyRow("slice [5, 37] axis 1 3:30:4", [5, 7], 185, { strides: [37, 4], offset: 3 }, 35, { strides: [7, 1] }));
rows.push(copyRow("concat block [2, 7, 5] into [2, 11, 5] at 3", [2, 7, 5], 70, { strides: [35, 5, 1] }, 110, { strides: [55, 5, 1], offset: 15 }));
rows.push(copyRow("transpose [4, 6]", [6, 4], 24, { strides: [1, 6] }, 24, { strides: [4, 1] }, "i32"));
rows.push(copyRow("slice [4, 6] axis 1 1::2", [4, 3], 24, { strides: [6, 2], offset: 1 }, 12, { strides: [3, 1] }, "u32"));
rows.push(copyRow("transpose [31, 37]", [37, 31], 31 * 37, { strides: [1, 37] }, 31 * 37, { strides: [31, 1] }, "f32", GRID));
rows.push(copyRow("narrow [1100] 70..1100", [1030], 1100, { strides: [1], offset: 70 }, 1030, { strides: [1] }, "f32", GRID));

// where, every operand broadcast.
rows.push(...whereRows([3, 1, 5], [4, 5], [3, 4, 1]));
rows.push(...whereRows([301], [301], [301]));
rows.push(...whereRows([], [2, 3], [3]));
rows.push(...whereRows([6, 1], [1], [6, 45]));
rows.push(...whereRows([1100], [1], [1100], GRID));
rows.push(...whereRows([3, 1, 5], [4, 5], [3, 4, 1], { nan: true })); // NaN propagation (clamp's is in every clamp row)

// clamp: both bounds, one side, lo > hi (gives hi).
for (const [lo, hi] of [[-0.25, 0.5], [0.5, Infinity], [-Infinity, -0.25], [1, -1]]) rows.push(...clampRows(7 * 41, lo!, hi!));
rows.push(...clampRows(1100, -0.25, 0.5, GRID));

// index_select along any axis, repeated ids accumulating in the gradient; out-of-range ids.
const dims = (outer: number, nr: number, m: number, inner: number): IndexSelectDims => ({ outer, rows: nr, m, inner });
rows.push(...indexRows(dims(1, 10, 7, 6), [3, 3, 0, 9, 3, 5, 1])); // [10, 6] axis 0
rows.push(...indexRows(dims(2, 5, 4, 3), [4, 0, 4, 2])); // [2, 5, 3] axis 1
rows.push(...indexRows(dims(12, 7, 11, 1), [6, 0, 6, 6, 6, 1, 2, 3, 4, 5, 0])); // [3, 4, 7] axis -1
const many = Array.from({ length: 300 }, (_, i) => (i * 7) % 50); // 2100 outputs, ids repeated 6 times
rows.push(...indexRows(dims(1, 50, 300, 7), many));
rows.push(...indexRows(dims(1, 4, 4, 6), [2, -1, 4, 0])); // out of range: NaN rows, no gradient
rows.push(...indexRows(dims(1, 4, 4, 6), [2, -1, 4, 0], { dtype: "i32", backward: false })); // the NaN bit pattern
rows.push(...indexRows(dims(1, 50, 300, 7), many, GRID));

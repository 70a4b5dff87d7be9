/**
 * Shape and index ops, each a materialized copy with a backward rule. Launchers: src/kernels/shape_ops.ts.
 *
 *   slice(x, axis, start?, end?, step?)   Python-style x[..., start:end:step, ...] along one axis
 *   narrow(x, axis, start, length)        torch.narrow
 *   concat(xs, axis) / stack(xs, axis)    torch.cat / torch.stack
 *   permute(x, perm) / transpose(x, a, b) torch.permute / transpose, made contiguous
 *   expand(x, shape)                      torch.expand (-1 keeps a dimension), made contiguous
 *   contiguous(x)                         a copy with its own storage (identity gradient)
 *   indexSelect(x, axis, ids)             torch.index_select, ids an i32 1-D tensor (embedding lookups)
 *   where(cond, a, b)                     torch.where with broadcasting; cond f32, nonzero = true
 *   clamp(x, min?, max?)                  torch.clamp with scalar bounds
 *
 * Everything but where and clamp copies bits, so it accepts any 32-bit dtype (f32, i32, u32: slicing token
 * ids works); gradients are f32. All of them are built on ONE kernel entry, `copyStrided` (the launcher
 * stridedCopy):
 *
 *   copyStrided(shape, src: View, dst: View, name?)
 *     for every coordinate c of `shape` (row-major):  dst.tensor[dst.offset + Σ c_d dst.strides[d]]
 *                                                      = src.tensor[src.offset + Σ c_d src.strides[d]]
 *     Views are element offsets/strides into a tensor's flat storage (non-negative; a 0 source stride
 *     repeats, i.e. broadcasts). Dimensions are coalesced first (at most 6 may remain). Both views are
 *     bounds-checked; destination views must not overlap themselves (no accumulation).
 *   A gather reads a strided view into a contiguous output (permute, slice, expand); a scatter writes a
 *   contiguous source into a strided view (concat's parts, slice's backward into a zeroed gradient).
 *
 * indexSelect's backward accumulates repeated ids with atomics (see the kernel header): exact for distinct
 * ids, last-bit nondeterministic summation order for repeated ones. An id out of range gives NaN (the NaN
 * bit pattern for integer dtypes) in the forward and is skipped in the backward; ids are not read back
 * to the host for checking.
 */
import type { Gpu } from "../../gpu/index.ts";
import {
  clampBackward,
  clampForward,
  indexSelectBackward,
  indexSelectForward,
  isCopyDType,
  stridedCopy,
  whereBackward,
  whereForward,
  type CopyDType,
} from "../../kernels/shape_ops.ts";
import { attach } from "../autograd.ts";
import { broadcastShapes, broadcastStrides, fmtShape, normalizeAxis, numel, stridesOf, TensorError, type Shape } from "../shape.ts";
import { checkOperands, Tensor } from "../tensor.ts";
import { sumTo } from "./reduce.ts";

/** A strided view of a tensor's flat storage: element c of the iteration shape is at offset + Σ c_d strides[d]. */
export interface View {
  tensor: Tensor;
  strides: readonly number[];
  offset?: number;
}

// ---- copying ------------------------------------------------------------------------------------------

/** Largest element offset a view reaches over `shape` (shape non-empty). */
function reach(shape: Shape, v: View): number {
  return shape.reduce((acc, s, d) => acc + (s - 1) * v.strides[d]!, v.offset ?? 0);
}

/**
 * The general strided copy (see the module comment): dst view ← src view over `shape`. Records one
 * dispatch; no autograd (ops wrap it). Throws on mismatched dtypes or ranks and on views that leave their
 * tensor's storage.
 */
export function copyStrided(shape: Shape, src: View, dst: View, name = "copy_strided"): void {
  const gpu = src.tensor.gpu;
  src.tensor.assertLive();
  dst.tensor.assertLive();
  const dtype = src.tensor.dtype;
  if (!isCopyDType(dtype) || dtype !== dst.tensor.dtype)
    throw new TensorError(`${name}: cannot copy ${src.tensor} into ${dst.tensor} (32-bit dtypes only, both the same)`);
  for (const v of [src, dst]) {
    if (v.strides.length !== shape.length) throw new TensorError(`${name}: ${v.strides.length} strides for a rank-${shape.length} copy`);
    if (![...v.strides, v.offset ?? 0].every((s) => Number.isInteger(s) && s >= 0))
      throw new TensorError(`${name}: strides and offsets must be integers >= 0, got [${v.strides}] + ${v.offset ?? 0}`);
    if (numel(shape) > 0 && reach(shape, v) >= v.tensor.size)
      throw new TensorError(`${name}: view ${fmtShape(shape)} strides [${v.strides}] offset ${v.offset ?? 0} leaves ${v.tensor}`);
  }
  stridedCopy(gpu, { src: src.tensor.buffer, dst: dst.tensor.buffer }, { shape, src, dst, dtype, name });
}

/** A new contiguous tensor holding the view `src` over `shape` (the gather every copying op uses). */
function gather(name: string, shape: Shape, src: View): Tensor {
  const out = Tensor.empty(src.tensor.gpu, shape, { dtype: src.tensor.dtype });
  copyStrided(shape, src, { tensor: out, strides: stridesOf(shape) }, name);
  return out;
}

/** Live, one device, one 32-bit dtype; returns the device. */
function checkCopyable(op: string, ts: readonly Tensor[]): Gpu {
  if (ts.length === 0) throw new TensorError(`${op}: needs at least one tensor`);
  for (const t of ts) {
    if (!(t instanceof Tensor)) throw new TensorError(`${op}: expected tensors, got ${String(t)}`);
    t.assertLive();
    if (t.gpu !== ts[0]!.gpu) throw new TensorError(`${op}: operands live on different GPU devices`);
    if (!isCopyDType(t.dtype)) throw new TensorError(`${op}: ${t} has dtype ${t.dtype}; shape ops support 32-bit dtypes (f32, i32, u32)`);
    if (t.dtype !== ts[0]!.dtype) throw new TensorError(`${op}: dtypes differ (${ts[0]} and ${t})`);
  }
  return ts[0]!.gpu;
}

const withAxis = (shape: Shape, axis: number, v: number) => shape.map((d, i) => (i === axis ? v : d));

// ---- slice / narrow -----------------------------------------------------------------------------------

/** x's elements start, start+step, ... (len of them) along axis (already validated). */
function sliceCore(op: string, x: Tensor, ax: number, start: number, len: number, step: number): Tensor {
  const st = stridesOf(x.shape);
  const outShape = withAxis(x.shape, ax, len);
  const view = { strides: withAxis(st, ax, st[ax]! * step), offset: len > 0 ? start * st[ax]! : 0 };
  const out = gather(op, outShape, { tensor: x, ...view });
  const xShape = x.shape;
  return attach(out, {
    op,
    inputs: [x],
    backward: (g) => {
      const dx = Tensor.zeros(g.gpu, xShape);
      copyStrided(outShape, { tensor: g, strides: stridesOf(outShape) }, { tensor: dx, ...view }, `${op}.backward`);
      return [dx];
    },
  });
}

/**
 * x[..., start:end:step, ...] along `axis`, with Python's rules: negative start/end count from the end,
 * out-of-range bounds clamp, an empty range gives a size-0 dimension. step >= 1. A copy.
 */
export function slice(x: Tensor, axis: number, start?: number, end?: number, step = 1): Tensor {
  checkCopyable("slice", [x]);
  const ax = normalizeAxis("slice", axis, x.shape);
  const dim = x.shape[ax]!;
  for (const [k, v] of [["start", start], ["end", end]] as const)
    if (v !== undefined && !Number.isInteger(v)) throw new TensorError(`slice: ${k} must be an integer, got ${v}`);
  if (!Number.isInteger(step) || step < 1) throw new TensorError(`slice: step must be an integer >= 1, got ${step}`);
  const norm = (v: number) => Math.min(dim, Math.max(0, v < 0 ? v + dim : v));
  const s = norm(start ?? 0);
  const e = norm(end ?? dim);
  const len = e > s ? Math.ceil((e - s) / step) : 0;
  return sliceCore("slice", x, ax, s, len, step);
}

/** torch.narrow: `length` elements from `start` (negative counts from the end) along `axis`. A copy. */
export function narrow(x: Tensor, axis: number, start: number, length: number): Tensor {
  checkCopyable("narrow", [x]);
  const ax = normalizeAxis("narrow", axis, x.shape);
  const dim = x.shape[ax]!;
  const s = Number.isInteger(start) && start < 0 ? start + dim : start;
  if (!Number.isInteger(s) || !Number.isInteger(length) || s < 0 || length < 0 || s + length > dim)
    throw new TensorError(`narrow: start ${start} length ${length} is out of range for dimension ${ax} of ${fmtShape(x.shape)} (size ${dim})`);
  return sliceCore("narrow", x, ax, s, length, 1);
}

// ---- concat / stack -----------------------------------------------------------------------------------

function concatCore(op: string, xs: readonly Tensor[], axis: number): Tensor {
  const gpu = checkCopyable(op, xs);
  const first = xs[0]!.shape;
  const ax = normalizeAxis(op, axis, first);
  for (const t of xs) {
    const bad = t.shape.length !== first.length ? -1 : t.shape.findIndex((d, i) => i !== ax && d !== first[i]);
    if (t.shape.length !== first.length || bad >= 0)
      throw new TensorError(
        `${op}: shapes ${fmtShape(first)} and ${fmtShape(t.shape)} differ ` +
          (bad >= 0 ? `in dimension ${bad} (only dimension ${ax}, the ${op} axis, may differ)` : "in rank"),
      );
  }
  const sizes = xs.map((t) => t.shape[ax]!);
  const outShape = withAxis(first, ax, sizes.reduce((a, b) => a + b, 0));
  const out = Tensor.empty(gpu, outShape, { dtype: xs[0]!.dtype });
  const outStrides = stridesOf(outShape);
  const starts: number[] = [];
  let at = 0;
  for (const t of xs) {
    starts.push(at);
    if (t.size) copyStrided(t.shape, { tensor: t, strides: stridesOf(t.shape) }, { tensor: out, strides: outStrides, offset: at * outStrides[ax]! }, op);
    at += t.shape[ax]!;
  }
  return attach(out, {
    op,
    inputs: xs,
    backward: (g, _, needs) => needs.map((need, i) => (need ? sliceCore(`${op}.backward`, g, ax, starts[i]!, sizes[i]!, 1) : null)),
  });
}

/** torch.cat: join tensors along an existing axis; every other dimension must match. */
export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(xs as unknown)) throw new TensorError("concat: expected an array of tensors");
  return concatCore("concat", xs, axis);
}

/** torch.stack: join same-shaped tensors along a new axis (in -(rank+1)..rank). */
export function stack(xs: readonly Tensor[], axis = 0): Tensor {
  if (!Array.isArray(xs as unknown)) throw new TensorError("stack: expected an array of tensors");
  checkCopyable("stack", xs);
  const shape = xs[0]!.shape;
  for (const t of xs)
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      throw new TensorError(`stack: every tensor must have the same shape, got ${fmtShape(shape)} and ${fmtShape(t.shape)}`);
  const ax = normalizeAxis("stack", axis, [...shape, 1]);
  const unsqueezed = [...shape.slice(0, ax), 1, ...shape.slice(ax)];
  const views = xs.map((t) => t.reshape(unsqueezed));
  try {
    return concatCore("stack", views, ax);
  } finally {
    for (const v of views) v.release(); // the node holds its own references
  }
}

// ---- permute / transpose / expand / contiguous ---------------------------------------------------------

function permuteCore(op: string, x: Tensor, perm: readonly number[]): Tensor {
  const st = stridesOf(x.shape);
  const outShape = perm.map((p) => x.shape[p]!);
  const out = gather(op, outShape, { tensor: x, strides: perm.map((p) => st[p]!) });
  const inverse = new Array<number>(perm.length);
  perm.forEach((p, i) => (inverse[p] = i));
  return attach(out, { op, inputs: [x], backward: (g) => [permuteCore(`${op}.backward`, g, inverse)] });
}

/** torch.permute, materialized: output dimension i is input dimension perm[i] (negative allowed). */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  checkCopyable("permute", [x]);
  const bad = () => new TensorError(`permute: [${perm}] is not a permutation of the ${x.rank} dimensions of ${fmtShape(x.shape)}`);
  if (!Array.isArray(perm) || perm.length !== x.rank) throw bad();
  const p = perm.map((a) => {
    if (!Number.isInteger(a) || a < -x.rank || a >= x.rank) throw bad();
    return a < 0 ? a + x.rank : a;
  });
  if (new Set(p).size !== p.length) throw bad();
  return permuteCore("permute", x, p);
}

/** torch.transpose, materialized: swap dimensions d0 and d1. */
export function transpose(x: Tensor, d0: number, d1: number): Tensor {
  checkCopyable("transpose", [x]);
  const [a, b] = [normalizeAxis("transpose", d0, x.shape), normalizeAxis("transpose", d1, x.shape)];
  const perm = x.shape.map((_, i) => (i === a ? b : i === b ? a : i));
  return permuteCore("transpose", x, perm);
}

/**
 * torch.expand, materialized: size-1 dimensions repeat to `shape` (-1 keeps a dimension; new leading
 * dimensions may be added). The gradient sums over the repeats.
 */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  checkCopyable("expand", [x]);
  const pad = shape.length - x.rank;
  const bad = () => new TensorError(`expand: cannot expand ${fmtShape(x.shape)} to ${fmtShape(shape)}`);
  if (pad < 0) throw bad();
  const target = shape.map((d, i) => {
    const own = i >= pad ? x.shape[i - pad]! : undefined;
    if (d === -1 && own !== undefined) return own;
    if (!Number.isInteger(d) || d < 0 || (own !== undefined && own !== 1 && own !== d)) throw bad();
    return d;
  });
  const out = gather("expand", target, { tensor: x, strides: broadcastStrides(x.shape, target) });
  const xShape = x.shape;
  return attach(out, { op: "expand", inputs: [x], backward: (g) => [sumTo(g, xShape)] });
}

/** A copy of x with its own storage (PyTorch's `contiguous()`/`clone()`; every tensor here is contiguous). */
export function contiguous(x: Tensor): Tensor {
  checkCopyable("contiguous", [x]);
  const out = gather("contiguous", x.shape, { tensor: x, strides: stridesOf(x.shape) });
  return attach(out, { op: "contiguous", inputs: [x], backward: (g) => [g.detach()] });
}

// ---- indexSelect --------------------------------------------------------------------------------------

/**
 * torch.index_select: the entries `ids` (an i32 1-D tensor) of x along `axis`; out.shape[axis] = ids.size.
 * An embedding lookup is indexSelect(weight, 0, tokenIds).
 */
export function indexSelect(x: Tensor, axis: number, ids: Tensor): Tensor {
  const gpu = checkCopyable("indexSelect", [x]);
  if (!(ids instanceof Tensor)) throw new TensorError(`indexSelect: ids must be an i32 tensor, got ${String(ids)}`);
  ids.assertLive();
  if (ids.gpu !== gpu) throw new TensorError("indexSelect: operands live on different GPU devices");
  if (ids.dtype !== "i32" || ids.rank !== 1) throw new TensorError(`indexSelect: ids must be a 1-D i32 tensor, got ${ids}`);
  const ax = normalizeAxis("indexSelect", axis, x.shape);
  const outer = numel(x.shape.slice(0, ax));
  const rows = x.shape[ax]!;
  const inner = numel(x.shape.slice(ax + 1));
  const m = ids.size;
  const outShape = withAxis(x.shape, ax, m);
  const out = Tensor.empty(gpu, outShape, { dtype: x.dtype });
  const dims = { outer, rows, m, inner };
  indexSelectForward(gpu, { src: x.buffer, ids: ids.buffer, dst: out.buffer }, { ...dims, dtype: x.dtype as CopyDType });
  const xShape = x.shape;
  return attach(out, {
    op: "indexSelect",
    inputs: [x],
    save: () => [ids],
    backward: (g, [sids]) => {
      const dx = Tensor.zeros(g.gpu, xShape);
      indexSelectBackward(g.gpu, { gout: g.buffer, ids: sids!.buffer, acc: dx.buffer }, dims);
      return [dx];
    },
  });
}

// ---- where / clamp ------------------------------------------------------------------------------------

/**
 * torch.where(cond, a, b) with broadcasting of all three: a where cond != 0, else b. cond is an f32 mask
 * (1/0) and gets no gradient; a's gradient is g where cond, b's where not, each summed to its shape.
 */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  const gpu = checkOperands("where", cond, a, b);
  const shape = broadcastShapes("where", broadcastShapes("where", cond.shape, a.shape), b.shape);
  const strides = [cond, a, b].map((t) => broadcastStrides(t.shape, shape));
  const out = Tensor.empty(gpu, shape);
  whereForward(gpu, { cond: cond.buffer, a: a.buffer, b: b.buffer, out: out.buffer }, { shape, strides: [strides[0]!, strides[1]!, strides[2]!] });
  const [aShape, bShape, condStrides] = [a.shape, b.shape, strides[0]!];
  return attach(out, {
    op: "where",
    inputs: [a, b],
    save: () => [cond],
    backward: (g, [c], needs) => {
      const ga = Tensor.empty(g.gpu, shape);
      const gb = Tensor.empty(g.gpu, shape);
      whereBackward(g.gpu, { cond: c!.buffer, gout: g.buffer, ga: ga.buffer, gb: gb.buffer }, { shape, condStrides });
      return [ga, gb].map((full, i) => {
        const r = needs[i] ? sumTo(full, i === 0 ? aShape : bShape) : null;
        full.release();
        return r;
      });
    },
  });
}

/**
 * torch.clamp with scalar bounds (either may be omitted, not both): min(max(x, min), max); NaN stays NaN;
 * min > max gives max everywhere. Gradient 1 where min <= x <= max (bounds included, as torch), else 0.
 */
export function clamp(x: Tensor, min?: number, max?: number): Tensor {
  const gpu = checkOperands("clamp", x);
  if (min === undefined && max === undefined) throw new TensorError("clamp: at least one of min and max must be given");
  for (const v of [min, max]) if (v !== undefined && (typeof v !== "number" || Number.isNaN(v))) throw new TensorError(`clamp: bounds must be numbers, got ${v}`);
  const bounds = { n: x.size, lo: min ?? -Infinity, hi: max ?? Infinity };
  const out = Tensor.empty(gpu, x.shape);
  clampForward(gpu, { x: x.buffer, out: out.buffer }, bounds);
  return attach(out, {
    op: "clamp",
    inputs: [x],
    save: () => [x],
    backward: (g, [sx]) => {
      const dx = Tensor.empty(g.gpu, g.shape);
      clampBackward(g.gpu, { x: sx!.buffer, gout: g.buffer, dx: dx.buffer }, bounds);
      return [dx];
    },
  });
}

// Shape and index ops: forward and input gradients through autograd against the float64 references of
// test/reference/shape_ops.ts (a coordinate-map reference for the copying ops, written independently of
// shape.ts; where and clamp), against PyTorch 1.13 goldens, on shapes that are not multiples of the workgroup
// size, with every fresh tensor poisoned with NaN; the general strided copy on its own; i32 tensors; invalid
// ids; errors at the call site; and flat memory over 50 steps. The launchers themselves (every entry, f32 /
// i32 / u32 words, a 2-D workgroup grid) are rows of test/kernels/rows/shape_ops.ts.
import { describe, expect, test } from "bun:test";
import {
  clamp,
  concat,
  contiguous,
  copyStrided,
  expand,
  indexSelect,
  narrow,
  permute,
  slice,
  stack,
  transpose,
  where,
} from "../../src/tensor/ops/shape_ops.ts";
import { noGrad, scope, Tensor } from "../../src/tensor/index.ts";
import { loadGoldens, type GoldenTensor } from "./goldens.ts";
import { expectFlatMemory } from "../helpers.ts";
import { broadcastStrides, clampBackward, clampForward, copyByMap, flatIndex, whereBackward, whereForward, type SourceMap } from "../reference/shape_ops.ts";
import { expectClose, getGpu, numel, refBroadcastShape, rng, seedOf, sourceIndex, uniform, upload, type Shape } from "./helpers.ts";

const ids32 = (gpu: Awaited<ReturnType<typeof getGpu>>, ids: number[]) => Tensor.fromArray(gpu, ids, [ids.length], { dtype: "i32" });

/**
 * Run `op` on fresh poisoned inputs of `shapes`, compare its output with `map` over `outShape` and each
 * input's gradient of sum(out * R) with the scattered reference.
 */
async function checkCopyOp(what: string, shapes: Shape[], outShape: Shape, op: (xs: Tensor[]) => Tensor, map: SourceMap): Promise<void> {
  const gpu = await getGpu();
  const r = rng(seedOf(what));
  const X = shapes.map((s) => uniform(r, numel(s)));
  const R = uniform(r, numel(outShape));
  const ref = copyByMap(X, outShape, map, R);
  const xs = X.map((x, k) => upload(gpu, x, shapes[k]!, true));
  const out = op(xs);
  expect(out.shape).toEqual([...outShape]);
  expectClose(`${what} forward`, await out.toArray(), ref.out, { rtol: 0, atol: 0 });
  const Rt = upload(gpu, R, outShape);
  out.backward(Rt);
  for (let k = 0; k < xs.length; k++) expectClose(`${what} grad ${k}`, await xs[k]!.grad!.toArray(), ref.grads[k]!, { mag: ref.mags[k] });
  for (const t of [...xs, out, Rt]) t.release();
}

describe("copying ops: forward and gradients against a float64 coordinate map", () => {
  test("slice (Python semantics, steps) and narrow", async () => {
    const cases: [Shape, number, number | undefined, number | undefined, number][] = [
      [[5, 37], 1, 3, 30, 4],
      [[300], 0, 7, 290, 1],
      [[7, 3, 2], 0, -5, 100, 1],
      [[4, 9, 3], -2, undefined, -2, 3],
      [[4, 6], 1, 5, 2, 1], // empty range
      [[2, 3, 4, 5, 6], 3, 1, 5, 2],
    ];
    for (const [shape, axis, start, end, step] of cases) {
      const ax = axis < 0 ? axis + shape.length : axis;
      const dim = shape[ax]!;
      const norm = (v: number) => Math.min(dim, Math.max(0, v < 0 ? v + dim : v));
      const s = norm(start ?? 0), e = norm(end ?? dim);
      const len = e > s ? Math.ceil((e - s) / step) : 0;
      const outShape = shape.map((d, i) => (i === ax ? len : d));
      await checkCopyOp(`slice ${shape} ${axis} ${start}:${end}:${step}`, [shape], outShape, ([x]) => slice(x!, axis, start, end, step), (c) => {
        const src = [...c];
        src[ax] = s + c[ax]! * step;
        return [0, flatIndex(src, shape)];
      });
    }
    for (const [shape, axis, start, length] of [[[3, 11, 7], 1, 2, 6], [[263], 0, -100, 100], [[2, 5], 0, 0, 2]] as [Shape, number, number, number][]) {
      const ax = axis < 0 ? axis + shape.length : axis;
      const s = start < 0 ? start + shape[ax]! : start;
      const outShape = shape.map((d, i) => (i === ax ? length : d));
      await checkCopyOp(`narrow ${shape} ${axis} ${start} ${length}`, [shape], outShape, ([x]) => narrow(x!, axis, start, length), (c) => {
        const src = [...c];
        src[ax] = s + c[ax]!;
        return [0, flatIndex(src, shape)];
      });
    }
  });

  test("concat and stack", async () => {
    for (const [shapes, axis] of [
      [[[2, 3, 5], [2, 7, 5], [2, 1, 5]], 1],
      [[[37], [260], [1]], 0],
      [[[3, 4], [3, 0], [3, 9]], -1],
      [[[1, 2, 3]], 2],
    ] as [Shape[], number][]) {
      const ax = axis < 0 ? axis + shapes[0]!.length : axis;
      const starts = shapes.map((_, k) => shapes.slice(0, k).reduce((a, s) => a + s[ax]!, 0));
      const outShape = shapes[0]!.map((d, i) => (i === ax ? shapes.reduce((a, s) => a + s[ax]!, 0) : d));
      await checkCopyOp(`concat ${JSON.stringify(shapes)} ${axis}`, shapes, outShape, (xs) => concat(xs, axis), (c) => {
        let k = shapes.length - 1;
        while (starts[k]! > c[ax]!) k--;
        const src = [...c];
        src[ax] = c[ax]! - starts[k]!;
        return [k, flatIndex(src, shapes[k]!)];
      });
    }
    for (const [shape, count, axis] of [[[4, 9], 3, 1], [[3, 5], 2, -1], [[67], 4, 0], [[2, 3], 1, -3]] as [Shape, number, number][]) {
      const ax = axis < 0 ? axis + shape.length + 1 : axis;
      const outShape = [...shape.slice(0, ax), count, ...shape.slice(ax)];
      await checkCopyOp(`stack ${shape} x${count} ${axis}`, new Array(count).fill(shape), outShape, (xs) => stack(xs, axis), (c) => {
        const src = c.filter((_, i) => i !== ax);
        return [c[ax]!, flatIndex(src, shape)];
      });
    }
  });

  test("permute, transpose, expand, contiguous", async () => {
    for (const [shape, perm] of [[[2, 3, 4, 5], [2, 0, 3, 1]], [[17, 31], [1, 0]], [[3, 1, 4], [-1, 0, 1]], [[2, 3, 2, 3, 2, 3], [5, 3, 1, 4, 2, 0]]] as [Shape, number[]][]) {
      const p = perm.map((a) => (a < 0 ? a + shape.length : a));
      const outShape = p.map((a) => shape[a]!);
      await checkCopyOp(`permute ${shape} ${perm}`, [shape], outShape, ([x]) => permute(x!, perm), (c) => {
        const src = new Array<number>(shape.length);
        p.forEach((a, i) => (src[a] = c[i]!));
        return [0, flatIndex(src, shape)];
      });
    }
    for (const [shape, d0, d1] of [[[3, 4, 5], 1, 2], [[3, 4, 5], 0, -1], [[7, 300], 0, 1], [[4, 4], 1, 1]] as [Shape, number, number][]) {
      const [a, b] = [d0, d1].map((d) => (d < 0 ? d + shape.length : d)) as [number, number];
      const outShape = shape.map((_, i) => shape[i === a ? b : i === b ? a : i]!);
      await checkCopyOp(`transpose ${shape} ${d0} ${d1}`, [shape], outShape, ([x]) => transpose(x!, d0, d1), (c) => {
        const src = [...c];
        [src[a], src[b]] = [c[b]!, c[a]!];
        return [0, flatIndex(src, shape)];
      });
    }
    for (const [shape, target] of [[[3, 1, 5], [2, -1, 4, 5]], [[1], [300]], [[4, 1], [4, 3]], [[2, 3], [2, 3]]] as [Shape, number[]][]) {
      const pad = target.length - shape.length;
      const outShape = target.map((d, i) => (d === -1 ? shape[i - pad]! : d));
      await checkCopyOp(`expand ${shape} ${target}`, [shape], outShape, ([x]) => expand(x!, target), (c) => {
        const src = shape.map((d, i) => (d === 1 ? 0 : c[i + pad]!));
        return [0, flatIndex(src, shape)];
      });
    }
    await checkCopyOp("contiguous [3, 101]", [[3, 101]], [3, 101], ([x]) => contiguous(x!), (c) => [0, flatIndex(c, [3, 101])]);
  });

  test("indexSelect: repeated ids accumulate in the gradient; any axis", async () => {
    const gpu = await getGpu();
    for (const [shape, axis, ids] of [
      [[10, 6], 0, [3, 3, 0, 9, 3, 5, 1]],
      [[2, 5, 3], 1, [4, 0, 4, 2]],
      [[3, 4, 7], -1, [6, 0, 6, 6, 6, 1, 2, 3, 4, 5, 0]],
      [[50, 7], 0, Array.from({ length: 300 }, (_, i) => (i * 7) % 50)], // 2100 outputs, ids repeated 6 times
    ] as [Shape, number, number[]][]) {
      const ax = axis < 0 ? axis + shape.length : axis;
      const outShape = shape.map((d, i) => (i === ax ? ids.length : d));
      using idt = ids32(gpu, ids);
      await checkCopyOp(`indexSelect ${shape} ${axis} ${ids.length}`, [shape], outShape, ([x]) => indexSelect(x!, axis, idt), (c) => {
        const src = [...c];
        src[ax] = ids[c[ax]!]!;
        return [0, flatIndex(src, shape)];
      });
    }
  });
});

describe("where and clamp: forward and gradients against float64", () => {
  test("where broadcasts all three operands; cond gets no gradient, a and b get theirs summed", async () => {
    const gpu = await getGpu();
    for (const [cs, as, bs] of [
      [[3, 1, 5], [4, 5], [3, 4, 1]],
      [[301], [301], [301]],
      [[], [2, 3], [3]],
      [[6, 1], [1], [6, 45]],
    ] as Shape[][]) {
      const what = `where ${JSON.stringify([cs, as, bs])}`;
      const r = rng(seedOf(what));
      const C = Float64Array.from({ length: numel(cs!) }, () => (r() < 0.5 ? 1 : 0));
      const [A, B] = [uniform(r, numel(as!)), uniform(r, numel(bs!))];
      const outShape = refBroadcastShape(refBroadcastShape(cs!, as!), bs!);
      const [ia, ib] = [as!, bs!].map((s) => sourceIndex(s, outShape));
      const n = numel(outShape);
      const R = uniform(r, n);
      // The kernels' reference over the broadcast shape; each branch's gradient then summed back to its input's shape.
      const strides = [cs!, as!, bs!].map((s) => broadcastStrides(s, outShape)) as [number[], number[], number[]];
      const ref = whereForward({ cond: C, a: A, b: B }, { shape: outShape, strides }).out;
      const full = whereBackward({ cond: C, gout: R }, { shape: outShape, condStrides: strides[0] });
      const ga = new Float64Array(A.length), gb = new Float64Array(B.length);
      const ma = new Float64Array(A.length), mb = new Float64Array(B.length);
      for (let i = 0; i < n; i++) {
        (ga[ia![i]!] += full.ga[i]!), (ma[ia![i]!] += Math.abs(full.ga[i]!));
        (gb[ib![i]!] += full.gb[i]!), (mb[ib![i]!] += Math.abs(full.gb[i]!));
      }
      using c = upload(gpu, C, cs!);
      using a = upload(gpu, A, as!, true);
      using b = upload(gpu, B, bs!, true);
      using out = where(c, a, b);
      expect(out.shape).toEqual(outShape);
      expect(out.gradFn!.savedCount).toBe(1); // cond only
      expectClose(`${what} forward`, await out.toArray(), ref, { rtol: 0, atol: 0 });
      using Rt = upload(gpu, R, outShape);
      out.backward(Rt);
      expectClose(`${what} grad a`, await a.grad!.toArray(), ga, { mag: ma });
      expectClose(`${what} grad b`, await b.grad!.toArray(), gb, { mag: mb });
    }
  });

  test("clamp: gradient 1 at and inside the bounds, 0 outside and for NaN; NaN stays NaN; min > max gives max", async () => {
    const gpu = await getGpu();
    const r = rng(3);
    const X = uniform(r, 7 * 41, -2, 2);
    for (let i = 0; i < X.length; i += 10) X[i] = 0.5;
    for (let i = 3; i < X.length; i += 10) X[i] = -0.25;
    X[5] = Number.NaN;
    for (const [lo, hi] of [[-0.25, 0.5], [0.5, undefined], [undefined, -0.25], [1, -1]] as (number | undefined)[][]) {
      const L = lo ?? -Infinity, H = hi ?? Infinity;
      const R = uniform(r, X.length);
      const f = clampForward({ x: X }, { n: X.length, lo: L, hi: H }).out;
      const d = clampBackward({ x: X, gout: R }, { n: X.length, lo: L, hi: H }).dx;
      using x = upload(gpu, X, [7, 41], true);
      using y = clamp(x, lo, hi);
      expectClose(`clamp ${lo} ${hi} forward`, await y.toArray(), f, { rtol: 0, atol: 0 });
      using Rt = upload(gpu, R, [7, 41]);
      y.backward(Rt);
      expectClose(`clamp ${lo} ${hi} grad`, await x.grad!.toArray(), d, { rtol: 0, atol: 0 });
    }
  });
});

describe("PyTorch goldens", () => {
  const fromGolden = (gpu: Awaited<ReturnType<typeof getGpu>>, t: GoldenTensor, grad: boolean) =>
    Tensor.fromArray(gpu, t.data, t.shape, { dtype: t.dtype, requiresGrad: grad && t.dtype === "f32" });

  for (const c of loadGoldens("shape_ops"))
    test(c.name, async () => {
      const gpu = await getGpu();
      const p = c.params as Record<string, unknown> & { op: string };
      const ins = Object.fromEntries(Object.entries(c.inputs).map(([k, t]) => [k, fromGolden(gpu, t, k in c.grads)]));
      const xs = Object.keys(ins).filter((k) => /^x\d$/.test(k)).map((k) => ins[k]!);
      const num = (k: string) => p[k] as number | undefined;
      const calls: Record<string, () => Tensor> = {
        slice: () => slice(ins.x!, num("axis")!, num("start"), num("end"), num("step")),
        narrow: () => narrow(ins.x!, num("axis")!, num("start")!, num("length")!),
        concat: () => concat(xs, num("axis")),
        stack: () => stack(xs, num("axis")),
        indexSelect: () => indexSelect(ins.x!, num("axis")!, ins.ids!),
        where: () => where(ins.cond!, ins.a!, ins.b!),
        clamp: () => clamp(ins.x!, num("min"), num("max")),
        transpose: () => transpose(ins.x!, num("d0")!, num("d1")!),
        permute: () => permute(ins.x!, p.perm as number[]),
        expand: () => expand(ins.x!, p.shape as number[]),
        contiguous: () => contiguous(ins.x!),
      };
      const out = calls[p.op]!();
      expect(out.shape).toEqual(c.outputs.out!.shape);
      expectClose(`${c.name} forward`, await out.toArray(), c.outputs.out!.data);
      const up = Tensor.fromArray(gpu, c.upstream.out!.data, c.upstream.out!.shape);
      out.backward(up);
      for (const [k, g] of Object.entries(c.grads)) {
        expect(ins[k]!.grad!.shape).toEqual(g.shape);
        expectClose(`${c.name} grad ${k}`, await ins[k]!.grad!.toArray(), g.data);
      }
      for (const t of [...Object.values(ins), out, up]) t.release();
    });
});

describe("the strided copy, dtypes, invalid ids, geometry, errors, memory", () => {
  test("copyStrided gathers and scatters arbitrary views (a matrix diagonal, a strided scatter)", async () => {
    const gpu = await getGpu();
    const M = Array.from({ length: 36 }, (_, i) => i);
    using m = Tensor.fromArray(gpu, M, [6, 6]);
    using diag = Tensor.empty(gpu, [5]);
    copyStrided([5], { tensor: m, strides: [7], offset: 1 }, { tensor: diag, strides: [1] }); // m[i, i+1]
    expect(Array.from(await diag.toArray())).toEqual([1, 8, 15, 22, 29]);
    // Scatter a [2, 3] block into rows 1 and 4, columns 0, 2, 4 of a zeroed 6x6.
    using z = Tensor.zeros(gpu, [6, 6]);
    using blk = Tensor.fromArray(gpu, [1, 2, 3, 4, 5, 6], [2, 3]);
    copyStrided([2, 3], { tensor: blk, strides: [3, 1] }, { tensor: z, strides: [18, 2], offset: 6 });
    const zv = Array.from(await z.toArray());
    expect(zv.filter((v) => v !== 0)).toEqual([1, 2, 3, 4, 5, 6]);
    expect([zv[6], zv[8], zv[10], zv[24], zv[26], zv[28]]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(() => copyStrided([5], { tensor: m, strides: [9], offset: 1 }, { tensor: diag, strides: [1] })).toThrow(
      "copy_strided: view [5] strides [9] offset 1 leaves Tensor([6, 6], f32)",
    );
    expect(() => copyStrided([5], { tensor: m, strides: [-1], offset: 30 }, { tensor: diag, strides: [1] })).toThrow("integers >= 0");
  });

  test("i32 tensors slice, concat, permute and index exactly; an out-of-range id gives NaN and no gradient", async () => {
    const gpu = await getGpu();
    const I = Array.from({ length: 24 }, (_, i) => i * 1000003 - 7); // beyond f32's exact integers
    using t = Tensor.fromArray(gpu, I, [4, 6], { dtype: "i32" });
    using s = slice(t, 1, 1, undefined, 2);
    expect(s.dtype).toBe("i32");
    expect(Array.from(await s.data())).toEqual([0, 1, 2, 3].flatMap((r) => [1, 3, 5].map((c) => I[r * 6 + c]!)));
    using cc = concat([t, s], 1);
    expect(Array.from((await cc.data()).slice(0, 9))).toEqual([...I.slice(0, 6), I[1], I[3], I[5]]);
    using tp = transpose(t, 0, 1);
    expect(Array.from((await tp.data()).slice(0, 4))).toEqual([I[0], I[6], I[12], I[18]]);
    using ids = ids32(gpu, [2, -1, 4, 0]);
    using rows = indexSelect(t, 0, ids);
    expect(Array.from(await rows.data())).toEqual([...I.slice(12, 18), ...new Array(6).fill(0x7fc00000), ...new Array(6).fill(0x7fc00000), ...I.slice(0, 6)]);
    using x = Tensor.fromArray(gpu, [1, 2, 3, 4], [4, 1], { requiresGrad: true });
    using y = indexSelect(x, 0, ids);
    const yv = Array.from(await y.toArray());
    expect([yv[0], yv[3]]).toEqual([3, 1]);
    expect(Number.isNaN(yv[1]!) && Number.isNaN(yv[2]!)).toBe(true);
    using g = Tensor.fromArray(gpu, [10, 20, 30, 40], [4, 1]);
    y.backward(g);
    expect(Array.from(await x.grad!.toArray())).toEqual([40, 0, 10, 0]);
    using f = Tensor.fromArray(gpu, [1, 2], [2]);
    expect(() => concat([t, f as Tensor])).toThrow("concat: dtypes differ");
    expect(() => clamp(t, 0, 1)).toThrow("clamp: Tensor([4, 6], i32) has dtype i32");
  });

  test("a 2-D grid of workgroups (x capped at 2) covers every element", async () => {
    const gpu = await getGpu();
    await gpu.withPolicy({ grid: { maxX: 2 } }, async () => {
      await checkCopyOp("transpose 2-D grid", [[31, 37]], [37, 31], ([x]) => transpose(x!, 0, 1), (c) => [0, c[1]! * 37 + c[0]!]);
      await checkCopyOp("narrow 2-D grid", [[1100]], [1030], ([x]) => narrow(x!, 0, 70, 1030), (c) => [0, c[0]! + 70]);
    });
  });

  test("bad arguments fail at the call site, naming the op and the shapes", async () => {
    const gpu = await getGpu();
    using a = Tensor.zeros(gpu, [2, 3]);
    using b = Tensor.zeros(gpu, [2, 4]);
    using c = Tensor.zeros(gpu, [4]);
    expect(() => concat([a, b], 0)).toThrow("concat: shapes [2, 3] and [2, 4] differ in dimension 1 (only dimension 0, the concat axis, may differ)");
    expect(() => concat([a, c], 0)).toThrow("concat: shapes [2, 3] and [4] differ in rank");
    expect(() => concat([])).toThrow("concat: needs at least one tensor");
    expect(() => stack([a, b])).toThrow("stack: every tensor must have the same shape, got [2, 3] and [2, 4]");
    expect(() => stack([a, a], 3)).toThrow("stack: axis 3 is out of range for shape [2, 3, 1]");
    expect(() => narrow(a, 1, 2, 2)).toThrow("narrow: start 2 length 2 is out of range for dimension 1 of [2, 3] (size 3)");
    expect(() => slice(a, 2)).toThrow("slice: axis 2 is out of range for shape [2, 3]");
    expect(() => slice(a, 1, 0, 3, 0)).toThrow("slice: step must be an integer >= 1, got 0");
    expect(() => permute(a, [0, 0])).toThrow("permute: [0,0] is not a permutation of the 2 dimensions of [2, 3]");
    expect(() => transpose(a, 0, 2)).toThrow("transpose: axis 2 is out of range");
    expect(() => expand(a, [2, 6])).toThrow("expand: cannot expand [2, 3] to [2, 6]");
    expect(() => where(a, b, a)).toThrow("where: shapes [2, 3] and [2, 4] cannot be broadcast together");
    expect(() => clamp(a)).toThrow("clamp: at least one of min and max must be given");
    using f = Tensor.zeros(gpu, [3]);
    expect(() => indexSelect(a, 0, f)).toThrow("indexSelect: ids must be a 1-D i32 tensor, got Tensor([3], f32)");
    // Seven dimensions that no merging can reduce exceed the kernels' six.
    using r7 = Tensor.zeros(gpu, [2, 3, 2, 3, 2, 3, 2]);
    expect(() => permute(r7, [6, 5, 4, 3, 2, 1, 0])).toThrow("permute: [2, 3, 2, 3, 2, 3, 2] needs 7 dimensions after merging contiguous ones; kernels handle 6");
  });

  test("50 forward + backward steps through every op keep live buffers and bytes flat", async () => {
    const gpu = await getGpu();
    const r = rng(13);
    using x = upload(gpu, uniform(r, 5 * 7), [5, 7]);
    using cond = upload(gpu, Float64Array.from({ length: 7 }, (_, i) => i % 2), [7]);
    using ids = ids32(gpu, [4, 0, 4, 2, 1]);
    let w = upload(gpu, uniform(r, 5 * 7), [5, 7], true);
    await expectFlatMemory(gpu, 50, () => {
      const loss = scope(() => {
        const h = where(cond, w.mul(x), x);
        const parts = [slice(h, 1, 1, 6, 2), narrow(h, 1, 0, 3)];
        const cat = concat([stack(parts, 0), expand(clamp(transpose(parts[0]!, 0, 1), -0.5, 0.5).reshape(1, 3, 5).reshape(3, 5).reshape(1, 5, 3), [2, 5, 3])], 0);
        return contiguous(indexSelect(permute(cat, [1, 0, 2]), 0, ids)).pow(2).mean();
      });
      loss.backward();
      loss.release();
      const nw = scope(() => noGrad(() => w.sub(w.grad!.mulScalar(0.01))));
      w.release();
      w = nw.setRequiresGrad();
    });
    w.release();
  });
});

// f16 tensors and the f16 paths of matmul / linear.
//
// Tensors: fromArray rounds like torch's .half() (checked bit for bit against src/io/half.ts), data() gives
// a Float16Array and toArray() a Float32Array; odd element counts upload, read back, clone and bind; an
// uninitialized f16 tensor is NaN-poisoned in every element; full / zeros / ones.
//
// Products (skipped without shader-f16): f16 operands, f32 accumulation, f16 output by default (f32 on
// request), on every kernel (direct with 4 and 8 rows per invocation, tiled) and transpose combination, with
// odd shapes, batches and 2-D operands shared by a batch; each input's gradient is f16. References are
// test/reference/matmul.ts's float64 on the f16-rounded inputs (and f16-rounded upstream gradients). Tolerances:
//   f16 result:  |got - ref| <= 1e-7 + 2e-3 * sum|terms|   (rounding the result to f16 costs <= 2^-11 of
//                |ref| <= 4.9e-4 * sum|terms|; f32 accumulation adds ~K * 2^-24 * sum|terms|; 1e-7 covers
//                the f16 subnormal spacing 6e-8)
//   f32 result:  |got - ref| <= 1e-7 + 1e-5 * sum|terms|   (f32 accumulation only: the inputs are exact)
// A dedicated case shows the accumulation is f32 (f16 accumulation would lose every small term).
import { describe, expect, test } from "bun:test";
import { f32BitsToF16Bits } from "../../src/io/half.ts";
import { clone, scope, Tensor, TensorError } from "../../src/tensor/index.ts";
import { cast } from "../../src/tensor/ops/cast.ts";
import { linear, matmul } from "../../src/tensor/ops/matmul.ts";
import { expectFlatMemory } from "../helpers.ts";
import { toHalf } from "../reference/cast.ts"; // values rounded to f16 (nearest even), as float64
import { matmulProduct as refProduct, matmulProductBackward as refProductBackward, matmulProblemOf } from "../reference/matmul.ts";
import { loadGoldens } from "./goldens.ts";
import { expectClose, getGpu, MATMUL_KERNELS as KERNELS, matmulKernelRuns, numel, rng, seedOf, uniform, type Shape } from "./helpers.ts";

const SLOW = 120_000;
const gpu = await getGpu();
const HAS_F16 = gpu.features.has("shader-f16");
const testF16 = HAS_F16 ? test : test.skip;
/** testF16 for a matmul kernel: skipped (by name) where that kernel cannot run. */
const testF16K = (kc: (typeof KERNELS)[number]) => (HAS_F16 && matmulKernelRuns(gpu, kc) ? test : test.skip);

const F16_TOL = { rtol: 2e-3, atol: 1e-7 };
const F32_TOL = { rtol: 1e-5, atol: 1e-7 };

const up16 = (data: ArrayLike<number>, shape: Shape, requiresGrad = false) => Tensor.fromArray(gpu, data, shape, { dtype: "f16", requiresGrad });

// ---- f16 tensors ----------------------------------------------------------------------------------------

describe("f16 tensors", () => {
  test("fromArray rounds to nearest even like .half(); data() is a Float16Array, toArray() a Float32Array", async () => {
    const r = rng(seedOf("f16 roundtrip"));
    for (const n of [1, 2, 3, 5, 8, 257]) {
      // f32 values over the whole half range: subnormals, normals, beyond 65504, and exact ties.
      const vals = Float32Array.from({ length: n }, (_, i) =>
        i % 5 === 4 ? 1 + (2 * Math.floor(r() * 512) + 1) * 2 ** -11 : (r() < 0.5 ? -1 : 1) * 2 ** (-26 + 44 * r()),
      );
      const t = Tensor.fromArray(gpu, vals, [n], { dtype: "f16" });
      expect(t.dtype).toBe("f16");
      const d = await t.data();
      expect(d).toBeInstanceOf(Float16Array);
      expect(d.length).toBe(n);
      const got = new Uint16Array(d.buffer, d.byteOffset, n);
      const u = new Uint32Array(vals.buffer);
      for (let i = 0; i < n; i++) expect(got[i]).toBe(f32BitsToF16Bits(u[i]!));
      const f = await t.toArray();
      expect(f).toBeInstanceOf(Float32Array);
      expect(Array.from(f)).toEqual(Array.from(d));
      t.release();
    }
  });

  test("odd counts bind (cast, clone), and full / zeros / ones make f16", async () => {
    for (const shape of [[1], [3], [3, 5]]) {
      const t = up16(Array.from({ length: numel(shape) }, (_, i) => i - 1.5), shape);
      const c = scope(() => cast(t, "f32"));
      expect(Array.from(await c.toArray())).toEqual(Array.from({ length: numel(shape) }, (_, i) => i - 1.5));
      const k = scope(() => t.reshape(shape)); // a view
      const cl = clone(k);
      expect(cl.dtype).toBe("f16");
      expect(Array.from(await cl.toArray())).toEqual(Array.from(await t.toArray()));
      for (const x of [t, c, k, cl]) x.release();
    }
    const f = Tensor.full(gpu, [3], 0.1, { dtype: "f16" });
    expect(Array.from(await f.toArray())).toEqual(Array(3).fill(Math.fround(Float16Array.of(0.1)[0]!)));
    const z = Tensor.zeros(gpu, [2, 3], { dtype: "f16" });
    const o = Tensor.ones(gpu, [5], { dtype: "f16" });
    expect(Array.from(await z.toArray())).toEqual(Array(6).fill(0));
    expect(Array.from(await o.toArray())).toEqual(Array(5).fill(1));
    for (const x of [f, z, o]) x.release();
  });

  test("an uninitialized f16 tensor is poisoned with NaN in every element (even and odd)", async () => {
    const t = Tensor.empty(gpu, [7], { dtype: "f16" });
    const d = await t.data();
    expect(Array.from(d).every(Number.isNaN)).toBe(true);
    t.release();
  });
});

// ---- f16 matmul -----------------------------------------------------------------------------------------

const stored = (s: Shape, t: boolean): number[] => (t ? [...s.slice(0, -2), s[s.length - 1]!, s[s.length - 2]!] : [...s]);

/**
 * The float64 reference (test/reference/matmul.ts) on operands in their stored layouts (equal batches, or one
 * operand 2-D and shared): op(A) · op(B) and the gradients of sum(out * R), with sums of |terms|.
 */
function reference(A: Float64Array, aShape: Shape, B: Float64Array, bShape: Shape, tA: boolean, tB: boolean, R: Float64Array) {
  const { pr, shape } = matmulProblemOf(aShape, bShape, tA, tB);
  const { c, cMag } = refProduct({ a: A, b: B }, pr);
  const g = refProductBackward({ a: A, b: B, dc: R }, pr);
  return { shape, out: c, magOut: cMag, da: g.da, magA: g.daMag, db: g.db, magB: g.dbMag };
}

const CASES: { name: string; a: Shape; b: Shape }[] = [
  { name: "2-D 5x7 . 7x3", a: [5, 7], b: [7, 3] },
  { name: "2-D 4x8 . 8x4 (vec4 loads and stores)", a: [4, 8], b: [8, 4] },
  { name: "2-D 9x67 . 67x13 (K past one tile)", a: [9, 67], b: [67, 13] },
  { name: "batched [2] 3x5 . 5x6", a: [2, 3, 5], b: [2, 5, 6] },
  { name: "shared b: [2] 3x5 . 5x2", a: [2, 3, 5], b: [5, 2] },
  { name: "shared a: 3x5 . [3] 5x2", a: [3, 5], b: [3, 5, 2] },
];

describe("f16 matmul", () => {
  for (const kc of KERNELS)
    testF16K(kc)(
      `f16 operands, f32 accumulation, f16 result and f16 gradients: every layout, ${kc.kernel} kernel (${kc.tm} rows)`,
      async () => {
        await gpu.withPolicy({ matmul: kc }, async () => {
          const r = rng(seedOf(`f16 matmul ${kc.kernel} ${kc.tm}`));
          for (const c of CASES)
            for (const tA of [false, true])
              for (const tB of [false, true]) {
                const what = `${c.name} ${tA ? "T" : "N"}${tB ? "T" : "N"}`;
                const [sa, sb] = [stored(c.a, tA), stored(c.b, tB)];
                const A = toHalf(uniform(r, numel(sa)));
                const B = toHalf(uniform(r, numel(sb)));
                const a = up16(A, sa, true);
                const b = up16(B, sb, true);
                const out = matmul(a, b, { transA: tA, transB: tB });
                expect(out.dtype).toBe("f16");
                const R = toHalf(uniform(r, numel(out.shape)));
                const ref = reference(A, sa, B, sb, tA, tB, R);
                expect(out.shape).toEqual(ref.shape);
                expectClose(`${what} forward`, await out.toArray(), ref.out, { ...F16_TOL, mag: ref.magOut });
                const g = up16(R, out.shape);
                out.backward(g);
                expect(a.grad!.dtype).toBe("f16");
                expect(b.grad!.dtype).toBe("f16");
                expectClose(`${what} grad a`, await a.grad!.toArray(), ref.da, { ...F16_TOL, mag: ref.magA });
                expectClose(`${what} grad b`, await b.grad!.toArray(), ref.db, { ...F16_TOL, mag: ref.magB });
                for (const t of [a, b, out, g]) t.release();
              }
        });
      },
      SLOW,
    );

  for (const kc of KERNELS)
    testF16K(kc)(
      `outDtype f32: the f32 result carries only f32 accumulation error; gradients stay f16 (${kc.kernel}, ${kc.tm} rows)`,
      async () => {
        await gpu.withPolicy({ matmul: kc }, async () => {
          const r = rng(seedOf(`f16 matmul f32 out ${kc.kernel} ${kc.tm}`));
          for (const c of [CASES[0]!, CASES[1]!, CASES[4]!, CASES[5]!]) {
            const tB = c.b.length === 2;
            const [sa, sb] = [stored(c.a, false), stored(c.b, tB)];
            const A = toHalf(uniform(r, numel(sa)));
            const B = toHalf(uniform(r, numel(sb)));
            const a = up16(A, sa, true);
            const b = up16(B, sb, true);
            const out = matmul(a, b, { transB: tB, outDtype: "f32" });
            expect(out.dtype).toBe("f32");
            const R = Float64Array.from(uniform(r, numel(out.shape)));
            const ref = reference(A, sa, B, sb, false, tB, R);
            expectClose(`${c.name} forward`, await out.toArray(), ref.out, { ...F32_TOL, mag: ref.magOut });
            const g = Tensor.fromArray(gpu, Float32Array.from(R), out.shape);
            out.backward(g); // an f32 dC against f16 operands: mixed backward products
            expect(a.grad!.dtype).toBe("f16");
            expectClose(`${c.name} grad a`, await a.grad!.toArray(), ref.da, { ...F16_TOL, mag: ref.magA });
            expectClose(`${c.name} grad b`, await b.grad!.toArray(), ref.db, { ...F16_TOL, mag: ref.magB });
            for (const t of [a, b, out, g]) t.release();
          }
        });
      },
      SLOW,
    );

  for (const kc of KERNELS)
    testF16K(kc)(`accumulation is f32: 1 + 2048 terms of 2^-12 gives 1.5, not 1 (${kc.kernel}, ${kc.tm} rows)`, async () => {
      await gpu.withPolicy({ matmul: kc }, async () => {
        const K = 2049;
        const A = new Float64Array(3 * K).fill(2 ** -12);
        for (let m = 0; m < 3; m++) A[m * K] = 1;
        const a = up16(A, [3, K]);
        const b = Tensor.ones(gpu, [K, 5], { dtype: "f16" });
        const out = matmul(a, b);
        expect(Array.from(await out.toArray())).toEqual(Array(15).fill(1.5));
        for (const t of [a, b, out]) t.release();
      });
    }, SLOW);

  testF16("linear: f16 x [2,3,7], w [5,7], bias [5]; f16 dx, dw, db", async () => {
    const r = rng(seedOf("f16 linear"));
    const [X, W, Bv] = [toHalf(uniform(r, 42)), toHalf(uniform(r, 35, -0.5, 0.5)), toHalf(uniform(r, 5))];
    const x = up16(X, [2, 3, 7], true);
    const w = up16(W, [5, 7], true);
    const bias = up16(Bv, [5], true);
    const y = linear(x, w, bias);
    expect(y.dtype).toBe("f16");
    expect(y.shape).toEqual([2, 3, 5]);
    const R = toHalf(uniform(r, 30));
    const ref = reference(X, [6, 7], W, [5, 7], false, true, R);
    const out = ref.out.map((v, i) => v + Bv[i % 5]!);
    const mag = ref.magOut.map((v, i) => v + Math.abs(Bv[i % 5]!));
    expectClose("linear forward", await y.toArray(), out, { ...F16_TOL, mag });
    y.backward(up16(R, [2, 3, 5]));
    for (const t of [x.grad!, w.grad!, bias.grad!]) expect(t.dtype).toBe("f16");
    expectClose("linear dx", await x.grad!.toArray(), ref.da, { ...F16_TOL, mag: ref.magA });
    expectClose("linear dw", await w.grad!.toArray(), ref.db, { ...F16_TOL, mag: ref.magB });
    const db = new Float64Array(5);
    const magB = new Float64Array(5);
    R.forEach((v, i) => ((db[i % 5] += v), (magB[i % 5] += Math.abs(v))));
    expectClose("linear db", await bias.grad!.toArray(), db, { ...F16_TOL, mag: magB });
    for (const t of [x, w, bias, y]) t.release();
  }, SLOW);

  testF16("dtype errors name the op: mixed operands, a mixed bias, integer operands, no shader-f16", async () => {
    const a16 = up16([1, 2, 3, 4], [2, 2]);
    const a32 = Tensor.fromArray(gpu, [1, 2, 3, 4], [2, 2]);
    const b32 = Tensor.fromArray(gpu, [1, 2], [2]);
    const i32 = Tensor.fromArray(gpu, [1, 2, 3, 4], [2, 2], { dtype: "i32" });
    expect(() => matmul(a16, a32)).toThrow(TensorError);
    expect(() => matmul(a16, a32)).toThrow(/matmul: operands have different dtypes/);
    expect(() => linear(a16, a16, b32)).toThrow(/linear: operands have different dtypes/);
    expect(() => matmul(i32, i32)).toThrow(/matmul: .*i32.*f32 or f16/);
    expect(() => matmul(a32, a32, { outDtype: "i32" })).toThrow(/outDtype must be f32 or f16/);
    // On a device without shader-f16 (simulated: the feature hidden for a moment), f16 products refuse early.
    gpu.features.delete("shader-f16");
    try {
      expect(() => matmul(a16, a16)).toThrow(/matmul: f16 needs the device feature shader-f16/);
      expect(() => matmul(a32, a32, { outDtype: "f16" })).toThrow(/shader-f16/);
      const m = matmul(a32, a32);
      expect(m.dtype).toBe("f32");
      m.release();
    } finally {
      gpu.features.add("shader-f16");
    }
    for (const t of [a16, a32, b32, i32]) t.release();
  });

  testF16("memory stays flat over 50 f16 linear forward + backward steps", async () => {
    const r = rng(seedOf("f16 flat"));
    const x = up16(toHalf(uniform(r, 15)), [3, 5]);
    const w = up16(toHalf(uniform(r, 20)), [4, 5], true);
    const b = up16(toHalf(uniform(r, 4)), [4], true);
    const g = up16(toHalf(uniform(r, 12)), [3, 4]);
    await expectFlatMemory(gpu, 50, () => {
      scope(() => linear(x, w, b).backward(g));
      w.zeroGrad();
      b.zeroGrad();
    });
    for (const t of [x, w, b, g]) t.release();
  }, SLOW);
});

describe("PyTorch goldens", () => {
  // torch 1.13 has no CPU f16 matmul: the fixture rounds float64 products once to f16 (tools/goldens/amp.py).
  // Ours accumulates in f32, which can land on the neighbouring half: one f16 ulp is 2^-10 relative.
  for (const kc of KERNELS)
    testF16K(kc)(`f16 linear and matmul cases from tools/goldens/amp.py (${kc.kernel}, ${kc.tm} rows)`, async () => {
      await gpu.withPolicy({ matmul: kc }, async () => {
        for (const c of loadGoldens("amp").filter((k) => k.params.op !== "cast")) {
          const ins = Object.fromEntries(Object.entries(c.inputs).map(([k, t]) => [k, up16(t.data, t.shape, true)]));
          const out =
            c.params.op === "linear"
              ? linear(ins.x!, ins.w!, ins.bias)
              : matmul(ins.a!, ins.b!, { transA: c.params.transA as boolean, transB: c.params.transB as boolean });
          const tol = { rtol: 2e-3, atol: 1e-6 };
          expectClose(`${c.name} forward`, await out.toArray(), c.outputs.out!.data, tol);
          out.backward(up16(c.upstream.out!.data, c.upstream.out!.shape));
          for (const [k, g] of Object.entries(c.grads)) {
            expect(ins[k]!.grad!.dtype).toBe("f16");
            expectClose(`${c.name} grad ${k}`, await ins[k]!.grad!.toArray(), g.data, tol);
          }
          for (const t of [...Object.values(ins), out]) t.release();
        }
      });
    }, SLOW);
});

describe("f16 gradients fan in", () => {
  test("an f16 tensor used twice gets the sum of both gradients (leaf and interior)", async () => {
    const gpu = await getGpu();
    const x = Tensor.fromArray(gpu, [1, 2, 3, 4, 5], [5], { dtype: "f16", requiresGrad: true });
    const y = cast(x, "f32").add(cast(x, "f32").mulScalar(3));
    y.backward(Tensor.fromArray(gpu, [1, 0.5, 2, -1, 0.25], [5]));
    expect(x.grad!.dtype).toBe("f16");
    expect(Array.from(await x.grad!.toArray())).toEqual([4, 2, 8, -4, 1]);
    y.release();
    x.release();
  });

  test("summing f16 gradients rounds like a cast: an overflow is a true inf (what the GradScaler looks for)", async () => {
    const gpu = await getGpu();
    const x = Tensor.fromArray(gpu, [1, 1, 1], [3], { dtype: "f16", requiresGrad: true });
    const y = cast(x, "f32").add(cast(x, "f32"));
    // 40000 + 40000 overflows f16 (max 65504); 1 + 2^-11 (a tie) rounds to even, 1; 1 + 3*2^-11 rounds up.
    y.backward(Tensor.fromArray(gpu, [40000, 0.5 + 2 ** -12, 0.5 + 3 * 2 ** -12], [3]));
    const g = Array.from(await x.grad!.toArray());
    expect(g[0]).toBe(Infinity);
    expect(g.slice(1)).toEqual([1, 1 + 2 ** -9]);
    y.release();
    x.release();
  });
});

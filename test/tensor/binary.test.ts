// add, sub, mul, div with NumPy broadcasting, through the ops: forward against the float64 reference
// (test/reference/binary.ts), each input's gradient summed over its broadcast dimensions (the op's backward rule)
// against the reference's per-element gradients summed the same way, with every fresh tensor poisoned with NaN;
// which inputs get and save what; call-site errors. The kernels themselves (flat f32 and vec4 entries, partial
// workgroups, the strided entry, a 2-D workgroup grid) are launcher rows: test/kernels/rows/binary.ts.
import { describe, expect, test } from "bun:test";
import { add, binary, div, mul, sub, Tensor, type BinaryOp } from "../../src/tensor/index.ts";
import { BINARY_OPS as OPS, binaryForward, binaryGrad, sumToShape } from "../reference/binary.ts";
import { awayFromZero, centralDiff, expectClose, getGpu, numel, refBroadcastShape, rng, seedOf, uniform, upload, type Shape } from "./helpers.ts";
import { BROADCAST_CASES } from "../kernels/rows/binary.ts";

/** One same-shape pair and the rows' broadcast pairs (test/kernels/rows/binary.ts), through the op. */
const CASES: [Shape, Shape][] = [[[3, 101], [3, 101]], ...BROADCAST_CASES];

async function check(op: BinaryOp, aShape: Shape, bShape: Shape, needs: [boolean, boolean] = [true, true]): Promise<void> {
  const gpu = await getGpu();
  const what = `${op} ${JSON.stringify(aShape)} ${JSON.stringify(bShape)}`;
  const r = rng(seedOf(what));
  const A = uniform(r, numel(aShape));
  const B = op === "div" ? awayFromZero(r, numel(bShape)) : uniform(r, numel(bShape));
  const outShape = refBroadcastShape(aShape, bShape);
  const n = numel(outShape);
  const shapes = { aShape, bShape, outShape };
  const ref = binaryForward({ a: A, b: B }, { op, ...shapes }).out;

  const a = upload(gpu, A, aShape, needs[0]);
  const b = upload(gpu, B, bShape, needs[1]);
  const out = binary(op, a, b);
  expect(out.shape).toEqual(outShape);
  expectClose(`${what} forward`, await out.toArray(), ref);

  // d/d(inputs) of sum(out * R) for a random R: out.backward(R).
  const R = uniform(r, n);
  const ga = sumToShape(binaryGrad({ gout: R, a: A, b: B }, { op, wrt: "a", ...shapes }).out, outShape, aShape);
  const gb = sumToShape(binaryGrad({ gout: R, a: A, b: B }, { op, wrt: "b", ...shapes }).out, outShape, bShape);
  const Rt = upload(gpu, R, outShape);
  out.backward(Rt);
  if (needs[0]) {
    expect(a.grad!.shape).toEqual([...aShape]);
    expectClose(`${what} grad a`, await a.grad!.toArray(), ga.y, { mag: ga.yMag });
  } else expect(a.grad).toBeNull();
  if (needs[1]) {
    expect(b.grad!.shape).toEqual([...bShape]);
    expectClose(`${what} grad b`, await b.grad!.toArray(), gb.y, { mag: gb.yMag });
  } else expect(b.grad).toBeNull();
  for (const t of [a, b, out, Rt]) t.release();
}

describe("binary ops", () => {
  for (const op of OPS)
    test(`${op}: forward and both gradients on ${CASES.length} shape pairs`, async () => {
      for (const [sa, sb] of CASES) {
        await check(op, sa, sb);
        await check(op, sb, sa);
      }
    });

  test("only the inputs that require grad get one; a node saves only what their gradients read", async () => {
    const gpu = await getGpu();
    for (const op of OPS) {
      await check(op, [4, 6], [6], [true, false]);
      await check(op, [4, 6], [6], [false, true]);
    }
    const a = Tensor.ones(gpu, [3], { requiresGrad: true });
    const b = Tensor.ones(gpu, [3]);
    using m = mul(a, b);
    expect(m.gradFn!.savedCount).toBe(1); // b only: d(a*b)/da = b
    using s = add(a, b);
    expect(s.gradFn!.savedCount).toBe(0);
    using d = div(b, a);
    expect(d.gradFn!.savedCount).toBe(2); // -(g/y)*(x/y) reads both
    a.release();
    b.release();
  });

  test("incompatible shapes fail at the call site, naming the op and both shapes", async () => {
    const gpu = await getGpu();
    using a = Tensor.zeros(gpu, [2, 3]);
    using b = Tensor.zeros(gpu, [4]);
    expect(() => add(a, b)).toThrow("add: shapes [2, 3] and [4] cannot be broadcast together (dimension -1: 3 vs 4)");
    expect(() => div(b, a)).toThrow("div: shapes [4] and [2, 3] cannot be broadcast together");
    using v = a.reshape(3, 2);
    expect(() => sub(a, v)).toThrow("sub: shapes [2, 3] and [3, 2]");
    using i = Tensor.fromArray(gpu, [1, 2, 3], [3], { dtype: "i32" });
    expect(() => mul(a, i)).toThrow("mul: Tensor([3], i32) has dtype i32; ops support f32 only so far");
  });

  test("the float64 reference derivatives match central differences", () => {
    const r = rng(7);
    const shapes = { aShape: [1], bShape: [1], outShape: [1] };
    const f = (op: BinaryOp, p: Float64Array) => binaryForward({ a: p.subarray(0, 1), b: p.subarray(1, 2) }, { op, ...shapes }).out[0]!;
    for (const op of OPS)
      for (let k = 0; k < 20; k++) {
        const v = Float64Array.of(r() * 4 - 2, (r() < 0.5 ? -1 : 1) * (0.5 + r()));
        const fd = centralDiff((p) => f(op, p), v);
        const io = { gout: Float64Array.of(1), a: v.subarray(0, 1), b: v.subarray(1, 2) };
        expectClose(`${op} d/dx`, binaryGrad(io, { op, wrt: "a", ...shapes }).out, [fd[0]!], { rtol: 1e-6, atol: 1e-8 });
        expectClose(`${op} d/dy`, binaryGrad(io, { op, wrt: "b", ...shapes }).out, [fd[1]!], { rtol: 1e-6, atol: 1e-8 });
      }
  });
  test("a broadcast that needs more than 6 dimensions after merging is refused at the call site", async () => {
    const gpu = await getGpu();
    using a = Tensor.zeros(gpu, [2, 1, 2, 1, 2, 1, 2]);
    using b = Tensor.zeros(gpu, [1, 2, 1, 2, 1, 2, 1]);
    expect(() => add(a, b)).toThrow("add: [2, 2, 2, 2, 2, 2, 2] needs 7 dimensions after merging contiguous ones; kernels handle 6");
  });
});

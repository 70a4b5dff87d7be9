// embedding as an op: the gather and the table gradient through autograd against the float64 reference of
// test/reference/embedding.ts, with repeated ids and never-named rows, for ids given as host data (host sort)
// and as an i32 tensor (GPU sort), which must agree bit for bit; determinism; out-of-range ids (a call-site error
// for host ids, NaN rows and no gradient for GPU ids); PyTorch goldens; flat memory. The launchers on vec4 and
// other row lengths, more ids than one sort tile and a 2-D workgroup grid are rows of
// test/kernels/rows/embedding.ts.
import { describe, expect, test } from "bun:test";
import { scope, Tensor } from "../../src/tensor/index.ts";
import { embedding } from "../../src/tensor/ops/embedding.ts";
import { loadGoldens } from "./goldens.ts";
import { expectFlatMemory } from "../helpers.ts";
import * as ref from "../reference/embedding.ts";
import { expectClose, getGpu, numel, rng, seedOf, uniform, upload, type Shape } from "./helpers.ts";

/** Per-test limit: the first test of a file compiles its pipelines, slow on a loaded CPU Vulkan driver. */
const SLOW = 60_000;

/** Ids in [0, v) where about half the positions repeat one of 3 hot rows. */
function randomIds(r: () => number, n: number, v: number): Int32Array {
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = Math.floor(r() * (r() < 0.5 ? Math.min(3, v) : v));
  return ids;
}

/** Forward and table gradient through both paths; returns the two gradients for comparison. */
async function check(idsShape: Shape, v: number, d: number): Promise<void> {
  const gpu = await getGpu();
  const what = `embedding ids ${JSON.stringify(idsShape)} table [${v}, ${d}]`;
  const r = rng(seedOf(what));
  const n = numel(idsShape);
  const ids = randomIds(r, n, v);
  const T = uniform(r, v * d);
  const R = uniform(r, n * d);
  const o = { n, v, d };
  const want = {
    out: ref.embeddingGather({ ids, table: T }, o).out,
    ...ref.embeddingBackward({ gout: R, order: ref.embeddingSort({ ids }, o).order }, o),
  };
  const grads: Float32Array[] = [];
  for (const path of ["host", "gpu"] as const) {
    const table = upload(gpu, T, [v, d], true);
    const idsT = path === "gpu" ? Tensor.fromArray(gpu, ids, idsShape, { dtype: "i32" }) : null;
    const out = idsT ? embedding(idsT, table) : embedding(ids, table, { shape: idsShape });
    expect(out.shape).toEqual([...idsShape, d]);
    expectClose(`${what} ${path} forward`, await out.toArray(), want.out, { rtol: 0, atol: 0 });
    const Rt = upload(gpu, R, out.shape);
    out.backward(Rt);
    const g = await table.grad!.toArray();
    expectClose(`${what} ${path} dtable`, g, want.dtable, { mag: want.dtableMag });
    grads.push(g);
    for (const t of [table, idsT, out, Rt]) t?.release();
  }
  expect(Buffer.from(grads[0]!.buffer).equals(Buffer.from(grads[1]!.buffer))).toBe(true);
}

describe("embedding", () => {
  test("forward and table gradient, host and GPU ids, repeated ids", async () => {
    await check([7], 5, 3);
    await check([2, 9], 11, 13); // some rows never named
    await check([4, 33], 2, 300); // every id repeated many times; vec4 rows
    await check([], 6, 4); // 0-d ids: a [D] output
    await check([3, 200], 1000, 2); // more ids than one 256-wide sort tile
  }, SLOW);

  test("backward is deterministic: the same gradient bits on every run", async () => {
    const gpu = await getGpu();
    const r = rng(17);
    const ids = Tensor.fromArray(gpu, randomIds(r, 500, 7), [500], { dtype: "i32" });
    const table = upload(gpu, uniform(r, 7 * 5), [7, 5], true);
    const R = upload(gpu, uniform(r, 500 * 5), [500, 5]);
    const runs: Buffer[] = [];
    for (let i = 0; i < 3; i++) {
      const out = embedding(ids, table);
      out.backward(R);
      runs.push(Buffer.from((await table.grad!.toArray()).buffer));
      table.zeroGrad();
      out.release();
    }
    expect(runs[1]!.equals(runs[0]!) && runs[2]!.equals(runs[0]!)).toBe(true);
    for (const t of [ids, table, R]) t.release();
  }, SLOW);

  test("out-of-range ids: a call-site error for host ids; NaN rows and no gradient for GPU ids", async () => {
    const gpu = await getGpu();
    using table = Tensor.fromArray(gpu, [1, 2, 3, 4, 5, 6], [3, 2], { requiresGrad: true });
    expect(() => embedding([0, 3], table)).toThrow("embedding: id 3 at position 1 is out of range for a table of 3 rows (valid: 0..2)");
    expect(() => embedding([-1], table)).toThrow("embedding: id -1 at position 0 is out of range");
    expect(() => embedding([0.5], table)).toThrow("embedding: id 0.5 at position 0 is out of range");
    using ids = Tensor.fromArray(gpu, [2, -1, 3, 0, 2], [5], { dtype: "i32" });
    using out = embedding(ids, table);
    expect([...(await out.toArray())]).toEqual([5, 6, NaN, NaN, NaN, NaN, 1, 2, 5, 6]);
    using R = Tensor.fromArray(gpu, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [5, 2]);
    out.backward(R);
    expect([...(await table.grad!.toArray())]).toEqual([7, 8, 0, 0, 10, 12]);
    // The same with rows of 4 (the vec4 kernels): whole NaN rows, no gradient from them.
    using t4 = Tensor.fromArray(gpu, Array.from({ length: 12 }, (_, i) => i + 1), [3, 4], { requiresGrad: true });
    using o4 = embedding(ids, t4);
    expect([...(await o4.toArray())]).toEqual([9, 10, 11, 12, ...Array(8).fill(NaN), 1, 2, 3, 4, 9, 10, 11, 12]);
    using R4 = Tensor.fromArray(gpu, Array.from({ length: 20 }, (_, i) => i), [5, 4]);
    o4.backward(R4);
    expect([...(await t4.grad!.toArray())]).toEqual([12, 13, 14, 15, 0, 0, 0, 0, 16, 18, 20, 22]);
  }, SLOW);

  test("matches the PyTorch goldens (F.embedding)", async () => {
    const gpu = await getGpu();
    for (const c of loadGoldens("embedding")) {
      for (const path of ["host", "gpu"]) {
        const tab = c.inputs.table!;
        const ids = c.inputs.ids!;
        const table = Tensor.fromArray(gpu, tab.data, tab.shape, { requiresGrad: true });
        const idsT = path === "gpu" ? Tensor.fromArray(gpu, ids.data, ids.shape, { dtype: "i32" }) : null;
        const out = idsT ? embedding(idsT, table) : embedding(ids.data, table, { shape: ids.shape });
        expect(out.shape).toEqual(c.outputs.out!.shape);
        expectClose(`${c.name} ${path} forward`, await out.toArray(), c.outputs.out!.data, { rtol: 0, atol: 0 });
        const up = Tensor.fromArray(gpu, c.upstream.out!.data, c.upstream.out!.shape);
        out.backward(up);
        expectClose(`${c.name} ${path} grad table`, await table.grad!.toArray(), c.grads.table!.data, { atol: 1e-5 });
        for (const t of [table, idsT, out, up]) t?.release();
      }
    }
  }, SLOW);

  test("bad arguments fail at the call site, naming the op", async () => {
    const gpu = await getGpu();
    using t1 = Tensor.zeros(gpu, [6]);
    using t2 = Tensor.zeros(gpu, [3, 2]);
    expect(() => embedding([0], t1)).toThrow("embedding: table must be [V, D], got [6]");
    using f = Tensor.zeros(gpu, [2]);
    expect(() => embedding(f, t2)).toThrow("embedding: ids must be int32, got Tensor([2], f32)");
    expect(() => embedding([0, 1, 2], t2, { shape: [2, 2] })).toThrow("embedding: 3 ids do not fill shape [2, 2]");
    using ti = Tensor.fromArray(gpu, [1, 2], [1, 2], { dtype: "i32" });
    expect(() => embedding([0], ti)).toThrow("embedding: Tensor([1, 2], i32) has dtype i32");
    // no ids: an empty output and a zero gradient
    using tg = Tensor.ones(gpu, [3, 2], { requiresGrad: true });
    using e = embedding([], tg, { shape: [0] });
    expect(e.shape).toEqual([0, 2]);
    e.sum().backward();
    expect([...(await tg.grad!.toArray())]).toEqual([0, 0, 0, 0, 0, 0]);
  }, SLOW);

  test("host ids are copied: changing the array after the call does not change the gradient", async () => {
    const gpu = await getGpu();
    using table = Tensor.zeros(gpu, [3, 1], { requiresGrad: true });
    const ids = new Int32Array([2, 2, 0]);
    using out = embedding(ids, table);
    ids.fill(1);
    out.sum().backward();
    expect([...(await table.grad!.toArray())]).toEqual([1, 0, 2]);
  }, SLOW);

  test("50 steps of forward + backward keep live buffers and bytes flat", async () => {
    const gpu = await getGpu();
    const r = rng(5);
    const table = upload(gpu, uniform(r, 20 * 8), [20, 8], true);
    const idsGpu = Tensor.fromArray(gpu, randomIds(r, 30, 20), [3, 10], { dtype: "i32" });
    const idsHost = randomIds(r, 30, 20);
    const { start, end } = await expectFlatMemory(gpu, 50, () => {
      const loss = scope(() => embedding(idsGpu, table).mul(embedding(idsHost, table, { shape: [3, 10] })).sum());
      loss.backward();
      loss.release();
      table.zeroGrad();
    });
    expect(end.liveBuffers).toBe(start.liveBuffers);
    for (const t of [table, idsGpu]) t.release();
  }, SLOW);
});

// Tensor basics: creation and readback, fill kernels, views sharing one storage, and lifetime (release,
// `using`, scopes): the pooled buffer goes back exactly once, when its last view dies.
import { describe, expect, test } from "bun:test";
import { fromArray, full, keep, ones, scope, Tensor, zeros } from "../../src/tensor/index.ts";
import { getGpu, rng, uniform } from "./helpers.ts";

describe("tensor", () => {
  test("fromArray / toArray round-trip odd sizes; shape and dtype are kept", async () => {
    const gpu = await getGpu();
    const r = rng(1);
    for (const shape of [[1], [3], [5, 7], [2, 3, 1, 4], [301]]) {
      const data = Float32Array.from(uniform(r, shape.reduce((a, b) => a * b, 1), -100, 100));
      using t = Tensor.fromArray(gpu, data, shape);
      expect(t.shape).toEqual(shape);
      expect(t.dtype).toBe("f32");
      expect(t.size).toBe(data.length);
      expect([...(await t.toArray())]).toEqual([...data]);
    }
    using i = fromArray(gpu, [-3, 7, 2 ** 31 - 1], [3], { dtype: "i32" });
    expect([...(await i.data())]).toEqual([-3, 7, 2 ** 31 - 1]);
    using u = fromArray(gpu, [0, 2 ** 32 - 1], [2], { dtype: "u32" });
    expect([...(await u.data())]).toEqual([0, 2 ** 32 - 1]);
    expect([...(await u.toArray())]).toEqual([0, 2 ** 32]); // as float32
    using s = fromArray(gpu, [2.5], []);
    expect(s.shape).toEqual([]);
    expect(await s.item()).toBe(2.5);
  });

  test("bad shapes and data are rejected with the shapes in the message", async () => {
    const gpu = await getGpu();
    expect(() => fromArray(gpu, [1, 2, 3], [2, 2])).toThrow("fromArray: 3 values do not fill shape [2, 2] (4 elements)");
    expect(() => zeros(gpu, [2, -1])).toThrow("shape [2, -1]: every dimension must be an integer >= 0");
    expect(() => zeros(gpu, [1.5])).toThrow("every dimension must be an integer");
    using t = zeros(gpu, [2, 3]);
    await expect(t.item()).rejects.toThrow("item(): Tensor([2, 3], f32) has 6 elements, not 1");
  });

  test("zeros / ones / full fill every element (outputs start as NaN)", async () => {
    const gpu = await getGpu();
    for (const [shape, v] of [[[1], 0], [[257], 1], [[3, 5, 7], -2.25], [[1000], 1e-3]] as [number[], number][]) {
      using t = v === 0 ? zeros(gpu, shape) : v === 1 ? ones(gpu, shape) : full(gpu, shape, v);
      const a = await t.toArray();
      expect(a.length).toBe(t.size);
      expect(a.every((x) => x === Math.fround(v))).toBe(true);
    }
    using i = full(gpu, [3], 5, { dtype: "i32" });
    expect([...(await i.data())]).toEqual([5, 5, 5]);
    using e = zeros(gpu, [0, 3]);
    expect(e.size).toBe(0);
    expect((await e.toArray()).length).toBe(0);
  });

  test("reshape is a free view: same storage, -1 inferred, errors name both shapes", async () => {
    const gpu = await getGpu();
    const before = gpu.memory();
    using t = fromArray(gpu, [0, 1, 2, 3, 4, 5], [2, 3]);
    using v = t.reshape(3, -1);
    using w = t.reshape([6]);
    expect(v.shape).toEqual([3, 2]);
    expect(w.shape).toEqual([6]);
    expect(v.storage).toBe(t.storage);
    expect(t.storage.refs).toBe(3);
    expect(gpu.memory().liveBuffers).toBe(before.liveBuffers + 1);
    expect([...(await v.toArray())]).toEqual([0, 1, 2, 3, 4, 5]);
    expect(() => t.reshape(4, 2)).toThrow("reshape: cannot reshape [2, 3] (6 elements) into [4, 2]");
    expect(() => t.reshape(-1, -1)).toThrow("reshape: only one dimension may be -1 in [-1, -1]");
    expect(() => t.reshape(4, -1)).toThrow("reshape: cannot reshape [2, 3] (6 elements) into [4, -1]");
  });

  test("the buffer returns to the pool exactly once, when the last view is released", async () => {
    const gpu = await getGpu();
    const live0 = gpu.memory().liveBuffers;
    const t = ones(gpu, [10]);
    const v = t.reshape(2, 5);
    const d = v.detach();
    expect(gpu.memory().liveBuffers).toBe(live0 + 1);
    t.release();
    t.release(); // idempotent per view
    expect(t.released).toBe(true);
    expect(gpu.memory().liveBuffers).toBe(live0 + 1);
    expect([...(await d.toArray())]).toEqual(new Array(10).fill(1)); // other views still read it
    v.release();
    expect(gpu.memory().liveBuffers).toBe(live0 + 1);
    d.release();
    expect(gpu.memory().liveBuffers).toBe(live0);
    expect(() => t.buffer).toThrow("Tensor([10], f32, released) was released and cannot be used");
    expect(() => v.add(v)).toThrow("was released and cannot be used");
    await expect(d.toArray()).rejects.toThrow("was released");
  });

  test("`using` releases at the end of the block", async () => {
    const gpu = await getGpu();
    const live0 = gpu.memory().liveBuffers;
    {
      using a = zeros(gpu, [4]);
      using b = a.reshape(2, 2);
      expect(b.size).toBe(4);
      expect(gpu.memory().liveBuffers).toBe(live0 + 1);
    }
    expect(gpu.memory().liveBuffers).toBe(live0);
  });

  test("scope releases what it created except its result and kept tensors; errors release everything", async () => {
    const gpu = await getGpu();
    const live0 = gpu.memory().liveBuffers;
    let kept: Tensor | undefined;
    const out = scope(() => {
      const a = ones(gpu, [3]);
      const b = a.add(a);
      kept = keep(zeros(gpu, [2]));
      const inner = scope(() => {
        const c = b.mul(b);
        ones(gpu, [5]); // dropped
        return { c, list: [c.exp()] };
      });
      return [inner.c, inner.list[0]!];
    });
    expect(gpu.memory().liveBuffers).toBe(live0 + 3); // c, exp(c), kept
    expect([...(await out[0]!.toArray())]).toEqual([4, 4, 4]);
    for (const t of [...out, kept!]) t.release();
    expect(gpu.memory().liveBuffers).toBe(live0);
    expect(() =>
      scope(() => {
        ones(gpu, [3]);
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(gpu.memory().liveBuffers).toBe(live0);
    expect(() => scope(async () => 1)).toThrow("scope(fn): fn returned a Promise");
  });
  test("full fills every dtype with exact bits (integers that look like NaN, f16 pairs), on odd sizes", async () => {
    const gpu = await getGpu();
    using a = full(gpu, [7], -1, { dtype: "i32" });
    expect(Array.from(await a.data())).toEqual(Array(7).fill(-1));
    using b = full(gpu, [5], 0xffc00001, { dtype: "u32" });
    expect(Array.from(await b.data())).toEqual(Array(5).fill(0xffc00001));
    using c = full(gpu, [3], 0.1, { dtype: "f16" });
    expect(Array.from(await c.toArray())).toEqual(Array(3).fill(Math.fround(Number(new Float16Array([0.1])[0]))));
    using d = full(gpu, [9], -0, { dtype: "f32" });
    expect(Array.from(await d.toArray()).every((v) => Object.is(v, -0))).toBe(true);
    expect(() => full(gpu, [2], 1.5, { dtype: "i32" })).toThrow("full: 1.5 is not a i32 value");
  });
});

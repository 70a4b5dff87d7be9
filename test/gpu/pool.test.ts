import { describe, expect, test } from "bun:test";
import { Gpu, GpuError, GpuOutOfMemoryError } from "../../src/gpu/index.ts";
import { BufferPool, budgetFromEnv, parseBytes } from "../../src/gpu/pool.ts";
import { getGpu, rng } from "../helpers.ts";

describe("buffer pool", () => {
  test("1000 alloc/free cycles of mixed sizes do not grow the pool", async () => {
    const gpu = await getGpu();
    const r = rng(7);
    const sizes = Array.from({ length: 16 }, () => 4 + Math.floor(r() * 300_000));
    const cycle = () => {
      const held = sizes.map((s) => gpu.alloc(s));
      for (const b of held.reverse()) gpu.release(b);
    };
    cycle(); // warm-up: fills the free lists
    const s0 = gpu.memory();
    for (let i = 0; i < 1000; i++) cycle();
    const s1 = gpu.memory();
    expect(s1.created).toBe(s0.created);
    expect(s1.cachedBuffers).toBe(s0.cachedBuffers);
    expect(s1.cachedBytes).toBe(s0.cachedBytes);
    expect(s1.liveBuffers).toBe(s0.liveBuffers);
  });

  test("a request gets the lowest-id free buffer of its class, whatever order they were released in", async () => {
    const gpu = await getGpu();
    const pool = new BufferPool(gpu.device, gpu.limits.maxBufferSize);
    const [a, b, c] = [pool.acquire(1000), pool.acquire(1000), pool.acquire(1000)];
    for (const order of [[b, a, c], [c, b, a], [a, c, b]]) {
      for (const x of order) pool.release(x);
      const got = [pool.acquire(1000), pool.acquire(900), pool.acquire(1000)];
      expect(got.map((x) => x.id)).toEqual([a.id, b.id, c.id]);
    }
    for (const x of [a, b, c]) pool.release(x);
    pool.trim();
  });

  test("live and peak bytes, release twice, trim", async () => {
    const gpu = await getGpu();
    const pool = new BufferPool(gpu.device, gpu.limits.maxBufferSize);
    const a = pool.acquire(1000);
    const b = pool.acquire(5000);
    expect(pool.stats().liveBuffers).toBe(2);
    expect(pool.stats().liveBytes).toBe(a.size + b.size);
    pool.release(a);
    expect(() => pool.release(a)).toThrow(/released twice/);
    expect(pool.stats().liveBytes).toBe(b.size);
    expect(pool.stats().peakBytes).toBe(a.size + b.size);
    const a2 = pool.acquire(900); // same class: reused
    expect(a2.id).toBe(a.id);
    pool.release(a2);
    pool.release(b);
    pool.trim();
    expect(pool.stats()).toMatchObject({ liveBuffers: 0, liveBytes: 0, cachedBuffers: 0, cachedBytes: 0 });
  });

  test("out of memory names the request and what is live", async () => {
    const gpu = await getGpu();
    const pool = new BufferPool(gpu.device, gpu.limits.maxBufferSize, 1 << 20);
    const a = pool.acquire(600_000);
    const err = (() => {
      try {
        pool.acquire(600_000);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(GpuOutOfMemoryError);
    expect(err!.message).toContain("requested 585.9 KiB");
    expect(err!.message).toContain(`${(a.size / 1024).toFixed(1)} KiB live`);
    expect(() => pool.acquire(gpu.limits.maxBufferSize + 1)).toThrow(/maxBufferSize/);
    expect(() => pool.acquire(-1)).toThrow(GpuError);
    pool.release(a);
    pool.trim();
  });

  test("ALIGNX_GPU_MEMORY: a value that is not a positive byte count fails naming the variable, before a device opens", async () => {
    expect(budgetFromEnv({})).toBe(Infinity);
    expect(budgetFromEnv({ ALIGNX_GPU_MEMORY: "" })).toBe(Infinity);
    expect(budgetFromEnv({ ALIGNX_GPU_MEMORY: "8G" })).toBe(8 * 2 ** 30);
    for (const v of ["abc", "8 GB of it", "-1G", "0", "0.1"])
      expect(() => budgetFromEnv({ ALIGNX_GPU_MEMORY: v })).toThrow(new RegExp(`^ALIGNX_GPU_MEMORY="${v}" (is not a byte count|must be a positive byte count)`));
    const saved = process.env.ALIGNX_GPU_MEMORY;
    process.env.ALIGNX_GPU_MEMORY = "abc";
    try {
      const e = await Gpu.open({ cpu: true }).then(
        (g) => (g.destroy(), null),
        (x: Error) => x,
      );
      expect(e).toBeInstanceOf(GpuError);
      expect(e!.message).toBe(`ALIGNX_GPU_MEMORY="abc" is not a byte count (examples: 512M, 8G, 1.5GiB, 1000000; unset it for no budget)`);
    } finally {
      if (saved === undefined) delete process.env.ALIGNX_GPU_MEMORY;
      else process.env.ALIGNX_GPU_MEMORY = saved;
    }
  });

  test("byte counts parse", () => {
    expect(parseBytes("512M")).toBe(512 * 2 ** 20);
    expect(parseBytes("1.5GiB")).toBe(1.5 * 2 ** 30);
    expect(parseBytes("1000")).toBe(1000);
    expect(() => parseBytes("lots")).toThrow(/cannot read 'lots'/);
  });
});

describe("trim with recorded work", () => {
  test("a buffer released after recorded work reads it is not destroyed before that work is submitted", async () => {
    const gpu = await getGpu();
    const { Tensor } = await import("../../src/tensor/index.ts");
    const { add } = await import("../../src/tensor/index.ts");
    await gpu.sync();
    const a = Tensor.fromArray(gpu, Float32Array.from({ length: 1024 }, (_, i) => i), [1024]);
    const b = add(a, a); // recorded, not submitted
    a.release(); // a's buffer goes back to the cache while b's kernel still reads it
    gpu.pool.trim();
    const got = await b.toArray(); // before the fix: "Buffer used in submit while destroyed"
    b.release();
    expect(got[0]).toBe(0);
    expect(got[1023]).toBe(2046);
  });
});

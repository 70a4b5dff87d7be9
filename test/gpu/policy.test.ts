// The kernel policy (src/gpu/policy.ts) and its owner, the Gpu: today's defaults, frozen; patches merged per
// setting and validated (unknown families and settings, bad values: each error names the key);
// Gpu.open({ policy }) patching one device; gpu.withPolicy restoring the previous policy after a sync or an async
// fn, a throw or a rejection, and nesting; the launch geometry reading the device's policy; two devices with
// different policies not affecting each other, ops included.
import { describe, expect, test } from "bun:test";
import { DEFAULT_POLICY, elementwise, Gpu, grid1d, mergePolicy, rowGrid, rowLaunch, type PartialPolicy } from "../../src/gpu/index.ts";
import { Tensor } from "../../src/tensor/index.ts";
import { matmulVariantFor } from "../../src/kernels/matmul.ts";
import { getGpu } from "../helpers.ts";
import { matmulProduct as refMatmul } from "../reference/matmul.ts";
import { expectClose } from "../tensor/helpers.ts";

describe("kernel policy", () => {
  test("the defaults are today's kernel choices and limits, frozen", () => {
    expect(DEFAULT_POLICY).toEqual({
      matmul: { kernel: "auto", tm: 8, wgx: 8, wgy: 8, maxBatch: 65535 },
      attention: { kernel: "auto", maxUnfusedBytes: 0, minUnfusedT: 128 },
      rows: { wg: "auto", subgroups: "auto" },
      grid: { maxX: 65535 },
      norm: { minChunk: 16, maxChunks: 256, singlePassRows: 256 },
      clip: { perGroup: 4096, maxGroups: 512 },
    });
    expect(Object.isFrozen(DEFAULT_POLICY)).toBe(true);
    for (const family of Object.values(DEFAULT_POLICY)) expect(Object.isFrozen(family)).toBe(true);
    expect(() => {
      (DEFAULT_POLICY.grid as { maxX: number }).maxX = 2;
    }).toThrow();
    expect(DEFAULT_POLICY.grid.maxX).toBe(65535);
  });

  test("a device starts from the defaults, in its own frozen copy", async () => {
    const gpu = await getGpu();
    expect(gpu.policy).toEqual(DEFAULT_POLICY);
    expect(gpu.policy).not.toBe(DEFAULT_POLICY);
    expect(Object.isFrozen(gpu.policy)).toBe(true);
    expect(Object.isFrozen(gpu.policy.rows)).toBe(true);
  });

  test("a patch replaces only the settings it names; the base is unchanged", () => {
    const p = mergePolicy(DEFAULT_POLICY, { matmul: { kernel: "direct", tm: 4 }, grid: { maxX: 2 } });
    expect(p.matmul).toEqual({ ...DEFAULT_POLICY.matmul, kernel: "direct", tm: 4 });
    expect(p.grid).toEqual({ maxX: 2 });
    expect(p.rows).toEqual(DEFAULT_POLICY.rows);
    expect(DEFAULT_POLICY.matmul.kernel).toBe("auto");
    const q = mergePolicy(p, { matmul: { wgx: 16 }, rows: { wg: 1, subgroups: false } });
    expect(q.matmul).toEqual({ ...p.matmul, wgx: 16 });
    expect(q.rows).toEqual({ wg: 1, subgroups: false });
    expect(mergePolicy(p, { matmul: { tm: undefined }, norm: undefined }).matmul.tm).toBe(4); // undefined sets nothing
    expect(mergePolicy(p, {})).toEqual(p);
  });

  test("unknown families and settings, and bad values, are errors naming the key", () => {
    const bad = (patch: unknown, msg: string) => expect(() => mergePolicy(DEFAULT_POLICY, patch as PartialPolicy)).toThrow(msg);
    bad({ matmull: {} }, 'kernel policy: unknown family "matmull" (families: matmul, attention, rows, grid, norm, clip)');
    bad({ matmul: { tiles: 4 } }, 'kernel policy: unknown setting "matmul.tiles" (matmul settings: kernel, tm, wgx, wgy, maxBatch)');
    bad({ grid: { maxY: 4 } }, 'kernel policy: unknown setting "grid.maxY" (grid settings: maxX)');
    bad({ rows: 8 }, "kernel policy: rows must be an object of settings, got 8");
    bad(null, "kernel policy: a patch must be an object, got null");
    for (const wg of [0, 12, 512, -8, 2.5, "8"])
      bad({ rows: { wg } }, `kernel policy: rows.wg must be "auto" or a power of two in [1, 256], got ${typeof wg === "string" ? `"${wg}"` : wg}`);
    bad({ rows: { subgroups: "yes" } }, 'kernel policy: rows.subgroups must be one of "auto", true, false, got "yes"');
    bad({ matmul: { kernel: "fast" } }, 'kernel policy: matmul.kernel must be one of "auto", "direct", "tiled", "tiled128", "subgroup", got "fast"');
    for (const tm of [0, 6, -4]) bad({ matmul: { tm } }, `kernel policy: matmul.tm must be a positive multiple of 4, got ${tm}`);
    bad({ matmul: { wgx: 0 } }, "kernel policy: matmul.wgx must be an integer >= 1, got 0");
    bad({ matmul: { maxBatch: 0 } }, "kernel policy: matmul.maxBatch must be an integer >= 1, got 0");
    bad({ attention: { kernel: "fused" } }, 'kernel policy: attention.kernel must be one of "auto", "flash", "unfused", got "fused"');
    bad({ attention: { minUnfusedT: -1 } }, "kernel policy: attention.minUnfusedT must be an integer >= 0, got -1");
    bad({ attention: { maxUnfusedBytes: Infinity } }, "kernel policy: attention.maxUnfusedBytes must be an integer >= 0, got Infinity");
    bad({ grid: { maxX: 0 } }, "kernel policy: grid.maxX must be an integer >= 1, got 0");
    bad({ norm: { minChunk: 1.5 } }, "kernel policy: norm.minChunk must be an integer >= 1, got 1.5");
    bad({ norm: { singlePassRows: -1 } }, "kernel policy: norm.singlePassRows must be an integer >= 0, got -1");
    bad({ clip: { perGroup: "64" } }, 'kernel policy: clip.perGroup must be an integer >= 1, got "64"');
    bad({ clip: { maxGroups: NaN } }, "kernel policy: clip.maxGroups must be an integer >= 1, got NaN");
  });

  test("Gpu.open refuses a bad policy", async () => {
    await expect(Gpu.open({ policy: { grid: { maxX: -1 } } })).rejects.toThrow("kernel policy: grid.maxX must be an integer >= 1, got -1");
  });

  test("withPolicy: the patch holds while fn runs; the previous policy returns after it, also when it throws; nesting", async () => {
    const gpu = await getGpu();
    const before = gpu.policy;
    expect(gpu.withPolicy({ grid: { maxX: 2 } }, () => gpu.policy.grid.maxX)).toBe(2);
    expect(gpu.policy).toBe(before);
    expect(() =>
      gpu.withPolicy({ grid: { maxX: 2 } }, () => {
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(gpu.policy).toBe(before);
    // A bad patch changes nothing and does not run fn.
    let ran = false;
    expect(() => gpu.withPolicy({ grid: { maxX: 0 } }, () => (ran = true))).toThrow("kernel policy: grid.maxX");
    expect(ran).toBe(false);
    expect(gpu.policy).toBe(before);
    // Nested: the inner patch applies on top of the outer one and is undone first.
    gpu.withPolicy({ grid: { maxX: 2 }, rows: { wg: 1 } }, () => {
      gpu.withPolicy({ grid: { maxX: 3 } }, () => {
        expect(gpu.policy.grid.maxX).toBe(3);
        expect(gpu.policy.rows.wg).toBe(1);
      });
      expect(gpu.policy.grid.maxX).toBe(2);
    });
    expect(gpu.policy).toBe(before);
  });

  test("withPolicy with an async fn: the patch holds across awaits until the promise settles, also when it rejects", async () => {
    const gpu = await getGpu();
    const before = gpu.policy;
    const seen: number[] = [];
    const p = gpu.withPolicy({ grid: { maxX: 2 } }, async () => {
      seen.push(gpu.policy.grid.maxX);
      await gpu.sync();
      seen.push(gpu.policy.grid.maxX);
      return "done";
    });
    expect(gpu.policy.grid.maxX).toBe(2); // fn is still running
    expect(await p).toBe("done");
    expect(seen).toEqual([2, 2]);
    expect(gpu.policy).toBe(before);
    const late = gpu.withPolicy({ grid: { maxX: 2 } }, async () => {
      await gpu.sync();
      throw new Error("late boom");
    });
    await expect(late).rejects.toThrow("late boom");
    expect(gpu.policy).toBe(before);
  });

  test("the launch geometry reads the device's policy", async () => {
    const gpu = await getGpu();
    expect(grid1d(gpu, 1000)).toEqual({ workgroups: [4, 1], row: 1024 });
    gpu.withPolicy({ grid: { maxX: 2 } }, () => {
      expect(grid1d(gpu, 1000)).toEqual({ workgroups: [2, 2], row: 512 });
      expect(rowGrid(gpu, 5)).toEqual({ workgroups: [2, 3], gx: 2 });
      expect(elementwise(gpu, 4000)).toMatchObject({ units: 1000, workgroups: [2, 2], row: 512 });
    });
    for (const wg of [1, 16, 256]) expect(gpu.withPolicy({ rows: { wg, subgroups: false } }, () => rowLaunch(gpu))).toEqual({ constants: { WG: wg }, defines: { SUBGROUP_ROWS: 0 } });
    expect(rowLaunch(gpu).constants.WG).toBe(gpu.adapter.kind === "cpu" ? 8 : 256); // "auto": per adapter
  });

  test("two devices with different policies do not affect each other", async () => {
    const shared = await getGpu();
    const other = await Gpu.open({ policy: { grid: { maxX: 2 }, rows: { wg: 1, subgroups: false }, matmul: { kernel: "direct", tm: 4 } } });
    try {
      expect(other.policy).toEqual(mergePolicy(DEFAULT_POLICY, { grid: { maxX: 2 }, rows: { wg: 1, subgroups: false }, matmul: { kernel: "direct", tm: 4 } }));
      expect(shared.policy).toEqual(DEFAULT_POLICY);
      expect(grid1d(other, 1000).workgroups).toEqual([2, 2]);
      expect(grid1d(shared, 1000).workgroups).toEqual([4, 1]);
      expect(rowLaunch(other).constants.WG).toBe(1);
      const pr = { M: 16, N: 16, K: 16, batch: 1 };
      expect(matmulVariantFor(other, pr, "f32")).toEqual({ kernel: "direct", tm: 4 });
      // An override on one device leaves the other alone.
      shared.withPolicy({ grid: { maxX: 3 }, matmul: { kernel: "tiled" } }, () => {
        expect(other.policy.grid.maxX).toBe(2);
        expect(matmulVariantFor(other, pr, "f32")).toEqual({ kernel: "direct", tm: 4 });
        expect(matmulVariantFor(shared, pr, "f32")).toEqual({ kernel: "tiled", tm: 4 });
      });
      other.withPolicy({ grid: { maxX: 5 } }, () => expect(shared.policy.grid.maxX).toBe(65535));
      expect(shared.policy).toEqual(DEFAULT_POLICY);
      // Ops on each device run with that device's policy, with the same results: row sums (1-wide reduction and
      // a 2x3 grid of rows on `other`) and a matmul (the direct kernel on `other`).
      const R = 5;
      const N = 300;
      const X = Float32Array.from({ length: R * N }, (_, i) => (((i * 37) % 101) - 50) / 64);
      const rowSums = Array.from({ length: R }, (_, r) => X.subarray(r * N, (r + 1) * N).reduce((a, b) => a + b, 0));
      const W = Float32Array.from({ length: N * 3 }, (_, i) => ((i % 7) - 3) / 8);
      const mm = { M: R, N: 3, K: N, batch: 1, sharedA: false, sharedB: false, transA: false, transB: false };
      const prod = refMatmul({ a: Float64Array.from(X), b: Float64Array.from(W) }, mm).c;
      for (const gpu of [other, shared]) {
        using x = Tensor.fromArray(gpu, X, [R, N]);
        using w = Tensor.fromArray(gpu, W, [N, 3]);
        using s = x.sum(1);
        using y = x.matmul(w);
        expectClose(`row sums (policy rows.wg ${gpu.policy.rows.wg})`, await s.toArray(), rowSums, { rtol: 1e-5, atol: 1e-5 });
        expectClose(`matmul (policy matmul.kernel ${gpu.policy.matmul.kernel})`, await y.toArray(), prod, { rtol: 1e-5, atol: 1e-5 });
      }
    } finally {
      other.destroy();
    }
  }, 120_000);
});

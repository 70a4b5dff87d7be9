// The gradient exchange (src/align/data_parallel.ts) in one process, against a stand-in for a second rank whose
// gradients are all 1 and which has a gradient for every parameter: each gradient must become (own + 1) / 2 in
// place, across bucket boundaries (tiny buckets, a gradient larger than a bucket), and a parameter without a
// gradient here must get one (0 + 1) / 2.
import { describe, expect, test } from "bun:test";
import { allReduceGradients } from "../../src/align/data_parallel.ts";
import type { Comm, ReduceOp } from "../../src/dist/index.ts";
import { Tensor } from "../../src/tensor/index.ts";
import { getGpu, randomF32, rng } from "../helpers.ts";

/** Rank 0 of 2, the other rank simulated: its floats are 1, its presence flags 1. */
class PeerOfOnes implements Comm {
  readonly size = 2;
  readonly rank = 0;
  readonly localRank = 0;
  readonly library = null;
  calls: { kind: string; length: number; op: ReduceOp }[] = [];
  barriers = 0;
  allReduce(buf: Float32Array | Float64Array | Int32Array, op: ReduceOp = "sum"): void {
    this.calls.push({ kind: buf.constructor.name, length: buf.length, op });
    for (let i = 0; i < buf.length; i++) {
      const peer = 1;
      const v = op === "max" ? Math.max(buf[i]!, peer) : op === "min" ? Math.min(buf[i]!, peer) : buf[i]! + peer;
      buf[i] = op === "mean" ? v / 2 : v;
    }
  }
  allReduceF16(): void {}
  broadcast(): void {}
  barrier(): void {}
  async barrierAsync(): Promise<void> {
    this.barriers++;
  }
  finalize(): void {}
  abort(): never {
    throw new Error("abort");
  }
}

describe("allReduceGradients", () => {
  test("every gradient becomes the mean over the ranks, in place, in buckets; a missing one is created", async () => {
    const gpu = await getGpu();
    const r = rng(15);
    const shapes = [[3], [5, 7], [40], [2], [64]];
    const params = shapes.map((s) => Tensor.zeros(gpu, s, { requiresGrad: true }));
    const own = params.map((p, i) => (i === 2 ? null : randomF32(p.size, r)));
    params.forEach((p, i) => {
      if (own[i]) p.grad = Tensor.fromArray(gpu, own[i]!, p.shape);
    });
    const buffers = params.map((p) => p.grad?.buffer);
    const comm = new PeerOfOnes();
    const stats = await allReduceGradients(params, comm, 100); // 25 floats a bucket: [64] alone, [40] alone, ...
    expect(comm.barriers).toBe(1);
    expect(comm.calls[0]).toEqual({ kind: "Int32Array", length: 5, op: "max" });
    const buckets = comm.calls.slice(1);
    expect(buckets.every((c) => c.kind === "Float32Array" && c.op === "mean")).toBe(true);
    // reverse parameter order: [64] | [2] | [40] | [5,7] | [3] (35 + 3 > 25 floats)
    expect(buckets.map((c) => c.length)).toEqual([64, 2, 40, 35, 3]);
    expect(stats.buckets).toBe(5);
    expect(stats.bytes).toBe(4 * (3 + 35 + 40 + 2 + 64));
    for (const [i, p] of params.entries()) {
      expect(p.grad, `param ${i}`).not.toBeNull();
      const got = await p.grad!.toArray();
      const want = own[i] ? Float32Array.from(own[i]!, (x) => (x + 1) / 2) : new Float32Array(p.size).fill(0.5);
      expect(Array.from(got)).toEqual(Array.from(want));
      if (own[i]) expect(p.grad!.buffer).toBe(buffers[i]!); // in place
    }
    for (const p of params) p.release();
  });

  test("a world of one: nothing to do", async () => {
    const gpu = await getGpu();
    const p = Tensor.zeros(gpu, [4], { requiresGrad: true });
    p.grad = Tensor.fromArray(gpu, [1, 2, 3, 4], [4]);
    const { LocalComm } = await import("../../src/dist/index.ts");
    const stats = await allReduceGradients([p], new LocalComm());
    expect(stats.buckets).toBe(0);
    expect(Array.from(await p.grad.toArray())).toEqual([1, 2, 3, 4]);
    p.release();
  });
});

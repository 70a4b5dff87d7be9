// The gradient exchange (src/align/data_parallel.ts) in one process, the second rank stood in for:
//  - a peer whose floats are all 1 (and so has every gradient): each gradient must become (own + 1) / 2 in place,
//    across bucket boundaries (tiny buckets, a gradient larger than a bucket), and a parameter without a gradient
//    here must get one (0 + 1) / 2;
//  - a recorded peer: rank 1's exchange runs first against a comm that records what it sends, then rank 0's
//    against one that adds those buffers call by call (what MPI_Allreduce would do). The two ranks' backwards
//    reach different parameters; both must send buckets of the same sizes in the same order, and rank 0 must end
//    with the exact means (a gradient only the peer has is created, one no rank has stays null), the same bits
//    with the overlap (buckets read back from inside the backward, through autograd's onGradReady) as without;
//    a bucket with a member the backward did not reach waits for finish().
import { describe, expect, test } from "bun:test";
import { allReduceGradients, GradientExchange, overlapByDefault } from "../../src/align/data_parallel.ts";
import { LocalComm, type Comm, type ReduceOp } from "../../src/dist/index.ts";
import type { Gpu } from "../../src/gpu/index.ts";
import { scope, Tensor, type BackwardOptions } from "../../src/tensor/index.ts";
import { getGpu, randomF32, rng } from "../helpers.ts";

type Numeric = Float32Array | Float64Array | Int32Array;

/** Rank 0 of 2; `peer(buf, op, call)` gives the other rank's contribution to each all-reduce. */
class StandIn implements Comm {
  readonly size = 2;
  readonly localRank = 0;
  readonly library = null;
  calls: { kind: string; length: number; op: ReduceOp }[] = [];
  barriers = 0;
  constructor(
    private readonly peer: (buf: Numeric, op: ReduceOp, call: number) => ArrayLike<number> | null,
    readonly rank = 0,
  ) {}
  allReduce(buf: Numeric, op: ReduceOp = "sum"): void {
    const other = this.peer(buf, op, this.calls.length);
    this.calls.push({ kind: buf.constructor.name, length: buf.length, op });
    if (!other) return; // a recorder: the values stay as they are
    expect(other.length).toBe(buf.length);
    for (let i = 0; i < buf.length; i++) {
      const [a, b] = [buf[i]!, other[i]!];
      const v = op === "max" ? Math.max(a, b) : op === "min" ? Math.min(a, b) : a + b;
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

const ones = (buf: Numeric) => new Float32Array(buf.length).fill(1);

describe("GradientExchange", () => {
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
    const comm = new StandIn(ones);
    const stats = await allReduceGradients(params, comm, 100); // 25 floats a bucket: [64] alone, [40] alone, ...
    expect(comm.barriers).toBe(1); // before bucket 0; nothing was read back during a backward
    expect(comm.calls.every((c) => c.kind === "Float32Array" && c.op === "mean")).toBe(true);
    // reverse parameter order: [64] | [2] | [40] | [5,7] | [3] (35 + 3 > 25 floats), each + one presence flag a member
    expect(comm.calls.map((c) => c.length)).toEqual([65, 3, 41, 36, 4]);
    expect([stats.buckets, stats.early]).toEqual([5, 0]);
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

  /** Parameters of the shapes below and a loss reaching those in `reach`: Σ_i sum(p_i · x_i), so d/dp_i = x_i. */
  const SHAPES = [[3], [5, 7], [40], [2], [6], [64], [4]];
  function rank(gpu: Gpu, seed: number, reach: readonly number[]) {
    const r = rng(seed);
    const params = SHAPES.map((s) => Tensor.zeros(gpu, s, { requiresGrad: true }));
    const xs = SHAPES.map((s) => Tensor.fromArray(gpu, randomF32(s.reduce((a, b) => a * b, 1), r), s));
    const backward = (opts?: BackwardOptions) => {
      const loss = scope(() => reach.map((i) => params[i]!.mul(xs[i]!).sum()).reduce((a, b) => a.add(b)));
      try {
        loss.backward(opts);
      } finally {
        loss.release();
      }
    };
    const release = () => [...params, ...xs].forEach((t) => t.release());
    return { params, xs, backward, release };
  }
  const values = (ts: readonly (Tensor | null)[]) => Promise.all(ts.map(async (t) => (t ? Array.from(await t.toArray()) : null)));

  /**
   * Rank 1 reaches [3], [5,7], [40], [6]; rank 0 reaches [3], [5,7], [2], [6], [64], in two micro-batches (the
   * second: the step's last backward, with the exchange's options); no rank reaches [4]. Buckets of 25 floats,
   * reverse order: [4] | [64] | [6],[2] | [40] | [5,7] | [3]. The bucket [6],[2] is complete only after [2]'s
   * gradient is: read back at [6]'s, [2] would be stale (x, not 2x).
   */
  async function step(gpu: Gpu, overlap: boolean) {
    const peer = rank(gpu, 7, [0, 1, 2, 4]);
    const recorder = new StandIn((buf) => (sent.push(Float32Array.from(buf as Float32Array)), null), 1);
    const sent: Float32Array[] = [];
    peer.backward();
    await new GradientExchange(peer.params, recorder, { bucketBytes: 100, overlap: false }).finish();
    const peerGrads = sent; // what rank 1 sent: its gradients and flags, bucket by bucket

    const me = rank(gpu, 8, [0, 1, 3, 4, 5]);
    const comm = new StandIn((_b, _op, call) => peerGrads[call] ?? null);
    me.backward(); // an earlier micro-batch: accumulates only
    const ex = new GradientExchange(me.params, comm, { bucketBytes: 100, overlap });
    const readsBefore = gpu.queue.stats().submits;
    me.backward(ex.backwardOptions);
    const submitsInBackward = gpu.queue.stats().submits - readsBefore;
    const stats = await ex.finish();
    const got = await values(me.params.map((p) => p.grad));
    const [xs, peerXs] = [await values(me.xs), await values(peer.xs)];
    me.release();
    peer.release();
    return { stats, got, xs, peerXs, calls: comm.calls, peerCalls: recorder.calls, barriers: comm.barriers, submitsInBackward };
  }

  test("ranks whose backwards reach different parameters: the same buckets in the same order, exact means, the same bits with overlap", async () => {
    const gpu = await getGpu();
    const serial = await step(gpu, false);
    const overlapped = await step(gpu, true);
    for (const s of [serial, overlapped]) {
      expect(s.calls.map((c) => c.length)).toEqual([5, 65, 10, 41, 36, 4]);
      expect(s.peerCalls.map((c) => c.length)).toEqual(s.calls.map((c) => c.length));
    }
    // Rank 0: 2 micro-batches of x (2x) where it reaches p_i; the peer: its x once. Mean: (own + peer) / 2, in f32.
    const mine = new Set([0, 1, 3, 4, 5]), theirs = new Set([0, 1, 2, 4]);
    const want = SHAPES.map((_, i) => {
      if (!mine.has(i) && !theirs.has(i)) return null;
      return serial.xs[i]!.map((x, j) => Math.fround(((mine.has(i) ? Math.fround(2 * x) : 0) + (theirs.has(i) ? serial.peerXs[i]![j]! : 0)) / 2));
    });
    expect(serial.got).toEqual(want);
    expect(serial.got[6]).toBeNull(); // [4]: no rank has it
    expect(serial.got[2]).not.toBeNull(); // [40]: only the peer has it, created here
    expect(overlapped.got).toEqual(serial.got); // bit for bit
    // Serial: nothing read back in the backward, one barrier. Overlap: the buckets whose members the last backward
    // all reached ([64], [6],[2], [5,7], [3]: 4 of 6) were read back from inside it, each with its own submit; bucket
    // 0 and, on a CPU adapter, each read-back-early bucket wait for the peer in barrierAsync (not a spinning MPI call).
    expect([serial.stats.early, overlapped.stats.early]).toEqual([0, 4]);
    expect(overlapped.submitsInBackward).toBeGreaterThanOrEqual(4);
    expect(serial.barriers).toBe(1);
    expect(overlapped.barriers).toBe(gpu.adapter.kind === "cpu" ? 5 : 1);
    for (const s of [serial, overlapped]) expect([s.stats.buckets, s.stats.bytes]).toEqual([6, 4 * (3 + 35 + 40 + 2 + 6 + 64 + 4)]);
  });

  test("the exchange's options given to two backwards of one step: refused, not a silent stale read", async () => {
    const gpu = await getGpu();
    const me = rank(gpu, 9, [0, 1]);
    const ex = new GradientExchange(me.params, new StandIn(ones), { overlap: true });
    me.backward(ex.backwardOptions);
    expect(() => me.backward(ex.backwardOptions)).toThrow(/finished twice in one step/);
    await ex.finish();
    await expect(ex.finish()).rejects.toThrow(/called twice/);
    me.release();
  });

  test("a world of one: nothing to do, no hook; ALIGNX_DDP_OVERLAP=0 turns the overlap off", async () => {
    const gpu = await getGpu();
    const p = Tensor.zeros(gpu, [4], { requiresGrad: true });
    p.grad = Tensor.fromArray(gpu, [1, 2, 3, 4], [4]);
    const ex = new GradientExchange([p], new LocalComm());
    expect(ex.backwardOptions).toEqual({});
    const stats = await ex.finish();
    expect(stats.buckets).toBe(0);
    expect(Array.from(await p.grad.toArray())).toEqual([1, 2, 3, 4]);
    const prev = process.env.ALIGNX_DDP_OVERLAP;
    try {
      process.env.ALIGNX_DDP_OVERLAP = "0";
      expect([overlapByDefault(), new GradientExchange([p], new StandIn(ones)).overlap]).toEqual([false, false]);
      delete process.env.ALIGNX_DDP_OVERLAP;
      expect([overlapByDefault(), new GradientExchange([p], new StandIn(ones)).overlap]).toEqual([true, true]);
    } finally {
      if (prev === undefined) delete process.env.ALIGNX_DDP_OVERLAP;
      else process.env.ALIGNX_DDP_OVERLAP = prev;
    }
    p.release();
  });
});

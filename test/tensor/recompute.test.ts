// Activation checkpointing (src/tensor/recompute.ts): gradients through checkpointed blocks equal the plain
// ones bit for bit (parameters listed or only closed over, with dropout replaying its masks, nested, with
// retainGraph, inputs that need no gradient), the node keeps only the inputs, peak memory over an 8-block
// stack drops, a failing recompute restores state, and repeated steps leak nothing.
import { describe, expect, test } from "bun:test";
import type { Gpu } from "../../src/gpu/index.ts";
import { checkpoint, type CheckpointOptions } from "../../src/tensor/recompute.ts";
import { add, defaultGenerator, dropout, linear, manualSeed, mul, noGrad, rmsnorm, scope, silu, sum, Tensor, TensorError } from "../../src/tensor/index.ts";
import { expectFlatMemory } from "../helpers.ts";
import { getGpu, rng, seedOf, uniform, upload } from "./helpers.ts";

const [B, D, H] = [6, 20, 36]; // rows, model width, hidden width: none a multiple of a workgroup or tile

interface Block {
  params: Tensor[];
  fn: (x: Tensor) => Tensor;
}

/** x + W2 · silu(W1 · rmsnorm(x) + b1), optionally with dropout on the branch; weights closed over. */
function mlpBlock(gpu: Gpu, r: () => number, d: number, h: number, drop = 0): Block {
  const g = upload(gpu, uniform(r, d, 0.5, 1.5), [d], true);
  const w1 = upload(gpu, uniform(r, h * d, -0.4, 0.4), [h, d], true);
  const b1 = upload(gpu, uniform(r, h, -0.1, 0.1), [h], true);
  const w2 = upload(gpu, uniform(r, d * h, -0.4, 0.4), [d, h], true);
  const fn = (x: Tensor) => {
    const branch = linear(silu(linear(rmsnorm(x, g), w1, b1)), w2);
    return add(x, drop ? dropout(branch, drop) : branch);
  };
  return { params: [g, w1, b1, w2], fn };
}

type Mode = "plain" | "listed" | "captured";

/** loss = sum(c ⊙ blocks(x)), each block run plainly or through checkpoint (with its params listed or not). */
function lossOf(blocks: Block[], x: Tensor, c: Tensor, mode: Mode, opts: CheckpointOptions = {}): Tensor {
  return scope(() => {
    let h = x;
    for (const b of blocks) h = mode === "plain" ? b.fn(h) : checkpoint(b.fn, [h], mode === "listed" ? b.params : [], opts);
    return sum(mul(h, c));
  });
}

async function gradsOf(ts: Tensor[]): Promise<Float32Array[]> {
  return Promise.all(ts.map((t) => (t.grad ? t.grad.toArray() : Promise.resolve(new Float32Array(0)))));
}

function zeroGrads(ts: Tensor[]): void {
  for (const t of ts) t.zeroGrad();
}

function expectSame(what: string, got: Float32Array[], ref: Float32Array[]): void {
  expect(got.length).toBe(ref.length);
  got.forEach((g, i) => {
    expect(g.length, `${what} [${i}] length`).toBe(ref[i]!.length);
    expect(ref[i]!.length, `${what} [${i}] has a gradient`).toBeGreaterThan(0);
    let bad = -1;
    for (let k = 0; k < g.length && bad < 0; k++) if (!(g[k] === ref[i]![k])) bad = k;
    if (bad >= 0) throw new Error(`${what} [${i}]: element ${bad} is ${g[bad]}, without checkpoint ${ref[i]![bad]}`);
  });
}

interface Setup {
  gpu: Gpu;
  blocks: Block[];
  x: Tensor;
  c: Tensor;
  leaves: Tensor[];
  release(): void;
}

async function setup(name: string, n: number, drop = 0, xRequiresGrad = true): Promise<Setup> {
  const gpu = await getGpu();
  const r = rng(seedOf(name));
  const blocks = Array.from({ length: n }, () => mlpBlock(gpu, r, D, H, drop));
  const x = upload(gpu, uniform(r, B * D), [B, D], xRequiresGrad);
  const c = upload(gpu, uniform(r, B * D), [B, D]);
  const leaves = [x, ...blocks.flatMap((b) => b.params)];
  return { gpu, blocks, x, c, leaves, release: () => [c, ...leaves].forEach((t) => t.release()) };
}

/** One backward of `mode`: the loss value and every leaf's gradient (after clearing them). */
async function run(s: Setup, mode: Mode, opts: CheckpointOptions = {}, seed = 7): Promise<{ loss: number; grads: Float32Array[] }> {
  zeroGrads(s.leaves);
  manualSeed(seed);
  const loss = lossOf(s.blocks, s.x, s.c, mode, opts);
  loss.backward();
  const out = { loss: await loss.item(), grads: await gradsOf(s.leaves) };
  loss.release();
  return out;
}

describe("checkpoint", () => {
  test("MLP blocks: loss and every gradient equal the plain run bit for bit, params listed or only closed over", async () => {
    const s = await setup("ckpt-mlp", 3);
    const ref = await run(s, "plain");
    for (const mode of ["listed", "captured"] as const) {
      const got = await run(s, mode);
      expect(got.loss).toBe(ref.loss);
      expectSame(`grads (${mode})`, got.grads, ref.grads);
    }
    s.release();
  });

  test("the node is one 'checkpoint' op that saves only the inputs", async () => {
    const s = await setup("ckpt-node", 1);
    const y = checkpoint(s.blocks[0]!.fn, [s.x], s.blocks[0]!.params);
    expect(y.gradFn?.op).toBe("checkpoint");
    expect(y.gradFn?.savedCount).toBe(1);
    expect(y.gradFn?.next.length).toBe(1 + s.blocks[0]!.params.length); // x, then the listed params
    const plain = scope(() => s.blocks[0]!.fn(s.x));
    expect(plain.gradFn?.op).toBe("add");
    y.release();
    plain.release();
    s.release();
  });

  test("dropout inside: the recompute replays the forward's masks and leaves the generator where the plain run does", async () => {
    const s = await setup("ckpt-dropout", 3, 0.3);
    const ref = await run(s, "plain");
    const refState = defaultGenerator.getState();
    for (const mode of ["listed", "captured"] as const) {
      const got = await run(s, mode);
      expect(got.loss).toBe(ref.loss);
      expectSame(`grads with dropout (${mode})`, got.grads, ref.grads);
      expect(defaultGenerator.getState()).toEqual(refState); // the recompute's draws were rewound
    }
    // Without preserving the generator state the recompute draws other masks: the gradients go wrong.
    const off = await run(s, "listed", { preserveRngState: false });
    expect(off.loss).toBe(ref.loss);
    expect(() => expectSame("grads without preserveRngState", off.grads, ref.grads)).toThrow();
    s.release();
  });

  test("a parameter with a gradient already, shared across blocks and used outside them, accumulates once per use", async () => {
    const gpu = await getGpu();
    const r = rng(seedOf("ckpt-shared"));
    const w = upload(gpu, uniform(r, D * D, -0.3, 0.3), [D, D], true);
    const x = upload(gpu, uniform(r, B * D), [B, D], true);
    const fn = (h: Tensor) => silu(linear(h, w));
    const lossOf = (mode: Mode) =>
      scope(() => {
        let h = linear(x, w);
        for (let i = 0; i < 3; i++) h = mode === "plain" ? fn(h) : checkpoint(fn, [h], mode === "listed" ? [w] : []);
        return sum(h);
      });
    const twice = async (mode: Mode) => {
      zeroGrads([w, x]);
      for (let i = 0; i < 2; i++) {
        const l = lossOf(mode);
        l.backward();
        l.release();
      }
      return gradsOf([w, x]);
    };
    const ref = await twice("plain");
    for (const mode of ["listed", "captured"] as const) {
      const got = await twice(mode);
      // The same terms, summed in another order for the listed case (≤ 1 ulp-level differences).
      got.forEach((g, i) => g.forEach((v, k) => expect(Math.abs(v - ref[i]![k]!)).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(ref[i]![k]!)))));
    }
    for (const t of [w, x]) t.release();
  });

  test("inputs that need no gradient: listed params still get theirs through the node; unlisted ones through plain recording", async () => {
    const s = await setup("ckpt-frozen-input", 2, 0, false);
    const ref = await run(s, "plain");
    const listed = await run(s, "listed");
    expectSame("grads (listed)", listed.grads.slice(1), ref.grads.slice(1));
    const captured = await run(s, "captured");
    expectSame("grads (captured)", captured.grads.slice(1), ref.grads.slice(1));
    // With nothing requiring grad among inputs and params, checkpoint records the block as usual.
    const y = checkpoint(s.blocks[0]!.fn, [s.x]);
    expect(y.gradFn?.op).toBe("add");
    y.release();
    s.release();
  });

  test("nested checkpoints, retainGraph, null inputs and eval mode", async () => {
    const s = await setup("ckpt-nested", 4);
    const ref = await run(s, "plain");
    const [b0, b1, b2, b3] = s.blocks as [Block, Block, Block, Block];
    const pair = (p: Block, q: Block) => (h: Tensor) => checkpoint(q.fn, [checkpoint(p.fn, [h], p.params)], q.params);
    // A block taking an optional second input passed as null.
    const withNull = (h: Tensor, none: Tensor | null) => {
      expect(none).toBeNull();
      return b3.fn(h);
    };
    zeroGrads(s.leaves);
    const loss = scope(() => {
      const h = checkpoint(pair(b0, b1), [s.x], [...b0.params, ...b1.params]);
      return sum(mul(checkpoint(withNull, [b2.fn(h), null], b3.params), s.c));
    });
    loss.backward({ retainGraph: true });
    expectSame("nested", await gradsOf(s.leaves), ref.grads);
    loss.backward(); // again through the retained graph: recomputes, doubles every gradient
    const doubled = await gradsOf(s.leaves);
    expectSame("retainGraph", doubled, ref.grads.map((g) => g.map((v) => 2 * v)));
    loss.release();
    // Eval mode: no node, just the function's value.
    zeroGrads(s.leaves);
    const ev = noGrad(() => checkpoint(b0.fn, [s.x], b0.params));
    expect(ev.requiresGrad).toBe(false);
    ev.release();
    s.release();
  });

  test("peak memory of 8 checkpointed blocks is well under the plain stack's", async () => {
    const gpu = await getGpu();
    const r = rng(seedOf("ckpt-peak"));
    // Activations dominate (block input 16 KiB, each hidden activation 64 KiB; weights 4 KiB each).
    const [Bp, Dp, Hp] = [256, 16, 64];
    const blocks = Array.from({ length: 8 }, () => mlpBlock(gpu, r, Dp, Hp));
    const x = upload(gpu, uniform(r, Bp * Dp), [Bp, Dp], true);
    const c = upload(gpu, uniform(r, Bp * Dp), [Bp, Dp]);
    const leaves = [x, ...blocks.flatMap((b) => b.params)];
    const peak = async (mode: Mode) => {
      zeroGrads(leaves);
      await gpu.sync();
      const base = gpu.memory().liveBytes;
      gpu.pool.resetPeak();
      const loss = lossOf(blocks, x, c, mode);
      const afterForward = gpu.memory().liveBytes - base;
      loss.backward();
      loss.release();
      await gpu.sync();
      const grads = await gradsOf(leaves);
      return { peak: gpu.memory().peakBytes - base, afterForward, grads };
    };
    const plain = await peak("plain");
    const ckpt = await peak("listed");
    expectSame("8-block grads", ckpt.grads, plain.grads);
    // Kept between forward and backward: the plain stack ~5 activations per block, checkpointing 1. The
    // backward peak adds one block's recompute and the parameters' gradients.
    expect(ckpt.afterForward).toBeLessThan(0.2 * plain.afterForward);
    expect(ckpt.peak).toBeLessThan(0.5 * plain.peak);
    console.log(`8 blocks [${Bp}x${Dp}, hidden ${Hp}]: peak ${plain.peak} B plain, ${ckpt.peak} B checkpointed; kept after forward ${plain.afterForward} B vs ${ckpt.afterForward} B`);
    zeroGrads(leaves);
    for (const t of [c, ...leaves]) t.release();
  });

  test("a recompute that throws leaves generator, parameter gradients and memory as they were", async () => {
    const s = await setup("ckpt-throw", 1, 0.2);
    const b = s.blocks[0]!;
    const w = b.params[1]!;
    w.grad = Tensor.ones(s.gpu, w.shape);
    let calls = 0;
    const flaky = (h: Tensor) => {
      if (++calls === 2) {
        dropout(h, 0.5).release(); // draws, and leaves a temporary, before failing
        throw new Error("boom");
      }
      return b.fn(h);
    };
    await s.gpu.sync();
    const before = s.gpu.memory();
    const y = checkpoint(flaky, [s.x], b.params);
    const loss = sum(y);
    const state = defaultGenerator.getState();
    expect(() => loss.backward()).toThrow("boom");
    expect(defaultGenerator.getState()).toEqual(state);
    expect(Array.from(await w.grad.toArray())).toEqual(new Array(w.size).fill(1));
    for (const t of s.leaves) if (t !== w) expect(t.grad).toBeNull();
    y.release();
    loss.release();
    await s.gpu.sync();
    expect(s.gpu.memory().liveBytes).toBe(before.liveBytes);
    expect(s.gpu.memory().liveBuffers).toBe(before.liveBuffers);
    s.release();
  });

  test("argument errors name checkpoint", async () => {
    const s = await setup("ckpt-errors", 1);
    expect(() => checkpoint(() => 3 as unknown as Tensor, [s.x])).toThrow(TensorError);
    expect(() => checkpoint(() => 3 as unknown as Tensor, [s.x])).toThrow("checkpoint: fn must return one Tensor");
    expect(() => checkpoint(s.blocks[0]!.fn, [s.x, 5 as unknown as Tensor] as unknown as [Tensor])).toThrow("checkpoint: inputs[1] is not a Tensor");
    s.release();
  });

  test("no leak: 40 checkpointed forward+backward steps with dropout keep live memory flat", async () => {
    const s = await setup("ckpt-leak", 3, 0.2);
    manualSeed(3);
    const { start, end } = await expectFlatMemory(
      s.gpu,
      40,
      () => {
        const loss = lossOf(s.blocks, s.x, s.c, "listed");
        loss.backward();
        loss.release();
        zeroGrads(s.leaves);
      },
      { warmup: 5 },
    );
    expect(end.liveBytes).toBe(start.liveBytes);
    expect(end.liveBuffers).toBe(start.liveBuffers);
    s.release();
  });
});

// LlamaModel.forwardLoss(ids, { logits: false }): the loss from the final hidden state through linearCrossEntropy
// (chunked over the vocabulary), never the [B, T, V] logits. The same loss and parameter gradients as the default
// path (one chunk and several; padding and -100 labels; tied embeddings; gradient checkpointing with hidden states;
// autocast f16; noGrad), NaN where the default path has it, a lower peak for a vocabulary-heavy config, and a
// memory-flat training loop.
import { describe, expect, test } from "bun:test";
import { LlamaModel, type ForwardLossOptions } from "../../src/nn/index.ts";
import { noGrad } from "../../src/tensor/index.ts";
import { expectFlatMemory, getGpu } from "../helpers.ts";
import { TINY_LLAMA } from "./tiny.ts";

const IDS = [
  [1, 5, 9, 14, 22, 3, 40, 7, 11, 63],
  [2, 63, 17, 8, 8, 30, 51, 4, 19, 0],
];
const MASK = [Array(10).fill(1), [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]];
const LABELS = [
  [1, 5, 9, 14, 22, 3, 40, 7, 11, 63],
  [-100, -100, 17, 8, 8, 30, -100, 4, 19, 0],
];

interface Result {
  loss: number;
  grads: Map<string, Float32Array>;
  hidden: Float32Array[];
}

/** forwardLoss with `opts`, backward; the loss, every parameter's gradient (then zeroed) and the hidden states. */
async function lossAndGrads(m: LlamaModel, opts: ForwardLossOptions): Promise<Result> {
  const out = m.forwardLoss(IDS, opts);
  if (opts.logits === false) expect(out.logits).toBeNull();
  else expect(out.logits?.shape).toEqual([2, 10, m.config.vocabSize]);
  out.loss.backward();
  const loss = await out.loss.item();
  const hidden = await Promise.all((out.hiddenStates ?? []).map((h) => h.toArray()));
  out.logits?.release();
  out.loss.release();
  for (const h of out.hiddenStates ?? []) h.release();
  const grads = new Map<string, Float32Array>();
  for (const [name, p] of m.namedParameters()) grads.set(name, await p.grad!.toArray());
  m.zeroGrad();
  return { loss, grads, hidden };
}

/** Loss within `rtol` relative, each gradient within `gtol` of its largest element, hidden states bit-equal. */
function expectSame(a: Result, b: Result, rtol: number, gtol: number): void {
  expect(Math.abs(a.loss - b.loss)).toBeLessThanOrEqual(rtol * Math.abs(a.loss));
  expect(b.grads.size).toBe(a.grads.size);
  for (const [name, g] of a.grads) {
    const h = b.grads.get(name)!;
    let [worst, scale] = [0, 0];
    for (let i = 0; i < g.length; i++) [worst, scale] = [Math.max(worst, Math.abs(g[i]! - h[i]!)), Math.max(scale, Math.abs(g[i]!))];
    expect(worst, name).toBeLessThanOrEqual(gtol * scale);
    expect(scale, name).toBeGreaterThan(0);
  }
  expect(b.hidden.length).toBe(a.hidden.length);
  a.hidden.forEach((x, i) => expect(b.hidden[i]!).toEqual(x));
}

const F16 = (await getGpu()).features.has("shader-f16");

describe("forwardLoss without logits", () => {
  test("the same loss and parameter gradients: one chunk, four chunks, padding and -100 labels", async () => {
    const gpu = await getGpu();
    const m = LlamaModel.fromConfig(gpu, TINY_LLAMA, { seed: 21 });
    try {
      for (const o of [{}, { attentionMask: MASK, labels: LABELS }] as ForwardLossOptions[]) {
        const plain = await lossAndGrads(m, o);
        expectSame(plain, await lossAndGrads(m, { ...o, logits: false }), 1e-6, 1e-6); // one chunk (V = 64)
        expectSame(plain, await lossAndGrads(m, { ...o, logits: false, lossChunk: 16 }), 1e-6, 1e-5);
        expectSame(plain, await lossAndGrads(m, { ...o, logits: false, lossChunk: 2 }), 1e-5, 1e-5);
      }
    } finally {
      m.release();
    }
  });

  test("tied embeddings: the head's gradient adds into embed_tokens as before", async () => {
    const gpu = await getGpu();
    const m = LlamaModel.fromConfig(gpu, { ...TINY_LLAMA, tie_word_embeddings: true }, { seed: 22 });
    try {
      const plain = await lossAndGrads(m, { labels: LABELS });
      expectSame(plain, await lossAndGrads(m, { labels: LABELS, logits: false, lossChunk: 24 }), 1e-6, 1e-5);
    } finally {
      m.release();
    }
  });

  test("gradient checkpointing, with hidden states", async () => {
    const gpu = await getGpu();
    const m = LlamaModel.fromConfig(gpu, TINY_LLAMA, { seed: 23 });
    try {
      const o: ForwardLossOptions = { attentionMask: MASK, labels: LABELS, outputHiddenStates: true };
      const plain = await lossAndGrads(m, o);
      expect(plain.hidden.length).toBe(3);
      m.gradientCheckpointing = true;
      expectSame(plain, await lossAndGrads(m, { ...o, logits: false, lossChunk: 16 }), 1e-6, 1e-5);
      expectSame(plain, await lossAndGrads(m, { ...o, logits: false }), 1e-6, 1e-5);
    } finally {
      m.release();
    }
  });

  test.skipIf(!F16)("autocast f16: as the f16 default path (products on f16 copies, f32 gradients)", async () => {
    const gpu = await getGpu();
    const m = LlamaModel.fromConfig(gpu, { ...TINY_LLAMA, initializer_range: 0.05 }, { seed: 24 });
    m.autocast = "f16";
    try {
      const plain = await lossAndGrads(m, { labels: LABELS });
      for (const [, p] of m.namedParameters()) expect(p.dtype).toBe("f32");
      // The gradients of the head's inputs are rounded to f16 once either way (f32 sums in another order).
      expectSame(plain, await lossAndGrads(m, { labels: LABELS, logits: false, lossChunk: 16 }), 1e-5, 5e-3);
      m.autocast = "f32";
      const f32 = await lossAndGrads(m, { labels: LABELS, logits: false });
      expect(Math.abs(f32.loss - plain.loss)).toBeLessThan(2e-3 * plain.loss);
      expect(f32.loss).not.toBe(plain.loss); // the products really ran in f16
    } finally {
      m.release();
    }
  });

  test("under noGrad: the same loss, nothing kept", async () => {
    const gpu = await getGpu();
    const m = LlamaModel.fromConfig(gpu, TINY_LLAMA, { seed: 25 });
    try {
      const want = noGrad(() => m.forwardLoss(IDS, { labels: LABELS }));
      await gpu.sync();
      const live = gpu.memory().liveBytes;
      const got = noGrad(() => m.forwardLoss(IDS, { labels: LABELS, logits: false, lossChunk: 8 }));
      expect(got.loss.requiresGrad).toBe(false);
      expect(await got.loss.item()).toBeCloseTo(await want.loss.item(), 5);
      got.loss.release();
      await gpu.sync();
      expect(gpu.memory().liveBytes).toBe(live);
      want.logits.release();
      want.loss.release();
    } finally {
      m.release();
    }
  });

  test("a NaN in the LM head or in a layer: NaN loss and gradients, as the default path", async () => {
    const gpu = await getGpu();
    for (const name of ["lm_head.weight", "model.layers.1.self_attn.q_proj.weight"]) {
      const m = LlamaModel.fromConfig(gpu, TINY_LLAMA, { seed: 26 });
      try {
        gpu.write(m.param(name).buffer, Float32Array.of(NaN), 4 * 37);
        const plain = await lossAndGrads(m, { labels: LABELS });
        const got = await lossAndGrads(m, { labels: LABELS, logits: false, lossChunk: 16 });
        expect(plain.loss).toBeNaN();
        expect(got.loss).toBeNaN();
        for (const [n, g] of plain.grads) {
          const h = got.grads.get(n)!;
          for (let i = 0; i < g.length; i++) if (Number.isNaN(g[i]!) !== Number.isNaN(h[i]!)) throw new Error(`${name}: ${n}[${i}] is ${h[i]}, the default path ${g[i]}`);
          expect(h.some(Number.isNaN), n).toBe(true);
        }
      } finally {
        m.release();
      }
    }
  });

  test("training steps without logits, checkpointing on, keep memory flat", async () => {
    const gpu = await getGpu();
    const m = LlamaModel.fromConfig(gpu, TINY_LLAMA, { seed: 27 });
    m.gradientCheckpointing = true;
    try {
      await expectFlatMemory(gpu, 10, () => {
        const { loss } = m.forwardLoss(IDS, { attentionMask: MASK, labels: LABELS, logits: false, lossChunk: 16 });
        loss.backward();
        loss.release();
        m.zeroGrad();
      }, { warmup: 3 });
    } finally {
      m.release();
    }
  });

  test("a vocabulary-heavy config: the step's peak drops by about the logits and their gradient", async () => {
    const gpu = await getGpu();
    const cfg = { ...TINY_LLAMA, hidden_size: 64, intermediate_size: 128, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 32000, max_position_embeddings: 256 };
    const [B, T] = [2, 128];
    const ids = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => (b * 7919 + t * 104729) % cfg.vocab_size));
    const m = LlamaModel.fromConfig(gpu, cfg, { seed: 28 });
    try {
      const step = async (o: ForwardLossOptions) => {
        await gpu.sync();
        const base = gpu.memory().liveBytes;
        gpu.pool.resetPeak();
        const out = m.forwardLoss(ids, o);
        out.loss.backward();
        const loss = await out.loss.item();
        const peak = gpu.memory().peakBytes - base;
        out.logits?.release();
        out.loss.release();
        m.zeroGrad();
        return { loss, peak };
      };
      const before = await step({});
      const after = await step({ logits: false, lossChunk: 4096 });
      const logitsBytes = B * T * cfg.vocab_size * 4;
      const MiB = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
      console.log(`V ${cfg.vocab_size}, B·T ${B * T}: step peak ${MiB(before.peak)} with logits, ${MiB(after.peak)} without (logits ${MiB(logitsBytes)})`);
      expect(after.loss).toBeCloseTo(before.loss, 5);
      expect(before.peak - after.peak).toBeGreaterThan(1.5 * logitsBytes);
    } finally {
      m.release();
    }
  }, 120_000);
});

// Gradient checkpointing in the LLaMA model: the same loss and gradients as the plain forward, less
// activation memory kept between forward and backward, no leak.
import { describe, expect, test } from "bun:test";
import { LlamaModel } from "../../src/nn/llama.ts";
import { expectFlatMemory, getGpu } from "../helpers.ts";

const CFG = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 50,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  initializer_range: 0.05,
};

const IDS = [
  [1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45],
  [0, 0, 0, 2, 4, 8, 16, 32, 3, 6, 12, 24],
];
const MASK = [Array(12).fill(1), [0, 0, 0, ...Array(9).fill(1)]];

async function lossAndGrads(m: LlamaModel): Promise<{ loss: number; grads: Map<string, Float32Array>; keptBytes: number }> {
  const gpu = m.gpu;
  await gpu.sync();
  const before = gpu.memory().liveBytes;
  const { logits, loss } = m.forwardLoss(IDS, { attentionMask: MASK });
  logits.release();
  await gpu.sync();
  const keptBytes = gpu.memory().liveBytes - before;
  loss.backward();
  const value = await loss.item();
  loss.release();
  const grads = new Map<string, Float32Array>();
  for (const [name, p] of m.namedParameters()) grads.set(name, await p.grad!.toArray());
  m.zeroGrad();
  return { loss: value, grads, keptBytes };
}

describe("gradient checkpointing", () => {
  test("same loss and gradients as without, fewer bytes kept for backward", async () => {
    const gpu = await getGpu();
    const m = LlamaModel.fromConfig(gpu, CFG, { seed: 11 });
    try {
      const plain = await lossAndGrads(m);
      m.gradientCheckpointing = true;
      const ckpt = await lossAndGrads(m);
      expect(ckpt.loss).toBe(plain.loss);
      expect(plain.grads.size).toBe(m.namedParameters().length);
      for (const [name, g] of plain.grads) {
        const h = ckpt.grads.get(name)!;
        let worst = 0;
        let scale = 0;
        for (let i = 0; i < g.length; i++) {
          worst = Math.max(worst, Math.abs(g[i]! - h[i]!));
          scale = Math.max(scale, Math.abs(g[i]!));
        }
        expect(worst, name).toBeLessThanOrEqual(1e-6 * Math.max(scale, 1e-6));
      }
      expect(ckpt.keptBytes).toBeLessThan(0.6 * plain.keptBytes);
    } finally {
      m.release();
    }
  }, 120_000);

  test("training steps with checkpointing keep memory flat", async () => {
    const gpu = await getGpu();
    const m = LlamaModel.fromConfig(gpu, CFG, { seed: 12 });
    m.gradientCheckpointing = true;
    try {
      await expectFlatMemory(gpu, 12, async () => {
        const { logits, loss } = m.forwardLoss(IDS, { attentionMask: MASK });
        logits.release();
        loss.backward();
        loss.release();
        m.zeroGrad();
      }, { warmup: 3 });
    } finally {
      m.release();
    }
  }, 120_000);
});

// NaN through a LlamaModel (issue 13 item 6): a NaN in one weight of a q or a k projection reaches every logit, the
// loss and the gradients, through the fused (flash) and the unfused attention alike, as in PyTorch. (The attention
// kernels once read a NaN score as masked: the logits and the loss came out finite while the gradients were NaN,
// and `generate` went on sampling.) The kernels' own NaN rows are in test/kernels/rows/<family>.ts.
import { describe, expect, test } from "bun:test";
import type { AttentionKernel } from "../../src/gpu/index.ts";
import { LlamaModel } from "../../src/nn/index.ts";
import { getGpu } from "../tensor/helpers.ts";
import { TINY_LLAMA } from "./tiny.ts";

const TINY = TINY_LLAMA;

const IDS = [
  [1, 5, 9, 14, 22, 3, 40, 7, 11],
  [2, 63, 17, 8, 8, 30, 51, 4, 19],
];

const countNaN = (x: Float32Array) => x.reduce((n, v) => n + (Number.isNaN(v) ? 1 : 0), 0);

describe("a NaN weight in attention", () => {
  for (const kernel of ["flash", "unfused"] as const satisfies readonly AttentionKernel[])
    for (const proj of ["q_proj", "k_proj"] as const)
      test(`${kernel}: one NaN in layer 1's ${proj} gives NaN logits, loss and gradients`, async () => {
        const gpu = await getGpu();
        const m = LlamaModel.fromConfig(gpu, TINY, { seed: 3 });
        try {
          const name = `model.layers.1.self_attn.${proj}.weight`;
          gpu.write(m.param(name).buffer, Float32Array.of(NaN), 4 * 37); // one element (row 1, column 5)
          await gpu.withPolicy({ attention: { kernel } }, async () => {
            const { logits, loss } = m.forwardLoss(IDS);
            loss.backward();
            const l = await logits.toArray();
            expect(countNaN(l)).toBe(l.length); // every logit of every position
            expect(await loss.item()).toBeNaN();
            logits.release();
            loss.release();
          });
          // Every parameter's gradient holds NaN; the layers' weights (all but the embedding, whose unused rows get
          // no gradient) are NaN throughout.
          for (const [n, t] of m.params) {
            const g = await t.grad!.toArray();
            if (n === "model.embed_tokens.weight") expect(countNaN(g), n).toBeGreaterThan(0);
            else expect(countNaN(g), n).toBe(g.length);
          }
        } finally {
          m.release();
        }
      });
});

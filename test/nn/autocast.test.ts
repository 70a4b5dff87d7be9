// LlamaModel.autocast = "f16" (mixed precision: f16 products with f32 accumulation, f32 master weights): the
// logits, loss and every parameter's gradient stay within f16 rounding of the f32 model's, the gradients are f32,
// and nothing but the products changes (a model with autocast "f32" is bit-identical to before).
import { describe, expect, test } from "bun:test";
import { LlamaModel } from "../../src/nn/index.ts";
import { getGpu } from "../helpers.ts";
import { TINY_LLAMA } from "./tiny.ts";

const ids = [
  [1, 5, 9, 13, 2, 7, 33, 60, 4, 11, 3, 8],
  [1, 40, 41, 42, 43, 7, 12, 19, 22, 5, 6, 0],
];

async function run(autocast: "f32" | "f16") {
  const gpu = await getGpu();
  const model = LlamaModel.fromConfig(gpu, { ...TINY_LLAMA, initializer_range: 0.05 }, { seed: 7 });
  model.autocast = autocast;
  const out = model.forwardLoss(ids);
  out.loss.backward();
  const logits = await out.logits.toArray();
  const loss = await out.loss.item();
  const grads = new Map<string, Float32Array>();
  for (const [name, p] of model.params) {
    expect(p.grad!.dtype).toBe("f32");
    grads.set(name, await p.grad!.toArray());
  }
  out.logits.release();
  out.loss.release();
  model.release();
  return { logits, loss, grads };
}

describe.skipIf(!(await getGpu()).features.has("shader-f16"))("autocast f16", () => {
  test("logits, loss and gradients within f16 rounding of f32; gradients f32", async () => {
    const a = await run("f32");
    const b = await run("f16");
    const maxAbs = (v: Float32Array) => v.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    const maxDiff = (x: Float32Array, y: Float32Array) => x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i]!)), 0);
    expect(maxDiff(a.logits, b.logits)).toBeLessThan(5e-3 * maxAbs(a.logits));
    expect(maxDiff(a.logits, b.logits)).toBeGreaterThan(0); // the products really ran in f16
    expect(Math.abs(a.loss - b.loss)).toBeLessThan(2e-3 * Math.abs(a.loss));
    for (const [name, g] of a.grads) {
      const h = b.grads.get(name)!;
      expect(maxDiff(g, h), name).toBeLessThan(2e-2 * maxAbs(g) + 1e-7);
    }
  });
});

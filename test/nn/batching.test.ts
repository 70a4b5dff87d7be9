// The model records a whole forward as one batch: no upload in the middle of it may force an early submit
// (each costs a GPU round of work on a real device, on every generated token).
import { describe, expect, test } from "bun:test";
import { LlamaModel } from "../../src/nn/llama.ts";
import { noGrad } from "../../src/tensor/index.ts";
import { getGpu } from "../helpers.ts";

describe("forward batching", () => {
  test("an inference forward of a 2-layer model is one submit", async () => {
    const gpu = await getGpu();
    const m = await LlamaModel.fromPretrained(gpu, `${import.meta.dir}/../fixtures/parity/llama`);
    try {
      const ids = [[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1]];
      noGrad(() => m.forward(ids).logits.release());
      await gpu.sync();
      const s0 = gpu.queue.stats();
      noGrad(() => m.forward(ids).logits.release());
      await gpu.sync();
      const s1 = gpu.queue.stats();
      expect(s1.dispatches - s0.dispatches).toBeGreaterThan(20);
      expect(s1.submits - s0.submits).toBe(1);
    } finally {
      m.release();
    }
  }, 60_000);
});

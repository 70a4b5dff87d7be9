// spanAlignment (src/eval/span_alignment.ts) against a reference that runs each example alone (no padding, no
// batching), pools its source and target spans on the host in float64, and retrieves by brute force; plus the
// refusal of shards without spans.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Loader } from "../../src/data/index.ts";
import { spanAlignment } from "../../src/eval/index.ts";
import { LlamaModel } from "../../src/nn/index.ts";
import { noGrad } from "../../src/tensor/index.ts";
import { buildTrainFixture, type TrainFixture } from "../align/train_fixture.ts";
import { getGpu } from "../helpers.ts";

let fx: TrainFixture;
beforeAll(async () => {
  fx = await buildTrainFixture(await getGpu());
}, 120_000);
afterAll(() => fx?.cleanup());

const cos = (a: number[], b: number[]) => {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) (d += a[i]! * b[i]!), (na += a[i]! ** 2), (nb += b[i]! ** 2);
  return d / Math.sqrt(na * nb);
};

describe("spanAlignment", () => {
  test("equals a per-example float64 reference (retrieval and mean cosine at every layer)", async () => {
    const gpu = await getGpu();
    using model = await LlamaModel.fromPretrained(gpu, fx.start, { requiresGrad: false });
    const L = model.config.numHiddenLayers;
    const got = await spanAlignment(model, fx.s1, { batchSize: 4, padId: 2 });

    // the reference: one example per forward, unpadded
    const loader = await Loader.open({ data: fx.s1, batchSize: 1, shuffle: false, epochs: 1, padId: 2 });
    const byDir = new Map<string, { u: number[][][]; v: number[][][] }>();
    let n = 0;
    for await (const b of loader) {
      const T = b.tokens;
      const ids = Array.from(b.inputIds.subarray(0, T));
      const idx = Array.from(b.srcTgtIndex.subarray(0, T));
      const out = noGrad(() => model.forward([ids], { outputHiddenStates: true }));
      const key = `${b.srcLang[0]}-${b.tgtLang[0]}`;
      const g = byDir.get(key) ?? { u: Array.from({ length: L + 1 }, () => []), v: Array.from({ length: L + 1 }, () => []) };
      byDir.set(key, g);
      for (let k = 0; k <= L; k++) {
        const h = await out.hiddenStates![k]!.toArray();
        const D = model.config.hiddenSize;
        const mean = (want: number) => {
          const acc = new Array<number>(D).fill(0);
          let c = 0;
          for (let t = 0; t < T; t++) if (idx[t] === want) (c++, h.subarray(t * D, (t + 1) * D).forEach((x, d) => (acc[d]! += x)));
          return acc.map((x) => x / c);
        };
        g.u[k]!.push(mean(1));
        g.v[k]!.push(mean(2));
      }
      out.logits.release();
      for (const h of out.hiddenStates!) h.release();
      n++;
    }
    await loader.close();
    expect(got.examples).toBe(n);
    expect(Object.keys(got.directions).sort()).toEqual([...byDir.keys()].filter((k) => byDir.get(k)!.u[0]!.length >= 2).sort());
    for (let k = 0; k <= L; k++) {
      let r = 0, c = 0, pairs = 0, dirs = 0;
      for (const g of byDir.values()) {
        const U = g.u[k]!, V = g.v[k]!;
        if (U.length < 2) continue;
        dirs++;
        const top1 = (A: number[][], B: number[][]) => A.filter((a, i) => B.every((b, j) => j === i || cos(a, b) < cos(a, B[i]!))).length / A.length;
        r += (top1(U, V) + top1(V, U)) / 2;
        U.forEach((u, i) => ((c += cos(u, V[i]!)), pairs++));
      }
      expect(got.layers[k]!.layer).toBe(k);
      expect(got.layers[k]!.retrieval).toBeCloseTo(r / dirs, 6);
      expect(Math.abs(got.layers[k]!.meanCos - c / pairs)).toBeLessThan(1e-4);
    }
    const sizes = Object.values(got.directions);
    expect(got.chance).toBeCloseTo(sizes.reduce((a, s) => a + 1 / s, 0) / sizes.length, 12);
  }, 120_000);

  test("refuses shards without spans, and layers outside the model", async () => {
    const gpu = await getGpu();
    using model = await LlamaModel.fromPretrained(gpu, fx.start, { requiresGrad: false });
    await expect(spanAlignment(model, fx.pre, { padId: 2 })).rejects.toThrow(/no source or no target span/);
    await expect(spanAlignment(model, fx.s1, { layers: [3] })).rejects.toThrow(/layer 3 is outside 0\.\.2/);
  }, 60_000);
});

// clipGradNorm against a float64 reference of torch.nn.utils.clip_grad_norm_ (norm 2): the global norm over
// several gradients of odd sizes, reduced with one and with many workgroups per gradient (and with the strided
// loop when workgroups are capped), the in-place scaling, no host round-trip, null gradients skipped.
import { describe, expect, test } from "bun:test";
import { clipGradNorm } from "../../src/optim/index.ts";
import { Tensor } from "../../src/tensor/index.ts";
import { expectClose, getGpu, numel, rng, seedOf, uniform, upload, type Shape } from "../tensor/helpers.ts";

/** torch.nn.utils.clip_grad_norm_ in float64: [total norm, clipped gradients]. */
function refClip(grads: Float64Array[], maxNorm: number): [number, Float64Array[]] {
  let ss = 0;
  for (const g of grads) for (const x of g) ss += x * x;
  const norm = Math.sqrt(ss);
  const coef = Math.min(1, maxNorm / (norm + 1e-6));
  return [norm, grads.map((g) => g.map((x) => x * coef))];
}

async function check(what: string, shapes: Shape[], maxNorm: number, scale = 1): Promise<void> {
  const gpu = await getGpu();
  const r = rng(seedOf(what));
  const G = shapes.map((s) => uniform(r, numel(s), -scale, scale));
  const params = shapes.map((s, i) => {
    const p = Tensor.zeros(gpu, s, { requiresGrad: true });
    p.grad = upload(gpu, G[i]!, s);
    return p;
  });
  const [norm, clipped] = refClip(G, maxNorm);
  using n = clipGradNorm(params, maxNorm);
  expectClose(`${what} norm`, [await n.item()], [norm]);
  for (let i = 0; i < params.length; i++) expectClose(`${what} grad ${i}`, await params[i]!.grad!.toArray(), clipped[i]!);
  for (const p of params) p.release();
}

describe("clipGradNorm", () => {
  test("global L2 norm and in-place scaling, clipping active and inactive, odd sizes", async () => {
    await check("three small", [[7], [3, 5], [37]], 1.0);
    await check("inactive", [[7], [3, 5], [37]], 100.0);
    await check("one gradient", [[1]], 0.5, 3);
    await check("several workgroups per gradient", [[5000], [13, 1001], [3]], 2.0);
  });

  test("many workgroups per gradient with the strided loop (workgroups capped at 3), and a 2-D scaling grid", async () => {
    const gpu = await getGpu();
    await gpu.withPolicy({ clip: { perGroup: 300, maxGroups: 3 }, grid: { maxX: 2 } }, async () => {
      await check("capped", [[2049], [1], [700], [256]], 1.5);
      // 313 + 5 partials: the final pass strides too
      await gpu.withPolicy({ clip: { maxGroups: 65535, perGroup: 64 } }, () => check("uncapped", [[20001], [257]], 3.0));
    });
  });

  test("no host round-trip: clipping records GPU work only; the norm is read only when asked", async () => {
    const gpu = await getGpu();
    using p = Tensor.zeros(gpu, [40], { requiresGrad: true });
    p.grad = Tensor.full(gpu, [40], 0.5); // norm sqrt(40) / 2
    await gpu.sync();
    const s0 = gpu.queue.stats();
    using n = clipGradNorm([p], 1);
    const s1 = gpu.queue.stats();
    expect(s1.readbacks).toBe(s0.readbacks);
    expect(s1.uploads).toBe(s0.uploads);
    expect(s1.submits).toBe(s0.submits);
    expectClose("norm", [await n.item()], [Math.sqrt(40) / 2]);
    expectClose("clipped", await p.grad!.toArray(), new Array(40).fill(0.5 / (Math.sqrt(40) / 2 + 1e-6)));
  });

  test("null gradients are skipped; no gradients gives a zero norm; maxNorm Infinity only measures; 0 zeroes", async () => {
    const gpu = await getGpu();
    using a = Tensor.zeros(gpu, [3], { requiresGrad: true });
    using b = Tensor.zeros(gpu, [2], { requiresGrad: true });
    using none = clipGradNorm([a, b], 1);
    expect(await none.item()).toBe(0);
    b.grad = Tensor.fromArray(gpu, [3, 4], [2]);
    using n1 = clipGradNorm([a, b], Infinity);
    expectClose("measured", [await n1.item()], [5]);
    expect(Array.from(await b.grad.toArray())).toEqual([3, 4]);
    using n2 = clipGradNorm(b, 1); // a single tensor
    expectClose("norm", [await n2.item()], [5]);
    expectClose("clipped", await b.grad!.toArray(), [3 / (5 + 1e-6), 4 / (5 + 1e-6)]);
    expect(a.grad).toBeNull();
    using n3 = clipGradNorm([b], 0);
    expect(Array.from(await b.grad!.toArray())).toEqual([0, 0]);
    expect(() => clipGradNorm([], 1)).toThrow("clipGradNorm: got no parameters");
    expect(() => clipGradNorm([a], -1)).toThrow("clipGradNorm: maxNorm must be >= 0, got -1");
  });
});

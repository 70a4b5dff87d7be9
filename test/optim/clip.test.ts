// clipGradNorm through src/optim/clip.ts against torch.nn.utils.clip_grad_norm_ (norm 2) in float64
// (test/reference/optim.ts): the global norm over several gradients of odd sizes and the in-place scaling; no host
// round-trip; null gradients skipped, no gradients, maxNorm Infinity and 0, a single tensor; argument errors. The
// kernels with one and many workgroups per gradient, every row-reduction variant, and ragged partials under a clip
// policy (workgroups capped: the strided loop; many partials: the final pass strides) are launcher rows:
// test/kernels/rows/optim.ts.
import { describe, expect, test } from "bun:test";
import { clipGradNorm } from "../../src/optim/index.ts";
import { Tensor } from "../../src/tensor/index.ts";
import { clipGradNorm as refClip } from "../reference/optim.ts";
import { expectClose, getGpu, numel, rng, seedOf, uniform, upload, type Shape } from "../tensor/helpers.ts";

async function check(what: string, shapes: Shape[], maxNorm: number, scale = 1): Promise<void> {
  const gpu = await getGpu();
  const r = rng(seedOf(what));
  const G = shapes.map((s) => uniform(r, numel(s), -scale, scale));
  const params = shapes.map((s, i) => {
    const p = Tensor.zeros(gpu, s, { requiresGrad: true });
    p.grad = upload(gpu, G[i]!, s);
    return p;
  });
  const { total: norm, grads: clipped } = refClip({ grads: G }, { sizes: G.map((g) => g.length), maxNorm });
  using n = clipGradNorm(params, maxNorm);
  expectClose(`${what} norm`, [await n.item()], [norm]);
  for (let i = 0; i < params.length; i++) expectClose(`${what} grad ${i}`, await params[i]!.grad!.toArray(), clipped[i]!);
  for (const p of params) p.release();
}

describe("clipGradNorm", () => {
  test("global L2 norm and in-place scaling through the op, clipping active and inactive, odd sizes", async () => {
    await check("three small", [[7], [3, 5], [37]], 1.0);
    await check("inactive", [[7], [3, 5], [37]], 100.0);
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

// SGD through the optimizer: plain, weight decay, momentum with and without dampening, nesterov, over several steps
// with null gradients skipped (the momentum buffer is born on a parameter's first step with a gradient and is never
// read before it is written: the kernel sees a NaN-poisoned buffer then), against the float64 updates of
// test/reference/optim.ts driven with each parameter's own state; one dispatch per parameter and no upload;
// checkpoints; argument errors. The kernels on every size class and a 2-D workgroup grid are launcher rows:
// test/kernels/rows/optim.ts.
import { describe, expect, test } from "bun:test";
import { SGD, type SGDOptions } from "../../src/optim/index.ts";
import { Tensor } from "../../src/tensor/index.ts";
import { sgd, sgdMomentum } from "../reference/optim.ts";
import { expectClose, getGpu, numel, rng, seedOf, uniform, upload, type Shape } from "../tensor/helpers.ts";

/** One parameter's SGD state, as torch keeps it (the momentum buffer from its first step on), stepped by the reference. */
class RefSGD {
  buf: Float64Array | null = null;
  constructor(
    public p: Float64Array,
    readonly o: SGDOptions,
  ) {}
  step(g: Float64Array): void {
    const n = this.p.length;
    if (this.o.momentum === 0) this.p = sgd({ p: this.p, g }, { n, ...this.o }).p;
    else ({ p: this.p, buf: this.buf } = sgdMomentum({ p: this.p, g, buf: this.buf }, { n, ...this.o, first: this.buf === null }));
  }
}

const SHAPES: Shape[] = [[37], [3, 101], [1], [2, 3, 5]];
const VARIANTS: [string, SGDOptions][] = [
  ["plain", { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false }],
  ["weight decay", { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0.2, nesterov: false }],
  ["momentum", { lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false }],
  ["momentum + dampening + decay", { lr: 0.05, momentum: 0.7, dampening: 0.3, weightDecay: 0.1, nesterov: false }],
  ["nesterov + decay", { lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 0.05, nesterov: true }],
];

function setGrad(p: Tensor, G: Float64Array | null): void {
  p.zeroGrad();
  if (G) p.grad = upload(p.gpu, G, p.shape);
}

describe("SGD", () => {
  for (const [what, o] of VARIANTS)
    test(`${what}: matches a float64 reference over 5 steps, null gradients skipped`, async () => {
      const gpu = await getGpu();
      const r = rng(seedOf(`sgd ${what}`));
      const P = SHAPES.map((s) => uniform(r, numel(s)));
      const params = P.map((x, i) => upload(gpu, x, SHAPES[i]!, true));
      const refs = P.map((x) => new RefSGD(Float64Array.from(x), o));
      const opt = new SGD(params, o);
      for (let s = 0; s < 5; s++) {
        params.forEach((p, i) => {
          const none = (i === 1 && s === 0) || (i === 3 && s === 2);
          const G = none ? null : uniform(r, p.size, -2, 2);
          setGrad(p, G);
          if (G) refs[i]!.step(G);
        });
        opt.step();
        for (let i = 0; i < params.length; i++) expectClose(`${what} step ${s} param ${i}`, await params[i]!.toArray(), refs[i]!.p);
      }
      for (let i = 0; i < params.length; i++) {
        const buf = opt.stateOf(params[i]!)!.tensors.momentum_buffer;
        if (o.momentum === 0) expect(buf).toBeUndefined();
        else expectClose(`${what} momentum_buffer ${i}`, await buf!.toArray(), refs[i]!.buf!);
      }
      opt.release();
      for (const p of params) p.release();
    });

  test("one dispatch per parameter per step, no upload; momentum buffers survive a checkpoint", async () => {
    const gpu = await getGpu();
    const r = rng(seedOf("sgd checkpoint"));
    const X = uniform(r, 50);
    using a = upload(gpu, X, [5, 10], true);
    using b = upload(gpu, X, [5, 10], true);
    const o = { lr: 0.1, momentum: 0.9 };
    const optA = new SGD({ w: a }, o);
    const G = [uniform(r, 50), uniform(r, 50), uniform(r, 50)];
    setGrad(a, G[0]!);
    const s0 = gpu.queue.stats();
    optA.step();
    const s1 = gpu.queue.stats();
    expect(s1.dispatches - s0.dispatches).toBe(2); // the new buffer's NaN poison fill (tests poison), then the step
    expect(s1.uploads).toBe(s0.uploads);
    const sd = await optA.stateDict();
    expect(Object.keys(sd.state.w!.tensors)).toEqual(["momentum_buffer"]);
    // b: the same parameter after one step, its own optimizer resumed from the checkpoint.
    b.grad = null;
    const optB = new SGD({ w: b }, { lr: 0.5 });
    const bInit = await a.toArray();
    gpu.write(b.buffer, bInit);
    optB.loadStateDict(sd);
    for (const g of G.slice(1)) {
      setGrad(a, g);
      setGrad(b, g);
      optA.step();
      optB.step();
    }
    expect(Array.from(await b.toArray())).toEqual(Array.from(await a.toArray()));
    optA.release();
    optB.release();
  });

  test("bad arguments fail at the call site with torch's checks", async () => {
    const gpu = await getGpu();
    using p = Tensor.ones(gpu, [3], { requiresGrad: true });
    expect(() => new SGD([p], { lr: 0.1, nesterov: true })).toThrow("SGD: nesterov momentum requires a momentum and zero dampening");
    expect(() => new SGD([p], { lr: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true })).toThrow("requires a momentum and zero dampening");
    expect(() => new SGD([p], { lr: -0.1 })).toThrow("SGD: invalid learning rate -0.1");
    expect(() => new SGD([p], { lr: 0.1, momentum: -1 })).toThrow("SGD: invalid momentum value -1");
  });
});


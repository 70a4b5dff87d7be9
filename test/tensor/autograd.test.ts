// The autograd engine: a composite graph against central differences of its float64 reference, the rules
// of backward (scalar roots, accumulation, retainGraph, noGrad, detach, shared inputs), and memory: graphs
// free themselves, and a training-style loop keeps live buffers flat; and the engine installs backward and
// reshape on Tensor (tensor.ts alone says what to import); the onGradReady hook (once per leaf, when its gradient
// is final); in-place accumulation (a rule adding into the gradient an input already has: a tensor feeding three
// linears gets float64's gradient with no grad.accumulate dispatch, a pending gradient someone else holds or an
// input fed twice is not offered and the engine sums, retainGraph twice doubles, a user-held .grad is mutated in
// place as before); ops with several outputs (attachOutputs: one rule run per backward, zeros for an unused output,
// outputs reshaped or combined, the hook once, memory).
import { describe, expect, test } from "bun:test";
import type { Gpu } from "../../src/gpu/index.ts";
import { attach, attachOutputs, type BackwardRule } from "../../src/tensor/autograd.ts";
import { isGradEnabled, linear, noGrad, scope, Tensor } from "../../src/tensor/index.ts";
import { clone } from "../../src/tensor/tensor.ts";
import { expectFlatMemory } from "../helpers.ts";
import { accumulates, centralDiff, dispatchNames, expectClose, getGpu, rng, uniform, upload } from "./helpers.ts";

const silu64 = (v: number) => v / (1 + Math.exp(-v));

/**
 * loss = mean over rows of sum(tanh(x*w + b) / (x*x + 1)) seen as [2, 10]  +  0.1 * sum(mean_0(silu(x)^2))
 * x [4,5], w [5], b [4,1]: x feeds three ops, w and b broadcast, and reshape, sum(axis), mean(axis),
 * mean(all), pow, addScalar, mulScalar, div all sit on the path.
 */
function buildLoss(x: Tensor, w: Tensor, b: Tensor): Tensor {
  return scope(() => {
    const q = x.mul(w).add(b).tanh().div(x.mul(x).addScalar(1));
    const r = q.reshape(20).reshape(2, 10).sum(1);
    const s = x.silu().pow(2).mean(0);
    return r.mean().add(s.sum().mulScalar(0.1));
  });
}

function loss64(X: Float64Array, W: Float64Array, B: Float64Array): number {
  let total = 0;
  for (let i = 0; i < 4; i++)
    for (let j = 0; j < 5; j++) {
      const xv = X[i * 5 + j]!;
      total += Math.tanh(xv * W[j]! + B[i]!) / (xv * xv + 1);
    }
  let s = 0;
  for (let j = 0; j < 5; j++) {
    let m = 0;
    for (let i = 0; i < 4; i++) m += silu64(X[i * 5 + j]!) ** 2;
    s += m / 4;
  }
  return total / 2 + 0.1 * s; // mean over the 2 rows of the [2, 10] view
}

describe("autograd", () => {
  test("a composite graph's gradients match central differences of its float64 reference", async () => {
    const gpu = await getGpu();
    const r = rng(42);
    const [X, W, B] = [uniform(r, 20, -2, 2), uniform(r, 5, -1.5, 1.5), uniform(r, 4, -1, 1)];
    const x = upload(gpu, X, [4, 5], true);
    const w = upload(gpu, W, [5], true);
    const b = upload(gpu, B, [4, 1], true);
    const loss = buildLoss(x, w, b);
    expect(loss.shape).toEqual([]);
    expectClose("loss", [await loss.item()], [loss64(X, W, B)]);
    loss.backward();
    expectClose("d loss / d x", await x.grad!.toArray(), centralDiff((v) => loss64(v, W, B), X));
    expectClose("d loss / d w", await w.grad!.toArray(), centralDiff((v) => loss64(X, v, B), W));
    expectClose("d loss / d b", await b.grad!.toArray(), centralDiff((v) => loss64(X, W, v), B));
    for (const t of [x, w, b, loss]) t.release();
  });

  test("backward needs a scalar root or an explicit gradient, and a root that requires grad", async () => {
    const gpu = await getGpu();
    using x = Tensor.ones(gpu, [2, 3], { requiresGrad: true });
    using y = x.mulScalar(2);
    expect(() => y.backward()).toThrow(
      "backward(): Tensor([2, 3], f32, grad_fn=mul_scalar) is not a scalar; pass the gradient of the output explicitly, a tensor of shape [2, 3], as backward(grad)",
    );
    using g = Tensor.ones(gpu, [3]);
    expect(() => y.backward(g)).toThrow("backward(): gradient shape [3] does not match Tensor([2, 3], f32, grad_fn=mul_scalar)");
    using c = Tensor.ones(gpu, [1]);
    using d = c.exp();
    expect(() => d.backward()).toThrow("backward(): Tensor([1], f32) does not require grad");
    using g2 = Tensor.full(gpu, [2, 3], 0.5);
    y.backward(g2); // explicit gradient: d(2x)/dx * 0.5
    expect([...(await x.grad!.toArray())]).toEqual([1, 1, 1, 1, 1, 1]);
    using s = Tensor.fromArray(gpu, [3], [], { requiresGrad: true });
    s.backward(); // a leaf root: its own gradient is 1
    expect(await s.grad!.item()).toBe(1);
    expect(() => y.setRequiresGrad(false)).toThrow("is not a leaf");
    using i = Tensor.fromArray(gpu, [1], [1], { dtype: "i32" });
    expect(() => i.setRequiresGrad()).toThrow("i32 tensors cannot require gradients");
  });

  test("gradients accumulate into .grad across backward calls; a freed graph refuses a second pass", async () => {
    const gpu = await getGpu();
    using x = Tensor.fromArray(gpu, [1, -2, 3], [3], { requiresGrad: true });
    using loss = x.mul(x).sum(); // d/dx = 2x
    loss.backward({ retainGraph: true });
    const g1 = x.grad!;
    expect([...(await x.grad!.toArray())]).toEqual([2, -4, 6]);
    loss.backward();
    expect(x.grad).toBe(g1); // accumulated in place: the same tensor and buffer
    expect([...(await x.grad!.toArray())]).toEqual([4, -8, 12]);
    expect(() => loss.backward()).toThrow("backward through op 'sum' a second time: its saved tensors were freed");
    x.zeroGrad();
    expect(x.grad).toBeNull();
    using loss2 = x.add(x).sum(); // one op using x twice: both gradients land in x.grad
    loss2.backward();
    expect([...(await x.grad!.toArray())]).toEqual([2, 2, 2]);
  });

  test("a tensor feeding several ops sums its gradients; detach cuts a path", async () => {
    const gpu = await getGpu();
    const X = [0.5, -1, 2];
    using x = Tensor.fromArray(gpu, X, [3], { requiresGrad: true });
    scope(() => x.exp().add(x.mulScalar(3)).sub(x.neg()).add(x.exp()).sum().backward()); // 2exp(x) + 4x
    expectClose("fan-out", await x.grad!.toArray(), X.map((v) => 2 * Math.exp(v) + 4));
    x.zeroGrad();
    using d = x.detach();
    expect(d.requiresGrad).toBe(false);
    expect(d.storage).toBe(x.storage);
    scope(() => d.mul(x).sum().backward()); // only the x path: gradient = d = x
    expectClose("detach", await x.grad!.toArray(), X);
  });

  test("noGrad records nothing and restores the mode, even after a throw", async () => {
    const gpu = await getGpu();
    using x = Tensor.ones(gpu, [4], { requiresGrad: true });
    const y = noGrad(() => {
      expect(isGradEnabled()).toBe(false);
      noGrad(() => {});
      expect(isGradEnabled()).toBe(false);
      return x.mul(x);
    });
    expect(isGradEnabled()).toBe(true);
    expect(y.requiresGrad).toBe(false);
    expect(y.gradFn).toBeNull();
    y.release();
    expect(() =>
      noGrad(() => {
        throw new Error("inside");
      }),
    ).toThrow("inside");
    expect(isGradEnabled()).toBe(true);
    using z = x.mul(x);
    expect(z.gradFn!.op).toBe("mul");
  });

  test("saved tensors outlive their users' release, and a released graph frees its buffers", async () => {
    const gpu = await getGpu();
    const X = [0.25, -0.5, 1];
    using x = Tensor.fromArray(gpu, X, [3], { requiresGrad: true });
    const live0 = gpu.memory().liveBuffers;
    const y = x.exp();
    const z = scope(() => y.mul(y).sum()); // the scope releases the mul output; its node keeps what it needs
    y.release(); // mul saved its own views of y
    z.backward();
    expectClose("d sum(exp(x)^2)", await x.grad!.toArray(), X.map((v) => 2 * Math.exp(2 * v)));
    z.release();
    expect(gpu.memory().liveBuffers).toBe(live0 + 1); // only x.grad
    x.zeroGrad();
    // Without any backward: releasing the root frees every saved tensor along the graph.
    const loss = scope(() => x.exp().mul(x.tanh()).div(x.sigmoid().addScalar(1)).pow(2).mean());
    expect(gpu.memory().liveBuffers).toBeGreaterThan(live0 + 1);
    loss.release();
    expect(gpu.memory().liveBuffers).toBe(live0);
  });

  test("200 steps of forward + backward + update keep live buffers and bytes flat", async () => {
    const gpu = await getGpu();
    const r = rng(5);
    const x = upload(gpu, uniform(r, 5 * 13), [5, 1, 13]);
    let w = upload(gpu, uniform(r, 7 * 13), [7, 13], true);
    let b = upload(gpu, uniform(r, 7), [7, 1], true);
    const losses: number[] = [];
    // Flat live buffers, bytes and created count from step 10 on: the pool serves every step from its cache.
    const { start, end } = await expectFlatMemory(
      gpu,
      200,
      async (it) => {
        const loss = scope(() => x.mul(w).add(b).silu().mean(2).pow(2).sum());
        loss.backward();
        if (it % 40 === 0 || it === 199) losses.push(await loss.item());
        loss.release();
        const [nw, nb] = scope(() => noGrad(() => [w.sub(w.grad!.mulScalar(0.05)), b.sub(b.grad!.mulScalar(0.05))]));
        w.release();
        b.release();
        w = nw!.setRequiresGrad();
        b = nb!.setRequiresGrad();
      },
      { warmup: 10 },
    );
    expect(end.liveBuffers).toBe(start.liveBuffers);
    expect(losses[losses.length - 1]!).toBeLessThan(losses[0]!); // and the steps did descend
    for (const t of [x, w, b]) t.release();
  });

  describe("onGradReady: a leaf's gradient is final (torch's post-accumulate-grad hook)", () => {
    /** Backward with a hook that logs each call and snapshots the gradient as it stands then (a GPU copy in order). */
    function hooked(root: Tensor, names: Map<Tensor, string>, retainGraph = false) {
      const calls: string[] = [];
      const seen = new Map<string, Tensor>();
      root.backward({
        retainGraph,
        onGradReady: (leaf) => {
          const name = names.get(leaf) ?? "?";
          calls.push(name);
          seen.set(name, clone(leaf.grad!));
        },
      });
      return { calls, seen };
    }

    test("once per leaf, after its last part (the grad it sees is the final one), in the graph's order; not for leaves without a gradient", async () => {
      const gpu = await getGpu();
      // loss = sum(((t·x) · w1 + x) · w2 · t): x feeds two ops, t (a tied weight) the first op and the last,
      // w2 is done before w1, u is unused and d reaches the loss only through a detach.
      using x = Tensor.fromArray(gpu, [1, -2, 3], [3], { requiresGrad: true });
      using t = Tensor.fromArray(gpu, [0.5, 2, -1], [3], { requiresGrad: true });
      using w1 = Tensor.fromArray(gpu, [2, 1, 0.5], [3], { requiresGrad: true });
      using w2 = Tensor.fromArray(gpu, [-1, 3, 2], [3], { requiresGrad: true });
      using u = Tensor.fromArray(gpu, [7, 7, 7], [3], { requiresGrad: true });
      using d = Tensor.fromArray(gpu, [1, 1, 1], [3], { requiresGrad: true });
      const names = new Map([[x, "x"], [t, "t"], [w1, "w1"], [w2, "w2"], [u, "u"], [d, "d"]]);
      using loss = scope(() => t.mul(x).mul(w1).add(x).mul(w2).mul(t).mul(d.detach()).sum());
      const { calls, seen } = hooked(loss, names);
      expect([...calls].sort()).toEqual(["t", "w1", "w2", "x"]); // once each; not u, not d
      expect(calls.indexOf("w2")).toBeLessThan(calls.indexOf("w1")); // w2's op runs first in the backward
      expect(calls.indexOf("w1")).toBeLessThan(calls.indexOf("t")); // t's last part is from the first op
      expect(calls.indexOf("w1")).toBeLessThan(calls.indexOf("x")); // so is x's
      for (const [name, leaf] of [["x", x], ["t", t], ["w1", w1], ["w2", w2]] as const)
        expect([...(await seen.get(name)!.toArray())], name).toEqual([...(await leaf.grad!.toArray())]);
      // And the final grads are the right ones: d/dt = 2·t·x·w1·w2 + x·w2, d/dx = (t²·w1 + t)·w2.
      expect([...(await t.grad!.toArray())]).toEqual([1 * -1 * 2 * 0.5 * 2 + 1 * -1, 2 * 2 * -2 * 1 * 3 + -2 * 3, 2 * -1 * 3 * 0.5 * 2 + 3 * 2]);
      expect([...(await x.grad!.toArray())]).toEqual([(0.25 * 2 + 0.5) * -1, (4 * 1 + 2) * 3, (1 * 0.5 - 1) * 2]);
      expect(u.grad).toBeNull();
      expect(d.grad).toBeNull();
      for (const g of seen.values()) g.release();
    });

    test("x.add(x): once, after both parts; a leaf root; retainGraph: once per backward, each time the accumulated grad", async () => {
      const gpu = await getGpu();
      using x = Tensor.fromArray(gpu, [1, 2], [2], { requiresGrad: true });
      const names = new Map([[x, "x"]]);
      using loss = scope(() => x.add(x).mul(x).sum()); // 2x² → 4x
      const first = hooked(loss, names, true);
      expect(first.calls).toEqual(["x"]);
      expect([...(await first.seen.get("x")!.toArray())]).toEqual([4, 8]);
      const second = hooked(loss, names);
      expect(second.calls).toEqual(["x"]);
      expect([...(await second.seen.get("x")!.toArray())]).toEqual([8, 16]); // accumulated: the grad as it is final
      using s = Tensor.fromArray(gpu, [3], [], { requiresGrad: true });
      const leafRoot = hooked(s, new Map([[s, "s"]]));
      expect(leafRoot.calls).toEqual(["s"]);
      expect(await leafRoot.seen.get("s")!.item()).toBe(1);
      for (const r of [first, second, leafRoot]) for (const g of r.seen.values()) g.release();
    });
  });

  describe("in-place accumulation: a rule adds into the gradient an input already has", () => {

    /** float64 y = h · Wᵀ's gradients for dy = R: dh = R · W, dW = Rᵀ · h (h [rows, nIn], W [nOut, nIn]). */
    function linearGrads(H: Float64Array, W: Float64Array, R: Float64Array, rows: number, nIn: number, nOut: number) {
      const dh = new Float64Array(rows * nIn);
      const dw = new Float64Array(nOut * nIn);
      for (let m = 0; m < rows; m++)
        for (let o = 0; o < nOut; o++)
          for (let k = 0; k < nIn; k++) {
            dh[m * nIn + k]! += R[m * nOut + o]! * W[o * nIn + k]!;
            dw[o * nIn + k]! += R[m * nOut + o]! * H[m * nIn + k]!;
          }
      return { dh, dw };
    }

    /** x [5, 6] (or tanh(x)) feeding q, k, v projections of 4, 3 and 7 outputs; loss = sum of each times its R. */
    function threeLinears(gpu: Gpu, seed: number, throughTanh: boolean) {
      const r = rng(seed);
      const [rows, nIn, outs] = [5, 6, [4, 3, 7]];
      const X = uniform(r, rows * nIn);
      const Ws = outs.map((n) => uniform(r, n * nIn));
      const Rs = outs.map((n) => uniform(r, rows * n));
      const x = upload(gpu, X, [rows, nIn], true);
      const ws = Ws.map((W, i) => upload(gpu, W, [outs[i]!, nIn], true));
      const rts = Rs.map((R, i) => upload(gpu, R, [rows, outs[i]!]));
      const loss = scope(() => {
        const h = throughTanh ? x.tanh() : x;
        const parts = ws.map((w, i) => linear(h, w).mul(rts[i]!).sum());
        return parts[0]!.add(parts[1]!).add(parts[2]!);
      });
      // float64: dh = sum_i R_i W_i, dx = dh (1 - tanh²); dW_i = R_iᵀ h.
      const H = throughTanh ? X.map(Math.tanh) : X;
      const g = Ws.map((W, i) => linearGrads(H, W, Rs[i]!, rows, nIn, outs[i]!));
      const dh = g[0]!.dh.map((v, j) => v + g[1]!.dh[j]! + g[2]!.dh[j]!);
      const dx = throughTanh ? dh.map((v, j) => v * (1 - H[j]! ** 2)) : dh;
      const release = () => [x, ...ws, ...rts, loss].forEach((t) => t.release());
      return { x, ws, loss, dx, dws: g.map((e) => e.dw), release };
    }

    test("a tensor feeding three linears (a Node, then a leaf): float64's gradients, no grad.accumulate dispatch", async () => {
      const gpu = await getGpu();
      for (const throughTanh of [true, false]) {
        const t = threeLinears(gpu, 7, throughTanh);
        const names = dispatchNames(gpu, () => t.loss.backward());
        expect(accumulates(names), `through tanh ${throughTanh}`).toBe(0);
        expect(names.filter((n) => n === "linear.grad_x").length).toBe(3); // the first writes, the others add
        expectClose(`d x (through tanh ${throughTanh})`, await t.x.grad!.toArray(), t.dx);
        for (const [i, w] of t.ws.entries()) expectClose(`d w${i}`, await w.grad!.toArray(), t.dws[i]!);
        t.release();
      }
    });

    test("retainGraph twice: twice the gradient, accumulated in place in .grad (no grad.accumulate), onGradReady after each", async () => {
      const gpu = await getGpu();
      const t = threeLinears(gpu, 8, false);
      t.loss.backward({ retainGraph: true });
      const [gx, gws] = [t.x.grad!, t.ws.map((w) => w.grad!)];
      const ready: Tensor[] = [];
      const names = dispatchNames(gpu, () => t.loss.backward({ onGradReady: (leaf) => ready.push(leaf) }));
      expect(accumulates(names)).toBe(0);
      expect(t.x.grad).toBe(gx);
      t.ws.forEach((w, i) => expect(w.grad).toBe(gws[i]!));
      expect(ready.length).toBe(4);
      expect(new Set(ready)).toEqual(new Set([t.x, ...t.ws]));
      expectClose("2 d x", await t.x.grad!.toArray(), t.dx.map((v) => 2 * v));
      for (const [i, w] of t.ws.entries()) expectClose(`2 d w${i}`, await w.grad!.toArray(), t.dws[i]!.map((v) => 2 * v));
      t.release();
    });

    test("a user-held .grad (and a view of it) sees the sum in place, as before; a .grad the user set is added into", async () => {
      const gpu = await getGpu();
      const t = threeLinears(gpu, 9, false);
      t.loss.backward({ retainGraph: true });
      const held = t.ws[0]!.grad!;
      const view = held.detach(); // another view of the same storage
      const r = rng(10);
      const G0 = Float64Array.from(new Float32Array(uniform(r, t.ws[1]!.size)));
      t.ws[1]!.grad!.release();
      const mine = (t.ws[1]!.grad = upload(gpu, G0, t.ws[1]!.shape)); // the user's own tensor as .grad
      t.loss.backward();
      expect(t.ws[0]!.grad).toBe(held);
      expectClose("held .grad", await held.toArray(), t.dws[0]!.map((v) => 2 * v));
      expectClose("its view", await view.toArray(), t.dws[0]!.map((v) => 2 * v));
      expect(t.ws[1]!.grad).toBe(mine);
      expectClose("user-set .grad", await mine.toArray(), G0.map((v, j) => v + t.dws[1]![j]!));
      view.release();
      t.release();
    });

    /** An op with `inputs`, output shaped like inputs[0] (its values unused), whose backward is `rule`. */
    const probe = (inputs: Tensor[], rule: BackwardRule): Tensor => attach(noGrad(() => inputs[0]!.mulScalar(1)), { op: "probe", inputs, backward: rule });

    test("offered: the pending gradient the engine holds alone; not one a view of which someone holds (the engine sums, the view untouched), not an input fed twice", async () => {
      const gpu = await getGpu();
      const X = [0.5, -1, 2, 3];
      using x = Tensor.fromArray(gpu, X, [4], { requiresGrad: true });
      const hOf = (f: (h: Tensor) => Tensor) => () => scope(() => f(x.mulScalar(2)).sum().backward()); // a fresh graph each time
      const offered: (Tensor | undefined)[][] = [];
      const record: BackwardRule = (g, _, needs, acc) => {
        offered.push([...acc]);
        return needs.map((n) => (n ? g.mulScalar(1) : null)); // a new gradient: the engine sums
      };
      // h.mulScalar(3) (the add's second input) runs first: its gradient for h is fresh, so probe is offered it.
      hOf((h) => probe([h], record).add(h.mulScalar(3)))();
      expect(offered[0]![0]).toBeInstanceOf(Tensor);
      expect(offered[0]![0]!.shape).toEqual([4]);
      expectClose("d x", await x.grad!.toArray(), X.map(() => 2 * (1 + 3)));
      x.zeroGrad();
      // keepView (second input) runs first and hands back a gradient of which the test keeps a view: h's other
      // consumer is not offered it; the engine sums into a copy.
      const kept: Tensor[] = [];
      const keepView: BackwardRule = (g) => {
        const d = g.mulScalar(5);
        kept.push(d.detach());
        return [d];
      };
      offered.length = 0;
      const names = dispatchNames(gpu, hOf((h) => probe([h], record).add(probe([h], keepView))));
      expect(offered).toEqual([[undefined]]);
      expect(accumulates(names)).toBe(1);
      expect([...(await kept[0]!.toArray())]).toEqual([5, 5, 5, 5]);
      expectClose("d x", await x.grad!.toArray(), X.map(() => 2 * (5 + 1)));
      kept[0]!.release();
      x.zeroGrad();
      // An input fed twice (x.mul(x)-like): neither edge is offered the pending gradient.
      offered.length = 0;
      hOf((h) => probe([h, h], record).add(h.mulScalar(3)))();
      expect(offered[0]).toEqual([undefined, undefined]);
      expectClose("d x", await x.grad!.toArray(), X.map(() => 2 * (1 + 1 + 3)));
    });
  });

  describe("an op with several outputs (attachOutputs)", () => {
    /** y1 = 2x, y2 = 3x recorded as one Node; its rule counts its runs and records the sums of the gradients it got. */
    function split2(x: Tensor, runs: number[][]): [Tensor, Tensor] {
      const [y1, y2] = noGrad(() => [x.mulScalar(2), x.mulScalar(3)]);
      return attachOutputs([y1!, y2!], {
        op: "split2",
        inputs: [x],
        backward: ([g1, g2]) => {
          runs.push([g1!, g2!].map((g) => g.size));
          // Rules run untracked (no scope releases their temporaries): release them here.
          const [a, b] = [g1!.mulScalar(2), g2!.mulScalar(3)];
          const dx = a.add(b);
          a.release();
          b.release();
          return [dx];
        },
      }) as [Tensor, Tensor];
    }

    test("one rule run gets both outputs' gradients; an unused output's are zeros; reshape and combination work", async () => {
      const gpu = await getGpu();
      const r = rng(91);
      const [X, A, B] = [uniform(r, 6), uniform(r, 6), uniform(r, 6)];
      const x = upload(gpu, X, [2, 3], true);
      const a = upload(gpu, A, [2, 3]);
      const b = upload(gpu, B, [6]);
      const runs: number[][] = [];
      // Both outputs, each through its own consumers (one reshaped): d/dx = 2a + 3b.
      let loss = scope(() => {
        const [y1, y2] = split2(x, runs);
        return y1.mul(a).sum().add(y2.reshape(6).mul(b).sum());
      });
      const ready: Tensor[] = [];
      loss.backward({ onGradReady: (t) => ready.push(t) });
      expect(runs).toEqual([[6, 6]]);
      expect(ready).toEqual([x]);
      expectClose("2a + 3b", await x.grad!.toArray(), X.map((_, i) => 2 * A[i]! + 3 * B[i]!));
      loss.release();
      x.zeroGrad();
      // Only the second output reaches the loss: the first's gradient is zeros, d/dx = 3b.
      loss = scope(() => split2(x, runs)[1].reshape(6).mul(b).sum());
      loss.backward();
      expect(runs).toHaveLength(2);
      expectClose("3b", await x.grad!.toArray(), B.map((v) => 3 * v));
      loss.release();
      x.zeroGrad();
      // Both outputs in one op: sum(y1 * y2) = 6 sum(x²), d/dx = 12x.
      loss = scope(() => {
        const [y1, y2] = split2(x, runs);
        return y1.mul(y2).sum();
      });
      loss.backward();
      expect(runs).toHaveLength(3);
      expectClose("12x", await x.grad!.toArray(), X.map((v) => 12 * v));
      for (const t of [loss, x, a, b]) t.release();
    });

    test("the Node lives while any output does; 100 steps keep live buffers flat", async () => {
      const gpu = await getGpu();
      const x = upload(gpu, uniform(rng(92), 8), [8], true);
      const runs: number[][] = [];
      const { start, end } = await expectFlatMemory(gpu, 100, () => {
        const [y1, y2] = split2(x, runs);
        y1.release(); // the Node is still held by y2
        const loss = scope(() => y2.sum());
        loss.backward();
        for (const t of [loss, y2]) t.release();
        x.zeroGrad();
      });
      expect(runs.length).toBeGreaterThanOrEqual(100);
      expect(end.liveBuffers).toBe(start.liveBuffers);
      x.release();
    });
  });

  test("tensor.ts alone, without the engine: backward and reshape say what to import (autograd installs them)", () => {
    // A fresh process that imports tensor.ts and nothing that loads autograd.ts (no op module, no index.ts).
    const script = [
      'import { Storage, Tensor } from "./src/tensor/tensor.ts";',
      "const t = new Tensor(new Storage({} as never, { id: 0, bytes: 16 } as never), [2, 2]);",
      'for (const f of [() => t.backward(), () => t.reshape(4)]) try { f(); console.log("no error"); } catch (e) { console.log(String(e)); }',
    ].join("\n");
    const r = Bun.spawnSync([process.execPath, "-e", script], { cwd: `${import.meta.dir}/../..` });
    const lines = r.stdout.toString().trim().split("\n");
    expect(lines).toHaveLength(2);
    for (const [line, m] of lines.map((l, i) => [l, ["backward", "reshape"][i]!] as const))
      expect(line).toBe(`TensorError: Tensor([2, 2], f32).${m}(): the autograd engine is not loaded; import the tensor library from src/tensor/index.ts (or import src/tensor/autograd.ts) rather than src/tensor/tensor.ts alone`);
  });
});

// The multi-tensor AdamW (src/optim/adamw.ts: state arenas, adamwMulti dispatches of several parameters) and the
// fused clip (clipGradNorm(..., { fuseInto })) through the optimizer, against a float64 AdamW per parameter
// (test/reference/optim.ts): 16 parameters of mixed sizes (1, 3, 4, 5, 1023, 4096, 4097, ...: vec4 and f32
// dispatches, each class more than one dispatch's slots), three groups (different lr / weight decay, and different
// betas / eps: separate dispatches), null gradients (per-parameter step counts) and a parameter whose first step
// comes late (the arenas laid out again, old state copied over); the arenas start on pool buffers poisoned with NaN
// (the zero fill must cover them); one arena and many small ones; the state through stateDict / loadStateDict;
// the fused clip (gradients left unclipped, other parameters' clipped in place, a NaN gradient, a pending clip
// dropped by zeroGrad); the dispatch budget; misuse of a state view. The kernels themselves: launcher rows in
// test/kernels/rows/optim.ts.
import { afterEach, describe, expect, test } from "bun:test";
import type { Gpu } from "../../src/gpu/index.ts";
import { adamwSlots, clipSlots } from "../../src/kernels/optim.ts";
import { AdamW, adamwArenas, type AdamWOptions } from "../../src/optim/adamw.ts";
import { clipGradNorm } from "../../src/optim/index.ts";
import { debug, Tensor } from "../../src/tensor/index.ts";
import { clipGradNorm as refClip, RefAdamW } from "../reference/optim.ts";
import { expectClose, getGpu, rng, seedOf, uniform, upload } from "../tensor/helpers.ts";

const SIZES = [1, 3, 4, 5, 1023, 4097, 8, 4096, 12, 7, 64, 2, 16, 9, 20, 33];
const OPTS: AdamWOptions[] = [
  { lr: 0.02, betas: [0.85, 0.99], eps: 1e-6, weightDecay: 0.3 },
  { lr: 0.005, betas: [0.85, 0.99], eps: 1e-6, weightDecay: 0 },
  { lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.1 },
];
/** Group of parameter i: 0..6 group 0, 7..12 group 1, 13..15 group 2. */
const groupOf = (i: number) => (i < 7 ? 0 : i < 13 ? 1 : 2);
/** Parameter i has no gradient at step s (parameter 5, of 4097 elements, none before step 3: a late first step). */
const noGrad = (i: number, s: number) => (i === 5 && s < 3) || (i + s) % 5 === 0;

/** Parameters, their references and an optimizer over three groups. */
function setUp(gpu: Gpu, seed: string) {
  const r = rng(seedOf(seed));
  const P = SIZES.map((n) => uniform(r, n));
  const params = P.map((x) => upload(gpu, x, [x.length], true));
  const refs = P.map((x, i) => new RefAdamW(Float64Array.from(x), OPTS[groupOf(i)]!));
  const groups = [0, 1, 2].map((g) => ({ params: Object.fromEntries(params.flatMap((p, i) => (groupOf(i) === g ? [[`w${i}`, p]] : []))), ...OPTS[g]! }));
  return { r, params, refs, opt: new AdamW(groups) };
}

/** Park NaN-filled buffers of `elems` f32 in the pool, so the next allocations of that size class get them. */
async function poisonPool(gpu: Gpu, elems: number): Promise<void> {
  const ts = Array.from({ length: 4 }, () => Tensor.full(gpu, [elems], NaN));
  await gpu.sync();
  for (const t of ts) t.release();
  await gpu.sync();
}

async function checkState(what: string, opt: AdamW, params: Tensor[], refs: RefAdamW[]): Promise<void> {
  for (let i = 0; i < params.length; i++) {
    expectClose(`${what} param ${i}`, await params[i]!.toArray(), refs[i]!.p);
    const st = opt.stateOf(params[i]!);
    expect(st?.step ?? 0).toBe(refs[i]!.t);
    if (!st) continue;
    expectClose(`${what} exp_avg ${i}`, await st.tensors.exp_avg!.toArray(), refs[i]!.m);
    expectClose(`${what} exp_avg_sq ${i}`, await st.tensors.exp_avg_sq!.toArray(), refs[i]!.v);
  }
}

/** 6 steps with the gradient pattern above, each checked against the references. */
async function run(seed: string): Promise<void> {
  const gpu = await getGpu();
  const { r, params, refs, opt } = setUp(gpu, seed);
  await poisonPool(gpu, SIZES.reduce((a, n, i) => a + (noGrad(i, 0) ? 0 : Math.ceil(n / 4) * 4), 0));
  for (let s = 0; s < 6; s++) {
    if (s === 3) await poisonPool(gpu, SIZES.reduce((a, n) => a + Math.ceil(n / 4) * 4, 0)); // the layout with parameter 5
    params.forEach((p, i) => {
      p.zeroGrad();
      if (noGrad(i, s)) return;
      const G = uniform(r, p.size, -2, 2);
      p.grad = upload(gpu, G, p.shape);
      refs[i]!.step(G);
    });
    opt.step();
    await checkState(`step ${s}`, opt, params, refs);
  }
  opt.release();
  for (const p of params) p.release();
}

afterEach(() => {
  adamwArenas.maxBytes = 0;
});

describe("multi-tensor AdamW", () => {
  test("16 mixed-size parameters, 3 groups, null gradients, a late first step: float64 reference, one arena", async () => {
    await run("multi adamw one arena");
  });

  test("the same over many small arenas (a parameter larger than an arena gets one of its own)", async () => {
    adamwArenas.maxBytes = 2048 * 4;
    await run("multi adamw many arenas");
  });

  test("a step's dispatches: one per slots-full of parameters of one kind (vec4 or f32), group set and arena", async () => {
    const gpu = await getGpu();
    const { params, opt } = setUp(gpu, "multi adamw budget");
    params.forEach((p) => (p.grad = Tensor.ones(gpu, p.shape)));
    opt.step(); // lays out the arena
    // Per group set (groups 0 and 1 share betas and eps), parameters by kind, `k` per dispatch.
    const sets = [SIZES.flatMap((_, i) => (groupOf(i) < 2 ? [i] : [])), SIZES.flatMap((_, i) => (groupOf(i) === 2 ? [i] : []))];
    const dispatches = (k: number) => sets.reduce((a, idx) => a + [true, false].reduce((b, vec) => b + Math.ceil(idx.filter((i) => (SIZES[i]! % 4 === 0) === vec).length / k), 0), 0);
    const want = dispatches(adamwSlots(gpu, false));
    const s0 = gpu.queue.stats();
    opt.step();
    const s1 = gpu.queue.stats();
    expect(s1.dispatches - s0.dispatches).toBe(want);
    expect(s1.uploads - s0.uploads).toBe(0);
    expect(want).toBeLessThan(SIZES.length / 2);
    // Clip fused into the step: sumsq (vec4 and f32 gradients apart, clipSlots each), norm_finish, AdamW with one
    // slot fewer (the norm's binding); no scaling pass; and the norm tensor's NaN poison fill (tests).
    const vec = SIZES.filter((n) => n % 4 === 0).length;
    const wantClip = Math.ceil(vec / clipSlots(gpu)) + Math.ceil((SIZES.length - vec) / clipSlots(gpu)) + 1 + (debug.poison ? 1 : 0) + dispatches(adamwSlots(gpu, true));
    clipGradNorm(params, 1, { fuseInto: opt }).release();
    opt.step();
    const s2 = gpu.queue.stats();
    expect(s2.dispatches - s1.dispatches).toBe(wantClip);
    await gpu.sync();
    opt.release();
    for (const p of params) p.release();
  });

  test("stateDict / loadStateDict: the arenas' slices out per parameter, and back in, continuing bit-identically", async () => {
    const gpu = await getGpu();
    const { r, params, refs, opt } = setUp(gpu, "multi adamw checkpoint");
    const grads = Array.from({ length: 5 }, () => SIZES.map((n) => uniform(r, n, -2, 2)));
    const stepWith = (ps: Tensor[], o: AdamW, s: number, refsToo: boolean) => {
      ps.forEach((p, i) => {
        p.zeroGrad();
        if (noGrad(i, s)) return;
        p.grad = upload(gpu, grads[s]![i]!, p.shape);
        if (refsToo) refs[i]!.step(grads[s]![i]!);
      });
      o.step();
    };
    for (let s = 0; s < 3; s++) stepWith(params, opt, s, true);
    const sd = await opt.stateDict();
    // Per parameter, as before the arenas: step, shape, exp_avg / exp_avg_sq of the parameter's size.
    for (let i = 0; i < SIZES.length; i++) {
      const e = sd.state[`w${i}`];
      if (refs[i]!.t === 0) {
        expect(e).toBeUndefined();
        continue;
      }
      expect(e!.step).toBe(refs[i]!.t);
      expect(e!.shape).toEqual([SIZES[i]!]);
      expect(Object.keys(e!.tensors).sort()).toEqual(["exp_avg", "exp_avg_sq"]);
      expectClose(`sd exp_avg ${i}`, e!.tensors.exp_avg!, refs[i]!.m);
      expectClose(`sd exp_avg_sq ${i}`, e!.tensors.exp_avg_sq!, refs[i]!.v);
    }
    // A second optimizer over copies of the parameters, from the host copy.
    const copies = await Promise.all(params.map(async (p) => Tensor.fromArray(gpu, await p.toArray(), p.shape).setRequiresGrad(true)));
    const groups = [0, 1, 2].map((g) => ({ params: Object.fromEntries(copies.flatMap((p, i) => (groupOf(i) === g ? [[`w${i}`, p]] : []))), ...OPTS[g]! }));
    const optB = new AdamW(groups);
    optB.loadStateDict(sd);
    for (let s = 3; s < 5; s++) {
      stepWith(params, opt, s, true);
      stepWith(copies, optB, s, false);
    }
    await checkState("after resume", opt, params, refs);
    const bits = async (t: Tensor) => Array.from(new Uint32Array((await t.toArray()).buffer));
    for (let i = 0; i < SIZES.length; i++) {
      expect(await bits(copies[i]!)).toEqual(await bits(params[i]!));
      const a = opt.stateOf(params[i]!)!.tensors, b = optB.stateOf(copies[i]!)!.tensors;
      for (const key of ["exp_avg", "exp_avg_sq"]) expect(await bits(b[key]!)).toEqual(await bits(a[key]!));
    }
    opt.release();
    optB.release();
    for (const p of [...params, ...copies]) p.release();
  });

  test("a state view is read-only: binding, detaching or reshaping it throws; released with the optimizer", async () => {
    const gpu = await getGpu();
    using p = Tensor.ones(gpu, [6], { requiresGrad: true });
    const opt = new AdamW([p]);
    p.grad = Tensor.ones(gpu, [6]);
    opt.step();
    const m = opt.stateOf(p)!.tensors.exp_avg!;
    expect(() => m.buffer).toThrow(/slice of AdamW's state arena/);
    expect(() => m.detach()).toThrow(/read-only/);
    expect(() => m.reshape(2, 3)).toThrow(/read-only/);
    expectClose("exp_avg", await m.toArray(), new Array(6).fill(0.1));
    opt.release();
    expect(m.released).toBe(true);
  });
});

describe("clip fused into the AdamW step", () => {
  /** Parameters 0..n-2 in the optimizer, the last one outside it; gradients G. */
  async function fused(what: string, maxNorm: number, nanAt?: number) {
    const gpu = await getGpu();
    const r = rng(seedOf(what));
    const sizes = [...SIZES, 10];
    const P = sizes.map((n) => uniform(r, n));
    const G = sizes.map((n) => uniform(r, n, -2, 2));
    if (nanAt !== undefined) G[nanAt]![1] = NaN;
    const params = P.map((x) => upload(gpu, x, [x.length], true));
    const o = OPTS[0]!;
    const opt = new AdamW(params.slice(0, -1), o);
    params.forEach((p, i) => (p.grad = upload(gpu, G[i]!, p.shape)));
    const ref = refClip({ grads: G }, { sizes, maxNorm });
    const norm = clipGradNorm(params, maxNorm, { fuseInto: opt });
    norm.release(); // the optimizer keeps its own view
    opt.step();
    for (let i = 0; i < sizes.length - 1; i++) {
      const rf = new RefAdamW(Float64Array.from(P[i]!), o);
      rf.step(ref.grads[i]!);
      expectClose(`${what} param ${i}`, await params[i]!.toArray(), rf.p);
      expectClose(`${what} exp_avg ${i}`, await opt.stateOf(params[i]!)!.tensors.exp_avg!.toArray(), rf.m);
      // The optimizer's gradients are read, not clipped in place.
      expectClose(`${what} grad ${i} untouched`, await params[i]!.grad!.toArray(), Float32Array.from(G[i]!), { rtol: 0, atol: 0 });
    }
    const last = sizes.length - 1;
    expectClose(`${what} outsider's grad clipped in place`, await params[last]!.grad!.toArray(), ref.grads[last]!);
    opt.release();
    for (const p of params) p.release();
  }

  test("clipping active: as clip_grad_norm_ then AdamW in float64; the optimizer's gradients untouched", async () => {
    await fused("fused clip active", 1.0);
  });

  test("clipping inactive", async () => {
    await fused("fused clip inactive", 1e6);
  });

  test("a NaN gradient: the norm is NaN, so every updated parameter and the outsider's gradient are NaN (torch)", async () => {
    await fused("fused clip NaN", 1.0, 4);
  });

  test("zeroGrad() drops a pending clip; a step applies it once; bad norms are refused", async () => {
    const gpu = await getGpu();
    const r = rng(seedOf("fused clip pending"));
    const P = uniform(r, 9);
    using p = upload(gpu, P, [9], true);
    const opt = new AdamW([p], OPTS[0]);
    const rf = new RefAdamW(Float64Array.from(P), OPTS[0]!);
    const G = [uniform(r, 9, -2, 2), uniform(r, 9, -2, 2), uniform(r, 9, -2, 2)];
    p.grad = upload(gpu, G[0]!, [9]);
    clipGradNorm([p], 0.01, { fuseInto: opt }).release();
    opt.zeroGrad(); // the step this clip was for never happens
    p.grad = upload(gpu, G[1]!, [9]);
    opt.step(); // unclipped
    rf.step(G[1]!);
    p.grad = upload(gpu, G[2]!, [9]);
    clipGradNorm([p], 0.01, { fuseInto: opt }).release();
    opt.step(); // clipped
    rf.step(refClip({ grads: [G[2]!] }, { sizes: [9], maxNorm: 0.01 }).grads[0]!);
    opt.step(); // the same gradient again, unclipped: the clip applied once
    rf.step(G[2]!);
    expectClose("param", await p.toArray(), rf.p);
    using two = Tensor.zeros(gpu, [2]);
    expect(() => opt.fuseClip(two, 1)).toThrow(/one f32 value/);
    using one = Tensor.zeros(gpu, []);
    expect(() => opt.fuseClip(one, Infinity)).toThrow(/maxNorm/);
    opt.release();
  });
});

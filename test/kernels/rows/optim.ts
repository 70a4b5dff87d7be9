// adamw, sgd, sgdMomentum and clipGradNorm (src/kernels/optim.ts) against test/reference/optim.ts:
//   adamw over 5 steps from zero state (the bias corrections change every step; each step checked), two sets of
//     hyperparameters, f32 and vec4 units and one element;
//   sgd plain and with weight decay; sgdMomentum with momentum, dampening + decay, nesterov + decay, over 4 steps,
//     the first with a NaN-poisoned momentum buffer that it must not read;
//   clipGradNorm: clipping active and inactive, one gradient, several workgroups per gradient, maxNorm Infinity
//     (measure only), and a NaN gradient (the norm NaN: every clipped gradient NaN, as torch), under every
//     row-reduction variant (test/kernels/row_variants.ts), and ragged partials under a clip policy
//     (workgroups capped per gradient: the strided loop; many partials: the final pass strides);
//   a 2-D grid of workgroups (policy grid.maxX 2) for each update;
//   adamwMulti (kernels/optim_multi.wgsl) over several parameters of mixed sizes in one dispatch (f32 units, vec4
//     units, 2-D grid), each slot with its own lr, weight decay and step count, 3 steps, its state slices in arenas
//     with NaN gaps between them (the gaps must stay NaN: a slot writing outside its slice fails), with and without
//     the fused clip coefficient (from a norm buffer; a NaN norm); rows needing more slots than the device's
//     storage-buffer limit allows are skipped with the reason;
//   clipGradNorm over more gradients than one dispatch takes, of mixed sizes (vec4 and f32 dispatches), with a NaN.
import type { Gpu, PooledBuffer } from "../../../src/gpu/index.ts";
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import { adamw, adamwMulti, adamwSlots, clipGradNorm, sgd, sgdMomentum } from "../../../src/kernels/optim.ts";
import * as R from "../../reference/optim.ts";
import { uniform } from "../../tensor/helpers.ts";
import type { Check, LauncherRow, RowIo } from "../harness.ts";
import { ROW_VARIANTS } from "../row_variants.ts";

const GRID: PartialPolicy = { grid: { maxX: 2 } };
/** A variant in a row's name: " family.setting=value ...". */
const tag = (v?: PartialPolicy) =>
  v ? " " + Object.entries(v).flatMap(([f, s]) => Object.entries(s as object).map(([k, x]) => `${f}.${k}=${x}`)).join(" ") : "";

/** The buffers a launcher updated in place, read back. */
async function readAll(io: RowIo, bufs: Record<string, PooledBuffer>, n: number): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [k, b] of Object.entries(bufs)) out[k] = await io.read(b, n);
  return out;
}

const ADAMW_SETS: [string, Omit<R.AdamWParams, "n" | "step">][] = [
  ["lr 0.02 betas (0.85, 0.99) eps 1e-6 wd 0.3", { lr: 0.02, beta1: 0.85, beta2: 0.99, eps: 1e-6, weightDecay: 0.3 }],
  ["torch defaults, wd 0.01", { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }],
];

function adamwRow(setName: string, h: Omit<R.AdamWParams, "n" | "step">, n: number, variant?: PartialPolicy): LauncherRow {
  return {
    family: "optim",
    name: `optim adamw ${setName} n=${n} 5 steps${tag(variant)}`,
    variant,
    async run(gpu, io, r) {
      let s = { p: uniform(r, n), m: new Float64Array(n), v: new Float64Array(n) };
      const bufs = { p: io.input(s.p), m: io.input(s.m), v: io.input(s.v) };
      const checks: Check[] = [];
      for (let step = 1; step <= 5; step++) {
        const G = uniform(r, n, -2, 2);
        const o = { ...h, n, step, label: "row" };
        adamw(gpu, { ...bufs, g: io.input(G) }, o);
        s = R.adamw({ ...s, g: G }, o);
        const got = await readAll(io, bufs, n);
        for (const k of ["p", "m", "v"] as const) checks.push({ what: `step ${step} ${k}`, got: got[k]!, ref: s[k] });
      }
      return checks;
    },
  };
}

const SGD_SETS: [string, Omit<R.SgdMomentumParams, "n" | "first">][] = [
  ["plain", { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false }],
  ["weight decay", { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0.2, nesterov: false }],
  ["momentum", { lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false }],
  ["momentum + dampening + decay", { lr: 0.05, momentum: 0.7, dampening: 0.3, weightDecay: 0.1, nesterov: false }],
  ["nesterov + decay", { lr: 0.05, momentum: 0.9, dampening: 0, weightDecay: 0.05, nesterov: true }],
];

function sgdRow(setName: string, h: Omit<R.SgdMomentumParams, "n" | "first">, n: number, variant?: PartialPolicy): LauncherRow {
  const launcher = h.momentum === 0 ? "sgd" : "sgdMomentum";
  return {
    family: "optim",
    name: `optim ${launcher} ${setName} n=${n} 4 steps${tag(variant)}`,
    variant,
    async run(gpu, io, r) {
      let P = uniform(r, n);
      let B: Float64Array | null = null;
      const p = io.input(P);
      const buf = io.output(n); // NaN: the first step must write it without reading it
      const checks: Check[] = [];
      for (let step = 0; step < 4; step++) {
        const G = uniform(r, n, -2, 2);
        const g = io.input(G);
        if (h.momentum === 0) {
          sgd(gpu, { p, g }, { n, lr: h.lr, weightDecay: h.weightDecay, label: "row" });
          P = R.sgd({ p: P, g: G }, { n, lr: h.lr, weightDecay: h.weightDecay }).p;
        } else {
          const o = { ...h, n, first: step === 0, label: "row" };
          sgdMomentum(gpu, { p, g, buf }, o);
          ({ p: P, buf: B } = R.sgdMomentum({ p: P, g: G, buf: B }, o));
          checks.push({ what: `step ${step} buf`, got: await io.read(buf, n), ref: B });
        }
        checks.push({ what: `step ${step} p`, got: await io.read(p, n), ref: P });
      }
      return checks;
    },
  };
}

/** nan: a NaN in gradient 1 (the norm NaN, so every gradient NaN after clipping, as torch; measured only: left as is). */
function clipRow(what: string, sizes: number[], maxNorm: number, scale = 1, v: { variant?: PartialPolicy; label?: string; skip?: LauncherRow["skip"]; nan?: boolean } = {}): LauncherRow {
  return {
    family: "optim",
    name: `optim clipGradNorm ${what} [${sizes}] maxNorm ${maxNorm}${v.nan ? " with NaN" : ""}${v.label ? ` (${v.label})` : tag(v.variant)}`,
    variant: v.variant,
    skip: v.skip,
    async run(gpu: Gpu, io, r) {
      const G = sizes.map((n) => uniform(r, n, -scale, scale));
      if (v.nan) G[1]![sizes[1]! >> 1] = NaN;
      const grads = G.map((g) => io.input(g));
      const total = io.output(1);
      clipGradNorm(gpu, { grads, total }, { sizes, maxNorm });
      const ref = R.clipGradNorm({ grads: G }, { sizes, maxNorm });
      const checks: Check[] = [{ what: "total", got: await io.read(total, 1), ref: [ref.total] }];
      for (let j = 0; j < sizes.length; j++) checks.push({ what: `grad ${j}`, got: await io.read(grads[j]!, sizes[j]!), ref: ref.grads[j]! });
      return checks;
    },
  };
}

/**
 * adamwMulti over `sizes` (one slot each) for 3 steps; `clip`: the gradients scaled by the clip coefficient of a
 * norm buffer holding `clip.norm` (NaN: every output NaN), maxNorm `clip.maxNorm`.
 */
function adamwMultiRow(what: string, sizes: number[], clip: { norm: number; maxNorm: number } | null, variant?: PartialPolicy): LauncherRow {
  const h = ADAMW_SETS[0]![1];
  return {
    family: "optim",
    name: `optim adamwMulti ${what} [${sizes}]${clip ? ` clip norm ${clip.norm} maxNorm ${clip.maxNorm}` : ""} 3 steps${tag(variant)}`,
    variant,
    skip: (gpu) => (sizes.length > adamwSlots(gpu, clip !== null) ? `${sizes.length} slots; this device takes ${adamwSlots(gpu, clip !== null)} per dispatch` : null),
    async run(gpu, io, r) {
      // Arena layout: each slice at a multiple of 4, then 4 NaN words before the next.
      const offs: number[] = [];
      let elems = 0;
      for (const n of sizes) offs.push(elems), (elems += Math.ceil(n / 4) * 4 + 4);
      const M = new Float64Array(elems).fill(NaN);
      const V = new Float64Array(elems).fill(NaN);
      let st = sizes.map((n, j) => {
        const m = uniform(r, n, -0.5, 0.5);
        const v = uniform(r, n, 0, 0.5);
        M.set(m, offs[j]);
        V.set(v, offs[j]);
        return { p: uniform(r, n), m, v };
      });
      const ps = st.map((x) => io.input(x.p));
      const m = io.input(M);
      const v = io.input(V);
      const total = clip ? io.input(Float64Array.of(clip.norm)) : undefined;
      const coef = clip ? Math.min(1, clip.maxNorm / (Math.fround(clip.norm) + 1e-6)) : 1;
      const checks: Check[] = [];
      for (let s = 0; s < 3; s++) {
        const slots = sizes.map((n, j) => ({ n, offset: offs[j]!, lr: h.lr * (1 + j), weightDecay: 0.1 * j, step: 1 + j + 2 * s }));
        const G = sizes.map((n) => uniform(r, n, -2, 2));
        adamwMulti(gpu, { ps, gs: G.map((g) => io.input(g)), m, v, ...(total ? { total } : {}) }, { slots, beta1: h.beta1, beta2: h.beta2, eps: h.eps, ...(clip ? { maxNorm: clip.maxNorm } : {}), label: "row" });
        st = st.map((x, j) => R.adamw({ ...x, g: G[j]!.map((g) => Math.fround(g) * coef) }, { ...h, ...slots[j]! }));
        st.forEach((x, j) => {
          M.set(x.m, offs[j]);
          V.set(x.v, offs[j]);
        });
        for (let j = 0; j < sizes.length; j++) checks.push({ what: `step ${s} p${j}`, got: await io.read(ps[j]!, sizes[j]!), ref: st[j]!.p });
        checks.push({ what: `step ${s} m arena`, got: await io.read(m, elems), ref: M.slice() }, { what: `step ${s} v arena`, got: await io.read(v, elems), ref: V.slice() });
      }
      return checks;
    },
  };
}

const MIXED = [1, 3, 4, 5, 1023, 4097, 8, 4096, 12, 7, 64, 2, 16, 9, 20, 33];

export const rows: LauncherRow[] = [
  adamwMultiRow("f32 units", [1, 3, 5, 1023], null),
  adamwMultiRow("vec4 units", [4, 4096, 8, 12], null),
  adamwMultiRow("one slot", [4097], null),
  adamwMultiRow("f32 units", [4097, 3, 1023], null, GRID),
  adamwMultiRow("eight slots", [4, 8, 12, 16, 4096, 20, 64, 1024], null),
  adamwMultiRow("f32 units", [4097, 3, 5], { norm: 7.5, maxNorm: 1 }),
  adamwMultiRow("vec4 units", [4096, 8, 12], { norm: 0.5, maxNorm: 1 }),
  adamwMultiRow("vec4 units", [4096, 8, 12], { norm: NaN, maxNorm: 1 }),
  clipRow("many mixed", MIXED, 1.0),
  clipRow("many mixed", MIXED, 1.0, 1, { nan: true }),
  clipRow("many mixed", MIXED, Infinity, 1, { variant: { clip: { perGroup: 64, maxGroups: 65535 }, grid: { maxX: 2 } } }),
  ...ADAMW_SETS.flatMap(([name, h]) => [37, 303, 300, 1].map((n) => adamwRow(name, h, n))),
  adamwRow(ADAMW_SETS[0]![0], ADAMW_SETS[0]![1], 1101, GRID), // f32 units: 5 workgroups
  adamwRow(ADAMW_SETS[1]![0], ADAMW_SETS[1]![1], 4100, GRID), // vec4 units: 1025 vec4s, 5 workgroups
  ...SGD_SETS.flatMap(([name, h]) => [37, 303, 300].map((n) => sgdRow(name, h, n))),
  sgdRow(SGD_SETS[1]![0], SGD_SETS[1]![1], 4100, GRID),
  sgdRow(SGD_SETS[4]![0], SGD_SETS[4]![1], 1101, GRID),
  ...ROW_VARIANTS.flatMap((v) => [
    clipRow("three small", [7, 15, 37], 1.0, 1, v),
    clipRow("inactive", [7, 15, 37], 100.0, 1, v),
    clipRow("one gradient", [1], 0.5, 3, v),
    clipRow("several workgroups per gradient", [5000, 13013, 3], 2.0, 1, v),
    clipRow("measure only", [7, 15, 300], Infinity, 1, v),
    // NaN propagation: a NaN gradient makes the norm NaN, and clipping makes every gradient NaN (torch.clamp keeps it).
    clipRow("three small", [7, 15, 37], 1.0, 1, { ...v, nan: true }),
    clipRow("measure only", [7, 15, 300], Infinity, 1, { ...v, nan: true }),
  ]),
  // Ragged partials: workgroups capped at 3 per gradient (the strided loop), and a 2-D scaling grid.
  clipRow("ragged partials", [2049, 1, 700, 256], 1.5, 1, { variant: { clip: { perGroup: 300, maxGroups: 3 }, grid: { maxX: 2 } } }),
  // 313 + 5 partials: the final pass strides too.
  clipRow("many partials", [20001, 257], 3.0, 1, { variant: { clip: { maxGroups: 65535, perGroup: 64 }, grid: { maxX: 2 } } }),
];

// random rows: philoxBits, philoxUniform, philoxNormal, dropoutForward and dropoutBackward (src/kernels/random.ts)
// against test/reference/random.ts (Philox4x32-10 in BigInt): the bits and uniforms exactly, normals to the
// float64 Box-Muller within 1e-4, dropout exactly; sizes that end in a partial block, 64-bit keys, counters that
// carry across words and wrap at 2^128, a Box-Muller radius near 0 (u1 within 2^-22 of 1), p = 0 and p = 1, a
// 2-D workgroup grid (grid.maxX 2), and dropout of NaN inputs (NaN out, dropped or kept). The distribution checks (moments, KS, chi-square) stay in
// test/tensor/random.test.ts: they are statistics, not a reference.
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import { dropoutBackward, dropoutForward, philoxBits, philoxNormal, philoxUniform, type Philox } from "../../../src/kernels/random.ts";
import * as ref from "../../reference/random.ts";
import { uniform } from "../../tensor/helpers.ts";
import type { LauncherRow } from "../harness.ts";

type Launcher = "philoxBits" | "philoxUniform" | "philoxNormal" | "dropoutForward" | "dropoutBackward";
interface Case {
  n: number;
  philox: Philox;
  /** philoxNormal's mean and std (default 0, 1); dropout's p. */
  mean?: number;
  std?: number;
  p?: number;
  variant?: PartialPolicy;
  label?: string;
  /** dropout: every 7th input NaN (NaN out, dropped or not: a multiply, as torch's x * mask * scale). */
  nan?: boolean;
}

const hex = (w: number) => w.toString(16);
const EXACT = { rtol: 0, atol: 0 };

function row(launcher: Launcher, c: Case): LauncherRow {
  const { n, philox } = c;
  const tags = `${c.p === undefined ? "" : ` p ${c.p}`}${c.std === undefined ? "" : ` mean ${c.mean} std ${c.std}`}${c.nan ? " with NaN" : ""}${c.label ? ` (${c.label})` : ""}`;
  return {
    family: "random",
    name: `random ${launcher} n ${n} counter ${philox.counter.map(hex).join(":")} key ${philox.key.map(hex).join(":")}${tags}`,
    variant: c.variant,
    async run(gpu, io, r) {
      const out = io.output(n);
      const o = { n, philox };
      switch (launcher) {
        case "philoxBits":
          philoxBits(gpu, { out }, o);
          return [{ what: "bits", got: new Uint32Array(await gpu.read(out, 4 * n)), ref: ref.philoxBits({}, o).out, opts: EXACT }];
        case "philoxUniform":
          philoxUniform(gpu, { out }, o);
          return [{ what: "uniform", got: await io.read(out, n), ref: ref.philoxUniform({}, o).out, opts: EXACT }];
        case "philoxNormal": {
          const on = { ...o, mean: c.mean ?? 0, std: c.std ?? 1 };
          philoxNormal(gpu, { out }, on);
          return [{ what: "normal", got: await io.read(out, n), ref: ref.philoxNormal({}, on).out, opts: { rtol: 1e-4, atol: 2e-6 } }];
        }
        case "dropoutForward": {
          const X = uniform(r, n);
          if (c.nan) for (let i = 0; i < n; i += 7) X[i] = NaN;
          dropoutForward(gpu, { x: io.input(X), out }, { ...o, p: c.p! });
          return [{ what: "out", got: await io.read(out, n), ref: ref.dropoutForward({ x: X }, { ...o, p: c.p! }).out, opts: EXACT }];
        }
        case "dropoutBackward": {
          const G = uniform(r, n);
          if (c.nan) for (let i = 0; i < n; i += 7) G[i] = NaN;
          dropoutBackward(gpu, { gout: io.input(G), dx: out }, { ...o, p: c.p! });
          return [{ what: "dx", got: await io.read(out, n), ref: ref.dropoutBackward({ gout: G }, { ...o, p: c.p! }).dx, opts: EXACT }];
        }
      }
    },
  };
}

/** The launch of Generator (seed, offset) (src/tensor/rng.ts philoxLaunch): key = seed, counter = offset * 2^64. */
const at = (seed: bigint, offset: bigint): Philox => ({
  key: [Number(seed & 0xffffffffn), Number(seed >> 32n)],
  counter: [0, 0, Number(offset & 0xffffffffn), Number(offset >> 32n)],
});

export const rows: LauncherRow[] = [];
const STREAMS: Case[] = [
  { n: 1003, philox: at(0n, 0n) }, // a partial last block
  { n: 231, philox: at(0xfedcba9876543210n, 5n) }, // a 64-bit key
  { n: 518, philox: at(12345n, 0x1_0000_0003n) }, // a 64-bit offset
];
for (const c of STREAMS) for (const l of ["philoxBits", "philoxUniform", "philoxNormal"] as const) rows.push(row(l, c));
rows.push(row("philoxNormal", { ...STREAMS[1]!, mean: 2, std: 0.5 }));
// Counters that carry: all ones + 1 wraps to 0 (block 1 under key 0 is Random123's all-zero vector); a carry out of word 0 only.
rows.push(row("philoxBits", { n: 8, philox: { counter: [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], key: [0, 0] } }));
rows.push(row("philoxBits", { n: 8, philox: { counter: [0xffffffff, 7, 0x12345678, 0x9abcdef0], key: [3, 5] } }));
// Seed 817, block 74: (w2 >> 8) = 5, so u1 is within 2^-22 of 1 and the radius ~3e-4 (a GPU log's absolute error would swamp it).
rows.push(row("philoxNormal", { n: 300, philox: at(817n, 0n), label: "a radius near 0" }));
// Dropout: the same mask forward and backward at the same (counter, key); p = 0 keeps all, p = 1 zeroes all.
for (const [p, n] of [[0.3, 917], [0.9, 1001], [0.5, 30], [0, 50], [1, 50]] as [number, number][])
  for (const l of ["dropoutForward", "dropoutBackward"] as const) rows.push(row(l, { n, philox: at(777n, 10n), p }));
// A 2-D grid of workgroups (x capped at 2): 769 blocks, 4 workgroups on a 2x2 grid.
const grid = { variant: { grid: { maxX: 2 } }, label: "grid.maxX 2" };
rows.push(row("philoxBits", { n: 4 * 256 * 3 + 5, philox: at(8n, 0n), ...grid }));
rows.push(row("philoxNormal", { n: 4 * 256 * 3 + 5, philox: at(8n, 1n), ...grid }));
rows.push(row("dropoutForward", { n: 4 * 256 * 3 + 5, philox: at(8n, 2n), p: 0.25, ...grid }));
// NaN propagation through kept and dropped elements alike (p 1: every element dropped).
for (const p of [0.5, 1]) for (const l of ["dropoutForward", "dropoutBackward"] as const) rows.push(row(l, { n: 301, philox: at(31n, 4n), p, nan: true }));

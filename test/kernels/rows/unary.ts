// unaryForward and unaryBackward (src/kernels/unary.ts) against test/reference/unary.ts: every op (and every
// tested alpha of pow, mul_scalar, add_scalar) forward, and every op with a gradient kernel backward, on 1, 273 and
// 301 elements (f32 units, partial workgroups) and 300 (vec4 units); pow of negative bases; the activations'
// tails (relative accuracy down to ~1e-27: atol 1e-30); a 2-D grid of workgroups (policy grid.maxX 2); NaN inputs.
// gluForward / gluBackward (the fused gated unit): every activation on the same sizes, a 2-D grid, NaN gates.
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import { GLU_ACTS, gluBackward, gluForward, unaryBackward, unaryForward, unaryHasGradKernel, type GluAct, type UnaryOp } from "../../../src/kernels/unary.ts";
import * as R from "../../reference/unary.ts";
import { uniform } from "../../tensor/helpers.ts";
import type { LauncherRow } from "../harness.ts";

const SIZES = [1, 301, 273, 300]; // one element; two workgroups, the last partial (twice); 75 vec4s
const GRID: PartialPolicy = { grid: { maxX: 2 } };
const TAILS = Float64Array.of(-60, -30, -9, -0.3, -1e-3, 1e-5, 0, 2e-3, 0.2, 9, 30, 60);
const GELU_TAILS = Float64Array.of(-9, -5, -4.5, -3, -1e-3, 0, 1e-4, 3, 4.5, 5, 9);
const NEGATIVE_BASES = Float64Array.of(-2, -0.5, -3, 1.5, -1.25);
const NAN_IN = Float64Array.of(NaN, 0.75, -0.5, NaN, 1.25, 0.5, NaN, 2);

interface Case {
  op: UnaryOp;
  alpha: number;
  n: number;
  /** Fixed inputs (else uniform over the op's range). */
  X?: Float64Array;
  what?: string;
  atol?: number;
  variant?: PartialPolicy;
}

const label = (c: Case) => `${c.op}(${c.alpha}) ${c.what ?? `n=${c.n}`}${c.variant ? " grid.maxX=2" : ""}`;

function forwardRow(c: Case): LauncherRow {
  return {
    family: "unary",
    name: `unary unaryForward ${label(c)}`,
    variant: c.variant,
    async run(gpu, io, r) {
      const X = c.X ?? uniform(r, c.n, R.UNARY_REF[c.op].lo, R.UNARY_REF[c.op].hi);
      const o = { op: c.op, n: c.n, alpha: c.alpha };
      const out = io.output(c.n);
      unaryForward(gpu, { x: io.input(X), out }, o);
      return [{ what: "out", got: await io.read(out, c.n), ref: R.unaryForward({ x: X }, o).out, opts: { atol: c.atol ?? 1e-6 } }];
    },
  };
}

function backwardRow(c: Case): LauncherRow {
  return {
    family: "unary",
    name: `unary unaryBackward ${label(c)}`,
    variant: c.variant,
    async run(gpu, io, r) {
      const X = c.X ?? uniform(r, c.n, R.UNARY_REF[c.op].lo, R.UNARY_REF[c.op].hi);
      const G = uniform(r, c.n);
      const o = { op: c.op, n: c.n, alpha: c.alpha };
      const dx = io.output(c.n);
      unaryBackward(gpu, { x: io.input(X), gout: io.input(G), dx }, o);
      return [{ what: "dx", got: await io.read(dx, c.n), ref: R.unaryBackward({ x: X, gout: G }, o).dx, opts: { atol: c.atol ?? 1e-6 } }];
    },
  };
}

const cases: Case[] = [
  ...R.UNARY_OPS.flatMap((op) => R.unaryAlphas(op).flatMap((alpha) => SIZES.map((n) => ({ op, alpha, n })))),
  // A negative base: integer exponents by parity, NaN otherwise (as PyTorch).
  ...[3, 2, -2, 0.5].map((alpha) => ({ op: "pow" as const, alpha, n: 5, X: NEGATIVE_BASES, what: "negative bases" })),
  // The tails: finite and relatively accurate (no exp overflow, no 1 - 1 cancellation).
  ...(["tanh", "sigmoid", "silu", "exp"] as const).map((op) => ({ op, alpha: 0, n: TAILS.length, X: TAILS, what: "tails", atol: 1e-30 })),
  ...(["gelu", "gelu_tanh"] as const).map((op) => ({ op, alpha: 0, n: GELU_TAILS.length, X: GELU_TAILS, what: "tails", atol: 1e-30 })),
  // 5 workgroups on a 2-D grid: f32 units, then vec4 units.
  { op: "silu", alpha: 0, n: 1101, variant: GRID },
  { op: "gelu", alpha: 0, n: 4100, variant: GRID },
  // NaN propagation, every op and alpha, f32 and vec4 units: NaN in, NaN out (pow(NaN, 0) = 1 and its gradient 0, as torch).
  ...R.UNARY_OPS.flatMap((op) =>
    R.unaryAlphas(op).flatMap((alpha) => [NAN_IN, NAN_IN.subarray(0, 5)].map((X) => ({ op, alpha, n: X.length, X, what: `NaN n=${X.length}` }))),
  ),
];

interface GluCase {
  act: GluAct;
  n: number;
  /** Fixed gates (else uniform over the activation's range). */
  X?: Float64Array;
  what?: string;
  variant?: PartialPolicy;
}

function gluRow(c: GluCase): LauncherRow {
  return {
    family: "unary",
    name: `unary glu ${c.act} ${c.what ?? `n=${c.n}`}${c.variant ? " grid.maxX=2" : ""}`,
    variant: c.variant,
    async run(gpu, io, r) {
      const gate = c.X ?? uniform(r, c.n, R.UNARY_REF[c.act].lo, R.UNARY_REF[c.act].hi);
      const up = uniform(r, c.n, -2, 2);
      const G = uniform(r, c.n);
      const o = { act: c.act, n: c.n };
      const [gb, ub] = [io.input(gate), io.input(up)];
      const out = io.output(c.n);
      const dgate = io.output(c.n);
      const dup = io.output(c.n);
      gluForward(gpu, { gate: gb, up: ub, out }, o);
      gluBackward(gpu, { gate: gb, up: ub, gout: io.input(G), dgate, dup }, o);
      const f = R.gluForward({ gate, up }, o);
      const b = R.gluBackward({ gate, up, gout: G }, o);
      return [
        { what: "out", got: await io.read(out, c.n), ref: f.out, opts: { atol: 1e-6 } },
        { what: "dgate", got: await io.read(dgate, c.n), ref: b.dgate, opts: { atol: 1e-6 } },
        { what: "dup", got: await io.read(dup, c.n), ref: b.dup, opts: { atol: 1e-6 } },
      ];
    },
  };
}

const gluCases: GluCase[] = [
  ...GLU_ACTS.flatMap((act) => SIZES.map((n) => ({ act, n }))),
  { act: "silu", n: 1101, variant: GRID },
  { act: "gelu_tanh", n: 4100, variant: GRID },
  ...GLU_ACTS.flatMap((act) => [NAN_IN, NAN_IN.subarray(0, 5)].map((X) => ({ act, n: X.length, X, what: `NaN n=${X.length}` }))),
];

export const rows: LauncherRow[] = [
  ...cases.map(forwardRow),
  ...cases.filter((c) => unaryHasGradKernel(c.op)).map(backwardRow),
  ...gluCases.map(gluRow),
];

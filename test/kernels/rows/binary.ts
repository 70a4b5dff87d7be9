// binaryForward and binaryGrad (src/kernels/binary.ts) against test/reference/binary.ts: every op on same-shape
// operands (flat entries, f32 and vec4 units, partial workgroups) and broadcast pairs (the strided entries: row
// vectors, outer products, different ranks, 0-d operands, five dimensions left after coalescing), each pair both
// ways round; then a 2-D grid of workgroups (policy grid.maxX 2) on the flat f32, flat vec4 and strided entries;
// and a NaN in each operand and in the gradient (NaN exactly where the reference has NaN).
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import { binaryForward, binaryGrad, binaryGradReads, type BinaryOp } from "../../../src/kernels/binary.ts";
import * as R from "../../reference/binary.ts";
import { awayFromZero, numel, refBroadcastShape, uniform, type Shape } from "../../tensor/helpers.ts";
import type { Check, LauncherRow } from "../harness.ts";

/** Broadcast patterns (the op tests run them through autograd too). */
export const BROADCAST_CASES: [Shape, Shape][] = [
  [[5, 7], [7]], // row vector
  [[6, 1], [1, 45]], // outer product: both operands broadcast
  [[3, 1, 5], [4, 1]], // both broadcast, different ranks
  [[2, 3, 4, 5], [3, 1, 5]],
  [[], [2, 3]], // 0-d operand
  [[9, 31], [1]],
  [[2, 1, 3, 1, 5], [1, 4, 1, 6, 1]], // alternating broadcast: 5 dimensions survive coalescing
];
const CASES: [Shape, Shape][] = [
  [[37], [37]], // same shape, one partial workgroup
  [[3, 101], [3, 101]], // 303 elements: two workgroups, the last partial
  [[4, 65], [4, 65]], // 260 elements: the vec4 kernels (65 vec4s, one partial workgroup)
  [[1028], [1028]], // 257 vec4s: two workgroups, the last holding one
  ...BROADCAST_CASES,
];
const same = (a: Shape, b: Shape) => JSON.stringify(a) === JSON.stringify(b);
const PAIRS = CASES.flatMap(([a, b]): [Shape, Shape][] => (same(a, b) ? [[a, b]] : [[a, b], [b, a]]));

const GRID: PartialPolicy = { grid: { maxX: 2 } };
const GRID_PAIRS: [BinaryOp, Shape, Shape][] = [
  ["mul", [3, 300], [300]], // strided: 900 outputs, 4 workgroups on a 2x2 grid
  ["sub", [1101], [1101]], // flat f32: 5 workgroups, the last row partial
  ["div", [4100], [4100]], // flat vec4: 1025 vec4s, 5 workgroups
];

const fmt = (s: Shape) => JSON.stringify(s);

/** nan: a NaN in a (element 1) and in b (its last element): NaN wherever the reference's arithmetic puts it. */
function inputs(op: BinaryOp, sa: Shape, sb: Shape, r: () => number, nan = false) {
  const A = uniform(r, numel(sa));
  const B = op === "div" ? awayFromZero(r, numel(sb)) : uniform(r, numel(sb));
  if (nan) (A[Math.min(1, A.length - 1)] = NaN), (B[B.length - 1] = NaN);
  const outShape = refBroadcastShape(sa, sb);
  return { A, B, shapes: { aShape: sa, bShape: sb, outShape }, n: numel(outShape) };
}

function forwardRow(op: BinaryOp, sa: Shape, sb: Shape, variant?: PartialPolicy, nan = false): LauncherRow {
  return {
    family: "binary",
    name: `binary binaryForward ${op} ${fmt(sa)} ${fmt(sb)}${variant ? " grid.maxX=2" : ""}${nan ? " with NaN" : ""}`,
    variant,
    async run(gpu, io, r) {
      const { A, B, shapes, n } = inputs(op, sa, sb, r, nan);
      const out = io.output(n);
      binaryForward(gpu, { a: io.input(A), b: io.input(B), out }, { op, ...shapes });
      return [{ what: "out", got: await io.read(out, n), ref: R.binaryForward({ a: A, b: B }, { op, ...shapes }).out }];
    },
  };
}

/** Both inputs' gradients over the output's shape, binding only the operands each expression reads (as the op). */
function gradRow(op: BinaryOp, sa: Shape, sb: Shape, variant?: PartialPolicy, nan = false): LauncherRow {
  return {
    family: "binary",
    name: `binary binaryGrad ${op} ${fmt(sa)} ${fmt(sb)}${variant ? " grid.maxX=2" : ""}${nan ? " with NaN" : ""}`,
    variant,
    async run(gpu, io, r) {
      const { A, B, shapes, n } = inputs(op, sa, sb, r, nan);
      const G = uniform(r, n);
      if (nan) G[n >> 1] = NaN;
      const [a, b, gout] = [io.input(A), io.input(B), io.input(G)];
      const checks: Check[] = [];
      for (const wrt of ["a", "b"] as const) {
        const reads = binaryGradReads(op, wrt);
        const out = io.output(n);
        binaryGrad(gpu, { gout, a: reads.a ? a : undefined, b: reads.b ? b : undefined, out }, { op, wrt, ...shapes });
        const ref = R.binaryGrad({ gout: G, a: reads.a ? A : undefined, b: reads.b ? B : undefined }, { op, wrt, ...shapes });
        checks.push({ what: `d/d${wrt}`, got: await io.read(out, n), ref: ref.out });
      }
      return checks;
    },
  };
}

export const rows: LauncherRow[] = [
  ...R.BINARY_OPS.flatMap((op) => PAIRS.map(([sa, sb]) => forwardRow(op, sa, sb))),
  ...R.BINARY_OPS.flatMap((op) => PAIRS.map(([sa, sb]) => gradRow(op, sa, sb))),
  ...GRID_PAIRS.flatMap(([op, sa, sb]) => [forwardRow(op, sa, sb, GRID), gradRow(op, sa, sb, GRID)]),
  // NaN propagation (plain arithmetic: NaN wherever the reference has it), flat vec4 and broadcast entries.
  ...R.BINARY_OPS.flatMap((op) =>
    ([[[4, 65], [4, 65]], [[5, 7], [7]]] as [Shape, Shape][]).flatMap(([sa, sb]) => [forwardRow(op, sa, sb, undefined, true), gradRow(op, sa, sb, undefined, true)]),
  ),
];

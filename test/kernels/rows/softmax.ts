// softmax rows: the row-kernel launchers of src/kernels/softmax.ts against test/reference/softmax.ts.
// softmaxForward / softmaxBackward (softmax and log_softmax) on rows of 1 to 5000 elements (shorter and longer
// than the workgroups), large logits (+-80, +-500) where an unshifted exp would overflow, every row-reduction
// variant (test/kernels/row_variants.ts), a 2-D grid of row workgroups (grid.maxX 2); attentionSoftmaxForward /
// attentionSoftmaxBackward (the unfused attention's masked softmax) causal or not, with key padding that leaves
// rows with no visible key (all 0), GQA-style row blocks (batchRows); rowSumMap with a definition of its own, with
// and without a second operand. Backwards read the reference forward's output rounded to f32, so each launcher
// is checked on its own. Tolerances: the softmax op tests' (1e-6 + 1e-4 x, relative to sum|terms| for backwards).
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import {
  attentionSoftmaxBackward,
  attentionSoftmaxForward,
  rowSumMap,
  softmaxBackward,
  softmaxForward,
  type AttentionSoftmaxOptions,
  type RowSumMap,
  type SoftmaxKind,
} from "../../../src/kernels/softmax.ts";
import * as ref from "../../reference/softmax.ts";
import { uniform } from "../../tensor/helpers.ts";
import { f32, labelSuffix, type Check, type LauncherRow, type RowExtra } from "../harness.ts";
import { ROW_LENGTHS, ROW_VARIANTS } from "../row_variants.ts";


/**
 * `nan`: a NaN in the input of row min(1, rows - 1), a +inf in row 0 (torch: NaN everywhere, exp(inf - inf)) and, for
 * backwards, a NaN in the upstream gradient of the last row; attention softmax: a NaN in a visible score of row 1, a
 * +inf in one of row 2, a NaN in an invisible score of row 0 (never read), and a NaN mask value (a kept key).
 */
const tag = (e: RowExtra) => `${e.nan ? " with NaN" : ""}${labelSuffix(e)}`;

// ---- softmax / log_softmax ----------------------------------------------------------------------------

function softmaxRow(launcher: "softmaxForward" | "softmaxBackward", kind: SoftmaxKind, rows: number, n: number, range: [number, number], e: RowExtra = {}): LauncherRow {
  const o = { rows, n, kind };
  return {
    family: "softmax",
    name: `softmax ${launcher} ${kind} [${rows}, ${n}] in [${range[0]}, ${range[1]}]${tag(e)}`,
    variant: e.variant,
    skip: e.skip,
    async run(gpu, io, r): Promise<Check[]> {
      const X = uniform(r, rows * n, ...range);
      if (e.nan) (X[Math.min(1, rows - 1) * n + (n >> 1)] = NaN), (X[n - 1] = Infinity);
      const fwd = ref.softmaxForward({ x: X }, o);
      if (launcher === "softmaxForward") {
        const y = io.output(rows * n);
        softmaxForward(gpu, { x: io.input(X), y }, o);
        return [{ what: "y", got: await io.read(y, rows * n), ref: fwd.y }];
      }
      const Y = f32(fwd.y);
      const G = uniform(r, rows * n);
      if (e.nan) G[rows * n - 1] = NaN;
      const dx = io.output(rows * n);
      softmaxBackward(gpu, { y: io.input(Y), dy: io.input(G), dx }, o);
      const want = ref.softmaxBackward({ y: Y, dy: G }, o);
      return [{ what: "dx", got: await io.read(dx, rows * n), ref: want.dx, opts: { mag: want.dxMag } }];
    },
  };
}

// ---- the unfused attention's masked softmax -----------------------------------------------------------

interface AttnCase {
  /** Batch, heads (rows per batch element = heads * T), keys per row T. */
  B: number;
  H: number;
  T: number;
  causal: boolean;
  scale: number;
  /** Keys padded per batch element: row b pads pad[b] keys on the left (T: all of them). */
  pad?: number[];
}

function attnRow(launcher: "attentionSoftmaxForward" | "attentionSoftmaxBackward", c: AttnCase, e: RowExtra = {}): LauncherRow {
  const o: AttentionSoftmaxOptions = { rows: c.B * c.H * c.T, n: c.T, scale: c.scale, causal: c.causal, batchRows: c.H * c.T };
  const n = o.rows * o.n;
  return {
    family: "softmax",
    name: `softmax ${launcher} B${c.B} H${c.H} T${c.T} ${c.causal ? "causal" : "full"} scale ${c.scale}${c.pad ? ` pad ${c.pad.join("/")}` : ""}${tag(e)}`,
    variant: e.variant,
    skip: e.skip,
    async run(gpu, io, r): Promise<Check[]> {
      const S = uniform(r, n, -3, 3);
      let mask: Float64Array | undefined;
      if (c.pad) {
        mask = new Float64Array(c.B * c.T).fill(1);
        c.pad.forEach((p, b) => mask!.fill(0, b * c.T, b * c.T + p));
      }
      if (e.nan) {
        S[c.T] = NaN; // row 1 (query 1) sees key 0 unless padded
        S[2 * c.T + 1] = Infinity; // row 2 (query 2) sees key 1 unless padded
        if (mask) mask[mask.indexOf(1)] = NaN; // a NaN mask value keeps its key (NaN != 0)
        S[c.T - 1] = NaN; // row 0 (query 0) never sees key T - 1 under causal masking
      }
      const fwd = ref.attentionSoftmaxForward({ scores: S, mask }, o);
      if (launcher === "attentionSoftmaxForward") {
        const probs = io.output(n);
        attentionSoftmaxForward(gpu, { scores: io.input(S), mask: mask && io.input(mask), probs }, o);
        return [{ what: "probs", got: await io.read(probs, n), ref: fwd.probs }];
      }
      const P = f32(fwd.probs);
      const G = uniform(r, n);
      if (e.nan) G[n - 1] = NaN;
      const dscores = io.output(n);
      attentionSoftmaxBackward(gpu, { probs: io.input(P), dprobs: io.input(G), dscores }, o);
      const want = ref.attentionSoftmaxBackward({ probs: P, dprobs: G }, o);
      return [{ what: "dscores", got: await io.read(dscores, n), ref: want.dscores, opts: { mag: want.dscoresMag } }];
    },
  };
}

// ---- rowSumMap --------------------------------------------------------------------------------------------

/** Definitions of row_sum_map's own (not the softmax or l2 ones), in WGSL and in float64. */
const DEFS: Record<"two" | "one", { wgsl: RowSumMap; f64: ref.RowSumMapRef }> = {
  // out = x s.x + g s.y eps with s = (sum x g, sum |x|): both operands, both sums, the eps parameter.
  two: {
    wgsl: { load: "let x = a[i]; let g = b[i];", term: "vec2f(x * g, abs(x))", map: "x * s.x + g * s.y * p.eps" },
    f64: {
      term: (x, g) => [x * g, Math.abs(x)],
      map: (x, g, s, eps) => x * s[0] + g * s[1] * eps,
      mag: (x, g, s, eps) => x * s[0] + g * s[1] * Math.abs(eps),
    },
  },
  // out = x s.y / (s.x + eps) with s = (sum x^2, sum x): a operand only.
  one: {
    wgsl: { load: "let x = a[i];", term: "vec2f(x * x, x)", map: "x * s.y / (s.x + p.eps)" },
    f64: { term: (x) => [x * x, x], map: (x, _g, s, eps) => (x * s[1]) / (s[0] + eps), mag: (x, _g, s, eps) => (x * s[1]) / (s[0] + eps) },
  },
};

function rowSumMapRow(def: "two" | "one", rows: number, n: number, e: RowExtra = {}): LauncherRow {
  const eps = 0.75;
  return {
    family: "softmax",
    name: `softmax rowSumMap ${def === "two" ? "a and b" : "a only"} [${rows}, ${n}]${tag(e)}`,
    variant: e.variant,
    skip: e.skip,
    async run(gpu, io, r): Promise<Check[]> {
      const A = uniform(r, rows * n);
      const B = def === "two" ? uniform(r, rows * n) : undefined;
      if (e.nan) A[Math.min(1, rows - 1) * n] = NaN;
      const out = io.output(rows * n);
      rowSumMap(gpu, { a: io.input(A), b: B && io.input(B), out }, { rows, n, def: DEFS[def].wgsl, eps, name: "row_sum_map.row" });
      const want = ref.rowSumMap({ a: A, b: B }, { rows, n, def: DEFS[def].f64, eps });
      return [{ what: "out", got: await io.read(out, rows * n), ref: want.out, opts: { mag: want.outMag } }];
    },
  };
}

// ---- the table ----------------------------------------------------------------------------------------

export const rows: LauncherRow[] = [];
const KINDS: SoftmaxKind[] = ["softmax", "log_softmax"];
const SM_LAUNCHERS = ["softmaxForward", "softmaxBackward"] as const;

// The device's default reduction: rows of 1 to 5000 (the softmax op tests' shapes), and large logits.
const SHAPES: [number, number][] = [[1, 1], [5, 1], [3, 7], [4, 300], [2, 5000], [6, 33]];
const LARGE: [number, number, number][] = [[3, 7, 80], [2, 300, 80], [1, 5000, 80], [4, 300, 500]];
for (const kind of KINDS)
  for (const l of SM_LAUNCHERS) {
    for (const [m, n] of SHAPES) rows.push(softmaxRow(l, kind, m, n, [-3, 3]));
    for (const [m, n, v] of LARGE) rows.push(softmaxRow(l, kind, m, n, [-v, v]));
  }

// Every row-reduction variant, rows shorter than, equal to and longer than the workgroup.
for (const rv of ROW_VARIANTS) {
  const e = { variant: rv.variant, skip: rv.skip, label: rv.label };
  for (const n of ROW_LENGTHS) for (const kind of KINDS) for (const l of SM_LAUNCHERS) rows.push(softmaxRow(l, kind, 5, n, [-3, 3], e));
  for (const l of ["attentionSoftmaxForward", "attentionSoftmaxBackward"] as const) rows.push(attnRow(l, { B: 2, H: 2, T: 9, causal: true, scale: 0.35, pad: [2, 0] }, e));
  rows.push(rowSumMapRow("two", 5, 300, e));
}

// NaN propagation (NaN exactly where the reference has NaN, as torch: a NaN or a +inf in a row makes its softmax
// NaN), under every row-reduction variant.
for (const rv of ROW_VARIANTS) {
  const e = { variant: rv.variant, skip: rv.skip, label: rv.label, nan: true };
  for (const kind of KINDS) for (const l of SM_LAUNCHERS) rows.push(softmaxRow(l, kind, 3, 300, [-3, 3], e));
  for (const l of ["attentionSoftmaxForward", "attentionSoftmaxBackward"] as const) rows.push(attnRow(l, { B: 2, H: 2, T: 9, causal: true, scale: 0.35, pad: [0, 2] }, e));
  rows.push(rowSumMapRow("two", 3, 300, e));
}

// A 2-D grid of row workgroups (x capped at 2): 5 rows on a 2x3 grid, one workgroup past the last row.
const grid2 = { variant: { grid: { maxX: 2 } }, label: "grid.maxX 2" };
rows.push(softmaxRow("softmaxForward", "softmax", 5, 9, [-3, 3], grid2), softmaxRow("softmaxBackward", "softmax", 5, 9, [-3, 3], grid2));
rows.push(softmaxRow("softmaxForward", "log_softmax", 7, 300, [-3, 3], grid2), softmaxRow("softmaxBackward", "log_softmax", 7, 300, [-3, 3], grid2));
rows.push(attnRow("attentionSoftmaxForward", { B: 1, H: 1, T: 5, causal: true, scale: 1 }, grid2));

// The unfused attention's softmax: causal or not, padding (batch 1 of the first case sees no key at all),
// several heads per batch element, long rows.
const ATTN: AttnCase[] = [
  { B: 2, H: 4, T: 5, causal: true, scale: 0.5, pad: [3, 5] },
  { B: 2, H: 4, T: 5, causal: false, scale: 0.5, pad: [3, 5] },
  { B: 1, H: 3, T: 17, causal: false, scale: 0.3 },
  { B: 1, H: 2, T: 64, causal: true, scale: 0.125 },
  { B: 2, H: 1, T: 300, causal: true, scale: 0.2, pad: [0, 37] },
];
for (const c of ATTN) for (const l of ["attentionSoftmaxForward", "attentionSoftmaxBackward"] as const) rows.push(attnRow(l, c));

// rowSumMap: both operands and a only, rows of 1 to 5000.
for (const [m, n] of [[3, 1], [4, 7], [3, 300], [2, 5000]] as const) for (const d of ["two", "one"] as const) rows.push(rowSumMapRow(d, m, n));

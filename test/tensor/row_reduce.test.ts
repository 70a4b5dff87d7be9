// The row kernels' workgroup reduction (kernels/row_reduce.wgsl, src/gpu/row_reduce.ts) in every variant a
// device can pick: a 256-wide tree (GPUs), an 8-wide tree, 8-lane subgroup reductions (lavapipe's default),
// and a 1-wide degenerate tree. Each variant runs every reducing entry — row sums and NaN-propagating max
// (reduce.wgsl), softmax and its backward (softmax.wgsl), cross-entropy forward/mean/backward (loss.wgsl), RMSNorm and
// LayerNorm forward and dx (norm.wgsl), the gradient-norm passes (optim.wgsl) — against float64 references,
// on rows shorter than, equal to and longer than the workgroup. The per-op suites cover the default variant
// in depth; this one makes sure no variant is left untested. Fresh tensors are NaN-poisoned.
import { describe, expect, test } from "bun:test";
import { hasSubgroupsOf, rowLaunch } from "../../src/gpu/index.ts";
import { clipGradNorm } from "../../src/optim/clip.ts";
import { clone, Tensor } from "../../src/tensor/index.ts";
import { crossEntropy } from "../../src/tensor/ops/loss.ts";
import { layernorm, rmsnorm } from "../../src/tensor/ops/norm.ts";
import { max, sum } from "../../src/tensor/ops/reduce.ts";
import { softmax } from "../../src/tensor/ops/softmax.ts";
import { expectClose, getGpu, rng, seedOf, uniform, upload } from "./helpers.ts";

const gpu = await getGpu();

const fits8 = hasSubgroupsOf(gpu, 8);
const VARIANTS = [
  { name: "256-wide tree", wg: 256, subgroups: false, runs: true },
  { name: "8-wide tree", wg: 8, subgroups: false, runs: true },
  { name: "8-lane subgroups", wg: 8, subgroups: true, runs: fits8 },
  { name: "1-wide (no tree steps)", wg: 1, subgroups: false, runs: true },
];
const LENGTHS = [1, 7, 8, 300]; // shorter than, equal to, and longer than the workgroups
const ROWS = 5;

/** float64 per-row helpers over rows of n. */
const rowsOf = (X: Float64Array, n: number) => Array.from({ length: X.length / n }, (_, r) => X.subarray(r * n, (r + 1) * n));

describe("row reductions in every launch variant", () => {
  for (const v of VARIANTS)
    test.skipIf(!v.runs)(`${v.name}: sum, max, softmax (+ backward), cross-entropy, rmsnorm, layernorm (+ dx), grad norm`, async () => {
      await gpu.withPolicy({ rows: { wg: v.wg, subgroups: v.subgroups } }, async () => {
        expect(rowLaunch(gpu)).toEqual({ constants: { WG: v.wg }, defines: { SUBGROUP_ROWS: v.subgroups ? 1 : 0 } });
        for (const n of LENGTHS) {
          const what = (op: string) => `${op} rows of ${n} (${v.name})`;
          const r = rng(seedOf(what("all")));
          const X = uniform(r, ROWS * n, -3, 3);
          const G = uniform(r, ROWS * n, -1, 1);
          const W = uniform(r, n, 0.5, 1.5);
          const x = upload(gpu, X, [ROWS, n], true);
          const g = upload(gpu, G, [ROWS, n]);
          const w = upload(gpu, W, [n]);

          // sum and max over the last axis; row 1 holds a NaN, which max must propagate.
          expectClose(what("sum"), await sum(x, 1).toArray(), rowsOf(X, n).map((row) => row.reduce((a, b) => a + b, 0)), { rtol: 1e-5 });
          const Xn = X.slice();
          Xn[n + (n >> 1)] = NaN;
          using xn = upload(gpu, Xn, [ROWS, n]);
          expectClose(what("max"), await max(xn, 1).toArray(), rowsOf(Xn, n).map((row) => (row.some(Number.isNaN) ? NaN : Math.max(...row))), { rtol: 0, atol: 0 });

          // softmax and its input gradient for upstream G: y (g - sum(g y)).
          const y = softmax(x);
          const Y = rowsOf(X, n).flatMap((row) => {
            const m = Math.max(...row);
            const e = Array.from(row, (t) => Math.exp(t - m));
            const s = e.reduce((a, b) => a + b, 0);
            return e.map((t) => t / s);
          });
          expectClose(what("softmax"), await y.toArray(), Y, { rtol: 1e-5 });
          y.backward(g);
          const dX = new Float64Array(X.length);
          for (let i = 0; i < ROWS; i++) {
            let dot = 0;
            for (let k = 0; k < n; k++) dot += G[i * n + k]! * Y[i * n + k]!;
            for (let k = 0; k < n; k++) dX[i * n + k] = Y[i * n + k]! * (G[i * n + k]! - dot);
          }
          expectClose(what("softmax backward"), await x.grad!.toArray(), dX, { rtol: 1e-4, atol: 1e-6 });
          y.release();
          x.zeroGrad();

          // cross-entropy (mean over kept rows; row 2 ignored) and its gradient.
          const T = Array.from({ length: ROWS }, (_, i) => (i === 2 ? -100 : (i * 3) % n));
          const loss = crossEntropy(x, T);
          let total = 0;
          const dCE = new Float64Array(X.length);
          const kept = T.filter((t) => t !== -100).length;
          rowsOf(X, n).forEach((row, i) => {
            if (T[i] === -100) return;
            const m = Math.max(...row);
            const s = row.reduce((a, t) => a + Math.exp(t - m), 0);
            total += m + Math.log(s) - row[T[i]!]!;
            for (let k = 0; k < n; k++) dCE[i * n + k] = (Math.exp(row[k]! - m) / s - (k === T[i] ? 1 : 0)) / kept;
          });
          expectClose(what("cross-entropy"), await loss.toArray(), [total / kept], { rtol: 1e-5 });
          loss.backward();
          expectClose(what("cross-entropy backward"), await x.grad!.toArray(), dCE, { rtol: 1e-4, atol: 1e-7 });
          loss.release();
          x.zeroGrad();

          // rmsnorm and layernorm forward, and dx for upstream G.
          for (const center of [false, true]) {
            const out = center ? layernorm(x, w, null, 1e-5) : rmsnorm(x, w, { eps: 1e-5 });
            const ref = new Float64Array(X.length);
            const dref = new Float64Array(X.length);
            rowsOf(X, n).forEach((row, i) => {
              const mean = center ? row.reduce((a, b) => a + b, 0) / n : 0;
              const rstd = 1 / Math.sqrt(row.reduce((a, t) => a + (t - mean) ** 2, 0) / n + 1e-5);
              const xhat = Array.from(row, (t) => (t - mean) * rstd);
              const gw = xhat.map((_, k) => G[i * n + k]! * W[k]!);
              const mgw = center ? gw.reduce((a, b) => a + b, 0) / n : 0;
              const mgx = gw.reduce((a, t, k) => a + t * xhat[k]!, 0) / n;
              for (let k = 0; k < n; k++) {
                ref[i * n + k] = xhat[k]! * W[k]!;
                dref[i * n + k] = rstd * (gw[k]! - mgw - xhat[k]! * mgx);
              }
            });
            const name = center ? "layernorm" : "rmsnorm";
            expectClose(what(name), await out.toArray(), ref, { rtol: 1e-4, atol: 1e-5 });
            out.backward(g);
            expectClose(what(`${name} dx`), await x.grad!.toArray(), dref, { rtol: 1e-3, atol: 1e-5 });
            out.release();
            x.zeroGrad();
          }

          // Gradient norm over two gradients (sumsq per gradient, then norm_finish).
          x.grad = clone(g);
          using p2 = Tensor.zeros(gpu, [3], { requiresGrad: true });
          p2.grad = Tensor.fromArray(gpu, [3, 4, 12], [3]);
          const norm = clipGradNorm([x, p2], Infinity);
          expectClose(what("grad norm"), await norm.toArray(), [Math.sqrt(G.reduce((a, t) => a + t * t, 0) + 169)], { rtol: 1e-5 });
          norm.release();
          for (const t of [x, g, w]) t.release();
        }
      });
    }, 120_000);

  test("a forced variant the device cannot run is refused, naming the adapter", () => {
    gpu.withPolicy({ rows: { wg: 16, subgroups: true } }, () => expect(() => rowLaunch(gpu)).toThrow(/subgroup reductions need subgroups of exactly 16 lanes; .+ has/));
    expect(() => gpu.withPolicy({ rows: { wg: 12 } }, () => rowLaunch(gpu))).toThrow('kernel policy: rows.wg must be "auto" or a power of two in [1, 256], got 12');
  });
});

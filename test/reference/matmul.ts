/**
 * float64 reference of the matrix-product launcher (src/kernels/matmul.ts), same name and io/option shapes;
 * inputs are Float64Array, outputs are returned, each with its per-element magnitude (the sum of |terms|) for
 * tolerances. With op(X) = Xᵀ where transA / transB say, and the operands in their stored layouts
 * (a [batch, M, K], or [batch, K, M] with transA; b [batch, K, N], or [batch, N, K] with transB; a shared
 * operand is one matrix read by every z):
 *
 *   matmulProduct          c[z, m, n] = sum_k op(a[z])[m, k] op(b[z])[k, n] (+ bias[n]) (+ acc[z, m, n]: the launcher's
 *                          `accumulate`, c's prior contents)
 *   matmulProductBackward  the gradients of sum(c * dc): da[z] = dc[z] op(b[z])ᵀ and db[z] = op(a[z])ᵀ dc[z], each
 *                          accumulated term by term into its operand's stored layout (a shared operand: summed
 *                          over the batch), and dbias[n] = sum over z, m of dc. (The launcher has no backward of its
 *                          own: the op's backward rule is products with folded transposes, which this checks.)
 *
 * Half precision: f16 operands are read as f16 and every product accumulates in f32; `toHalf` (the f16 rounding
 * of test/reference/cast.ts) rounds the inputs to what an f16 buffer holds, so the reference sees exactly what
 * the kernel reads. The result is exact
 * float64: rounding c to f16 (a relative 2^-11) is the tolerance's business.
 */
import type { MatmulProblem } from "../../src/kernels/matmul.ts";

export type { MatmulProblem } from "../../src/kernels/matmul.ts";

/** Values rounded to f16 (to nearest, ties to even), as float64: what an f16 buffer of them holds (test/reference/cast.ts). */
export { toHalf } from "./cast.ts";

/**
 * The problem of op(a) · op(b) for operands of stored shapes aShape and bShape (as the matmul op batches: equal
 * batch dimensions, or one operand 2-D and shared by every z), and the result's shape [...batch, M, N].
 */
export function matmulProblemOf(aShape: readonly number[], bShape: readonly number[], transA: boolean, transB: boolean): { pr: MatmulProblem; shape: number[] } {
  const [ra, ca] = aShape.slice(-2) as [number, number];
  const [rb, cb] = bShape.slice(-2) as [number, number];
  const [M, K] = transA ? [ca, ra] : [ra, ca];
  const N = transB ? rb : cb;
  const batchShape = aShape.length > 2 ? aShape.slice(0, -2) : bShape.slice(0, -2);
  const batch = batchShape.reduce((x, y) => x * y, 1);
  return { pr: { M, N, K, batch, sharedA: aShape.length === 2, sharedB: bShape.length === 2, transA, transB }, shape: [...batchShape, M, N] };
}

/** Stored-layout index of op(a)[z][m, k] and of op(b)[z][k, n]. */
function indexers(o: MatmulProblem) {
  const { M, N, K } = o;
  const sA = o.sharedA ? 0 : M * K;
  const sB = o.sharedB ? 0 : K * N;
  return {
    ia: (z: number, m: number, k: number) => z * sA + (o.transA ? k * M + m : m * K + k),
    ib: (z: number, k: number, n: number) => z * sB + (o.transB ? n * K + k : k * N + n),
  };
}

/** c [batch, M, N], with cMag = sum_k |a b| (+ |bias|) (+ |acc|). */
export function matmulProduct(io: { a: Float64Array; b: Float64Array; bias?: Float64Array; acc?: Float64Array }, o: MatmulProblem) {
  const { M, N, K, batch } = o;
  const { ia, ib } = indexers(o);
  const c = new Float64Array(batch * M * N);
  const cMag = new Float64Array(batch * M * N);
  for (let z = 0; z < batch; z++)
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = (io.bias ? io.bias[n]! : 0) + (io.acc ? io.acc[(z * M + m) * N + n]! : 0);
        let mag = Math.abs(io.bias ? io.bias[n]! : 0) + Math.abs(io.acc ? io.acc[(z * M + m) * N + n]! : 0);
        for (let k = 0; k < K; k++) {
          const t = io.a[ia(z, m, k)]! * io.b[ib(z, k, n)]!;
          s += t;
          mag += Math.abs(t);
        }
        c[(z * M + m) * N + n] = s;
        cMag[(z * M + m) * N + n] = mag;
      }
  return { c, cMag };
}

/** da, db (stored layouts, a's and b's lengths) and dbias [N] of sum(c * dc), each with its magnitude. */
export function matmulProductBackward(io: { a: Float64Array; b: Float64Array; dc: Float64Array }, o: MatmulProblem) {
  const { M, N, K, batch } = o;
  const { ia, ib } = indexers(o);
  const da = new Float64Array(io.a.length);
  const daMag = new Float64Array(io.a.length);
  const db = new Float64Array(io.b.length);
  const dbMag = new Float64Array(io.b.length);
  const dbias = new Float64Array(N);
  const dbiasMag = new Float64Array(N);
  for (let z = 0; z < batch; z++)
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        const g = io.dc[(z * M + m) * N + n]!;
        dbias[n] += g;
        dbiasMag[n] += Math.abs(g);
        for (let k = 0; k < K; k++) {
          const [i, j] = [ia(z, m, k), ib(z, k, n)];
          da[i] += g * io.b[j]!;
          daMag[i] += Math.abs(g * io.b[j]!);
          db[j] += g * io.a[i]!;
          dbMag[j] += Math.abs(g * io.a[i]!);
        }
      }
  return { da, daMag, db, dbMag, dbias, dbiasMag };
}

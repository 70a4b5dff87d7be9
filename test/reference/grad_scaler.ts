/**
 * float64 reference of src/kernels/grad_scaler.ts: torch's _amp_foreach_non_finite_check_and_unscale_.
 *
 *   unscaleGrads({ grads }, { sizes, invScale })  → { grads, foundInf }
 *       foundInf = 1 if any element of any gradient g_j (its first sizes[j] elements) is ±inf or NaN, else 0;
 *       g_j[i] · invScale (left as it is when invScale is 1). The product of two f32 values is exact in float64,
 *       so Math.fround of it is the device's correctly rounded f32 product: compare those bit for bit.
 */

export function unscaleGrads(io: { grads: readonly ArrayLike<number>[] }, o: { sizes: readonly number[]; invScale: number }): { grads: Float64Array[]; foundInf: number } {
  let foundInf = 0;
  const grads = io.grads.map((g, j) =>
    Float64Array.from({ length: o.sizes[j]! }, (_, i) => {
      if (!Number.isFinite(g[i]!)) foundInf = 1;
      return o.invScale === 1 ? g[i]! : g[i]! * o.invScale;
    }),
  );
  return { grads, foundInf };
}

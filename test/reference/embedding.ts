/**
 * float64 reference of the embedding launchers (src/kernels/embedding.ts), same names and io/option shapes;
 * ids are Int32Array, the table and gradients Float64Array, outputs returned. The table is [v, d], ids are [n].
 *
 *   embeddingGather    out[t, :] = table[ids[t], :]; an id outside [0, v) gives a row of NaN.
 *   embeddingSort      order [2n]: the positions t sorted by (ids[t], t), then the ids in that order.
 *   embeddingBackward  dtable[u, :] = sum of gout[t, :] over the positions t of id u (0 for ids never named;
 *                      ids outside [0, v) contribute nothing), from the sorted order; dtableMag = the sum of |terms|.
 */
import type { EmbeddingDims } from "../../src/kernels/embedding.ts";

export type { EmbeddingDims } from "../../src/kernels/embedding.ts";

export function embeddingGather(io: { ids: Int32Array; table: Float64Array }, o: EmbeddingDims) {
  const { n, v, d } = o;
  const out = new Float64Array(n * d);
  for (let t = 0; t < n; t++) {
    const id = io.ids[t]!;
    for (let j = 0; j < d; j++) out[t * d + j] = id >= 0 && id < v ? io.table[id * d + j]! : NaN;
  }
  return { out };
}

export function embeddingSort(io: { ids: Int32Array }, o: EmbeddingDims) {
  const { n } = o;
  const perm = Array.from({ length: n }, (_, t) => t).sort((a, b) => io.ids[a]! - io.ids[b]! || a - b);
  const order = new Int32Array(2 * n);
  perm.forEach((t, k) => ((order[k] = t), (order[n + k] = io.ids[t]!)));
  return { order };
}

export function embeddingBackward(io: { gout: Float64Array; order: Int32Array }, o: EmbeddingDims) {
  const { n, v, d } = o;
  const dtable = new Float64Array(v * d);
  const dtableMag = new Float64Array(v * d);
  for (let k = 0; k < n; k++) {
    const [t, id] = [io.order[k]!, io.order[n + k]!];
    if (id < 0 || id >= v) continue;
    for (let j = 0; j < d; j++) {
      dtable[id * d + j] += io.gout[t * d + j]!;
      dtableMag[id * d + j] += Math.abs(io.gout[t * d + j]!);
    }
  }
  return { dtable, dtableMag };
}

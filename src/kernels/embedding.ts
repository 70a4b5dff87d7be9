/**
 * Launchers of kernels/embedding.wgsl: embedding lookup and its deterministic gradient. The table is [v, d]
 * f32, ids are n int32; rows move in vec4s when d % 4 == 0 (`vec4Units`).
 *
 *   embeddingGather    out [n, d]: out[t, :] = table[ids[t], :]; an id outside [0, v) gives a NaN row.
 *   embeddingSort      order [2n] int32: the positions t sorted by (ids[t], t), then the ids in that order
 *                      (rank counting on the GPU, O(n^2) compares; for ids that live only on the GPU; a host
 *                      sort that writes the same order is equivalent).
 *   embeddingBackward  dtable [v, d]: dtable[u, :] = sum of gout[t, :] over the positions t of id u, in
 *                      increasing t (0 for ids never named), from gout [n, d] and `order`: each element written
 *                      once (bounds of each id's run by binary search, then one pass); no atomics, no zero fill.
 *
 * Limits: n * d and v * d < 2^32, n < 2^31 (checked by the op). Every launcher records nothing when its
 * output is empty.
 */
import embeddingSrc from "../../kernels/embedding.wgsl" with { type: "text" };
import { defineKernel, grid1d, vec4Units, type Binding, type Gpu } from "../gpu/index.ts";

export const EMBEDDING = defineKernel("kernels/embedding.wgsl", embeddingSrc);

/** The `rank` entry's workgroup size (its tile of ids in workgroup memory). */
const WG = 256;

export interface EmbeddingDims {
  /** Number of ids. */
  n: number;
  /** Table rows (vocabulary) and row length. */
  v: number;
  d: number;
}

const paramsOf = (o: EmbeddingDims) => ({ n: o.n, d: o.d, v: o.v, row: 0, gx: 0, oob: Number.NaN });

/** out [n, d] = table [v, d] rows at ids [n]. */
export function embeddingGather(gpu: Gpu, io: { ids: Binding; table: Binding; out: Binding }, o: EmbeddingDims): void {
  if (o.n * o.d === 0) return;
  const { units: du, defines } = vec4Units(o.d);
  const g = grid1d(gpu, o.n * du);
  gpu.dispatch(EMBEDDING, "gather", { ids: io.ids, table: io.table, out: io.out }, g.workgroups, {
    params: { ...paramsOf(o), d: du, row: g.row },
    defines,
    name: "embedding",
  });
}

/** order [2n] int32 = [positions sorted by (id, position), then the ids in that order], from ids [n]. */
export function embeddingSort(gpu: Gpu, io: { ids: Binding; order: Binding }, o: EmbeddingDims): void {
  if (o.n === 0) return;
  const g = grid1d(gpu, o.n, WG);
  gpu.dispatch(EMBEDDING, "rank", { ids: io.ids, order: io.order }, g.workgroups, {
    params: { ...paramsOf(o), gx: g.workgroups[0] },
    name: "embedding.sort",
  });
}

/** dtable [v, d] from gout [n, d] and the sorted order [2n]. Allocates and releases the per-id bounds itself. */
export function embeddingBackward(gpu: Gpu, io: { gout: Binding; order: Binding; dtable: Binding }, o: EmbeddingDims): void {
  if (o.n === 0 || o.v * o.d === 0) return;
  const p = paramsOf(o);
  const bounds = gpu.alloc((o.v + 1) * 4, "embedding.bounds");
  const gb = grid1d(gpu, o.v + 1);
  gpu.dispatch(EMBEDDING, "bounds_search", { order_in: io.order, bounds }, gb.workgroups, {
    params: { ...p, row: gb.row },
    name: "embedding.bounds",
  });
  const { units: du, defines } = vec4Units(o.d);
  const gs = grid1d(gpu, o.v * du);
  gpu.dispatch(EMBEDDING, "scatter", { gout: io.gout, order_in: io.order, bounds_in: bounds, out: io.dtable }, gs.workgroups, {
    params: { ...p, d: du, row: gs.row },
    defines,
    name: "embedding.backward",
  });
  gpu.release(bounds);
}

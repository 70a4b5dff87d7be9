/**
 * Embedding lookup: `embedding(ids, table)` gathers rows of `table` [V, D] at int32 `ids` [...] into
 * [..., D] (torch.nn.functional.embedding; HF LlamaForCausalLM's embed_tokens). Kernels: kernels/embedding.wgsl.
 *
 * ids may be an i32 Tensor, or host data (an Int32Array or number[], with `opts.shape`, default [n]):
 *   - host ids are checked at the call site (integers in [0, V), else a TensorError) and the backward's sort
 *     of positions by id is done on the host (O(n log n), n = number of ids; one upload of 2n int32s);
 *   - GPU ids cannot be checked without a readback: an id outside [0, V) gives a NaN output row and no
 *     gradient, and the backward sorts on the GPU (the `rank` kernel, O(n^2) compares; n = 8192 is 67M).
 * Backward (gradient of the table; ids get none): with the positions sorted by (id, position), every element
 * of dTable [V, D] is written once, as the in-order sum of its id's rows of the output gradient; rows no id
 * names get 0. Deterministic (no atomics; bit-identical between the host and GPU paths), correct for
 * repeated ids. Cost at V = 128k, n = 8k, D = 4096: dominated by writing the dense 2 GiB dTable once.
 */
import embeddingSrc from "../../../kernels/embedding.wgsl" with { type: "text" };
import { defineKernel, vec4Units, type Gpu } from "../../gpu/index.ts";
import { attach } from "../autograd.ts";
import { checkShape, fmtShape, numel, TensorError } from "../shape.ts";
import { checkOperands, grid1d, Tensor } from "../tensor.ts";

export const EMBEDDING = defineKernel("kernels/embedding.wgsl", embeddingSrc);

const WG = 256;
const U32_LIMIT = 2 ** 32;

export interface EmbeddingOptions {
  /** Shape of host ids (default [ids.length]); ignored for a Tensor. */
  shape?: readonly number[];
}

type Params = { n: number; d: number; v: number; row: number; gx: number; oob: number };


export function embedding(ids: Tensor | ArrayLike<number>, table: Tensor, opts: EmbeddingOptions = {}): Tensor {
  const gpu = checkOperands("embedding", table);
  if (table.rank !== 2) throw new TensorError(`embedding: table must be [V, D], got ${fmtShape(table.shape)}`);
  const [v, d] = table.shape as [number, number];
  let idsT: Tensor;
  let host: Int32Array | null = null;
  if (ids instanceof Tensor) {
    ids.assertLive();
    if (ids.gpu !== gpu) throw new TensorError("embedding: ids and table live on different GPU devices");
    if (ids.dtype !== "i32") throw new TensorError(`embedding: ids must be int32, got ${ids}`);
    idsT = ids.detach();
  } else {
    host = checkHostIds(ids, v, opts.shape ?? [ids.length]);
    idsT = Tensor.fromArray(gpu, host, opts.shape ?? [ids.length], { dtype: "i32" });
  }
  const n = idsT.size;
  if (n * d >= U32_LIMIT || v * d >= U32_LIMIT)
    throw new TensorError(`embedding: ${n} ids of a [${v}, ${d}] table exceed the kernels' 2^32-element indexing`);
  const prm: Params = { n, d, v, row: 0, gx: 0, oob: Number.NaN };

  const out = Tensor.empty(gpu, [...idsT.shape, d]);
  if (n * d > 0) {
    // Rows move in vec4s when d % 4 == 0: the kernel's `d` then counts vec4s.
    const { units: du, defines } = vec4Units(d);
    const g = grid1d(gpu, n * du);
    gpu.dispatch(EMBEDDING, "gather", { ids: idsT.buffer, table: table.buffer, out: out.buffer }, g.workgroups, {
      params: { ...prm, d: du, row: g.row },
      defines,
      name: "embedding",
    });
  }
  const r = attach(out, {
    op: "embedding",
    inputs: [table],
    save: () => [host ? null : idsT],
    backward: (g, [sids]) => {
      if (n === 0 || v * d === 0) return [Tensor.zeros(gpu, [v, d])];
      return [scatterGrad(g, prm, host ? hostOrder(gpu, host) : gpuOrder(sids!, prm))];
    },
  });
  idsT.release();
  return r;
}

function checkHostIds(ids: ArrayLike<number>, v: number, shape: readonly number[]): Int32Array {
  checkShape(shape, "embedding: ids shape");
  if (numel(shape) !== ids.length) throw new TensorError(`embedding: ${ids.length} ids do not fill shape ${fmtShape(shape)}`);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (!Number.isInteger(id) || id < 0 || id >= v)
      throw new TensorError(`embedding: id ${id} at position ${i} is out of range for a table of ${v} rows (valid: 0..${v - 1})`);
  }
  return Int32Array.from(ids); // a copy: the caller may reuse its array before backward runs
}

/** [positions sorted by (id, position), then the ids in that order], sorted on the host. */
function hostOrder(gpu: Gpu, ids: Int32Array): Tensor {
  const n = ids.length;
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  perm.sort((a, b) => ids[a]! - ids[b]! || a - b);
  const order = new Int32Array(2 * n);
  order.set(perm);
  for (let k = 0; k < n; k++) order[n + k] = ids[perm[k]!]!;
  return Tensor.fromArray(gpu, order, [2 * n], { dtype: "i32" });
}

/** The same order, sorted on the GPU by rank counting. */
function gpuOrder(ids: Tensor, p: Params): Tensor {
  const order = Tensor.empty(ids.gpu, [2 * p.n], { dtype: "i32" });
  const g = grid1d(ids.gpu, p.n, WG);
  ids.gpu.dispatch(EMBEDDING, "rank", { ids: ids.buffer, order: order.buffer }, g.workgroups, {
    params: { ...p, gx: g.workgroups[0] },
    name: "embedding.sort",
  });
  return order;
}

/** dTable [V, D] from the output gradient and the sorted order (consumed); n, V and D are > 0. */
function scatterGrad(g: Tensor, p: Params, order: Tensor): Tensor {
  const gpu = g.gpu;
  const dtable = Tensor.empty(gpu, [p.v, p.d]);
  const bounds = Tensor.empty(gpu, [p.v + 1], { dtype: "u32" });
  const gb = grid1d(gpu, p.v + 1);
  gpu.dispatch(EMBEDDING, "bounds_search", { order_in: order.buffer, bounds: bounds.buffer }, gb.workgroups, {
    params: { ...p, row: gb.row },
    name: "embedding.bounds",
  });
  const { units: du, defines } = vec4Units(p.d);
  const gs = grid1d(gpu, p.v * du);
  gpu.dispatch(EMBEDDING, "scatter", { gout: g.buffer, order_in: order.buffer, bounds_in: bounds.buffer, out: dtable.buffer }, gs.workgroups, {
    params: { ...p, d: du, row: gs.row },
    defines,
    name: "embedding.backward",
  });
  bounds.release();
  order.release();
  return dtable;
}

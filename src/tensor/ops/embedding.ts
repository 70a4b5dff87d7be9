/**
 * Embedding lookup: `embedding(ids, table)` gathers rows of `table` [V, D] at int32 `ids` [...] into
 * [..., D] (torch.nn.functional.embedding; HF LlamaForCausalLM's embed_tokens). Launchers: src/kernels/embedding.ts.
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
import type { Gpu } from "../../gpu/index.ts";
import { embeddingBackward, embeddingGather, embeddingSort, type EmbeddingDims } from "../../kernels/embedding.ts";
import { attach } from "../autograd.ts";
import { checkShape, fmtShape, numel, TensorError } from "../shape.ts";
import { checkOperands, Tensor } from "../tensor.ts";

const U32_LIMIT = 2 ** 32;

export interface EmbeddingOptions {
  /** Shape of host ids (default [ids.length]); ignored for a Tensor. */
  shape?: readonly number[];
}

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
  const dims: EmbeddingDims = { n, v, d };

  const out = Tensor.empty(gpu, [...idsT.shape, d]);
  embeddingGather(gpu, { ids: idsT.buffer, table: table.buffer, out: out.buffer }, dims);
  const r = attach(out, {
    op: "embedding",
    inputs: [table],
    save: () => [host ? null : idsT],
    backward: (g, [sids]) => {
      if (n === 0 || v * d === 0) return [Tensor.zeros(gpu, [v, d])];
      const order = host ? hostOrder(gpu, host) : gpuOrder(sids!, dims);
      const dtable = Tensor.empty(gpu, [v, d]);
      embeddingBackward(gpu, { gout: g.buffer, order: order.buffer, dtable: dtable.buffer }, dims);
      order.release();
      return [dtable];
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
function gpuOrder(ids: Tensor, dims: EmbeddingDims): Tensor {
  const order = Tensor.empty(ids.gpu, [2 * dims.n], { dtype: "i32" });
  embeddingSort(ids.gpu, { ids: ids.buffer, order: order.buffer }, dims);
  return order;
}

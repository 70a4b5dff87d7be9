/**
 * The gradient exchange of data-parallel training (issue 15): after a rank's micro-batches are backwarded, every
 * gradient is replaced by its mean over the ranks (src/dist: MPI_Allreduce, sum, then divided by the rank count),
 * so each rank holds the gradient of the mean loss over the global batch and the clip and the optimizer step are
 * the same computation on every rank (the weights stay identical without being sent).
 *
 * Buckets. The gradients are packed on the GPU into buckets of at most `bucketBytes` (4 MiB by default, one
 * gradient larger than that is a bucket of its own), in reverse parameter order (the order backward finishes
 * them), each read back with one copy and one map, all-reduced as one call, and written back per gradient.
 * Two staging buffers alternate, so bucket i+1 is being copied and mapped while bucket i is all-reduced on the
 * host (MPI blocks the JavaScript thread, not the GPU). The exchange starts after the whole backward is
 * recorded: it does not overlap the backward's own kernels (that would need per-gradient hooks in autograd).
 *
 * A parameter whose gradient is null on some rank (not reached by its loss) but not on another is all-reduced
 * as zeros there and gets a gradient (one small all-reduce of presence flags first, so every rank sends the
 * same buffers in the same order).
 */
import type { Comm } from "../dist/index.ts";
import type { PooledBuffer } from "../gpu/index.ts";
import { Tensor } from "../tensor/index.ts";

export const DEFAULT_BUCKET_BYTES = 4 << 20;

export interface ExchangeStats {
  /** Gradient bytes all-reduced by this rank. */
  bytes: number;
  buckets: number;
  /** Wall seconds of the exchange (read-back, all-reduce, write-back), once every rank's backward is done. */
  seconds: number;
  /** Of which inside MPI. */
  mpiSeconds: number;
  /** Wall seconds waiting for this rank's backward to finish on the GPU and then for the other ranks'. */
  gpuWaitSeconds: number;
}

/** Replace every gradient of `params` by its mean over `comm`'s ranks (collective: every rank calls it). */
export async function allReduceGradients(params: readonly Tensor[], comm: Comm, bucketBytes = DEFAULT_BUCKET_BYTES): Promise<ExchangeStats> {
  const t0 = performance.now();
  const stats: ExchangeStats = { bytes: 0, buckets: 0, seconds: 0, mpiSeconds: 0, gpuWaitSeconds: 0 };
  if (comm.size === 1 || params.length === 0) return stats;
  const gpu = params[0]!.gpu;
  // Wait for this rank's backward, then for the other ranks', without spinning a core (the blocking calls below
  // then find every rank ready).
  await gpu.sync();
  await comm.barrierAsync();
  stats.gpuWaitSeconds = (performance.now() - t0) / 1e3;
  const present = Int32Array.from(params, (p) => (p.grad ? 1 : 0));
  comm.allReduce(present, "max");
  const list = params.filter((_, i) => present[i]).reverse();
  for (const p of list)
    if (p.grad && p.grad.dtype !== "f32") throw new Error(`data parallel: the gradient of ${p} is ${p.grad.dtype}; only f32 gradients are exchanged`);

  // Buckets: consecutive gradients up to bucketBytes (f32: 4 bytes each).
  const buckets: { params: Tensor[]; offsets: number[]; elems: number }[] = [];
  let cur: (typeof buckets)[number] | undefined;
  for (const p of list) {
    if (!cur || (cur.elems > 0 && (cur.elems + p.size) * 4 > bucketBytes)) buckets.push((cur = { params: [], offsets: [], elems: 0 }));
    cur.params.push(p);
    cur.offsets.push(cur.elems);
    cur.elems += p.size;
  }
  const maxElems = Math.max(...buckets.map((b) => b.elems));
  const staging: PooledBuffer[] = [];
  const stage = (i: number) => (staging[i % 2] ??= gpu.alloc(Math.max(4, maxElems * 4), "grad-bucket"));
  const readBucket = (i: number): Promise<ArrayBuffer> => {
    const b = buckets[i]!;
    const buf = stage(i);
    b.params.forEach((p, k) => {
      if (p.grad && p.size) gpu.copy(p.grad.buffer, buf, p.size * 4, 0, b.offsets[k]! * 4);
    });
    return gpu.read(buf, b.elems * 4);
  };
  let next: Promise<ArrayBuffer> | undefined;
  try {
    next = readBucket(0);
    for (let i = 0; i < buckets.length; i++) {
      const b = buckets[i]!;
      const host = new Float32Array((await next)!);
      next = i + 1 < buckets.length ? readBucket(i + 1) : undefined;
      b.params.forEach((p, k) => {
        if (!p.grad) host.fill(0, b.offsets[k]!, b.offsets[k]! + p.size);
      });
      const m0 = performance.now();
      comm.allReduce(host, "mean");
      stats.mpiSeconds += (performance.now() - m0) / 1e3;
      b.params.forEach((p, k) => {
        const part = host.subarray(b.offsets[k]!, b.offsets[k]! + p.size);
        if (p.grad) {
          if (p.size) gpu.write(p.grad.buffer, part);
        } else p.grad = Tensor.fromArray(gpu, part, p.shape);
      });
      stats.bytes += b.elems * 4;
      stats.buckets++;
    }
  } finally {
    await next?.catch(() => undefined); // a failure mid-way: the read in flight still uses its staging buffer
    for (const s of staging) gpu.release(s);
  }
  stats.seconds = (performance.now() - t0) / 1e3 - stats.gpuWaitSeconds;
  return stats;
}

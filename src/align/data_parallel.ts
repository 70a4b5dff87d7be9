/**
 * The gradient exchange of data-parallel training (issue 15): after a rank's micro-batches are backwarded, every
 * gradient is replaced by its mean over the ranks (src/dist: MPI_Allreduce, sum, then divided by the rank count),
 * so each rank holds the gradient of the mean loss over the global batch and the clip and the optimizer step are
 * the same computation on every rank (the weights stay identical without being sent). The trainer
 * (./trainer.ts) makes one `GradientExchange` per step; `allReduceGradients` is the same exchange for gradients
 * that are already there (no backward to overlap).
 *
 * Buckets. The parameters are cut into buckets of at most `bucketBytes` of f32 gradient (4 MiB by default; one
 * gradient larger than that is a bucket of its own) in reverse parameter order, the order the backward finishes
 * them. The cut depends only on the parameter list, so every rank has the same buckets and all-reduces them in
 * the same order (bucket 0 first), whatever its backward does. A bucket is gathered on the GPU into one buffer,
 * read back with one copy and one map, all-reduced as one call, and written back per gradient.
 *
 * Overlap (PyTorch DDP's): `backwardOptions` is given to the backward of this rank's LAST micro-batch of the step
 * (earlier ones only accumulate into `.grad`). Its `onGradReady` hook (src/tensor/autograd.ts) says when a
 * parameter's gradient is final; when every member of a bucket is, the bucket's gather and read-back copy are
 * recorded right there, the queue is submitted and the map started (`gpu.read` does the three), so the GPU copies
 * the bucket out between the backward's own kernels, which it goes on running. `finish()`, after backward()
 * returns (recording is synchronous), awaits each bucket's map in order and all-reduces it on the host while the
 * GPU is still computing the later parts of the backward, then records its write-back (ordered after everything
 * submitted). A bucket with a member the last backward did not reach is read back in `finish()`. Without the hook
 * (overlap off: ALIGNX_DDP_OVERLAP=0, or `{ overlap: false }`) every bucket is read back in `finish()`, bucket i+1
 * copied and mapped while bucket i is all-reduced: the same code, only the moment each read-back starts differs.
 * The values do not depend on it (the same sums of the same floats), so overlap changes no bit of the result.
 * Cost of overlap: the buckets read back during the backward wait in host memory (and in mappable GPU buffers
 * until mapped) for their turn, up to one copy of the gradients. The switch stays because the overlap does not pay
 * everywhere: on lavapipe the "GPU" is the same CPU cores the all-reduce needs, and bench/suites/dist_step.ts
 * (which times both, against steps without an exchange) measured no gain there (bench/NOTES.md).
 *
 * Waiting. MPI_Allreduce busy-polls until every rank has joined; on a CPU adapter (lavapipe) that poll takes a
 * core from the ranks still computing. So before bucket 0, and on a CPU adapter before every bucket read back
 * during the backward (another rank may still be computing its gradients), the ranks meet in `barrierAsync`
 * (sleeps, no spinning); after that the blocking all-reduce finds them ready.
 *
 * Presence. A parameter whose gradient is null on some rank (not reached by its loss) but not on another is
 * all-reduced as zeros there and gets a gradient; one no rank has stays null. Each bucket carries one flag per
 * member after its floats (1 where this rank has the gradient), all-reduced with them: a mean above 0 means some
 * rank had it (no separate all-reduce, and a bucket sent during the backward needs nothing decided later).
 */
import type { Comm } from "../dist/index.ts";
import type { Gpu } from "../gpu/index.ts";
import { Tensor, type BackwardOptions } from "../tensor/index.ts";

export const DEFAULT_BUCKET_BYTES = 4 << 20;

/** `ALIGNX_DDP_OVERLAP=0` turns the overlap off (every bucket read back after the backward). */
export const OVERLAP_ENV = "ALIGNX_DDP_OVERLAP";
export const overlapByDefault = (): boolean => process.env[OVERLAP_ENV] !== "0";

export interface ExchangeStats {
  /** Gradient bytes all-reduced by this rank (the presence flags not counted). */
  bytes: number;
  buckets: number;
  /** Of which read back during the backward (overlapped). */
  early: number;
  /** Wall seconds of `finish()` outside the waits below: the host's share (all-reduce, copies, write-back). */
  seconds: number;
  /** Of which inside MPI_Allreduce. */
  mpiSeconds: number;
  /** Wall seconds of `finish()` waiting for this rank's read-backs (its GPU still computing) and for the other ranks. */
  gpuWaitSeconds: number;
}

interface Bucket {
  params: Tensor[];
  /** Element offset of each member's gradient in the bucket. */
  offsets: number[];
  elems: number;
  /** Members whose gradient the last backward has finished. */
  ready: number;
  /** The read-back: the bucket's floats and room for its flags (a bucket is read once). */
  read?: Promise<ArrayBuffer>;
  /** Read back from inside the backward. */
  early: boolean;
}

/** One step's exchange of `params`' gradients over `comm` (collective: every rank makes one and finishes it). */
export class GradientExchange {
  private readonly buckets: Bucket[] = [];
  private readonly bucketOf = new Map<Tensor, Bucket>();
  private readonly readySeen = new Set<Tensor>();
  private readonly gpu: Gpu | undefined;
  private finished = false;
  readonly overlap: boolean;

  constructor(
    params: readonly Tensor[],
    private readonly comm: Comm,
    opts: { bucketBytes?: number; overlap?: boolean } = {},
  ) {
    const bucketBytes = opts.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    this.gpu = params[0]?.gpu;
    this.overlap = comm.size > 1 && (opts.overlap ?? overlapByDefault());
    if (comm.size === 1) return;
    let cur: Bucket | undefined;
    for (const p of [...params].reverse()) {
      if (!cur || (cur.elems > 0 && (cur.elems + p.size) * 4 > bucketBytes))
        this.buckets.push((cur = { params: [], offsets: [], elems: 0, ready: 0, early: false }));
      cur.params.push(p);
      cur.offsets.push(cur.elems);
      cur.elems += p.size;
      this.bucketOf.set(p, cur);
    }
  }

  /**
   * The options for the backward of this rank's last micro-batch of the step: with overlap, a hook that reads each
   * bucket back as soon as the backward has finished its gradients; else none. Give them to that backward only.
   */
  get backwardOptions(): BackwardOptions {
    return this.overlap ? { onGradReady: (leaf) => this.gradReady(leaf) } : {};
  }

  private gradReady(leaf: Tensor): void {
    const b = this.bucketOf.get(leaf);
    if (!b) return; // not one of the exchanged parameters
    if (this.finished || this.readySeen.has(leaf))
      throw new Error(
        `data parallel: the gradient of ${leaf} was finished twice in one step (or after the exchange); ` +
          "give GradientExchange.backwardOptions to the step's last backward only",
      );
    this.readySeen.add(leaf);
    if (++b.ready === b.params.length) {
      b.early = true;
      this.start(b);
    }
  }

  /** Record the bucket's gather and read-back (submitted now, map started). A bucket is read once. */
  private start(b: Bucket): void {
    if (b.read) return;
    const gpu = this.gpu!;
    for (const p of b.params)
      if (p.grad && p.grad.dtype !== "f32") throw new Error(`data parallel: the gradient of ${p} is ${p.grad.dtype}; only f32 gradients are exchanged`);
    const bytes = (b.elems + b.params.length) * 4; // the floats, then one flag per member (set on the host)
    const gather = gpu.alloc(bytes, "grad-bucket");
    try {
      b.params.forEach((p, k) => {
        if (p.grad && p.size) gpu.copy(p.grad.buffer, gather, p.size * 4, 0, b.offsets[k]! * 4);
      });
      b.read = gpu.read(gather, bytes); // records the copy to a mappable buffer and submits before returning
    } finally {
      gpu.release(gather); // later users of the pooled buffer are ordered after the copy
    }
    b.read.catch(() => undefined); // a step that fails before finish() leaves it unawaited
  }

  /** Replace every gradient by its mean over the ranks (after the step's last backward was recorded). */
  async finish(): Promise<ExchangeStats> {
    const t0 = performance.now();
    const stats: ExchangeStats = { bytes: 0, buckets: 0, early: 0, seconds: 0, mpiSeconds: 0, gpuWaitSeconds: 0 };
    if (this.finished) throw new Error("data parallel: GradientExchange.finish() called twice");
    this.finished = true;
    if (this.comm.size === 1 || this.buckets.length === 0) return stats;
    const gpu = this.gpu!;
    const politeEach = gpu.adapter.kind === "cpu";
    const n = this.buckets.length;
    try {
      for (let i = 0; i < n; i++) {
        const b = this.buckets[i]!;
        this.start(b);
        if (i + 1 < n) this.start(this.buckets[i + 1]!); // copied and mapped while this one is all-reduced
        const w0 = performance.now();
        const host = new Float32Array(await b.read!);
        if (i === 0 || (politeEach && b.early)) await this.comm.barrierAsync();
        stats.gpuWaitSeconds += (performance.now() - w0) / 1e3;
        b.params.forEach((p, k) => {
          const at = b.offsets[k]!;
          host[b.elems + k] = p.grad ? 1 : 0;
          if (!p.grad) host.fill(0, at, at + p.size);
        });
        const m0 = performance.now();
        this.comm.allReduce(host, "mean");
        stats.mpiSeconds += (performance.now() - m0) / 1e3;
        b.params.forEach((p, k) => {
          if (!(host[b.elems + k]! > 0)) return; // no rank has this gradient: it stays null
          const part = host.subarray(b.offsets[k]!, b.offsets[k]! + p.size);
          if (p.grad) {
            if (p.size) gpu.write(p.grad.buffer, part);
          } else p.grad = Tensor.fromArray(gpu, part, p.shape);
        });
        stats.bytes += b.elems * 4;
        stats.buckets++;
        if (b.early) stats.early++;
      }
    } finally {
      // A failure mid-way: the read-backs in flight still hold their mappable buffers until they settle.
      await Promise.all(this.buckets.map((b) => b.read?.catch(() => undefined)));
    }
    stats.seconds = (performance.now() - t0) / 1e3 - stats.gpuWaitSeconds;
    return stats;
  }
}

/** Replace every gradient of `params` by its mean over `comm`'s ranks (collective: every rank calls it). */
export function allReduceGradients(params: readonly Tensor[], comm: Comm, bucketBytes = DEFAULT_BUCKET_BYTES): Promise<ExchangeStats> {
  return new GradientExchange(params, comm, { bucketBytes, overlap: false }).finish();
}

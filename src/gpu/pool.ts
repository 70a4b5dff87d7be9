/**
 * A caching buffer pool with size classes.
 *
 * bun-webgpu never frees a GPUBuffer on garbage collection, and creating buffers is slow everywhere, so
 * every buffer the runtime uses comes from here and goes back here. Sizes are rounded up to a class
 * (powers of two up to 4 KiB, then quarter steps between powers of two: at most 25% slack), and a freed
 * buffer waits on its class's free list for the next request of that class and usage.
 *
 * Live bytes count class sizes of buffers handed out and not yet released; peak is their maximum.
 * A budget (`ALIGNX_GPU_MEMORY`, e.g. `8G`) turns over-allocation into an immediate, clear error; without
 * one, Dawn's own out-of-memory error is reported at the next flush with the same numbers.
 * Buffers are never destroyed while live: `trim()` destroys only cached ones.
 */
import { GpuError, GpuOutOfMemoryError } from "./errors.ts";

export const STORAGE_USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST
export const READBACK_USAGE = 0x01 | 0x08; // MAP_READ | COPY_DST
export const UNIFORM_USAGE = 0x40 | 0x08; // UNIFORM | COPY_DST

export interface PooledBuffer {
  readonly id: number;
  readonly buffer: GPUBuffer;
  /** Bytes the caller asked for (what kernels see through the binding size). */
  bytes: number;
  /** Class size: the real size of `buffer`. */
  readonly size: number;
  readonly usage: number;
  /** Batch in which a recorded command last used it (see Queue: uploads must not overtake those commands). */
  lastBatch: number;
  live: boolean;
}

export interface PoolStats {
  liveBuffers: number;
  liveBytes: number;
  peakBytes: number;
  cachedBuffers: number;
  cachedBytes: number;
  /** Buffers ever created; flat over a steady loop means the pool is doing its job. */
  created: number;
}

export function sizeClass(bytes: number): number {
  const n = Math.max(256, Math.ceil(bytes));
  if (n <= 4096) return 2 ** Math.ceil(Math.log2(n));
  const e = Math.floor(Math.log2(n - 1));
  const step = 2 ** (e - 2);
  return Math.ceil(n / step) * step;
}

/** Parse sizes like `512M`, `8G`, `1.5GiB`, `1000000`. */
export function parseBytes(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(s);
  if (!m) throw new GpuError(`cannot read '${s}' as a byte count (examples: 512M, 8G, 1000000)`);
  const mult = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as "" | "k"]!;
  return Math.floor(Number(m[1]) * mult);
}

/**
 * The budget `ALIGNX_GPU_MEMORY` sets (Infinity when unset or empty): a value that is not a byte count, or is
 * 0, fails naming the variable. Gpu.open reads it before the device opens.
 */
export function budgetFromEnv(env: Record<string, string | undefined> = process.env): number {
  const v = env.ALIGNX_GPU_MEMORY;
  if (v === undefined || v.trim() === "") return Infinity;
  let bytes: number;
  try {
    bytes = parseBytes(v);
  } catch {
    throw new GpuError(`ALIGNX_GPU_MEMORY=${JSON.stringify(v)} is not a byte count (examples: 512M, 8G, 1.5GiB, 1000000; unset it for no budget)`);
  }
  if (!(bytes > 0) || !Number.isFinite(bytes)) throw new GpuError(`ALIGNX_GPU_MEMORY=${JSON.stringify(v)} must be a positive byte count (unset it for no budget)`);
  return bytes;
}

export class BufferPool {
  private free = new Map<string, PooledBuffer[]>();
  private nextId = 1;
  private s: PoolStats = { liveBuffers: 0, liveBytes: 0, peakBytes: 0, cachedBuffers: 0, cachedBytes: 0, created: 0 };
  /** Requests that created a buffer since the queue last flushed: what an out-of-memory error there names. */
  readonly createdSinceFlush: { bytes: number; live: number }[] = [];

  constructor(
    private readonly device: GPUDevice,
    private readonly maxBufferSize: number,
    readonly budgetBytes = budgetFromEnv(),
  ) {}

  acquire(bytes: number, usage = STORAGE_USAGE, label?: string): PooledBuffer {
    if (!(bytes >= 0) || !Number.isFinite(bytes)) throw new GpuError(`buffer size must be a finite number >= 0, got ${bytes}`);
    const size = sizeClass(bytes);
    const key = `${usage}:${size}`;
    const list = this.free.get(key);
    let pb = list?.pop();
    if (pb) {
      this.s.cachedBuffers--;
      this.s.cachedBytes -= size;
    } else {
      if (size > this.maxBufferSize)
        throw new GpuOutOfMemoryError(bytes, this.s.liveBytes, `larger than the device's maxBufferSize ${this.maxBufferSize}`);
      if (this.s.liveBytes + this.s.cachedBytes + size > this.budgetBytes) this.trim();
      if (this.s.liveBytes + size > this.budgetBytes)
        throw new GpuOutOfMemoryError(bytes, this.s.liveBytes, `budget ALIGNX_GPU_MEMORY=${this.budgetBytes}`);
      pb = this.create(size, usage, bytes, label);
    }
    pb.bytes = bytes;
    pb.live = true;
    this.s.liveBuffers++;
    this.s.liveBytes += size;
    if (this.s.liveBytes > this.s.peakBytes) this.s.peakBytes = this.s.liveBytes;
    return pb;
  }

  release(pb: PooledBuffer): void {
    if (!pb.live) throw new GpuError(`buffer #${pb.id} released twice`);
    pb.live = false;
    this.s.liveBuffers--;
    this.s.liveBytes -= pb.size;
    const key = `${pb.usage}:${pb.size}`;
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    // Kept in decreasing id order, so `acquire` hands out the lowest-id free buffer: which buffer a request gets
    // then depends on which are free, not on the order they were released in, so a repeated training step
    // gets the same buffers every time and its bind groups come from the queue's cache.
    let i = list.length;
    while (i > 0 && list[i - 1]!.id < pb.id) i--;
    list.splice(i, 0, pb);
    this.s.cachedBuffers++;
    this.s.cachedBytes += pb.size;
  }

  /** Destroy every cached (free) buffer. Live buffers are untouched. */
  /**
   * Called before `trim` destroys cached buffers: the owner submits the work it has recorded but not submitted,
   * which may still read a buffer released since (WebGPU refuses a submit that uses a destroyed buffer; a buffer
   * destroyed after its work was submitted is fine). Set by `Gpu` to its queue's submit.
   */
  beforeDestroy: (() => void) | undefined;

  trim(): void {
    if (this.s.cachedBuffers > 0) this.beforeDestroy?.();
    for (const list of this.free.values()) for (const pb of list) pb.buffer.destroy();
    this.free.clear();
    this.s.cachedBuffers = 0;
    this.s.cachedBytes = 0;
  }

  stats(): PoolStats {
    return { ...this.s };
  }

  resetPeak(): void {
    this.s.peakBytes = this.s.liveBytes;
  }

  private create(size: number, usage: number, bytes: number, label?: string): PooledBuffer {
    // Dawn reports an allocation failure asynchronously, into the error scope the queue keeps open over
    // each batch; the queue then names this request.
    const buffer = this.device.createBuffer({ size, usage, label: label ?? `pool-${size}` });
    this.createdSinceFlush.push({ bytes, live: this.s.liveBytes });
    this.s.created++;
    return { id: this.nextId++, buffer, bytes, size, usage, lastBatch: -1, live: false };
  }
}

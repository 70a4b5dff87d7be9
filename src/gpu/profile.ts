/**
 * Optional per-kernel GPU time from timestamp queries, summed per op name.
 *
 * When active, the queue gives each dispatch its own compute pass with begin/end timestamp writes, resolves
 * the query set at the end of the batch and reads it back asynchronously. Each pass costs a little, so this
 * is for `alignx info`, the benchmarks and `--profile`, not for ordinary runs. Without the
 * `timestamp-query` feature, `active` stays false and callers fall back to host timing.
 */
import type { BufferPool } from "./pool.ts";
import { READBACK_USAGE } from "./pool.ts";

export interface KernelTime {
  name: string;
  calls: number;
  ms: number;
}

const QUERY_RESOLVE = 0x200;
const COPY_SRC = 0x04;

export class Profiler {
  /** Dispatches one batch can time (two queries each). */
  readonly capacity = 2048;
  private enabled = false;
  private querySet: GPUQuerySet | undefined;
  private totals = new Map<string, KernelTime>();

  constructor(
    private readonly device: GPUDevice,
    private readonly pool: BufferPool,
    readonly supported: boolean,
  ) {}

  get active(): boolean {
    return this.enabled;
  }

  /** Turn timing on or off. Returns whether it is on (false when timestamp queries are not offered). */
  enable(on = true): boolean {
    this.enabled = on && this.supported;
    if (this.enabled && !this.querySet) this.querySet = this.device.createQuerySet({ type: "timestamp", count: 2 * this.capacity });
    return this.enabled;
  }

  reset(): void {
    this.totals.clear();
  }

  /** Per-kernel totals, slowest first. */
  report(): KernelTime[] {
    return [...this.totals.values()].sort((a, b) => b.ms - a.ms);
  }

  /** Start timing a batch of up to `capacity` dispatches. */
  begin(commands: number) {
    const qs = this.querySet!;
    const names: string[] = [];
    const n = Math.min(commands, this.capacity);
    const bytes = 16 * n;
    let resolveBuf: ReturnType<BufferPool["acquire"]> | undefined;
    let staging: ReturnType<BufferPool["acquire"]> | undefined;
    return {
      writes: (i: number, name: string): GPUComputePassTimestampWrites => {
        names[i] = name;
        return { querySet: qs, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
      },
      resolve: (enc: GPUCommandEncoder) => {
        if (names.length === 0) return;
        const used = 2 * names.length;
        resolveBuf = this.pool.acquire(8 * used, QUERY_RESOLVE | COPY_SRC, "timestamps");
        staging = this.pool.acquire(8 * used, READBACK_USAGE, "timestamps-read");
        enc.resolveQuerySet(qs, 0, used, resolveBuf.buffer, 0);
        enc.copyBufferToBuffer(resolveBuf.buffer, 0, staging.buffer, 0, 8 * used);
      },
      collect: async () => {
        if (!staging || !resolveBuf) return;
        const used = 2 * names.length;
        try {
          await staging.buffer.mapAsync(1, 0, 8 * used);
          const t = new BigUint64Array(staging.buffer.getMappedRange(0, 8 * used).slice(0));
          staging.buffer.unmap();
          for (let i = 0; i < names.length; i++) {
            const name = names[i];
            if (name === undefined) continue; // a copy, not a timed dispatch
            const ns = Number(t[2 * i + 1]! - t[2 * i]!);
            const e = this.totals.get(name) ?? { name, calls: 0, ms: 0 };
            e.calls++;
            e.ms += ns > 0 && ns < 1e12 ? ns / 1e6 : 0;
            this.totals.set(name, e);
          }
        } finally {
          this.pool.release(staging);
          this.pool.release(resolveBuf);
        }
      },
      bytes,
    };
  }
}

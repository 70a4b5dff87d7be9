/**
 * The GPU runtime in one object: device, buffer pool, pipeline cache, queue, profiler, and the kernel policy
 * the ops read (src/gpu/policy.ts: kernel variants, launch limits, attention path).
 *
 *   const gpu = await Gpu.open({ cpu: true });      // { policy: { rows: { wg: 8 } } } patches the defaults; { tune: true } autotunes;
 *                                                   // { robustness: false }: Dawn's disable_robustness, for the runtime's own kernels (src/gpu/device.ts)
 *   const a = gpu.upload(new Float32Array([1, 2, 3]));
 *   gpu.dispatch(kernel, "main", { x: a }, 1, { params: { n: 3 } });
 *   const out = new Float32Array(await gpu.read(a));
 *   gpu.release(a);
 */
import { Autotuner, registeredTuners, type TuneResult } from "./autotune.ts";
import { chooseAdapter, listAdapters, openDevice, type AdapterEntry, type DeviceHandle, type DeviceOptions } from "./device.ts";
import { fmtBytes } from "./errors.ts";
import { PipelineCache, type KernelSource } from "./kernel.ts";
import { BufferPool, budgetFromEnv, STORAGE_USAGE, type PooledBuffer, type PoolStats } from "./pool.ts";
import { Queue } from "./queue.ts";
import { grid1d } from "./grid.ts";
import { COPY } from "./copy.ts";
import { DEFAULT_POLICY, mergePolicy, type KernelPolicy, type PartialPolicy } from "./policy.ts";

export { defineKernel, defineLibrary, type KernelSource, type WgslPart } from "./kernel.ts";
export type { PooledBuffer, PoolStats } from "./pool.ts";
export type { Binding, BufferRange } from "./queue.ts";
export type { AdapterEntry, DeviceOptions } from "./device.ts";
export { listAdapters, chooseAdapter };
export { describeSubgroups, hasSubgroupsOf } from "./device.ts";
export * from "./errors.ts";
export { elementwise, grid1d, rowGrid, vec4Units } from "./grid.ts";
export { Autotuner, cacheDir, hashText, median, registerTuner, type Candidate, type TunerFn, type TuneResult } from "./autotune.ts";
export { ROW_REDUCE, rowLaunch, type RowLaunch } from "./row_reduce.ts";
export { NAN } from "./nan.ts";
export { DEFAULT_POLICY, mergePolicy, type AttentionKernel, type KernelPolicy, type MatmulKernel, type PartialPolicy } from "./policy.ts";

export interface GpuOptions extends DeviceOptions {
  /** Settings that differ from DEFAULT_POLICY on this device (validated: a bad one throws before the device opens). */
  policy?: PartialPolicy;
  /** Run the registered tuners (`gpu.tune()`) before returning: read the adapter's autotune cache, time what is missing. */
  tune?: boolean;
}

export class Gpu {
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  readonly queue: Queue;
  private current: KernelPolicy;
  private lastTuned: Readonly<Record<string, TuneResult>> = {};

  private constructor(
    readonly handle: DeviceHandle,
    policy: KernelPolicy,
    budgetBytes: number,
  ) {
    const d = handle.device;
    this.pool = new BufferPool(d, d.limits.maxBufferSize, budgetBytes);
    this.pipelines = new PipelineCache(d);
    this.queue = new Queue(handle, this.pool, this.pipelines);
    this.pool.beforeDestroy = () => this.queue.submit();
    this.current = policy;
  }

  /** The kernel choices and launch limits the ops read on this device (frozen; src/gpu/policy.ts). */
  get policy(): KernelPolicy {
    return this.current;
  }

  /**
   * Run `fn` with `patch` applied to this device's policy, and restore the previous policy afterwards, also
   * when fn throws; an async fn keeps the patch until its promise settles. The patch is device-wide while fn
   * runs (not per async context): do not interleave two async overrides on one device.
   */
  withPolicy<T>(patch: PartialPolicy, fn: () => T): T {
    const prev = this.current;
    this.current = mergePolicy(prev, patch);
    let pending = false;
    try {
      const r = fn();
      if (r instanceof Promise) {
        pending = true;
        return r.finally(() => {
          this.current = prev;
        }) as T;
      }
      return r;
    } finally {
      if (!pending) this.current = prev;
    }
  }

  /**
   * Run every registered tuner on this device (src/gpu/autotune.ts `registerTuner`: the ops' matmul, then
   * attention), reading the adapter's cache and timing only what is missing. Returns the results by key.
   */
  async tune(): Promise<Record<string, TuneResult>> {
    const out: Record<string, TuneResult> = {};
    for (const t of registeredTuners()) Object.assign(out, await t.fn(this));
    this.lastTuned = out;
    return out;
  }

  /** The results of the last `tune()` (empty before one): what `alignx info` and the bench print. */
  get tuned(): Readonly<Record<string, TuneResult>> {
    return this.lastTuned;
  }

  private tunerInstance: Autotuner | undefined;

  /** Kernel-variant choices timed on this adapter and cached on disk (src/gpu/autotune.ts). */
  get tuner(): Autotuner {
    return (this.tunerInstance ??= new Autotuner(this));
  }

  static async open(opts: GpuOptions = {}): Promise<Gpu> {
    const policy = mergePolicy(DEFAULT_POLICY, opts.policy ?? {});
    const budget = budgetFromEnv(); // a bad ALIGNX_GPU_MEMORY fails here, naming the variable, before a device opens
    const gpu = new Gpu(await openDevice(opts), policy, budget);
    if (opts.tune)
      try {
        await gpu.tune();
      } catch (e) {
        gpu.destroy();
        throw e;
      }
    return gpu;
  }

  get device(): GPUDevice {
    return this.handle.device;
  }
  get adapter(): AdapterEntry {
    return this.handle.entry;
  }
  get features(): Set<string> {
    return this.handle.features;
  }
  get limits(): GPUSupportedLimits {
    return this.handle.device.limits;
  }

  /** A pooled storage buffer of at least `bytes` bytes (contents undefined). */
  alloc(bytes: number, label?: string): PooledBuffer {
    return this.pool.acquire(bytes, STORAGE_USAGE, label);
  }

  release(b: PooledBuffer): void {
    this.pool.release(b);
  }

  /** A pooled storage buffer holding a copy of `data`. */
  upload(data: ArrayBufferView, label?: string): PooledBuffer {
    const b = this.alloc(data.byteLength, label);
    this.queue.write(b, data);
    return b;
  }

  /**
   * Record a fill of the whole buffer (its class size, always a multiple of 16 bytes) with one f32 value,
   * in order with other commands: how tests poison outputs with NaN without forcing a submit.
   */
  fill(dst: PooledBuffer, value: number): void {
    const n4 = dst.size / 16;
    const g = grid1d(this, n4);
    this.queue.dispatch(COPY, "fill_vec4", { dst: { buffer: dst, size: dst.size } }, g.workgroups, { params: { ...COPY.zeroParams, n4, row: g.row, value }, name: "fill" });
  }

  /** Like `fill`, with an exact 32-bit word (integers, two packed halves, a NaN with its payload). */
  fillBits(dst: PooledBuffer, word: number): void {
    const n4 = dst.size / 16;
    const g = grid1d(this, n4);
    this.queue.dispatch(COPY, "fill_bits", { dst_bits: { buffer: dst, size: dst.size } }, g.workgroups, {
      params: { ...COPY.zeroParams, n4, row: g.row, bits: word >>> 0 },
      name: "fill",
    });
  }

  write(dst: PooledBuffer, data: ArrayBufferView, offset = 0): void {
    this.queue.write(dst, data, offset);
  }

  dispatch(...args: Parameters<Queue["dispatch"]>): void {
    this.queue.dispatch(...args);
  }

  copy(src: PooledBuffer, dst: PooledBuffer, bytes: number, srcOffset = 0, dstOffset = 0): void {
    this.queue.copy(src, dst, bytes, srcOffset, dstOffset);
  }

  read(src: PooledBuffer, bytes?: number, offset?: number): Promise<ArrayBuffer> {
    return this.queue.read(src, bytes, offset);
  }

  sync(): Promise<void> {
    return this.queue.sync();
  }

  /** Compile a kernel entry point now and wait for Dawn's verdict (throws WgslError with file:line). */
  async compile(source: KernelSource, entry: string, bindings: readonly string[] = [...source.storage.keys()], defines = {}, constants = {}): Promise<void> {
    await this.pipelines.get(source, entry, bindings, defines, constants).ready;
  }

  /** Per-kernel GPU time while profiling is on. Returns whether timestamp queries made it possible. */
  profile(on = true): boolean {
    return this.queue.profiler.enable(on);
  }

  memory(): PoolStats {
    return this.pool.stats();
  }

  describeMemory(): string {
    const s = this.pool.stats();
    return `live ${fmtBytes(s.liveBytes)} in ${s.liveBuffers} buffers, peak ${fmtBytes(s.peakBytes)}, cached ${fmtBytes(s.cachedBytes)}`;
  }

  destroy(): void {
    this.pool.trim();
    this.handle.device.destroy();
  }
}

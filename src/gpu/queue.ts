/**
 * Execution: ops record commands here; nothing waits on the GPU until a value is read or `sync()` is called.
 *
 *  - Commands (dispatches and buffer copies) collect in a batch and are encoded into one command encoder and
 *    submitted together: at a readback, at `sync()`, or when the batch reaches `maxBatch` commands or the
 *    uniform ring is full (then submitted without waiting).
 *  - Scalar kernel parameters go into a CPU mirror of a 1 MiB uniform ring, 256-byte slots, bound with a
 *    dynamic offset; the used part is written with one `writeBuffer` per batch, just before its submit.
 *  - Storage bind groups are cached per (pipeline, buffers, ranges), so a training loop that reuses pooled
 *    buffers re-creates none.
 *  - Uploads (`write`) use `queue.writeBuffer`, which runs before any command not yet submitted; so when the
 *    target buffer is used by the open batch, the batch is submitted first. Nothing else is ever reordered.
 *  - Errors: a validation and an out-of-memory error scope stay open over the recorded work; `sync()` pops
 *    them. A validation error is then attributed to its op by re-encoding the recorded commands one at a time
 *    (the error path only). WGSL compile errors from the pipeline cache win, since they name file and line.
 *  - Device loss: every wait races the device's `lost` promise, so a lost device gives an error, never a hang.
 */
import type { DeviceHandle } from "./device.ts";
import { DeviceLostError, fmtBytes, GpuError, GpuOutOfMemoryError, GpuValidationError, WgslError } from "./errors.ts";
import type { CompiledKernel, KernelSource, PipelineCache } from "./kernel.ts";
import { READBACK_USAGE, UNIFORM_USAGE, type BufferPool, type PooledBuffer } from "./pool.ts";
import { Profiler } from "./profile.ts";

export interface BufferRange {
  buffer: PooledBuffer;
  /** Byte offset (a multiple of the device's minStorageBufferOffsetAlignment). */
  offset?: number;
  /** Byte size; default: the rest of the buffer's requested bytes. */
  size?: number;
}
export type Binding = PooledBuffer | BufferRange;

type Dispatch = {
  kind: "dispatch";
  name: string;
  kernel: CompiledKernel;
  bindGroup: GPUBindGroup;
  paramOffset: number;
  wg: [number, number, number];
};
type Copy = { kind: "copy"; name: string; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number };
type Command = Dispatch | Copy;

export interface QueueStats {
  submits: number;
  dispatches: number;
  copies: number;
  uploads: number;
  readbacks: number;
  bindGroupsCreated: number;
  bindGroupHits: number;
}

const SLOT = 256;
const RING_BYTES = 1 << 20;
const MAX_REPLAY = 20000;

export class Queue {
  /** Commands per batch before it is submitted without waiting. */
  maxBatch = 4096;
  private cmds: Command[] = [];
  /** Commands recorded since the error scopes were last popped: what an error is attributed against. */
  private sinceScope: Command[] = [];
  private batch = 0;
  private checks: Promise<void>[] = [];
  private readies = new Set<Promise<void>>();
  private ring: GPUBuffer;
  private ringMirror = new ArrayBuffer(RING_BYTES);
  private ringU32 = new Uint32Array(this.ringMirror);
  private ringF32 = new Float32Array(this.ringMirror);
  private ringI32 = new Int32Array(this.ringMirror);
  private ringUsed = 0;
  private paramsBindGroup: GPUBindGroup;
  private bindGroups = new Map<string, GPUBindGroup>();
  private scopesOpen = false;
  readonly profiler: Profiler;
  readonly s: QueueStats = { submits: 0, dispatches: 0, copies: 0, uploads: 0, readbacks: 0, bindGroupsCreated: 0, bindGroupHits: 0 };

  constructor(
    private readonly h: DeviceHandle,
    private readonly pool: BufferPool,
    private readonly pipelines: PipelineCache,
  ) {
    const d = h.device;
    this.ring = d.createBuffer({ label: "uniform-ring", size: RING_BYTES, usage: UNIFORM_USAGE });
    this.paramsBindGroup = d.createBindGroup({
      label: "params",
      layout: pipelines.paramsLayout,
      entries: [{ binding: 0, resource: { buffer: this.ring, offset: 0, size: SLOT } }],
    });
    this.profiler = new Profiler(d, pool, h.features.has("timestamp-query"));
    this.openScopes();
  }

  private get device(): GPUDevice {
    if (this.h.lost) throw this.h.lost;
    return this.h.device;
  }

  /** Record one dispatch of `entry` in `source`, binding storage buffers by their WGSL names. */
  dispatch(
    source: KernelSource,
    entry: string,
    bindings: Record<string, Binding>,
    workgroups: number | [number, number?, number?],
    opts: { params?: Record<string, number>; defines?: Record<string, string | number>; constants?: Record<string, number>; name?: string } = {},
  ): void {
    const name = opts.name ?? `${source.file.replace(/^.*\//, "").replace(/\.wgsl$/, "")}.${entry}`;
    const names = Object.keys(bindings).sort((a, b) => (source.storage.get(a)?.binding ?? 0) - (source.storage.get(b)?.binding ?? 0));
    for (const n of names)
      if (!source.storage.has(n))
        throw new GpuError(`${name}: ${source.file} has no storage binding '${n}' (it has: ${[...source.storage.keys()].join(", ")})`);
    const wg = (Array.isArray(workgroups) ? [workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1] : [workgroups, 1, 1]) as [number, number, number];
    const maxWg = this.h.device.limits.maxComputeWorkgroupsPerDimension;
    for (const w of wg)
      if (!Number.isInteger(w) || w < 0 || w > maxWg) throw new GpuError(`${name}: workgroup count ${wg.join("x")} outside 0..${maxWg} per dimension`);
    const kernel = this.pipelines.get(source, entry, names, opts.defines, opts.constants);
    this.readies.add(kernel.ready);
    // Parameters first: a full ring submits the open batch, which must not hold this command yet.
    const paramOffset = source.params.length ? this.writeParams(source, name, opts.params ?? {}) : -1;
    const bindGroup = this.bindGroup(kernel, names, bindings, name);
    for (const n of names) bufferOf(bindings[n]!).lastBatch = this.batch;
    this.push({ kind: "dispatch", name, kernel, bindGroup, paramOffset, wg });
    this.s.dispatches++;
  }

  /** Record a buffer-to-buffer copy (sizes and offsets in bytes, multiples of 4). */
  copy(src: PooledBuffer, dst: PooledBuffer, size: number, srcOffset = 0, dstOffset = 0, name = "copy"): void {
    if (size % 4 || srcOffset % 4 || dstOffset % 4) throw new GpuError(`${name}: copy size and offsets must be multiples of 4`);
    if (srcOffset + size > src.size || dstOffset + size > dst.size)
      throw new GpuError(`${name}: copy of ${size} bytes out of range (source ${src.size}, destination ${dst.size})`);
    src.lastBatch = dst.lastBatch = this.batch;
    this.push({ kind: "copy", name, src: src.buffer, srcOffset, dst: dst.buffer, dstOffset, size });
    this.s.copies++;
  }

  /** Upload host data into a buffer; ordered after every command recorded before it. */
  write(dst: PooledBuffer, data: ArrayBufferView, dstOffset = 0): void {
    const bytes = data.byteLength;
    if (dstOffset + bytes > dst.size) throw new GpuError(`write of ${bytes} bytes at ${dstOffset} exceeds buffer of ${dst.size} bytes`);
    if (dst.lastBatch === this.batch && this.cmds.length) this.submit();
    let view = new Uint8Array(data.buffer, data.byteOffset, bytes);
    if (bytes % 4) {
      const padded = new Uint8Array(bytes + 4 - (bytes % 4));
      padded.set(view);
      view = padded;
    }
    this.device.queue.writeBuffer(dst.buffer, dstOffset, view.buffer, view.byteOffset, view.byteLength);
    this.s.uploads++;
  }

  /** Read `bytes` (default: the buffer's requested bytes) back to the host, after all recorded work. */
  async read(src: PooledBuffer, bytes = src.bytes, offset = 0): Promise<ArrayBuffer> {
    const n = Math.ceil(bytes / 4) * 4;
    if (n === 0) return new ArrayBuffer(0);
    const staging = this.pool.acquire(n, READBACK_USAGE, "readback");
    try {
      this.copy(src, staging, n, offset, 0, "readback");
      this.submit();
      await this.race(staging.buffer.mapAsync(1 /* READ */, 0, n));
      const out = staging.buffer.getMappedRange(0, n).slice(0, bytes);
      staging.buffer.unmap();
      this.s.readbacks++;
      await this.settleChecks();
      return out;
    } finally {
      this.pool.release(staging);
    }
  }

  /** Submit everything recorded, wait until the GPU has finished it, and raise any error it produced. */
  async sync(): Promise<void> {
    if (this.cmds.length) this.submit();
    await this.race(this.device.queue.onSubmittedWorkDone());
    await this.settleChecks();
  }

  /** Submit the open batch without waiting (what `sync` and `read` do first). */
  submit(): void {
    const d = this.device;
    if (this.cmds.length === 0 && this.ringUsed === 0) return;
    if (this.ringUsed) d.queue.writeBuffer(this.ring, 0, this.ringMirror, 0, this.ringUsed);
    const enc = d.createCommandEncoder({ label: `batch-${this.batch}` });
    const prof = this.profiler.active ? this.profiler.begin(this.cmds.length) : undefined;
    let pass: GPUComputePassEncoder | undefined;
    for (let i = 0; i < this.cmds.length; i++) {
      const c = this.cmds[i]!;
      if (c.kind === "copy") {
        pass?.end();
        pass = undefined;
        enc.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.size);
        continue;
      }
      if (prof) pass = enc.beginComputePass({ label: c.name, timestampWrites: prof.writes(i, c.name) });
      else pass ??= enc.beginComputePass({ label: `batch-${this.batch}` });
      this.encodeDispatch(pass, c);
      if (prof) {
        pass.end();
        pass = undefined;
      }
    }
    pass?.end();
    prof?.resolve(enc);
    d.queue.submit([enc.finish()]);
    if (prof) this.checks.push(prof.collect());
    this.s.submits++;
    this.batch++;
    this.cmds = [];
    this.ringUsed = 0;
    // Pop the error scopes unless too many answers are already outstanding (bun-webgpu allows 1024 pending
    // async operations); then the scopes simply stay open over the next batch too.
    if (this.checks.length < 64) this.closeScopes();
  }

  stats(): QueueStats & { pendingCommands: number } {
    return { ...this.s, pendingCommands: this.cmds.length };
  }

  // ---- internals -------------------------------------------------------------------------------------

  private push(c: Command): void {
    if (this.h.lost) throw this.h.lost;
    this.cmds.push(c);
    if (this.sinceScope.length < MAX_REPLAY) this.sinceScope.push(c);
    if (this.cmds.length >= (this.profiler.active ? Math.min(this.maxBatch, this.profiler.capacity) : this.maxBatch)) this.submit();
  }

  private encodeDispatch(pass: GPUComputePassEncoder, c: Dispatch): void {
    pass.setPipeline(c.kernel.pipeline);
    pass.setBindGroup(0, c.bindGroup);
    if (c.paramOffset >= 0) pass.setBindGroup(1, this.paramsBindGroup, [c.paramOffset]);
    pass.dispatchWorkgroups(c.wg[0], c.wg[1], c.wg[2]);
  }

  private writeParams(source: KernelSource, name: string, params: Record<string, number>): number {
    if (this.ringUsed + SLOT > RING_BYTES) this.submit();
    const off = this.ringUsed;
    const base = off / 4;
    const fields = source.params;
    if (fields.length * 4 > SLOT) throw new GpuError(`${name}: params struct larger than ${SLOT} bytes`);
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i]!;
      const v = params[f.name];
      if (v === undefined || Number.isNaN(v) && f.type !== "f32")
        throw new GpuError(`${name}: missing params.${f.name} (${source.file} needs: ${fields.map((x) => x.name).join(", ")})`);
      if (f.type === "f32") this.ringF32[base + i] = v;
      else {
        if (!Number.isInteger(v)) throw new GpuError(`${name}: params.${f.name} must be an integer, got ${v}`);
        if (f.type === "u32") {
          if (v < 0 || v > 0xffffffff) throw new GpuError(`${name}: params.${f.name}=${v} does not fit u32`);
          this.ringU32[base + i] = v;
        } else this.ringI32[base + i] = v;
      }
    }
    for (const k of Object.keys(params))
      if (!fields.some((f) => f.name === k)) throw new GpuError(`${name}: ${source.file} has no param '${k}' (it has: ${fields.map((f) => f.name).join(", ")})`);
    this.ringUsed += SLOT;
    return off;
  }

  private bindGroup(kernel: CompiledKernel, names: readonly string[], bindings: Record<string, Binding>, name: string): GPUBindGroup {
    let key = `${kernel.id}`;
    const entries: GPUBindGroupEntry[] = [];
    for (const n of names) {
      const b = bindings[n]!;
      const range: BufferRange = "usage" in b ? { buffer: b } : b;
      const pb = range.buffer;
      if (!pb.live) throw new GpuError(`${name}: buffer '${n}' (#${pb.id}) was already released`);
      const offset = range.offset ?? 0;
      // A whole-buffer binding unless a range is asked for: the key then depends on the buffer alone, so the
      // bind groups of a repeated step (the pool hands out the same buffers) come from the cache. (Where the
      // size class's slack would pass the device's binding limit, the requested bytes are bound instead.)
      const maxBinding = this.h.device.limits.maxStorageBufferBindingSize;
      const whole = pb.size - offset <= maxBinding ? pb.size - offset : pb.bytes - offset;
      const size = Math.max(4, Math.ceil((range.size ?? whole) / 4) * 4);
      if (size > maxBinding)
        throw new GpuError(
          `${name}: binding '${n}' needs ${fmtBytes(size)} in one buffer binding; this device allows ${fmtBytes(maxBinding)} ` +
            `(maxStorageBufferBindingSize of ${this.h.entry.description}): use a smaller tensor or a device with a larger limit`,
        );
      if (offset + size > pb.size) throw new GpuError(`${name}: binding '${n}' range ${offset}+${size} exceeds its buffer (${pb.size} bytes)`);
      key += `|${pb.id}:${offset}:${size}`;
      entries.push({ binding: kernel.source.storage.get(n)!.binding, resource: { buffer: pb.buffer, offset, size } });
    }
    let bg = this.bindGroups.get(key);
    if (bg) {
      this.s.bindGroupHits++;
      return bg;
    }
    if (this.bindGroups.size >= 8192) this.bindGroups.clear();
    bg = this.device.createBindGroup({ label: name, layout: kernel.storageLayout, entries });
    this.bindGroups.set(key, bg);
    this.s.bindGroupsCreated++;
    return bg;
  }

  private openScopes(): void {
    this.h.device.pushErrorScope("out-of-memory");
    this.h.device.pushErrorScope("validation");
    this.scopesOpen = true;
  }

  private closeScopes(): void {
    if (!this.scopesOpen) return;
    const d = this.h.device;
    const validation = d.popErrorScope();
    const oom = d.popErrorScope();
    const recorded = this.sinceScope;
    const created = this.pool.createdSinceFlush.splice(0);
    const readies = [...this.readies];
    this.sinceScope = [];
    this.readies.clear();
    this.openScopes();
    const check = (async () => {
      // A WGSL error explains every validation error that follows from it: report it first.
      for (const r of readies) await r;
      const [v, o] = await Promise.all([validation, oom]);
      if (o) {
        const big = created.reduce((a, b) => (b.bytes > a.bytes ? b : a), { bytes: 0, live: this.pool.stats().liveBytes });
        throw new GpuOutOfMemoryError(big.bytes, big.live, o.message.split("\n")[0]);
      }
      if (v) throw await this.attribute(v.message, recorded);
    })();
    check.catch(() => {});
    this.checks.push(check);
  }

  /** Find the first recorded command that fails validation on its own, and name it. */
  private async attribute(message: string, recorded: Command[]): Promise<GpuError> {
    const d = this.h.device;
    for (const c of recorded) {
      d.pushErrorScope("validation");
      const enc = d.createCommandEncoder({ label: c.name });
      if (c.kind === "copy") enc.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.size);
      else {
        const pass = enc.beginComputePass({ label: c.name });
        this.encodeDispatch(pass, c);
        pass.end();
      }
      enc.finish();
      const e = await d.popErrorScope();
      if (e) return new GpuValidationError(`op '${c.name}' failed validation: ${e.message.trim()}`);
    }
    return new GpuValidationError(`GPU validation error: ${message.trim()}`);
  }

  private async settleChecks(): Promise<void> {
    // Work recorded under scopes that submit() left open (too many answers outstanding then): check it now.
    if (this.sinceScope.length || this.pool.createdSinceFlush.length) this.closeScopes();
    const checks = this.checks.splice(0);
    let first: unknown;
    for (const c of checks) {
      try {
        await this.race(c);
      } catch (e) {
        if (first === undefined || (e instanceof WgslError && !(first instanceof WgslError))) first = e;
      }
    }
    if (first !== undefined) throw first;
  }

  private async race<T>(p: Promise<T>): Promise<T> {
    if (this.h.lost) throw this.h.lost;
    const r = await Promise.race([p, this.h.lostPromise]);
    if (r instanceof DeviceLostError) throw r;
    return r as T;
  }
}

function bufferOf(b: Binding): PooledBuffer {
  return "usage" in b ? b : b.buffer;
}

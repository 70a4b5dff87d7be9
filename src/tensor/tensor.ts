/**
 * Tensor: a shape, a dtype and a reference-counted storage (one pooled GPU buffer), always contiguous
 * row-major. Views (`reshape`, `detach`) are new Tensor objects sharing the storage; the buffer goes back to
 * the pool exactly once, when the last view is released.
 *
 * Lifetime is explicit (bun-webgpu never frees GPU memory on garbage collection). Three ways to end it:
 *   - `t.release()` (idempotent per view; a released view throws a clear error when used);
 *   - `using t = ...` (Symbol.dispose calls release);
 *   - `scope(() => { ... return kept })`: every tensor created inside and not returned is released at the
 *     end. Scopes are synchronous, like recording GPU work is: read values (`await t.item()`) after them.
 * A tensor owns its `.grad` and releases it with itself. An autograd node keeps its own views of the
 * tensors its backward needs, so releasing an op's inputs or outputs early is always safe.
 *
 * Debugging: `debug.poison = true` fills every uninitialized allocation with NaN before an op writes it,
 * so a kernel that skips an element cannot pass a test.
 *
 * Launchers: src/kernels/tensor.ts (fills, copies). This module imports no autograd code at run time
 * (autograd.ts imports it): the methods that need the engine, `reshape` (a view with a gradient rule) and
 * `backward`, are installed on Tensor.prototype by autograd.ts when it loads, and declared there by module
 * augmentation (as src/tensor/ops/index.ts adds the op methods). Every entry point (src/tensor/index.ts,
 * src/index.ts, and each op module, which imports `attach`) loads it; until then the two methods throw an
 * error that says so.
 */
import type { Gpu, PooledBuffer } from "../gpu/index.ts";
import { copyBytes, fillWord } from "../kernels/tensor.ts";
import type { Node } from "./autograd.ts";
import { checkShape, fmtShape, numel, TensorError, type Shape } from "./shape.ts";

export { TensorError } from "./shape.ts";

/**
 * Element types. Storage, upload and readback handle all four. Ops take f32; f16 so far in cast, matmul/linear
 * (f32 accumulation) and gradient accumulation (mixed precision: f16 compute, f32 master weights, GradScaler).
 */
export type DType = "f32" | "f16" | "i32" | "u32";
export const DTYPE_BYTES: Readonly<Record<DType, number>> = { f32: 4, f16: 2, i32: 4, u32: 4 };

/** Poison words: an f32 NaN, and two f16 NaNs for f16 tensors (an f32 NaN's low half is +0 as f16). */
const NAN_WORD = { f32: 0x7fc00000, f16: 0x7e007e00 } as const;

export const debug = {
  /** Fill every uninitialized allocation with NaN (tests turn this on; costs one upload per allocation). */
  poison: false,
};


/** One pooled buffer shared by every view of it. */
export class Storage {
  refs = 1;
  constructor(
    readonly gpu: Gpu,
    readonly buffer: PooledBuffer,
  ) {}
  retain(): this {
    if (this.refs <= 0) throw new TensorError(`storage #${this.buffer.id} was already returned to the pool`);
    this.refs++;
    return this;
  }
  release(): void {
    if (this.refs <= 0) throw new TensorError(`storage #${this.buffer.id} released more often than retained`);
    if (--this.refs === 0) this.gpu.release(this.buffer);
  }
}

// ---- scopes -------------------------------------------------------------------------------------------

const scopes: Set<Tensor>[] = [];
let tracking = true;

/**
 * Run `fn`; release every tensor created during it except those in its result (a tensor, or arrays and
 * plain objects holding tensors) and those passed to `keep()`. Kept tensors move to the enclosing scope.
 */
export function scope<T>(fn: () => T): T {
  const mine = new Set<Tensor>();
  scopes.push(mine);
  let result: T;
  try {
    result = fn();
    if (result && typeof (result as { then?: unknown }).then === "function")
      throw new TensorError("scope(fn): fn returned a Promise; scopes are synchronous (record GPU work inside, await values after)");
  } catch (e) {
    scopes.pop();
    for (const t of mine) t.release();
    throw e;
  }
  scopes.pop();
  const kept = new Set<Tensor>();
  collect(result, kept, 0);
  const parent = scopes[scopes.length - 1];
  for (const t of mine) {
    if (kept.has(t)) parent?.add(t);
    else t.release();
  }
  return result;
}

function collect(v: unknown, out: Set<Tensor>, depth: number): void {
  if (depth > 4 || v === null || typeof v !== "object") return;
  if (v instanceof Tensor) out.add(v);
  else if (Array.isArray(v)) for (const x of v) collect(x, out, depth + 1);
  else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collect(x, out, depth + 1);
}

/** Exempt tensors from every enclosing scope (e.g. parameters created inside one). Returns the first. */
export function keep<T extends Tensor>(t: T, ...more: Tensor[]): T {
  for (const x of [t, ...more]) for (const s of scopes) s.delete(x);
  return t;
}

/** Run `fn` with scope tracking off: tensors it creates belong to the caller (autograd internals). */
export function untracked<T>(fn: () => T): T {
  return withTracking(false, fn);
}

/**
 * Run `fn` with scope tracking on, even inside `untracked` (autograd internals): for code that runs a user
 * function from a backward rule and must release what it creates there with `scope` (activation checkpointing).
 */
export function tracked<T>(fn: () => T): T {
  return withTracking(true, fn);
}

function withTracking<T>(on: boolean, fn: () => T): T {
  const prev = tracking;
  tracking = on;
  try {
    return fn();
  } finally {
    tracking = prev;
  }
}

/** The 32-bit word whose every element is `value` in `dtype` (an f16 word holds two halves). */
function wordOf(value: number, dtype: DType): number {
  switch (dtype) {
    case "f32":
      return new Uint32Array(new Float32Array([value]).buffer)[0]!;
    case "f16": {
      const h = new Uint16Array(new Float16Array([value]).buffer)[0]!;
      return (h | (h << 16)) >>> 0;
    }
    case "i32":
    case "u32": {
      const [lo, hi] = dtype === "i32" ? [-(2 ** 31), 2 ** 31 - 1] : [0, 2 ** 32 - 1];
      if (!Number.isInteger(value) || value < lo || value > hi) throw new TensorError(`full: ${value} is not a ${dtype} value`);
      return value >>> 0;
    }
  }
}

// ---- Tensor -------------------------------------------------------------------------------------------

export interface TensorOptions {
  dtype?: DType;
  requiresGrad?: boolean;
}

type HostArray = Float32Array | Float16Array | Int32Array | Uint32Array;

export class Tensor {
  readonly shape: readonly number[];
  readonly size: number;
  /** True for leaves the user marked, and for every output computed from such a tensor with grad on. */
  requiresGrad = false;
  /** Accumulated gradient (leaves only), owned by this tensor. */
  grad: Tensor | null = null;
  /** The autograd node that produced this tensor; null for leaves. */
  gradFn: Node | null = null;
  /** Which of `gradFn`'s outputs this tensor is (0 unless the op has several: `attachOutputs`). */
  gradOut = 0;
  private _released = false;

  /** Prefer the factories (`Tensor.fromArray`, `zeros`, ...). Takes over one reference of `storage`. */
  constructor(
    readonly storage: Storage,
    shape: Shape,
    readonly dtype: DType = "f32",
  ) {
    this.shape = Object.freeze(checkShape(shape));
    this.size = numel(this.shape);
    if (this.size * DTYPE_BYTES[dtype] > storage.buffer.bytes)
      throw new TensorError(`tensor ${fmtShape(shape)} ${dtype} does not fit its storage of ${storage.buffer.bytes} bytes`);
    if (tracking) scopes[scopes.length - 1]?.add(this);
  }

  // ---- factories ----

  /** Uninitialized contents (NaN when `debug.poison` is on). */
  static empty(gpu: Gpu, shape: Shape, opts: TensorOptions = {}): Tensor {
    const dtype = opts.dtype ?? "f32";
    const bytes = numel(checkShape(shape)) * DTYPE_BYTES[dtype];
    const buf = gpu.alloc(bytes, "tensor");
    if (debug.poison) fillWord(gpu, { dst: buf }, { word: dtype === "f16" ? NAN_WORD.f16 : NAN_WORD.f32 });
    return new Tensor(new Storage(gpu, buf), shape, dtype).setRequiresGrad(opts.requiresGrad ?? false);
  }

  static fromArray(gpu: Gpu, data: ArrayLike<number>, shape: Shape = [data.length], opts: TensorOptions = {}): Tensor {
    const dtype = opts.dtype ?? "f32";
    const n = numel(checkShape(shape));
    if (data.length !== n) throw new TensorError(`fromArray: ${data.length} values do not fill shape ${fmtShape(shape)} (${n} elements)`);
    const host = toHost(data, dtype);
    const buf = gpu.alloc(host.byteLength, "tensor");
    if (n) gpu.write(buf, host);
    return new Tensor(new Storage(gpu, buf), shape, dtype).setRequiresGrad(opts.requiresGrad ?? false);
  }

  static full(gpu: Gpu, shape: Shape, value: number, opts: TensorOptions = {}): Tensor {
    const dtype = opts.dtype ?? "f32";
    const word = wordOf(value, dtype);
    const t = Tensor.empty(gpu, shape, { dtype });
    // One in-order fill of the whole pooled buffer with the 32-bit word that holds `value` in this dtype.
    if (t.size) fillWord(gpu, { dst: t.buffer }, { word });
    return t.setRequiresGrad(opts.requiresGrad ?? false);
  }

  static zeros(gpu: Gpu, shape: Shape, opts: TensorOptions = {}): Tensor {
    return Tensor.full(gpu, shape, 0, opts);
  }

  static ones(gpu: Gpu, shape: Shape, opts: TensorOptions = {}): Tensor {
    return Tensor.full(gpu, shape, 1, opts);
  }

  // ---- access ----

  get gpu(): Gpu {
    return this.storage.gpu;
  }

  /** The pooled buffer, for binding in a dispatch. Throws once this view is released. */
  get buffer(): PooledBuffer {
    this.assertLive();
    return this.storage.buffer;
  }

  /** Throws a TensorError naming this tensor once it is released. */
  assertLive(): void {
    if (this._released) throw new TensorError(`${this} was released and cannot be used`);
  }

  get released(): boolean {
    return this._released;
  }

  get rank(): number {
    return this.shape.length;
  }

  get isLeaf(): boolean {
    return this.gradFn === null;
  }

  /** The contents as float32 (converted from other dtypes). */
  async toArray(): Promise<Float32Array> {
    const raw = await this.data();
    return raw instanceof Float32Array ? raw : Float32Array.from(raw);
  }

  /** The contents in the dtype's own typed array (f16: a Float16Array). */
  async data(): Promise<HostArray> {
    const bytes = await this.gpu.read(this.buffer, this.size * DTYPE_BYTES[this.dtype]);
    const d = this.dtype;
    return d === "i32" ? new Int32Array(bytes) : d === "u32" ? new Uint32Array(bytes) : d === "f16" ? new Float16Array(bytes) : new Float32Array(bytes);
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new TensorError(`item(): ${this} has ${this.size} elements, not 1`);
    return (await this.toArray())[0]!;
  }

  // ---- views ----

  /** A view sharing storage, cut from the autograd graph (requiresGrad false). */
  detach(): Tensor {
    this.assertLive();
    return new Tensor(this.storage.retain(), this.shape, this.dtype);
  }

  // ---- autograd ----

  /** Mark (or unmark) a leaf as needing gradients. Returns this. */
  setRequiresGrad(on = true): this {
    if (!this.isLeaf) throw new TensorError(`setRequiresGrad: ${this} is not a leaf (only leaves' flag can be set; use detach())`);
    if (on && this.dtype !== "f32" && this.dtype !== "f16") throw new TensorError(`setRequiresGrad: ${this.dtype} tensors cannot require gradients`);
    this.requiresGrad = on;
    return this;
  }

  /** Release and forget `.grad`. */
  zeroGrad(): void {
    this.grad?.release();
    this.grad = null;
  }

  // ---- lifetime ----

  /** Give up this view: releases its `.grad`, its hold on its autograd node, and its storage reference. */
  release(): void {
    if (this._released) return;
    this._released = true;
    this.zeroGrad();
    const fn = this.gradFn;
    this.gradFn = null;
    fn?.unref();
    this.storage.release();
  }

  [Symbol.dispose](): void {
    this.release();
  }

  toString(): string {
    const extra = this._released ? ", released" : this.gradFn ? `, grad_fn=${this.gradFn.op}` : this.requiresGrad ? ", requires_grad" : "";
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}${extra})`;
  }
}

/**
 * Until autograd.ts loads and installs the real methods (see the module comment), `reshape` and `backward`
 * throw saying what to import. Writable and configurable, like the op methods, so the install replaces them.
 */
for (const name of ["reshape", "backward"] as const)
  Object.defineProperty(Tensor.prototype, name, {
    value(this: Tensor): never {
      throw new TensorError(
        `${this}.${name}(): the autograd engine is not loaded; import the tensor library from src/tensor/index.ts ` +
          "(or import src/tensor/autograd.ts) rather than src/tensor/tensor.ts alone",
      );
    },
    writable: true,
    configurable: true,
  });

function toHost(data: ArrayLike<number>, dtype: DType): HostArray {
  switch (dtype) {
    case "f32":
      return data instanceof Float32Array ? data : Float32Array.from(data);
    case "i32":
      return data instanceof Int32Array ? data : Int32Array.from(data);
    case "u32":
      return data instanceof Uint32Array ? data : Uint32Array.from(data);
    case "f16":
      // IEEE binary16, round to nearest even (as torch's .half()); odd counts are padded by the upload.
      return data instanceof Float16Array ? data : Float16Array.from(data);
  }
}

/** A copy with its own storage (one buffer-to-buffer copy). */
export function clone(t: Tensor): Tensor {
  const out = Tensor.empty(t.gpu, t.shape, { dtype: t.dtype });
  copyBytes(t.gpu, { src: t.buffer, dst: out.buffer }, { bytes: Math.ceil((t.size * DTYPE_BYTES[t.dtype]) / 4) * 4 });
  return out;
}

/** Check that `ts` share one Gpu and are f32 (what ops support today); throws naming the op. */
export function checkOperands(op: string, ...ts: Tensor[]): Gpu {
  const gpu = ts[0]!.gpu;
  for (const t of ts) {
    t.assertLive();
    if (t.gpu !== gpu) throw new TensorError(`${op}: operands live on different GPU devices`);
    if (t.dtype !== "f32") throw new TensorError(`${op}: ${t} has dtype ${t.dtype}; ops support f32 only so far`);
  }
  return gpu;
}

export const fromArray = Tensor.fromArray;
export const empty = Tensor.empty;
export const zeros = Tensor.zeros;
export const ones = Tensor.ones;
export const full = Tensor.full;

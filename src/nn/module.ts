/**
 * Module: a model's parameters by their Hugging Face names, and the checkpoint plumbing every model shares.
 *
 *   model.params                 Map<HF name, Tensor> in model order (leaves; requiresGrad when training)
 *   model.namedParameters()      [name, tensor] pairs;  model.parameters(): a name → tensor record (what the
 *                                optimizers take: `new AdamW(model.parameters(), ...)`, names key their state)
 *   model.parameterCount         number of scalars (a tied weight is one parameter, counted once)
 *   model.zeroGrad() / release() drop every .grad / give every parameter back to the pool
 *
 * Loading streams: `loadParameters` reads one tensor from the checkpoint, uploads it, and only then reads the
 * next, so host memory never holds more than the largest tensor (F16/BF16 are widened to f32 on the way). The
 * caller checks names and shapes first (see LlamaModel.fromPretrained: one error lists every missing,
 * unexpected and mis-shaped tensor) and the loader checks each shape again as it goes.
 *
 * Saving writes the Hugging Face layout through src/io's writeCheckpoint: config.json + model.safetensors, or
 * model-0000i-of-0000n.safetensors shards + model.safetensors.index.json above `maxShardBytes`, built in a
 * temporary directory and swapped in atomically (saveDirAtomic), each tensor read back from the GPU only when
 * the writer reaches it. F32 (the default) saves the parameters bit for bit, so save → load is exact; BF16/F16
 * round to nearest even (what HF checkpoints usually hold).
 */
import type { Gpu } from "../gpu/index.ts";
import { CheckpointError, saveCheckpoint, type Checkpoint, type ParamSpec, type WrittenCheckpoint } from "../io/index.ts";
import { keep, Tensor, TensorError } from "../tensor/index.ts";

export interface SaveOptions {
  /** Dtype of floating-point tensors in the file: F32 (default; bit-exact), BF16 or F16 (rounded). */
  dtype?: "F32" | "BF16" | "F16";
  /** Largest shard in bytes of tensor data before splitting into several files (default 5e9, as HF). */
  maxShardBytes?: number;
  /** Extra files written into the directory with the weights (tokenizer.json, generation_config.json, ...). */
  files?: Record<string, string | Uint8Array>;
}

/** `dtype` of SaveOptions as HF's config.json torch_dtype. */
export function torchDtypeOf(d: SaveOptions["dtype"]): "float32" | "bfloat16" | "float16" {
  return d === "BF16" ? "bfloat16" : d === "F16" ? "float16" : "float32";
}

export abstract class Module {
  /** Parameters by HF name, in model order. A tied weight appears once, under the name HF saves it by. */
  readonly params = new Map<string, Tensor>();
  private _released = false;

  constructor(readonly gpu: Gpu) {}

  /** Register a parameter: exempt from enclosing scopes, marked requiresGrad as asked. Returns it. */
  protected register(name: string, t: Tensor, requiresGrad: boolean): Tensor {
    if (this.params.has(name)) throw new TensorError(`${this.constructor.name}: parameter ${name} registered twice`);
    keep(t);
    t.setRequiresGrad(requiresGrad);
    this.params.set(name, t);
    return t;
  }

  /** The parameter called `name`; throws naming the model and the name when there is none. */
  param(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new TensorError(`${this.constructor.name}: no parameter ${name}${this._released ? " (the model was released)" : ""}`);
    return t;
  }

  namedParameters(): [string, Tensor][] {
    return [...this.params];
  }

  /** Name → tensor, for optimizers (names identify their state in checkpoints). */
  parameters(): Record<string, Tensor> {
    return Object.fromEntries(this.params);
  }

  get parameterCount(): number {
    let n = 0;
    for (const t of this.params.values()) n += t.size;
    return n;
  }

  /** Bytes the parameters take on the GPU (f32). */
  get parameterBytes(): number {
    return this.parameterCount * 4;
  }

  /** Turn gradient tracking of every parameter on or off (inference: off). */
  setRequiresGrad(on: boolean): this {
    for (const t of this.params.values()) t.setRequiresGrad(on);
    return this;
  }

  /** Drop every parameter's .grad. */
  zeroGrad(): void {
    for (const t of this.params.values()) t.zeroGrad();
  }

  get released(): boolean {
    return this._released;
  }

  /** Give every parameter (and its gradient) back to the pool. The module is unusable afterwards. */
  release(): void {
    for (const t of this.params.values()) t.release();
    this.params.clear();
    this._released = true;
  }

  [Symbol.dispose](): void {
    this.release();
  }

  /** Write `this.params` (plus `files`, e.g. config.json) as a HF checkpoint directory, atomically. */
  protected saveParams(dir: string, files: Record<string, string | Uint8Array>, opts: SaveOptions = {}): Promise<WrittenCheckpoint> {
    if (this._released) throw new TensorError(`${this.constructor.name}: cannot save a released model`);
    return saveCheckpoint(dir, this.params, { dtype: opts.dtype ?? "F32", maxShardBytes: opts.maxShardBytes, files: { ...files, ...opts.files } });
  }
}

/**
 * Load `specs` from `ckpt` one tensor at a time (read, upload, next), checking each shape. On any failure the
 * tensors loaded so far are released. Returns them by name, in `specs` order.
 */
export async function loadParameters(
  gpu: Gpu,
  ckpt: Checkpoint,
  specs: readonly ParamSpec[],
  opts: { requiresGrad?: boolean } = {},
): Promise<Map<string, Tensor>> {
  const out = new Map<string, Tensor>();
  try {
    for (const s of specs) {
      const e = ckpt.entry(s.name);
      if (e.shape.length !== s.shape.length || e.shape.some((d, i) => d !== s.shape[i]))
        throw new CheckpointError(`shape [${e.shape.join(", ")}] differs from the expected [${s.shape.join(", ")}]`, ckpt.path, { tensor: s.name });
      const t = keep(await ckpt.loadTensor(gpu, s.name, { requiresGrad: opts.requiresGrad ?? false }));
      if (t.dtype !== "f32") {
        t.release();
        throw new CheckpointError(`dtype ${e.dtype} is not a floating-point parameter type (F32, F16, BF16)`, ckpt.path, { tensor: s.name });
      }
      out.set(s.name, t);
    }
  } catch (err) {
    for (const t of out.values()) t.release();
    throw err;
  }
  return out;
}

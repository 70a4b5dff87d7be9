/**
 * AdamW exactly as torch.optim.AdamW (amsgrad=False, maximize=False): decoupled weight decay
 * `p *= 1 - lr * weight_decay`, then the bias-corrected Adam update. The step count is per parameter, as in
 * torch: a parameter whose grad was null for some steps corrects its bias with its own count.
 *
 * Multi-tensor: a step is a few dispatches, not one per parameter (launcher: src/kernels/optim.ts `adamwMulti`,
 * kernels/optim_multi.wgsl; reads p, g, m, v; writes p, m, v). One dispatch updates up to `adamwSlots(gpu)`
 * parameters (4 on lavapipe, where maxStorageBuffersPerShaderStage is 10; at most 8), each with its own length,
 * step count, lr and weight decay; parameters whose groups differ in betas or eps go to different dispatches, and
 * so do those of a length that is not a multiple of 4 (f32 units instead of vec4).
 *
 * State: `exp_avg` (m) and `exp_avg_sq` (v) of every parameter live in two arenas, one buffer of all m and one of
 * all v (each parameter's slice at an element offset, rounded up to 4 elements; a new arena once one would pass
 * the device's maxStorageBufferBindingSize), zero-filled on a parameter's first step. `stateOf(p).tensors` holds
 * read-only views of its slices (StateSlice: `data()`/`toArray()` read the slice; using one as an op's input
 * throws), so stateDict()/loadStateDict(), the checkpoint writer (src/align/checkpoint.ts) and ZeRO's state
 * broadcast (src/align/zero.ts) see per-parameter tensors as before. The arenas are laid out again (the old state
 * copied in on the GPU, the old views released) when a parameter steps for the first time, or after
 * loadStateDict() (whose state arrives as plain per-parameter tensors); ZeRO ranks, which step only the
 * parameters they own, hold arenas of those alone.
 *
 * Clip fused into the step: `clipGradNorm(params, maxNorm, { fuseInto: opt })` (src/optim/clip.ts) measures the
 * norm and hands it to `fuseClip`; the next step() multiplies each gradient by min(1, maxNorm / (norm + 1e-6)) as
 * it reads it (the gradients themselves are left unclipped), so clip + step read every gradient twice instead of
 * three times and write it never. zeroGrad() or a step drops a pending clip.
 */
import { adamwMulti, adamwSlots, slotChunks, type AdamWSlot } from "../kernels/optim.ts";
import { fillWord } from "../kernels/tensor.ts";
import type { Gpu, PooledBuffer } from "../gpu/index.ts";
import { TensorError, type Shape } from "../tensor/shape.ts";
import { Storage, Tensor, untracked } from "../tensor/tensor.ts";
import { Optimizer, type ParamsInput, type StepItem } from "./optimizer.ts";

export interface AdamWOptions {
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
}

/** torch.optim.AdamW's defaults. */
export const ADAMW_DEFAULTS: AdamWOptions = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 };

/** Tests: the largest arena in bytes (0: the device's maxStorageBufferBindingSize), to exercise several arenas. */
export const adamwArenas = { maxBytes: 0 };

/** One pair of state arenas: all exp_avg, all exp_avg_sq of some parameters (`elems` f32 each). */
interface Arena {
  m: Storage;
  v: Storage;
  elems: number;
}

/**
 * A parameter's exp_avg or exp_avg_sq: a read-only view of its slice (`offset` elements into an arena). It holds
 * a reference to the arena's storage, so the arena lives while any view of it does.
 */
export class StateSlice extends Tensor {
  constructor(
    storage: Storage,
    shape: Shape,
    readonly offset: number,
    readonly arena: Arena,
  ) {
    super(storage, shape, "f32");
  }

  private misuse(what: string): TensorError {
    return new TensorError(`${what}: ${this} is a slice of AdamW's state arena, read-only; read it with data() or toArray()`);
  }

  override get buffer(): PooledBuffer {
    throw this.misuse("buffer");
  }

  override async data(): Promise<Float32Array> {
    this.assertLive();
    if (this.size === 0) return new Float32Array(0);
    return new Float32Array(await this.gpu.read(this.storage.buffer, this.size * 4, this.offset * 4));
  }

  override detach(): Tensor {
    throw this.misuse("detach");
  }

  override reshape(): Tensor {
    throw this.misuse("reshape");
  }
}

export class AdamW extends Optimizer<AdamWOptions> {
  protected readonly stateNames = ["exp_avg", "exp_avg_sq"] as const;
  /** The arenas the state lives in; laid out again when some stateful parameter has no live slice in them. */
  private arenas: Arena[] = [];
  /** A clip to apply in the next step (fuseClip): a view of the norm, and maxNorm. */
  private clip: { norm: Tensor; maxNorm: number } | null = null;

  constructor(params: ParamsInput<AdamWOptions>, options: Partial<AdamWOptions> = {}) {
    super("AdamW", params, { ...ADAMW_DEFAULTS, ...options });
  }

  protected validate(o: AdamWOptions): void {
    const [b1, b2] = o.betas;
    if (!(o.lr >= 0) || !Number.isFinite(o.lr)) throw new TensorError(`AdamW: invalid learning rate ${o.lr}`);
    if (!(o.eps >= 0) || !Number.isFinite(o.eps)) throw new TensorError(`AdamW: invalid epsilon ${o.eps}`);
    if (!(b1 >= 0 && b1 < 1)) throw new TensorError(`AdamW: invalid beta parameter at index 0: ${b1}`);
    if (!(b2 >= 0 && b2 < 1)) throw new TensorError(`AdamW: invalid beta parameter at index 1: ${b2}`);
    if (!(o.weightDecay >= 0) || !Number.isFinite(o.weightDecay)) throw new TensorError(`AdamW: invalid weight_decay value: ${o.weightDecay}`);
  }

  /**
   * Scale the gradients of the next step by clip_grad_norm_'s min(1, maxNorm / (norm + 1e-6)) as they are read
   * (norm: a scalar f32 tensor on this device, read on the GPU; this keeps a view of it). Replaces a pending clip;
   * the next step() or zeroGrad() drops it. clipGradNorm(..., { fuseInto }) is the usual caller.
   */
  fuseClip(norm: Tensor, maxNorm: number): void {
    norm.assertLive();
    if (norm.size !== 1 || norm.dtype !== "f32") throw new TensorError(`AdamW.fuseClip: the norm must be one f32 value, got ${norm}`);
    if (!(maxNorm >= 0) || maxNorm === Infinity) throw new TensorError(`AdamW.fuseClip: maxNorm must be finite and >= 0, got ${maxNorm}`);
    this.dropClip();
    this.clip = { norm: untracked(() => norm.detach()), maxNorm };
  }

  override zeroGrad(): void {
    this.dropClip();
    super.zeroGrad();
  }

  override release(): void {
    this.dropClip();
    super.release();
    this.arenas = [];
  }

  private dropClip(): void {
    this.clip?.norm.release();
    this.clip = null;
  }

  protected update(p: Tensor, grad: Tensor, state: StepItem<AdamWOptions>["state"], options: AdamWOptions, name: string): void {
    this.updateAll([{ p, grad, state, options, name }]);
  }

  protected override updateAll(items: readonly StepItem<AdamWOptions>[]): void {
    const clip = this.clip;
    this.clip = null;
    try {
      if (items.length === 0) return;
      const gpu = items[0]!.p.gpu;
      this.layOut(gpu);
      const k = adamwSlots(gpu, clip !== null);
      // Dispatches share an arena and the betas and eps (common params of the kernel).
      const sets = new Map<string, StepItem<AdamWOptions>[]>();
      for (const x of items) {
        if (x.p.size === 0) continue;
        const slice = x.state.tensors.exp_avg as StateSlice;
        const key = `${this.arenas.indexOf(slice.arena)}|${x.options.betas[0]}|${x.options.betas[1]}|${x.options.eps}`;
        sets.set(key, [...(sets.get(key) ?? []), x]);
      }
      for (const list of sets.values()) {
        const { betas, eps } = list[0]!.options;
        const arena = (list[0]!.state.tensors.exp_avg as StateSlice).arena;
        for (const chunk of slotChunks(list.map((x) => x.p.size), k)) {
          const xs = chunk.map((i) => list[i]!);
          const slots: AdamWSlot[] = xs.map((x) => ({
            n: x.p.size,
            offset: (x.state.tensors.exp_avg as StateSlice).offset,
            lr: x.options.lr,
            weightDecay: x.options.weightDecay,
            step: x.state.step,
          }));
          adamwMulti(
            gpu,
            { ps: xs.map((x) => x.p.buffer), gs: xs.map((x) => x.grad.buffer), m: arena.m.buffer, v: arena.v.buffer, ...(clip ? { total: clip.norm.buffer } : {}) },
            { slots, beta1: betas[0], beta2: betas[1], eps, ...(clip ? { maxNorm: clip.maxNorm } : {}), label: xs.length > 1 ? `${xs[0]!.name}+${xs.length - 1}` : xs[0]!.name },
          );
        }
      }
    } finally {
      clip?.norm.release();
    }
  }

  /**
   * Make every stateful parameter's exp_avg / exp_avg_sq a live slice of the current arenas: when one is not
   * (a first step, a loaded checkpoint), lay out new arenas for all of them (zero-filled), copy each parameter's
   * state in on the GPU, and release the old tensors (an old arena goes back to the pool with its last view).
   */
  private layOut(gpu: Gpu): void {
    const stateful: { p: Tensor; tensors: Record<string, Tensor> }[] = [];
    for (const g of this.groups)
      for (const p of g.params) {
        const st = this.state.get(p);
        if (st) stateful.push({ p, tensors: st.tensors });
      }
    const live = (t: Tensor | undefined) => t instanceof StateSlice && !t.released && this.arenas.includes(t.arena);
    if (stateful.every((x) => live(x.tensors.exp_avg) && live(x.tensors.exp_avg_sq))) return;

    const limit = Math.floor((adamwArenas.maxBytes || gpu.limits.maxStorageBufferBindingSize) / 16) * 4; // elements
    const pad = (n: number) => Math.ceil(n / 4) * 4;
    const plan: { items: { x: (typeof stateful)[number]; offset: number }[]; elems: number }[] = [];
    for (const x of stateful) {
      let cur = plan[plan.length - 1];
      if (!cur || (cur.elems > 0 && cur.elems + pad(x.p.size) > limit)) plan.push((cur = { items: [], elems: 0 }));
      cur.items.push({ x, offset: cur.elems });
      cur.elems += pad(x.p.size);
    }
    const arenas: Arena[] = [];
    for (const a of plan) {
      const alloc = () => {
        const buf = gpu.alloc(Math.max(4, a.elems) * 4, "adamw.state");
        fillWord(gpu, { dst: buf }, { word: 0 });
        return new Storage(gpu, buf);
      };
      const arena: Arena = { m: alloc(), v: alloc(), elems: a.elems };
      for (const { x, offset } of a.items) {
        const next: Record<string, Tensor> = {};
        for (const [key, dst] of [["exp_avg", arena.m], ["exp_avg_sq", arena.v]] as const) {
          const old = x.tensors[key];
          if (old && x.p.size) {
            const src = old instanceof StateSlice ? { buf: old.storage.buffer, at: old.offset * 4 } : { buf: old.buffer, at: 0 };
            gpu.copy(src.buf, dst.buffer, x.p.size * 4, src.at, offset * 4);
          }
          next[key] = untracked(() => new StateSlice(dst.retain(), x.p.shape, offset, arena));
        }
        for (const key of Object.keys(x.tensors)) {
          x.tensors[key]!.release();
          delete x.tensors[key];
        }
        Object.assign(x.tensors, next);
      }
      // The views hold the arena from here on.
      arena.m.release();
      arena.v.release();
      arenas.push(arena);
    }
    this.arenas = arenas;
  }
}

/**
 * KvCache: the keys and values of every decoder layer for a batch being generated, in GPU buffers allocated
 * once from the pool for the whole generation and given back by `release()`.
 *
 *   const cache = KvCache.forModel(model, { batch: B, maxLength: promptLength + maxNewTokens });
 *   noGrad(() => model.forwardCached(ids, cache, { attentionMask }));   // prefill: fills slots 0 .. T-1
 *   noGrad(() => model.forwardCached(next, cache));                     // each step: one more slot
 *   cache.release();
 *
 * Layout: per layer k and v [B, Hkv, maxLength, Dh] (after RoPE), slot t of every row written by the t-th
 * token fed in; `length` slots are filled, the same number for every row (prompts are left-padded to one
 * length). New tokens are appended in place with one strided copy per tensor (shape_ops' copyStrided).
 * The key mask [B, maxLength] (1 token, 0 padding; a host mirror plus its GPU copy, which decode attention
 * reads when there is padding; each slot is uploaded once) says which slots are padding, and `positions[b]` is row b's next rotary position: the number of
 * its real tokens so far, so a left-padded row's first token gets position 0 (HF's generate: position_ids =
 * cumsum(attention_mask) - 1). Padding slots get position 1, as HF fills them (they are masked anyway).
 *
 * A step is planned (`plan`) without changing anything, written (`writeMask`, `append`) into the slots past
 * `length`, and only then committed; a step that throws halfway leaves the cache as it was.
 */
import type { Gpu } from "../gpu/index.ts";
import { copyStrided } from "../tensor/ops/shape_ops.ts";
import { fmtShape, keep, Tensor, TensorError } from "../tensor/index.ts";

export interface KvCacheShape {
  batch: number;
  layers: number;
  kvHeads: number;
  headDim: number;
  /** Slots per row: prompt length + new tokens. */
  maxLength: number;
}

/** One planned step: where its tokens go, their rotary positions and key-mask values. */
export interface CacheStep {
  /** Slot of the step's first token (= the cache's length before it). */
  offset: number;
  /** Tokens per row in this step. */
  length: number;
  /** B × length rotary positions. */
  positionIds: number[][];
  /** B × length: 1 token, 0 padding. */
  mask: number[][];
  /** Whether any filled or new slot is padding (the attention must read the mask). */
  padded: boolean;
}

export class KvCache {
  readonly batch: number;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly maxLength: number;
  /** Slots filled in every row. */
  length = 0;
  /** Next rotary position of each row. */
  readonly positions: number[];
  /** Host mirror of the key mask [B, maxLength]. */
  readonly maskHost: Float32Array;
  /** The key mask on the GPU [B, maxLength] (slots past `length` are not meaningful). */
  readonly mask: Tensor;
  private readonly k: Tensor[] = [];
  private readonly v: Tensor[] = [];
  private anyPadding = false;
  /** GPU mask slots [0, maskUploaded) of every row hold the host mirror's values. */
  private maskUploaded = 0;
  private _released = false;

  constructor(
    readonly gpu: Gpu,
    s: KvCacheShape,
  ) {
    for (const [name, x] of Object.entries(s))
      if (!Number.isInteger(x) || x < 1) throw new TensorError(`KvCache: ${name} must be a positive integer, got ${x}`);
    this.batch = s.batch;
    this.layers = s.layers;
    this.kvHeads = s.kvHeads;
    this.headDim = s.headDim;
    this.maxLength = s.maxLength;
    this.positions = new Array<number>(s.batch).fill(0);
    this.maskHost = new Float32Array(s.batch * s.maxLength);
    const shape = [s.batch, s.kvHeads, s.maxLength, s.headDim];
    try {
      this.mask = keep(Tensor.zeros(gpu, [s.batch, s.maxLength]));
      for (let i = 0; i < s.layers; i++) {
        this.k.push(keep(Tensor.empty(gpu, shape)));
        this.v.push(keep(Tensor.empty(gpu, shape)));
      }
    } catch (e) {
      this.releaseTensors();
      throw e;
    }
  }

  /** A cache shaped for `model`'s layers and heads. */
  static forModel(
    model: { gpu: Gpu; config: { numHiddenLayers: number; numKeyValueHeads: number; headDim: number } },
    o: { batch: number; maxLength: number },
  ): KvCache {
    const c = model.config;
    return new KvCache(model.gpu, { batch: o.batch, layers: c.numHiddenLayers, kvHeads: c.numKeyValueHeads, headDim: c.headDim, maxLength: o.maxLength });
  }

  /** Bytes of GPU memory the cache holds (k and v of every layer, and the mask). */
  get bytes(): number {
    return 4 * (2 * this.layers * this.batch * this.kvHeads * this.maxLength * this.headDim + this.batch * this.maxLength);
  }

  get released(): boolean {
    return this._released;
  }

  /** Layer i's keys [B, Hkv, maxLength, Dh] (valid up to `length`, or up to the step being run). */
  keys(i: number): Tensor {
    return this.layerTensor(this.k, i);
  }

  values(i: number): Tensor {
    return this.layerTensor(this.v, i);
  }

  /**
   * Plan a step of `T` tokens per row with key mask `mask` (B × T, default all 1): the slots they take and
   * their positions. Changes nothing.
   */
  plan(T: number, mask?: number[][]): CacheStep {
    this.assertLive();
    const B = this.batch;
    if (!Number.isInteger(T) || T < 1) throw new TensorError(`KvCache: a step needs at least one token per row, got ${T}`);
    if (this.length + T > this.maxLength)
      throw new TensorError(`KvCache: ${T} more tokens after ${this.length} exceed the cache's ${this.maxLength} slots (make it longer: maxLength = prompt + new tokens)`);
    if (mask && (mask.length !== B || mask.some((r) => r.length !== T)))
      throw new TensorError(`KvCache: the attention mask must be ${B} × ${T} (batch × new tokens)`);
    const m = mask ?? Array.from({ length: B }, () => new Array<number>(T).fill(1));
    let padded = this.anyPadding;
    const positionIds = m.map((row, b) => {
      let next = this.positions[b]!;
      return row.map((x) => {
        if (x !== 0 && x !== 1) throw new TensorError(`KvCache: attention mask values must be 0 or 1, got ${x}`);
        if (x === 0) {
          padded = true;
          return 1;
        }
        return next++;
      });
    });
    return { offset: this.length, length: T, positionIds, mask: m, padded };
  }

  /**
   * Write the step's key-mask values into the slots it takes: the host mirror always, the GPU copy only while
   * some slot is padding (otherwise the attention does not read it), each row's slots not yet uploaded.
   */
  writeMask(step: CacheStep): void {
    this.checkStep(step);
    const L = this.maxLength;
    step.mask.forEach((row, b) => row.forEach((x, t) => (this.maskHost[b * L + step.offset + t] = x)));
    if (!step.padded) return;
    const [from, to] = [Math.min(this.maskUploaded, step.offset), step.offset + step.length];
    for (let b = 0; b < this.batch; b++) this.gpu.write(this.mask.buffer, this.maskHost.subarray(b * L + from, b * L + to), 4 * (b * L + from));
    this.maskUploaded = to;
  }

  /** Copy layer i's new keys and values [B, Hkv, T, Dh] into the step's slots. */
  append(i: number, step: CacheStep, k: Tensor, v: Tensor): void {
    this.checkStep(step);
    const shape = [this.batch, this.kvHeads, step.length, this.headDim];
    const dst = [this.kvHeads * this.maxLength * this.headDim, this.maxLength * this.headDim, this.headDim, 1];
    const src = [this.kvHeads * step.length * this.headDim, step.length * this.headDim, this.headDim, 1];
    for (const [what, t, cache] of [["keys", k, this.keys(i)], ["values", v, this.values(i)]] as const) {
      if (t.rank !== 4 || t.shape.some((d, n) => d !== shape[n]))
        throw new TensorError(`KvCache.append: layer ${i} ${what} ${fmtShape(t.shape)} must be ${fmtShape(shape)} [B, Hkv, T, Dh]`);
      copyStrided(shape, { tensor: t, strides: src }, { tensor: cache, strides: dst, offset: step.offset * this.headDim }, "kv_cache.append");
    }
  }

  /** The step is in: advance `length` and the rows' positions. */
  commit(step: CacheStep): void {
    this.checkStep(step);
    step.mask.forEach((row, b) => (this.positions[b] = this.positions[b]! + row.filter((x) => x === 1).length));
    this.length += step.length;
    this.anyPadding = step.padded;
  }

  /** Forget every token (keep the buffers): the cache serves a new generation of the same shape. */
  reset(): void {
    this.assertLive();
    this.length = 0;
    this.positions.fill(0);
    this.maskHost.fill(0);
    this.anyPadding = false;
    this.maskUploaded = 0;
  }

  /** Give every buffer back to the pool. Idempotent. */
  release(): void {
    if (this._released) return;
    this._released = true;
    this.releaseTensors();
  }

  [Symbol.dispose](): void {
    this.release();
  }

  private releaseTensors(): void {
    this.mask?.release();
    for (const t of [...this.k, ...this.v]) t.release();
    this.k.length = 0;
    this.v.length = 0;
  }

  private layerTensor(list: Tensor[], i: number): Tensor {
    this.assertLive();
    const t = list[i];
    if (!t) throw new TensorError(`KvCache: no layer ${i} (the cache has ${this.layers})`);
    return t;
  }

  private checkStep(step: CacheStep): void {
    this.assertLive();
    if (step.offset !== this.length) throw new TensorError(`KvCache: the step was planned at slot ${step.offset}, but the cache is at ${this.length}`);
  }

  private assertLive(): void {
    if (this._released) throw new TensorError("KvCache: the cache was released");
  }
}

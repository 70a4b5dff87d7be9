/**
 * GradScaler: dynamic loss scaling for mixed-precision training, with torch.cuda.amp.GradScaler's semantics
 * (defaults init_scale 2^16, growth_factor 2, backoff_factor 0.5, growth_interval 2000).
 *
 *   const scaler = new GradScaler();
 *   scaler.scale(loss).backward();        // gradients of loss * scale: small f16 gradients stay representable
 *   scaler.unscale_(opt);                  // optional (e.g. before clipGradNorm); step() does it otherwise
 *   const stepped = await scaler.step(opt); // skips opt.step() when a gradient overflowed to inf/NaN
 *   scaler.update();                        // halve the scale after an overflow, double it after 2000 clean steps
 *
 * Where things happen:
 *   - `scale(loss)` multiplies on the GPU by the scale passed as a kernel parameter (no upload).
 *   - `unscale_(opt)` divides every gradient of the optimizer by the scale in place on the GPU and records
 *     whether any element is inf/NaN into a u32 flag on the GPU (launcher: src/kernels/grad_scaler.ts, one
 *     dispatch per gradient, no host round trip), as torch's _amp_foreach_non_finite_check_and_unscale_.
 *   - `step(opt)` reads that flag back once (one readback per optimizer per step, as torch's `.item()` in
 *     _maybe_opt_step) and runs `opt.step()` only when it is clear. Returns whether it stepped.
 *   - `update()` applies torch's _amp_update_scale_ rule on the host, which already holds the flag:
 *       overflow:  scale *= backoff_factor, growth_tracker = 0
 *       else:      growth_tracker += 1; when it reaches growth_interval: scale *= growth_factor unless that
 *                  is inf in f32 (the scale then stays), growth_tracker = 0
 *     (aten/src/ATen/native/cuda/AmpKernels.cu, amp_update_scale_cuda_kernel). The scale is an f32 value, as
 *     torch's `_scale` tensor: each product is computed in float64 and rounded to f32; unscaling multiplies
 *     by inv_scale = f32(1 / f64(scale)), as torch's `self._scale.double().reciprocal().float()`.
 *
 * Errors follow torch's: unscale_ twice, or step twice, before update(); f16 gradients ("Attempting to
 * unscale FP16 gradients": the master weights must be f32); update() with no inf check recorded. One
 * difference: update() needs every unscaled optimizer to have been stepped (its flag is read in step());
 * pass a new scale to update() to set it without one.
 *
 * A disabled scaler (`enabled: false`) is a pass-through, like torch's.
 */
import { unscaleGrads } from "../kernels/grad_scaler.ts";
import { mulScalar } from "../tensor/ops/unary.ts";
import { TensorError } from "../tensor/shape.ts";
import { Tensor, untracked } from "../tensor/tensor.ts";
import type { Optimizer } from "./optimizer.ts";

export interface GradScalerOptions {
  initScale: number;
  growthFactor: number;
  backoffFactor: number;
  growthInterval: number;
  enabled: boolean;
}

/** torch.cuda.amp.GradScaler's defaults. */
export const GRAD_SCALER_DEFAULTS: GradScalerOptions = { initScale: 2 ** 16, growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000, enabled: true };

/** A host copy of the scaler for checkpoints: torch's GradScaler.state_dict() keys. */
export interface GradScalerStateDict {
  scale?: number;
  growth_factor?: number;
  backoff_factor?: number;
  growth_interval?: number;
  _growth_tracker?: number;
}

type AnyOptimizer = Optimizer<{ lr: number }>;

/** Where an optimizer is in the current step (torch's OptState). */
interface PerOptimizer {
  stage: "unscaled" | "stepped";
  /** The GPU flag its unscale_ wrote (u32 [1]); released by update(). */
  flag: Tensor;
  /** The flag's value, once step() has read it. */
  foundInf: boolean | null;
}

const f32 = Math.fround;

export class GradScaler {
  private scale_: number;
  private growthTracker = 0;
  private growthFactor: number;
  private backoffFactor: number;
  private growthInterval: number;
  readonly enabled: boolean;
  private perOptimizer = new Map<AnyOptimizer, PerOptimizer>();

  constructor(options: Partial<GradScalerOptions> = {}) {
    const o = { ...GRAD_SCALER_DEFAULTS, ...options };
    GradScaler.validate(o.growthFactor, o.backoffFactor, o.growthInterval);
    if (!(o.initScale > 0) || !Number.isFinite(f32(o.initScale))) throw new TensorError(`GradScaler: initScale must be a positive finite f32, got ${o.initScale}`);
    this.scale_ = f32(o.initScale);
    this.growthFactor = o.growthFactor;
    this.backoffFactor = o.backoffFactor;
    this.growthInterval = o.growthInterval;
    this.enabled = o.enabled;
  }

  private static validate(growth: number, backoff: number, interval: number): void {
    if (!(growth > 1)) throw new TensorError(`GradScaler: growthFactor should be > 1, got ${growth}`);
    if (!(backoff > 0 && backoff < 1)) throw new TensorError(`GradScaler: backoffFactor should be < 1 and > 0, got ${backoff}`);
    if (!Number.isInteger(interval) || interval <= 0) throw new TensorError(`GradScaler: growthInterval should be a positive integer, got ${interval}`);
  }

  /** The current scale (1 when disabled), as torch's get_scale(). */
  getScale(): number {
    return this.enabled ? this.scale_ : 1;
  }

  /** Clean steps since the scale last changed (torch's _growth_tracker). */
  getGrowthTracker(): number {
    return this.growthTracker;
  }

  /**
   * loss * scale (each tensor of an array), recorded for autograd: backward of the result gives gradients
   * multiplied by the scale. Returns the input unchanged when disabled.
   */
  scale(loss: Tensor): Tensor;
  scale(losses: readonly Tensor[]): Tensor[];
  scale(x: Tensor | readonly Tensor[]): Tensor | Tensor[] {
    if (!this.enabled) return Array.isArray(x) ? [...x] : (x as Tensor);
    const one = (t: Tensor): Tensor => {
      if (t.dtype !== "f32") throw new TensorError(`GradScaler.scale: ${t} must be f32 (compute the loss in f32)`);
      return mulScalar(t, this.scale_);
    };
    return Array.isArray(x) ? x.map(one) : one(x as Tensor);
  }

  /**
   * Divide the optimizer's gradients by the scale in place, and record on the GPU whether any is inf/NaN.
   * At most once per optimizer between update()s.
   */
  unscale_(optimizer: AnyOptimizer): void {
    if (!this.enabled) return;
    const prev = this.perOptimizer.get(optimizer);
    if (prev?.stage === "unscaled") throw new TensorError("GradScaler.unscale_: unscale_() has already been called on this optimizer since the last update()");
    if (prev?.stage === "stepped") throw new TensorError("GradScaler.unscale_: unscale_() is being called after step()");
    const grads: Tensor[] = [];
    for (const g of optimizer.groups)
      for (const p of g.params) {
        const grad = p.grad;
        if (!grad) continue;
        grad.assertLive();
        if (grad.dtype === "f16") throw new TensorError(`GradScaler.unscale_: Attempting to unscale FP16 gradients (of ${p}); keep f32 master weights`);
        if (grad.dtype !== "f32") throw new TensorError(`GradScaler.unscale_: the gradient of ${p} is ${grad.dtype}`);
        grads.push(grad);
      }
    const gpu = optimizer.groups[0]!.params[0]!.gpu;
    const flag = untracked(() => Tensor.empty(gpu, [1], { dtype: "u32" }));
    unscaleGrads(gpu, { grads: grads.map((g) => g.buffer), foundInf: flag.buffer }, { sizes: grads.map((g) => g.size), invScale: f32(1 / this.scale_) });
    this.perOptimizer.set(optimizer, { stage: "unscaled", flag, foundInf: null });
  }

  /**
   * unscale_ (unless already done), read the inf flag (the step's one readback), and run optimizer.step()
   * only if no gradient overflowed. Resolves to whether the optimizer stepped.
   */
  async step(optimizer: AnyOptimizer): Promise<boolean> {
    if (!this.enabled) {
      optimizer.step();
      return true;
    }
    const st0 = this.perOptimizer.get(optimizer);
    if (st0?.stage === "stepped") throw new TensorError("GradScaler.step: step() has already been called since the last update()");
    if (!st0) this.unscale_(optimizer);
    const st = this.perOptimizer.get(optimizer)!;
    st.stage = "stepped";
    st.foundInf = (await st.flag.data())[0] !== 0;
    if (!st.foundInf) optimizer.step();
    return !st.foundInf;
  }

  /**
   * Adjust the scale for the next step from this step's inf checks (torch's _amp_update_scale_), or set it
   * to `newScale`. Ends the step: every optimizer may be unscaled and stepped again.
   */
  update(newScale?: number): void {
    if (!this.enabled) return;
    const states = [...this.perOptimizer.values()];
    if (newScale !== undefined) {
      if (!(newScale > 0) || !Number.isFinite(f32(newScale))) throw new TensorError(`GradScaler.update: newScale must be a positive finite f32, got ${newScale}`);
      this.scale_ = f32(newScale);
    } else {
      if (states.length === 0) throw new TensorError("GradScaler.update: No inf checks were recorded prior to update() (call step() first)");
      if (states.some((s) => s.foundInf === null))
        throw new TensorError("GradScaler.update: an optimizer was unscale_()d but not step()ped, so its inf check was never read; call `await scaler.step(opt)` first (or update(newScale))");
      const foundInf = states.some((s) => s.foundInf);
      if (foundInf) {
        this.scale_ = f32(this.scale_ * this.backoffFactor);
        this.growthTracker = 0;
      } else {
        const successful = this.growthTracker + 1;
        if (successful === this.growthInterval) {
          const grown = f32(this.scale_ * this.growthFactor);
          if (Number.isFinite(grown)) this.scale_ = grown;
          this.growthTracker = 0;
        } else this.growthTracker = successful;
      }
    }
    this.endStep();
  }

  /** The scaler's host state (torch's state_dict keys); {} when disabled, like torch. */
  stateDict(): GradScalerStateDict {
    if (!this.enabled) return {};
    return {
      scale: this.scale_,
      growth_factor: this.growthFactor,
      backoff_factor: this.backoffFactor,
      growth_interval: this.growthInterval,
      _growth_tracker: this.growthTracker,
    };
  }

  /** Restore stateDict()'s values (checked first; nothing changes on an error). */
  loadStateDict(sd: GradScalerStateDict): void {
    if (!this.enabled) return;
    if (Object.keys(sd).length === 0)
      throw new TensorError("GradScaler.loadStateDict: The source state dict is empty, possibly because it was saved from a disabled instance of GradScaler.");
    const { scale, growth_factor: gf, backoff_factor: bf, growth_interval: gi, _growth_tracker: gt } = sd;
    for (const [k, v] of Object.entries({ scale, growth_factor: gf, backoff_factor: bf, growth_interval: gi, _growth_tracker: gt }))
      if (typeof v !== "number") throw new TensorError(`GradScaler.loadStateDict: '${k}' is missing or not a number`);
    GradScaler.validate(gf!, bf!, gi!);
    if (!(scale! > 0) || !Number.isFinite(f32(scale!))) throw new TensorError(`GradScaler.loadStateDict: scale must be a positive finite f32, got ${scale}`);
    if (!Number.isInteger(gt) || gt! < 0) throw new TensorError(`GradScaler.loadStateDict: _growth_tracker must be an integer >= 0, got ${gt}`);
    this.scale_ = f32(scale!);
    this.growthFactor = gf!;
    this.backoffFactor = bf!;
    this.growthInterval = gi!;
    this.growthTracker = gt!;
  }

  /** Free the per-step flags (what update() does); for a scaler abandoned mid-step. Idempotent. */
  release(): void {
    this.endStep();
  }

  [Symbol.dispose](): void {
    this.release();
  }

  private endStep(): void {
    for (const s of this.perOptimizer.values()) s.flag.release();
    this.perOptimizer.clear();
  }
}

/**
 * AdamW exactly as torch.optim.AdamW (amsgrad=False, maximize=False): decoupled weight decay
 * `p *= 1 - lr * weight_decay`, then the bias-corrected Adam update. One fused dispatch per parameter
 * (launcher: src/kernels/optim.ts `adamw`; reads p, g, m, v; writes p, m, v). The step count is per parameter,
 * as in torch: a parameter whose grad was null for some steps corrects its bias with its own count.
 *
 * State per parameter: `exp_avg` (m) and `exp_avg_sq` (v), zero-filled on its first step.
 */
import { adamw } from "../kernels/optim.ts";
import { TensorError } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { Optimizer, type ParamsInput, type ParamState } from "./optimizer.ts";

export interface AdamWOptions {
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
}

/** torch.optim.AdamW's defaults. */
export const ADAMW_DEFAULTS: AdamWOptions = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2 };

export class AdamW extends Optimizer<AdamWOptions> {
  protected readonly stateNames = ["exp_avg", "exp_avg_sq"] as const;

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

  protected update(p: Tensor, grad: Tensor, st: ParamState, o: AdamWOptions, name: string): void {
    const m = this.stateTensor(p, st, "exp_avg");
    const v = this.stateTensor(p, st, "exp_avg_sq");
    const [beta1, beta2] = o.betas;
    adamw(p.gpu, { p: p.buffer, g: grad.buffer, m: m.buffer, v: v.buffer }, { n: p.size, lr: o.lr, beta1, beta2, eps: o.eps, weightDecay: o.weightDecay, step: st.step, label: name });
  }
}

/**
 * SGD exactly as torch.optim.SGD (maximize=False): coupled weight decay d = g + weight_decay * p; with
 * momentum, a buffer that starts as d on a parameter's first step (no dampening then) and is
 * `momentum * buf + (1 - dampening) * d` afterwards; nesterov steps along d + momentum * buf, otherwise
 * along buf; p -= lr * step. One fused dispatch per parameter (launchers: src/kernels/optim.ts `sgd` /
 * `sgdMomentum`).
 *
 * State per parameter: `momentum_buffer`, only when momentum != 0.
 */
import { sgd, sgdMomentum } from "../kernels/optim.ts";
import { TensorError } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { Optimizer, type ParamsInput, type ParamState } from "./optimizer.ts";

export interface SGDOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}

export const SGD_DEFAULTS: Omit<SGDOptions, "lr"> = { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false };

export class SGD extends Optimizer<SGDOptions> {
  protected readonly stateNames = ["momentum_buffer"] as const;

  /** `lr` is required, as in torch. */
  constructor(params: ParamsInput<SGDOptions>, options: Partial<SGDOptions> & { lr: number }) {
    super("SGD", params, { ...SGD_DEFAULTS, ...options });
  }

  protected validate(o: SGDOptions): void {
    if (!(o.lr >= 0) || !Number.isFinite(o.lr)) throw new TensorError(`SGD: invalid learning rate ${o.lr}`);
    if (!(o.momentum >= 0) || !Number.isFinite(o.momentum)) throw new TensorError(`SGD: invalid momentum value ${o.momentum}`);
    if (!Number.isFinite(o.dampening)) throw new TensorError(`SGD: invalid dampening value ${o.dampening}`);
    if (!(o.weightDecay >= 0) || !Number.isFinite(o.weightDecay)) throw new TensorError(`SGD: invalid weight_decay value: ${o.weightDecay}`);
    if (o.nesterov && (o.momentum <= 0 || o.dampening !== 0)) throw new TensorError("SGD: nesterov momentum requires a momentum and zero dampening");
  }

  protected update(p: Tensor, grad: Tensor, st: ParamState, o: SGDOptions, name: string): void {
    const common = { n: p.size, lr: o.lr, weightDecay: o.weightDecay, label: name };
    if (o.momentum === 0) return sgd(p.gpu, { p: p.buffer, g: grad.buffer }, common);
    // The buffer is born on this parameter's first momentum step, written (not read) by the kernel.
    const first = st.tensors.momentum_buffer === undefined;
    const buf = this.stateTensor(p, st, "momentum_buffer", false);
    sgdMomentum(p.gpu, { p: p.buffer, g: grad.buffer, buf: buf.buffer }, { ...common, momentum: o.momentum, dampening: o.dampening, nesterov: o.nesterov, first });
  }
}

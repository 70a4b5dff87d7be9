/**
 * SGD exactly as torch.optim.SGD (maximize=False): coupled weight decay d = g + weight_decay * p; with
 * momentum, a buffer that starts as d on a parameter's first step (no dampening then) and is
 * `momentum * buf + (1 - dampening) * d` afterwards; nesterov steps along d + momentum * buf, otherwise
 * along buf; p -= lr * step. One fused dispatch per parameter (kernels/optim.wgsl `sgd` / `sgd_momentum`).
 *
 * State per parameter: `momentum_buffer`, only when momentum != 0.
 */
import { TensorError } from "../tensor/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { dispatchElementwise, Optimizer, type ParamsInput, type ParamState } from "./optimizer.ts";

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
    const common = { lr: o.lr, weight_decay: o.weightDecay };
    if (o.momentum === 0) {
      dispatchElementwise(p.gpu, "sgd", `SGD(${name})`, p.size, { p: p.buffer, g: grad.buffer }, common);
      return;
    }
    // The buffer is born on this parameter's first momentum step, written (not read) by the kernel.
    const first = st.tensors.momentum_buffer === undefined;
    const buf = this.stateTensor(p, st, "momentum_buffer", false);
    dispatchElementwise(p.gpu, "sgd_momentum", `SGD(${name})`, p.size, { p: p.buffer, g: grad.buffer, buf: buf.buffer }, {
      ...common,
      momentum: o.momentum,
      one_minus_dampening: 1 - o.dampening,
      nesterov: o.nesterov ? 1 : 0,
      first: first ? 1 : 0,
    });
  }
}

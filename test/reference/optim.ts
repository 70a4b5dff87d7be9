/**
 * float64 reference of src/kernels/optim.ts: fused optimizer updates of one parameter and global-norm gradient
 * clipping. The launchers update their buffers in place; these return the new values (inputs are not changed).
 *
 *   adamw({ p, g, m, v }, { n, lr, beta1, beta2, eps, weightDecay, step })  → { p, m, v }
 *       torch.optim.AdamW (_single_tensor_adamw, amsgrad off) at the parameter's step count t = step >= 1:
 *         p ← p · (1 − lr · weightDecay)
 *         m ← β1 · m + (1 − β1) · g,   v ← β2 · v + (1 − β2) · g²
 *         p ← p − lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + eps)
 *   RefAdamW: one parameter's AdamW state as torch keeps it (step count, exp_avg, exp_avg_sq), stepped by adamw.
 *   sgd({ p, g }, { n, lr, weightDecay })  → { p }
 *       p ← p − lr · (g + weightDecay · p)
 *   sgdMomentum({ p, g, buf }, { n, lr, weightDecay, momentum, dampening, nesterov, first })  → { p, buf }
 *       torch.optim.SGD (_single_tensor_sgd): d = g + weightDecay · p; buf ← d on the first step (buf is not
 *       read), else momentum · buf + (1 − dampening) · d; p ← p − lr · (nesterov ? d + momentum · buf : buf)
 *   clipGradNorm({ grads }, { sizes, maxNorm })  → { grads, total }
 *       torch.nn.utils.clip_grad_norm_ (norm 2): total = √(Σ_j Σ_i g_j[i]²); unless maxNorm is Infinity,
 *       g_j ← g_j · min(1, maxNorm / (total + 1e-6)). A NaN gradient makes total NaN and (Math.min keeps a NaN, as
 *       torch.clamp does) every clipped gradient NaN.
 */

/** What the references return: fresh arrays. */
type F64 = Float64Array<ArrayBuffer>;

export interface AdamWParams {
  n: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
  label?: string;
}

/** One AdamW step at step count o.step. */
export function adamw(io: { p: ArrayLike<number>; g: ArrayLike<number>; m: ArrayLike<number>; v: ArrayLike<number> }, o: AdamWParams): { p: F64; m: F64; v: F64 } {
  const { lr, beta1: b1, beta2: b2, eps, weightDecay, step: t } = o;
  const bc1 = 1 - b1 ** t;
  const bc2 = 1 - b2 ** t;
  const p = new Float64Array(o.n);
  const m = new Float64Array(o.n);
  const v = new Float64Array(o.n);
  for (let i = 0; i < o.n; i++) {
    const g = io.g[i]!;
    m[i] = b1 * io.m[i]! + (1 - b1) * g;
    v[i] = b2 * io.v[i]! + (1 - b2) * g * g;
    p[i] = io.p[i]! * (1 - lr * weightDecay) - (lr / bc1) * (m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(bc2) + eps));
  }
  return { p, m, v };
}

/** One SGD step without momentum. */
export function sgd(io: { p: ArrayLike<number>; g: ArrayLike<number> }, o: { n: number; lr: number; weightDecay: number; label?: string }): { p: F64 } {
  const p = new Float64Array(o.n);
  for (let i = 0; i < o.n; i++) p[i] = io.p[i]! - o.lr * (io.g[i]! + o.weightDecay * io.p[i]!);
  return { p };
}

export interface SgdMomentumParams {
  n: number;
  lr: number;
  weightDecay: number;
  momentum: number;
  dampening: number;
  nesterov: boolean;
  first: boolean;
  label?: string;
}

/** One SGD step with momentum (`first`: buf is born as d; it may be null then). */
export function sgdMomentum(io: { p: ArrayLike<number>; g: ArrayLike<number>; buf: ArrayLike<number> | null }, o: SgdMomentumParams): { p: F64; buf: F64 } {
  const p = new Float64Array(o.n);
  const buf = new Float64Array(o.n);
  for (let i = 0; i < o.n; i++) {
    const d = io.g[i]! + o.weightDecay * io.p[i]!;
    buf[i] = o.first ? d : o.momentum * io.buf![i]! + (1 - o.dampening) * d;
    p[i] = io.p[i]! - o.lr * (o.nesterov ? d + o.momentum * buf[i]! : buf[i]!);
  }
  return { p, buf };
}

/** The global L2 norm of the gradients, and the gradients scaled so that it is at most maxNorm. */
export function clipGradNorm(io: { grads: readonly ArrayLike<number>[] }, o: { sizes: readonly number[]; maxNorm: number }): { grads: F64[]; total: number } {
  let ss = 0;
  io.grads.forEach((g, j) => {
    for (let i = 0; i < o.sizes[j]!; i++) ss += g[i]! * g[i]!;
  });
  const total = Math.sqrt(ss);
  const coef = o.maxNorm === Infinity ? 1 : Math.min(1, o.maxNorm / (total + 1e-6));
  return { grads: io.grads.map((g, j) => Float64Array.from({ length: o.sizes[j]! }, (_, i) => g[i]! * coef)), total };
}

/** One parameter's AdamW state, as torch keeps it (step count, exp_avg, exp_avg_sq), stepped by `adamw`. */
export class RefAdamW {
  m: Float64Array;
  v: Float64Array;
  t = 0;
  constructor(
    public p: Float64Array,
    readonly o: { lr: number; betas: readonly [number, number]; eps: number; weightDecay: number },
  ) {
    this.m = new Float64Array(p.length);
    this.v = new Float64Array(p.length);
  }
  step(g: ArrayLike<number>): void {
    const { lr, eps, weightDecay, betas } = this.o;
    this.t++;
    const o = { n: this.p.length, lr, beta1: betas[0], beta2: betas[1], eps, weightDecay, step: this.t };
    ({ p: this.p, m: this.m, v: this.v } = adamw({ p: this.p, g, m: this.m, v: this.v }, o));
  }
}

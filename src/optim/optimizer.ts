/**
 * What every optimizer shares: parameter groups (torch's param_groups), named parameters, per-parameter state
 * tensors created lazily on the GPU, learning-rate scaling for schedules, and host checkpoints.
 *
 *   const opt = new AdamW(model.parameters, { lr: 3e-4, weightDecay: 0.1 });
 *   loss.backward(); opt.step(); opt.zeroGrad();
 *   opt.release();                                   // frees the state tensors (m, v, momentum buffers)
 *
 * Parameters may be given as an array (named "0", "1", ...), as a name → tensor record, or as groups
 * `[{ params, ...overrides }]` whose options override the defaults (e.g. no weight decay for norms and biases,
 * as HF Trainer does). Names identify state in `stateDict()` / `loadStateDict()`.
 *
 * A step updates parameters in place (their storage keeps its identity), like torch's optimizers; so a graph
 * recorded before the step and backwarded after it sees the new values (torch would raise a version error).
 *
 * A step checks every gradient, advances the step counts, then records the updates with `updateAll` (by default
 * `update` per parameter; AdamW overrides it with multi-tensor dispatches over its state arenas, and its state
 * tensors are read-only views into them: src/optim/adamw.ts).
 *
 * Launchers of the optimizer kernels: src/kernels/optim.ts (kernels/optim.wgsl, kernels/optim_multi.wgsl).
 */
import { fmtShape, sameShape, TensorError } from "../tensor/shape.ts";
import { Tensor, untracked } from "../tensor/tensor.ts";

export type NamedParams = readonly Tensor[] | Readonly<Record<string, Tensor>>;
export type GroupSpec<O> = { params: NamedParams } & Partial<O>;
export type ParamsInput<O> = NamedParams | readonly GroupSpec<O>[];

export interface ParamGroup<O> {
  readonly params: readonly Tensor[];
  readonly names: readonly string[];
  /** This group's hyperparameters (mutable; `lr` is what schedules change). */
  options: O & { lr: number };
  /** The lr the group started with: `setLrFactor(f)` sets lr = initialLr * f (HF's LambdaLR). */
  initialLr: number;
}

/** Per parameter: how many steps it has taken, and its state tensors by name (absent until its first step). */
export interface ParamState {
  step: number;
  tensors: Record<string, Tensor>;
}

/** One parameter of a step: its gradient, state, group options and name. */
export interface StepItem<O> {
  p: Tensor;
  grad: Tensor;
  state: ParamState;
  options: O;
  name: string;
}

/** A host copy of an optimizer's state, for checkpoints. */
export interface OptimizerStateDict {
  kind: string;
  groups: { names: string[]; initialLr: number; options: Record<string, unknown> }[];
  /** By parameter name; parameters that never stepped are absent. */
  state: Record<string, { step: number; shape: number[]; tensors: Record<string, Float32Array> }>;
}

function isTensorList(x: unknown): x is readonly Tensor[] {
  return Array.isArray(x) && x.every((t) => t instanceof Tensor);
}

export abstract class Optimizer<O extends { lr: number }> {
  readonly groups: ParamGroup<O>[] = [];
  protected readonly state = new Map<Tensor, ParamState>();
  private released = false;

  protected constructor(
    readonly kind: string,
    params: ParamsInput<O>,
    defaults: O,
  ) {
    const specs: GroupSpec<O>[] = isTensorList(params) || !Array.isArray(params) ? [{ params: params as NamedParams } as GroupSpec<O>] : [...(params as GroupSpec<O>[])];
    const seen = new Map<Tensor, string>();
    const names = new Set<string>();
    let index = 0;
    for (const spec of specs) {
      const { params: ps, ...overrides } = spec;
      const entries: [string, Tensor][] = Array.isArray(ps) ? (ps as Tensor[]).map((t) => [String(index++), t]) : Object.entries(ps as Record<string, Tensor>);
      for (const [name, t] of entries) {
        if (!(t instanceof Tensor)) throw new TensorError(`${kind}: parameter '${name}' is not a Tensor`);
        t.assertLive();
        if (seen.has(t)) throw new TensorError(`${kind}: parameter '${name}' appears more than once (also as '${seen.get(t)}')`);
        if (names.has(name)) throw new TensorError(`${kind}: two parameters are named '${name}'`);
        if (!t.isLeaf) throw new TensorError(`${kind}: parameter '${name}' (${t}) is not a leaf; optimizers update leaves only`);
        if (t.dtype !== "f32") throw new TensorError(`${kind}: parameter '${name}' is ${t.dtype}; optimizers support f32 only so far`);
        seen.set(t, name);
        names.add(name);
      }
      const options = { ...defaults, ...overrides } as O;
      this.validate(options);
      this.groups.push({ params: entries.map((e) => e[1]), names: entries.map((e) => e[0]), options, initialLr: options.lr });
    }
    if (seen.size === 0) throw new TensorError(`${kind}: got an empty parameter list`);
  }

  /** Throw a TensorError for out-of-range hyperparameters (torch's checks). */
  protected abstract validate(o: O): void;

  /** Record the update of one parameter whose gradient is `grad` (same shape), given its state. */
  protected abstract update(p: Tensor, grad: Tensor, state: ParamState, o: O, name: string): void;

  /** Names of the state tensors this optimizer keeps per parameter (for checkpoints). */
  protected abstract readonly stateNames: readonly string[];

  /**
   * One optimization step over every parameter that has a gradient; parameters whose `.grad` is null are
   * skipped entirely, like torch (no weight decay, no state, their step count does not advance). Every
   * gradient's shape is checked before anything is recorded. Records the updates (`updateAll`: one fused
   * dispatch per parameter by default, a few multi-tensor ones for AdamW, plus zero-fills of new state); no upload.
   */
  step(): void {
    this.assertLive();
    const ready: Omit<StepItem<O>, "state">[] = [];
    for (const group of this.groups)
      group.params.forEach((p, k) => {
        const grad = p.grad;
        if (!grad) return;
        const name = group.names[k]!;
        p.assertLive();
        if (!sameShape(grad.shape, p.shape))
          throw new TensorError(`${this.kind}.step: parameter '${name}' has shape ${fmtShape(p.shape)} but its gradient ${fmtShape(grad.shape)}`);
        ready.push({ p, grad, options: group.options, name });
      });
    const items = ready.map((x): StepItem<O> => {
      let st = this.state.get(x.p);
      if (!st) {
        st = { step: 0, tensors: {} };
        this.state.set(x.p, st);
      }
      st.step++;
      return { ...x, state: st };
    });
    this.updateAll(items);
  }

  /** Record one step's updates, given each stepping parameter's state (step count already advanced). */
  protected updateAll(items: readonly StepItem<O>[]): void {
    for (const x of items) this.update(x.p, x.grad, x.state, x.options, x.name);
  }

  /**
   * The state tensor `key` of a parameter, created on first use (zero-filled unless `zero` is false). State
   * belongs to the optimizer, never to an enclosing `scope()`.
   */
  protected stateTensor(p: Tensor, st: ParamState, key: string, zero = true): Tensor {
    return (st.tensors[key] ??= untracked(() => (zero ? Tensor.zeros(p.gpu, p.shape) : Tensor.empty(p.gpu, p.shape))));
  }

  /** Release every parameter's `.grad` (torch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const g of this.groups) for (const p of g.params) p.zeroGrad();
  }

  /** Set every group's lr. */
  setLr(lr: number): void {
    for (const g of this.groups) g.options.lr = lr;
  }

  /** lr = initialLr * factor for every group: how an HF schedule (a multiplier per step) is applied. */
  setLrFactor(factor: number): void {
    if (!Number.isFinite(factor) || factor < 0) throw new TensorError(`${this.kind}.setLrFactor: factor must be finite and >= 0, got ${factor}`);
    for (const g of this.groups) g.options.lr = g.initialLr * factor;
  }

  /** The state of a parameter (undefined until its first step): for inspection and tests. */
  stateOf(p: Tensor): Readonly<ParamState> | undefined {
    return this.state.get(p);
  }

  /** Copy the state to host arrays (waits for the GPU). */
  async stateDict(): Promise<OptimizerStateDict> {
    this.assertLive();
    const out: OptimizerStateDict = { kind: this.kind, groups: [], state: {} };
    for (const g of this.groups) {
      out.groups.push({ names: [...g.names], initialLr: g.initialLr, options: structuredClone({ ...g.options }) as Record<string, unknown> });
      for (let k = 0; k < g.params.length; k++) {
        const p = g.params[k]!;
        const st = this.state.get(p);
        if (!st) continue;
        const tensors: Record<string, Float32Array> = {};
        for (const [key, t] of Object.entries(st.tensors)) tensors[key] = await t.toArray();
        out.state[g.names[k]!] = { step: st.step, shape: [...p.shape], tensors };
      }
    }
    return out;
  }

  /**
   * Replace the state (and every group's hyperparameters) with a checkpoint's. Checks everything before
   * changing anything: same kind, same groups and parameter names, and each state tensor's shape matching
   * its parameter's (the error names the parameter).
   */
  loadStateDict(sd: OptimizerStateDict): void {
    this.assertLive();
    const what = `${this.kind}.loadStateDict`;
    if (sd.kind !== this.kind) throw new TensorError(`${what}: the checkpoint is for '${sd.kind}', not '${this.kind}'`);
    if (sd.groups.length !== this.groups.length)
      throw new TensorError(`${what}: the checkpoint has ${sd.groups.length} parameter groups, this optimizer ${this.groups.length}`);
    const byName = new Map<string, Tensor>();
    sd.groups.forEach((sg, i) => {
      const g = this.groups[i]!;
      if (sg.names.length !== g.names.length || sg.names.some((n, k) => n !== g.names[k]))
        throw new TensorError(`${what}: group ${i} holds parameters [${sg.names.join(", ")}] in the checkpoint but [${g.names.join(", ")}] here`);
      g.names.forEach((n, k) => byName.set(n, g.params[k]!));
    });
    for (const [name, s] of Object.entries(sd.state)) {
      const p = byName.get(name);
      if (!p) throw new TensorError(`${what}: the checkpoint has state for unknown parameter '${name}'`);
      if (!sameShape(s.shape, p.shape))
        throw new TensorError(`${what}: parameter '${name}' has shape ${fmtShape(p.shape)} but its checkpoint state ${fmtShape(s.shape)}`);
      if (!Number.isInteger(s.step) || s.step < 0) throw new TensorError(`${what}: parameter '${name}' has step ${s.step}`);
      for (const key of Object.keys(s.tensors))
        if (!this.stateNames.includes(key)) throw new TensorError(`${what}: parameter '${name}' has unknown state '${key}' (expected ${this.stateNames.join(", ")})`);
      for (const [key, arr] of Object.entries(s.tensors))
        if (arr.length !== p.size)
          throw new TensorError(`${what}: state '${key}' of parameter '${name}' has ${arr.length} values; the parameter ${fmtShape(p.shape)} has ${p.size}`);
    }
    sd.groups.forEach((sg, i) => {
      const g = this.groups[i]!;
      const options = { ...g.options, ...(structuredClone(sg.options) as Partial<O>) };
      this.validate(options);
      g.options = options;
      g.initialLr = sg.initialLr;
    });
    this.clearState();
    for (const [name, s] of Object.entries(sd.state)) {
      const p = byName.get(name)!;
      const tensors: Record<string, Tensor> = {};
      for (const [key, arr] of Object.entries(s.tensors)) tensors[key] = untracked(() => Tensor.fromArray(p.gpu, arr, p.shape));
      this.state.set(p, { step: s.step, tensors });
    }
  }

  private clearState(): void {
    for (const st of this.state.values()) for (const t of Object.values(st.tensors)) t.release();
    this.state.clear();
  }

  /** Free every state tensor; the optimizer cannot be used afterwards. Idempotent. */
  release(): void {
    this.clearState();
    this.released = true;
  }

  [Symbol.dispose](): void {
    this.release();
  }

  private assertLive(): void {
    if (this.released) throw new TensorError(`${this.kind}: this optimizer was released`);
  }
}

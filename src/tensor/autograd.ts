/**
 * Reverse-mode autograd, micrograd-style.
 *
 * Recording: an op computes its output, then calls `attach(out, { op, inputs, save, backward })`. When grad
 * mode is on and some input requires grad, that makes a Node: the op's backward rule, an edge per input
 * (the input's own Node, the input itself if it is a leaf, or null if it needs no gradient), and views of
 * only the tensors the rule needs (`save(needs)` picks them, knowing which inputs need gradients).
 *
 * backward(root): order the Nodes reachable from root so each comes after every Node that consumes it,
 * start with d(root)/d(root) = 1, and walk that order: run each Node's rule on its summed output gradient,
 * add the results into its inputs' gradients (leaves: into `.grad`, in place). Rules run under noGrad, so
 * gradients are plain tensors. Afterwards the saved tensors are freed unless `retainGraph`. With
 * `onGradReady` (BackwardOptions) the walk also counts the edges into each leaf and calls the hook when a leaf's
 * last one has run (its gradient final for this backward); without it the walk does nothing more.
 *
 * Accumulating rules: where an input already has a gradient when its consumer's rule runs (a tensor feeding
 * several ops: the q, k and v projections of one norm output; a leaf's `.grad` from an earlier backward or
 * micro-batch), the rule is offered it as `acc[i]` and may add its part into it in place (a matmul or norm
 * kernel that stores C + A·B instead of A·B) and return that same tensor; then the engine adds nothing.
 * Offered only when that is safe: for a Node's pending gradient, the engine holds its storage alone (refs 1);
 * for a leaf, its `.grad` itself (mutated in place, exactly as the engine's own `.grad += g` always did, so a
 * user's reference to `.grad` sees the same values either way); in both cases of the input's shape, not read by
 * the rule (neither g's storage nor a saved tensor's), and the input not fed twice by the Node (`x.mul(x)`).
 * A rule that ignores acc returns a new tensor, and the engine sums as before. The rules that accumulate: matmul
 * and linear (src/tensor/ops/matmul.ts: products that are one launch) and the norms' dx (src/tensor/ops/norm.ts).
 *
 * Several outputs: an op that computes several tensors in one launch (rope over q and k) records them with
 * `attachOutputs(outs, { ..., backward })`: one Node with an output per tensor, whose rule gets one gradient per
 * output (zeros where an output got none) and runs once, after every consumer of every output.
 *
 * Lifetime: a Node is reference-counted by the tensors it produced and by the Nodes that consume it; when
 * the count reaches zero its saved views are released. So the graph of a released loss frees itself.
 *
 * Gradient accumulation the rules do not do themselves (summing two gradients, adding into `.grad`) runs the
 * launchers of src/kernels/tensor.ts (`accumulate`, f32) and src/kernels/cast.ts (`accumulateF16`).
 *
 * Import order: tensor.ts must not import this module at run time (this module imports it), so the Tensor
 * methods that need the engine live here and are installed on Tensor.prototype when this module loads,
 * declared by the module augmentation below: `t.backward(...)` and `t.reshape(...)` (a view with a gradient
 * rule, the one view that records). src/tensor/index.ts (hence src/index.ts) and every op module (through
 * `attach`) import this module; a program that imports only tensor.ts gets a TensorError naming the missing
 * import from those two methods instead.
 */
import { accumulateF16 } from "../kernels/cast.ts";
import { accumulate } from "../kernels/tensor.ts";
import { clone, Tensor, untracked } from "./tensor.ts";
import { fmtShape, inferShape, sameShape, TensorError, type Shape } from "./shape.ts";

// ---- grad mode ----------------------------------------------------------------------------------------

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Run `fn` without recording: outputs do not require grad. Synchronous, like GPU recording. */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, "noGrad", fn);
}

/**
 * Run `fn` with recording on, even inside noGrad or a backward rule (torch.enable_grad): for code that runs a
 * user function from a backward rule and differentiates it there (activation checkpointing).
 */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, "enableGrad", fn);
}

function withGradMode<T>(on: boolean, name: string, fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = on;
  try {
    const r = fn();
    if (r && typeof (r as { then?: unknown }).then === "function")
      throw new TensorError(`${name}(fn): fn returned a Promise; ${name} is synchronous (record inside, await after)`);
    return r;
  } finally {
    gradEnabled = prev;
  }
}

// ---- the tape -----------------------------------------------------------------------------------------

/**
 * Given the gradient of the op's output and the saved views (in the order `save` returned them), return one
 * gradient per input, shaped like that input; null where `needs[i]` is false. Returned tensors are handed
 * over to the engine (fresh tensors or views; the engine releases them).
 *
 * `acc[i]`, when defined, is the gradient input i already has (see the module comment: owned by the engine, or
 * the leaf's `.grad`; input i's shape; not g's or a saved tensor's storage): the rule may add its gradient for
 * input i into it in place, when that gradient would have acc[i]'s dtype, and return acc[i] itself (not a view of
 * it). It must not release it, or write it otherwise.
 */
export type BackwardRule = (
  g: Tensor,
  saved: readonly (Tensor | null)[],
  needs: readonly boolean[],
  acc: readonly (Tensor | undefined)[],
) => (Tensor | null)[];

export interface OpRecord {
  op: string;
  inputs: readonly Tensor[];
  /** The tensors backward will read, chosen knowing which inputs need gradients. */
  save?: (needs: readonly boolean[]) => (Tensor | null)[];
  backward: BackwardRule;
}

/**
 * A BackwardRule for an op with several outputs: `gs[j]` is the gradient of output j (shaped like it; zeros when
 * nothing downstream gave it one), owned by the engine (the rule must not release them).
 */
export type OutputsBackwardRule = (
  gs: readonly Tensor[],
  saved: readonly (Tensor | null)[],
  needs: readonly boolean[],
  acc: readonly (Tensor | undefined)[],
) => (Tensor | null)[];

export interface OutputsRecord extends Omit<OpRecord, "backward"> {
  backward: OutputsBackwardRule;
}

export class Node {
  /** Tensors produced by this Node plus Nodes consuming it. */
  private refs = 1;
  /** Set after a backward without retainGraph: running it again is an error. */
  private freed = false;

  constructor(
    readonly op: string,
    /** Per input: its producing Node, the leaf tensor itself, or null (needs no gradient). */
    readonly next: readonly (Node | Tensor | null)[],
    /** Per input from a Node: which of that Node's outputs it is (its `gradOut`). */
    readonly nextOut: readonly number[],
    readonly inputShapes: readonly Shape[],
    private saved: (Tensor | null)[],
    private readonly rule: BackwardRule | OutputsBackwardRule,
    /** The shapes of the outputs of a Node with several (`attachOutputs`); one output when absent. */
    readonly outShapes?: readonly Shape[],
  ) {
    for (const n of next) if (n instanceof Node) n.refs++;
  }

  /** How many outputs this Node has. */
  get outputs(): number {
    return this.outShapes?.length ?? 1;
  }

  /** How many tensors this node keeps for its backward (0 once freed). */
  get savedCount(): number {
    return this.saved.filter((t) => t !== null).length;
  }

  ref(): void {
    this.refs++;
  }

  unref(): void {
    if (--this.refs > 0) return;
    this.freeSaved();
    for (const n of this.next) if (n instanceof Node) n.unref();
  }

  freeSaved(): void {
    for (const t of this.saved) t?.release();
    this.saved = [];
    this.freed = true;
  }

  /** Whether the rule reads `s` (a saved tensor's storage): it must not accumulate into it. */
  reads(s: Tensor["storage"]): boolean {
    return this.saved.some((t) => t?.storage === s);
  }

  /**
   * Run the rule on the output gradient(s) (one per output; `acc`: the gradients it may accumulate into); checks
   * one correctly shaped gradient per needed input.
   */
  apply(g: Tensor | readonly Tensor[], acc: readonly (Tensor | undefined)[] = []): (Tensor | null)[] {
    if (this.freed)
      throw new TensorError(
        `backward through op '${this.op}' a second time: its saved tensors were freed by the first backward() ` +
          "(to run backward through a graph twice, pass { retainGraph: true } to the first call)",
      );
    const needs = this.next.map((n) => n !== null);
    const outs = this.outShapes ? (this.rule as OutputsBackwardRule)(g as readonly Tensor[], this.saved, needs, acc) : (this.rule as BackwardRule)(g as Tensor, this.saved, needs, acc);
    for (let i = 0; i < this.next.length; i++) {
      const o = outs[i] ?? null;
      if (needs[i] && o === null) throw new TensorError(`internal: backward of '${this.op}' gave no gradient for input ${i}`);
      if (o && !sameShape(o.shape, this.inputShapes[i]!))
        throw new TensorError(`internal: backward of '${this.op}' gave a ${fmtShape(o.shape)} gradient for input ${i} of shape ${fmtShape(this.inputShapes[i]!)}`);
    }
    return outs;
  }
}

/** Record `out` as the result of an op (no-op when grad mode is off or no input requires grad). */
export function attach(out: Tensor, r: OpRecord): Tensor {
  record([out], r, r.backward, false);
  return out;
}

/** Record `outs` as the results of one op (one Node with an output each; see the module comment). */
export function attachOutputs(outs: readonly Tensor[], r: OutputsRecord): Tensor[] {
  record(outs, r, r.backward, true);
  return [...outs];
}

function record(outs: readonly Tensor[], r: Omit<OpRecord, "backward">, rule: BackwardRule | OutputsBackwardRule, several: boolean): void {
  if (!gradEnabled) return;
  const needs = r.inputs.map((t) => t.requiresGrad);
  if (!needs.some(Boolean)) return;
  const saved = untracked(() => (r.save?.(needs) ?? []).map((t) => (t ? t.detach() : null)));
  const next = r.inputs.map((t, i) => (needs[i] ? (t.gradFn ?? t) : null));
  const nextOut = r.inputs.map((t) => (t.gradFn ? t.gradOut : 0));
  const node = new Node(r.op, next, nextOut, r.inputs.map((t) => t.shape), saved, rule, several ? outs.map((t) => t.shape) : undefined);
  outs.forEach((out, j) => {
    if (j > 0) node.ref(); // one reference per output tensor
    out.requiresGrad = true;
    out.gradFn = node;
    out.gradOut = j;
  });
}

// ---- backward -----------------------------------------------------------------------------------------

export interface BackwardOptions {
  /** Keep the saved tensors so backward can run through the graph again. */
  retainGraph?: boolean;
  /**
   * Called once per leaf when its gradient is final for this backward (torch's post-accumulate-grad hook): every
   * Node with an edge to the leaf has run and added its part into `leaf.grad` (recorded, not yet executed: GPU work
   * recorded from the hook runs after it). A leaf reached along several edges (tied weights, `x.add(x)`) is called
   * after the last; one that gets no gradient (unreached, or released) is not called. Calls come in the walk's
   * order, so a leaf is called before any leaf that only Nodes later in the walk feed. Only this walk's edges count:
   * what a nested backward adds (src/tensor/recompute.ts, parameters a checkpointed function uses without listing
   * them) is not seen. Used by data-parallel training (src/align/data_parallel.ts) to read a bucket of gradients
   * back while the backward goes on.
   */
  onGradReady?: (leaf: Tensor) => void;
}

/**
 * Accumulate d(root)/d(leaf) into `leaf.grad` for every leaf that requires grad. `grad` (root's shape) is
 * required when root is not a single element; it defaults to 1.
 */
export function backward(root: Tensor, grad?: Tensor, opts: BackwardOptions = {}): void {
  root.assertLive();
  if (!root.requiresGrad)
    throw new TensorError(`backward(): ${root} does not require grad (no input had requiresGrad, or it was computed under noGrad)`);
  if (grad === undefined && root.size !== 1)
    throw new TensorError(
      `backward(): ${root} is not a scalar; pass the gradient of the output explicitly, ` +
        `a tensor of shape ${fmtShape(root.shape)}, as backward(grad) (or reduce it first, e.g. .sum())`,
    );
  if (grad !== undefined && !(grad instanceof Tensor)) throw new TensorError(`backward(): the gradient must be a Tensor, got ${String(grad)}`);
  if (grad && !sameShape(grad.shape, root.shape))
    throw new TensorError(`backward(): gradient shape ${fmtShape(grad.shape)} does not match ${root}`);
  untracked(() =>
    noGrad(() => {
      const g0 = grad ? grad.detach() : Tensor.ones(root.gpu, root.shape);
      const ready = opts.onGradReady;
      if (!root.gradFn) {
        accumulateLeaf(root, g0);
        if (ready && !root.released) ready(root);
        return;
      }
      const order = topoOrder(root.gradFn);
      // With a hook: the edges into each leaf still to run; the leaf is final when its count reaches 0.
      const pending = ready ? leafEdges(order) : undefined;
      const fed = ready ? new Set<Tensor>() : undefined; // leaves that got a part in this backward
      const done = (leaf: Tensor) => {
        const left = pending!.get(leaf)! - 1;
        pending!.set(leaf, left);
        if (left === 0 && fed!.has(leaf) && !leaf.released) ready!(leaf);
      };
      // Per Node, the summed gradient of each of its outputs so far (undefined: none yet).
      const grads = new Map<Node, (Tensor | undefined)[]>([[root.gradFn, slots(root.gradFn, root.gradOut, g0)]]);
      try {
        for (const node of order) {
          const gs = grads.get(node);
          if (!gs) {
            if (pending) for (const n of node.next) if (n instanceof Tensor) done(n);
            continue;
          }
          grads.delete(node);
          // An output nothing gave a gradient to gets zeros (only Nodes with several outputs have such).
          const full = gs.map((g, j) => g ?? Tensor.zeros(root.gpu, node.outShapes![j]!));
          const acc = node.next.map((_, i) => accTarget(node, i, full, grads));
          let outs: (Tensor | null)[];
          try {
            outs = node.apply(node.outShapes ? full : full[0]!, acc);
          } finally {
            for (const g of full) g.release();
          }
          node.next.forEach((n, i) => {
            const gi = outs[i];
            if (gi && gi === acc[i]) {
              if (n instanceof Tensor) fed?.add(n); // added in place: grads (or the leaf's .grad) holds it already
            } else if (gi) {
              if (n === null) gi.release();
              else if (n instanceof Node) {
                const j = node.nextOut[i]!;
                const pend = grads.get(n);
                if (!pend) grads.set(n, slots(n, j, gi));
                else pend[j] = pend[j] ? sumGrads(pend[j]!, gi) : gi;
              } else {
                accumulateLeaf(n, gi);
                fed?.add(n);
              }
            }
            if (pending && n instanceof Tensor) done(n);
          });
          if (!opts.retainGraph) node.freeSaved();
        }
      } finally {
        for (const gs of grads.values()) for (const g of gs) g?.release();
      }
    }),
  );
}

/** A Node's pending output gradients with `g` as output j's. */
function slots(node: Node, j: number, g: Tensor): (Tensor | undefined)[] {
  const gs: (Tensor | undefined)[] = new Array(node.outputs).fill(undefined);
  gs[j] = g;
  return gs;
}

/** Nodes reachable from `root`, each before the Nodes it feeds (root first). Iterative DFS post-order. */
function topoOrder(root: Node): Node[] {
  const post: Node[] = [];
  const seen = new Set<Node>([root]);
  const stack: [Node, number][] = [[root, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [node, i] = top;
    if (i < node.next.length) {
      top[1]++;
      const n = node.next[i];
      if (n instanceof Node && !seen.has(n)) {
        seen.add(n);
        stack.push([n, 0]);
      }
    } else {
      stack.pop();
      post.push(node);
    }
  }
  return post.reverse();
}

/**
 * The gradient input i of `node` already has, when its rule may accumulate into it in place (the module comment's
 * conditions): the pending gradient of a Node held by nobody else, or a leaf's `.grad`; else undefined.
 */
function accTarget(node: Node, i: number, gs: readonly Tensor[], grads: ReadonlyMap<Node, readonly (Tensor | undefined)[]>): Tensor | undefined {
  const n = node.next[i];
  if (!n || node.next.indexOf(n) !== node.next.lastIndexOf(n)) return undefined;
  const t = n instanceof Node ? grads.get(n)?.[node.nextOut[i]!] : n.released ? null : n.grad;
  if (!t || t.released || (n instanceof Node && t.storage.refs !== 1)) return undefined;
  if (!sameShape(t.shape, node.inputShapes[i]!) || gs.some((g) => t.storage === g.storage) || node.reads(t.storage)) return undefined;
  return t;
}

/** For the onGradReady hook: per leaf, how many edges of the Nodes in `order` lead to it. */
function leafEdges(order: readonly Node[]): Map<Tensor, number> {
  const edges = new Map<Tensor, number>();
  for (const node of order) for (const n of node.next) if (n instanceof Tensor) edges.set(n, (edges.get(n) ?? 0) + 1);
  return edges;
}

/** dst += src, in place (same dtype, f32 or f16; same size; distinct buffers). */
function addInPlace(dst: Tensor, src: Tensor): void {
  if (!dst.size) return;
  if (dst.dtype !== src.dtype) throw new TensorError(`backward: cannot add a ${src.dtype} gradient into a ${dst.dtype} one`);
  if (dst.dtype === "f16") return accumulateF16(dst.gpu, { src: src.buffer, dst: dst.buffer }, { n: dst.size });
  if (dst.dtype !== "f32") throw new TensorError(`backward: gradients of dtype ${dst.dtype} are not supported`);
  accumulate(dst.gpu, { src: src.buffer, dst: dst.buffer }, { n: dst.size });
}

/** a + b for two engine-owned gradients; reuses a's buffer when nothing else shares it. Consumes both. */
function sumGrads(a: Tensor, b: Tensor): Tensor {
  const dst = a.storage.refs === 1 && a.storage !== b.storage ? a : clone(a);
  addInPlace(dst, b);
  b.release();
  if (dst !== a) a.release();
  return dst;
}

/** Add an engine-owned gradient into `leaf.grad` (adopting it when it owns its buffer). Consumes `g`. */
function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (leaf.released) return g.release(); // a released tensor has no .grad
  if (!leaf.grad) {
    leaf.grad = g.storage.refs === 1 ? g : clone(g);
    if (leaf.grad !== g) g.release();
    return;
  }
  if (leaf.grad.storage === g.storage) {
    const c = clone(g);
    g.release();
    g = c;
  }
  addInPlace(leaf.grad, g);
  g.release();
}

// ---- the Tensor methods that need the engine (see the module comment) ---------------------------------

declare module "./tensor.ts" {
  interface Tensor {
    /** The same storage seen with another shape (free: no copy). One dimension may be -1. */
    reshape(...shape: number[] | [readonly number[]]): Tensor;
    /**
     * Reverse-mode gradients of this tensor into every leaf's `.grad`: `t.backward()` for a one-element t,
     * `t.backward(grad)` otherwise; options `{ retainGraph: true }` as the last argument.
     */
    backward(grad?: Tensor | BackwardOptions, opts?: BackwardOptions): void;
  }
}

/** `x.reshape(...)`: a view of x's storage with the target shape; its gradient is g seen with x's shape. */
function reshape(this: Tensor, ...shape: number[] | [readonly number[]]): Tensor {
  const target = inferShape("reshape", this.shape, (Array.isArray(shape[0]) ? shape[0] : shape) as number[]);
  const from = this.shape;
  this.assertLive();
  const out = new Tensor(this.storage.retain(), target, this.dtype);
  return attach(out, { op: "reshape", inputs: [this], backward: (g) => [g.reshape(from)] });
}

function backwardMethod(this: Tensor, grad?: Tensor | BackwardOptions, opts: BackwardOptions = {}): void {
  if (grad instanceof Tensor || grad === undefined) backward(this, grad, opts);
  else backward(this, undefined, grad);
}

for (const [name, fn] of Object.entries({ reshape, backward: backwardMethod }))
  Object.defineProperty(Tensor.prototype, name, { value: fn, writable: true, configurable: true });

/**
 * Activation checkpointing (torch.utils.checkpoint): trade compute for memory by keeping only a block's
 * inputs between forward and backward, and recomputing the block's intermediates when backward reaches it.
 *
 *   x = checkpoint((x, pos) => decoderLayer(x, pos), [x, pos], layerParams);
 *
 * Forward: `fn(...inputs)` runs under noGrad inside a scope, so none of its intermediates is recorded or
 * kept; its output gets ONE autograd node ("checkpoint") whose saved tensors are the inputs, nothing else.
 *
 * Backward (the node's rule): restore the random generators to their state at the forward (torch's
 * preserve_rng_state: dropout draws the same masks), re-run `fn` with grad on, on fresh leaves that are
 * detached views of the inputs, run a nested backward from the recomputed output with the incoming
 * gradient, put the generators back, and hand the leaves' gradients to the outer backward. Everything the
 * recompute created is released before the rule returns; the recomputed graph frees itself.
 *
 * Parameters `fn` closes over get their gradient exactly once, either way they are declared:
 *   - listed in `params`: their gradient comes out of the recompute as the node's own input gradients and the
 *     outer backward accumulates it (`.grad` is set aside during the recompute), so the node is recorded
 *     even when no input requires grad (a frozen embedding feeding trainable layers, LoRA);
 *   - not listed: the nested backward accumulates into their `.grad` directly. But if then no input requires
 *     grad either, nothing is checkpointed: `fn` runs normally with grad on (correct gradients, no saving).
 *
 * Rules for `fn`: deterministic apart from the generators given (default: the default generator), the
 * same output shape on every call, and a pure function of its inputs and long-lived tensors (parameters):
 * any other tensor it reads (positions, masks) must be passed in `inputs`, because the recompute runs during
 * backward, after the caller's scopes have released their temporaries. `inputs` may hold null (passed to
 * `fn` as null). Outside grad mode (eval) `checkpoint(fn, inputs)` is just `scope(() => fn(...inputs))`.
 * Works nested (a checkpointed function may call checkpoint) and with retainGraph (each backward recomputes).
 *
 * Cost: one extra forward of `fn` per backward. Uses two core hooks: autograd.ts `enableGrad(fn)` (grad on
 * inside a backward rule) and tensor.ts `tracked(fn)` (scope tracking on inside the engine's `untracked`, so
 * the recompute's temporaries can be released by a scope).
 */
import { attach, backward, enableGrad, isGradEnabled, noGrad } from "./autograd.ts";
import { defaultGenerator, type Generator } from "./rng.ts";
import { fmtShape, sameShape, TensorError } from "./shape.ts";
import { keep, scope, Tensor, tracked } from "./tensor.ts";

export interface CheckpointOptions {
  /**
   * Replay the random draws of the forward in the recompute (torch's preserve_rng_state). Default true.
   * Off saves nothing measurable here (a generator state is two integers); it exists for parity.
   */
  preserveRngState?: boolean;
  /** The generators `fn` draws from, saved and restored around the recompute. Default [defaultGenerator]. */
  generators?: readonly Generator[];
}

export type CheckpointInput = Tensor | null | undefined;

/**
 * `fn(...inputs)`, keeping only `inputs` for backward and recomputing `fn` there (see the module comment).
 * `params`: the trainable tensors `fn` closes over (optional; any iterable, e.g. a Map's values()).
 */
export function checkpoint<const I extends CheckpointInput[]>(
  fn: (...inputs: NoInfer<I>) => Tensor,
  inputs: readonly [...I],
  params: Iterable<Tensor> = [],
  opts: CheckpointOptions = {},
): Tensor {
  if (typeof fn !== "function") throw new TensorError(`checkpoint: fn must be a function, got ${String(fn)}`);
  if (!Array.isArray(inputs)) throw new TensorError("checkpoint: inputs must be an array of tensors (or nulls)");
  inputs.forEach((t, i) => {
    if (t !== null && t !== undefined && !(t instanceof Tensor)) throw new TensorError(`checkpoint: inputs[${i}] is not a Tensor: ${String(t)}`);
    t?.assertLive();
  });
  const ps = [...new Set(params)];
  ps.forEach((p, i) => {
    if (!(p instanceof Tensor)) throw new TensorError(`checkpoint: params[${i}] is not a Tensor: ${String(p)}`);
    p.assertLive();
  });
  const call = fn as unknown as (...args: readonly CheckpointInput[]) => Tensor;
  const run = (args: readonly CheckpointInput[]): Tensor => {
    const out = call(...args);
    if (!(out instanceof Tensor)) throw new TensorError(`checkpoint: fn must return one Tensor, got ${String(out)}`);
    return out;
  };

  // Positions of the tensors among `inputs`, then the node's inputs: those tensors, then the params.
  const slots = inputs.flatMap((t, i) => (t ? [i] : []));
  const nodeInputs = [...slots.map((i) => inputs[i]!), ...ps];
  if (!isGradEnabled() || !nodeInputs.some((t) => t.requiresGrad)) return scope(() => run(inputs));

  const gens = (opts.preserveRngState ?? true) ? [...(opts.generators ?? [defaultGenerator])] : [];
  const rngAtForward = gens.map((g) => g.getState());

  let out = scope(() => noGrad(() => run(inputs)));
  // A result that is not fresh (an input, a parameter) must not become this node's output: give it a view.
  if (out.requiresGrad || inputs.includes(out)) out = out.detach();
  const outShape = out.shape;
  const template = inputs.map((t) => (t ? null : t)); // the recompute's arguments, tensors filled in there

  return attach(out, {
    op: "checkpoint",
    inputs: nodeInputs,
    save: () => slots.map((i) => inputs[i]!),
    backward: (g, saved, needs) =>
      tracked(() =>
        scope(() => {
          // Fresh leaves for the recompute: detached views of the saved inputs, marked where a gradient is wanted.
          const leaves = saved.map((t, k) => {
            const v = t!.detach();
            return needs[k] ? v.setRequiresGrad(true) : v;
          });
          const args = [...template];
          slots.forEach((i, k) => (args[i] = leaves[k]!));
          // Listed params: set their .grad aside so the recompute's gradient can be handed to the outer backward.
          const aside = ps.map((p, j) => {
            if (!needs[slots.length + j]) return undefined;
            const prev = p.grad;
            p.grad = null;
            return prev;
          });
          const rngNow = gens.map((gen) => gen.getState());
          try {
            gens.forEach((gen, i) => gen.setState(rngAtForward[i]!));
            const y = enableGrad(() => run(args));
            if (!sameShape(y.shape, outShape))
              throw new TensorError(`checkpoint: the recompute gave ${fmtShape(y.shape)}, the forward ${fmtShape(outShape)}; fn must be deterministic`);
            if (y.requiresGrad) backward(y, g);
            return nodeInputs.map((t, k) => {
              if (!needs[k]) return null;
              const leaf = k < slots.length ? leaves[k]! : t;
              const gk = leaf.grad ?? Tensor.zeros(t.gpu, t.shape);
              leaf.grad = null;
              return keep(gk); // handed to the outer backward, not to this scope
            });
          } finally {
            gens.forEach((gen, i) => gen.setState(rngNow[i]!));
            ps.forEach((p, j) => {
              if (!needs[slots.length + j]) return;
              p.grad?.release(); // only after a failed recompute
              p.grad = aside[j] ?? null;
            });
          }
        }),
      ),
  });
}

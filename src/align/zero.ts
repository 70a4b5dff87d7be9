/**
 * Optimizer-state sharding (ZeRO stage 1, `--shard-optimizer`) for data-parallel training: the parameters are
 * split into W contiguous runs of about equal size (in parameter order, the same on every rank), rank r owns
 * run r, and only the owner steps a parameter, so AdamW's two moments exist for 1/W of the parameters on each
 * rank. After the gradient exchange every rank holds the full mean gradient (the clip's norm is over all of it,
 * the same everywhere); the gradients a rank does not own are dropped before the step (the optimizer skips a
 * parameter without a gradient: no state is made for it), and the owners broadcast the updated weights
 * (in buckets), so every rank again holds the same weights as an unsharded run, bit for bit: the same update
 * kernel runs on the same inputs, on one rank instead of all.
 *
 * Checkpoints stay in the unsharded format (any run can resume them, on any number of ranks, sharded or not):
 * before rank 0 writes one, every owner broadcasts its moments and step counts, and rank 0 writes them from host
 * memory through a view of its optimizer (`gatherState`); resuming, each rank loads only its own parameters'
 * state (`ownedState`).
 */
import type { Comm } from "../dist/index.ts";
import type { Optimizer, OptimizerStateDict, ParamState } from "../optim/index.ts";
import type { Tensor } from "../tensor/index.ts";

const BUCKET_BYTES = 4 << 20;

export class OptimizerShard {
  /** The owning rank of each parameter. */
  readonly owner = new Map<Tensor, number>();
  /** Parameters in order, with their names. */
  private readonly list: { name: string; p: Tensor }[];

  constructor(
    params: Readonly<Record<string, Tensor>>,
    readonly comm: Comm,
  ) {
    this.list = Object.entries(params).map(([name, p]) => ({ name, p }));
    const total = this.list.reduce((a, x) => a + x.p.size, 0);
    let before = 0;
    for (const { p } of this.list) {
      // The rank whose share [r·total/W, (r+1)·total/W) holds this parameter's middle element.
      const mid = before + p.size / 2;
      this.owner.set(p, Math.min(comm.size - 1, Math.floor((mid * comm.size) / Math.max(1, total))));
      before += p.size;
    }
  }

  owns(p: Tensor): boolean {
    return this.owner.get(p) === this.comm.rank;
  }

  /** Elements of the parameters this rank owns, and of all. */
  sizes(): { owned: number; total: number } {
    let owned = 0, total = 0;
    for (const { p } of this.list) {
      total += p.size;
      if (this.owns(p)) owned += p.size;
    }
    return { owned, total };
  }

  /** Release the gradients of the parameters another rank steps (before the optimizer step). */
  dropForeignGradients(): void {
    for (const { p } of this.list) if (!this.owns(p)) p.zeroGrad();
  }

  /** A checkpoint's optimizer state restricted to this rank's parameters (for `loadStateDict`). */
  ownedState(sd: OptimizerStateDict): OptimizerStateDict {
    const mine = new Set(this.list.filter((x) => this.owns(x.p)).map((x) => x.name));
    return { ...sd, state: Object.fromEntries(Object.entries(sd.state).filter(([name]) => mine.has(name))) };
  }

  /** Collective: every owner broadcasts its updated parameters; the others write them into theirs. */
  async allGatherWeights(): Promise<void> {
    const gpu = this.list[0]?.p.gpu;
    if (!gpu) return;
    for (const bucket of this.buckets()) {
      const { root, items, elems } = bucket;
      const host = new Float32Array(elems);
      if (root === this.comm.rank) {
        const arrays = await Promise.all(items.map((x) => x.p.toArray()));
        arrays.forEach((a, k) => host.set(a, items[k]!.offset));
      }
      this.comm.broadcast(host, root);
      if (root !== this.comm.rank) for (const x of items) if (x.p.size) gpu.write(x.p.buffer, host.subarray(x.offset, x.offset + x.p.size));
    }
  }

  /**
   * Collective, before a checkpoint: every owner broadcasts its parameters' AdamW state. Returns, on rank 0, a view
   * of `opt` whose `stateOf` answers for every parameter (its own from the GPU, the others' from host copies), as
   * `saveTrainCheckpoint` reads an optimizer; undefined on the other ranks.
   */
  async gatherState(opt: Optimizer<{ lr: number }>): Promise<Optimizer<{ lr: number }> | undefined> {
    const root = this.comm.rank === 0;
    const gathered = new Map<Tensor, ParamState>();
    const byOwner = new Map<number, { name: string; p: Tensor }[]>();
    for (const x of this.list) {
      const r = this.owner.get(x.p)!;
      if (r !== 0) byOwner.set(r, [...(byOwner.get(r) ?? []), x]);
    }
    const enc = new TextEncoder();
    for (const [r, items] of byOwner) {
      // What the owner holds: a step count and state names per parameter (JSON), then the tensors.
      let head = new Uint8Array(0);
      if (r === this.comm.rank) {
        const doc = items.map((x) => {
          const st = opt.stateOf(x.p);
          return st ? { step: st.step, keys: Object.keys(st.tensors) } : null;
        });
        head = enc.encode(JSON.stringify(doc));
      }
      const len = Int32Array.of(head.length);
      this.comm.broadcast(len, r);
      if (r !== this.comm.rank) head = new Uint8Array(len[0]!);
      this.comm.broadcast(head, r);
      const doc = JSON.parse(new TextDecoder().decode(head)) as ({ step: number; keys: string[] } | null)[];
      for (const [k, x] of items.entries()) {
        const d = doc[k];
        if (!d) continue;
        const tensors: Record<string, Float32Array> = {};
        for (const key of d.keys) {
          const own = r === this.comm.rank ? opt.stateOf(x.p)!.tensors[key]! : undefined;
          const arr = own ? await own.toArray() : new Float32Array(x.p.size);
          this.comm.broadcast(arr, r);
          tensors[key] = arr;
        }
        if (root) gathered.set(x.p, { step: d.step, tensors: Object.fromEntries(Object.entries(tensors).map(([key, a]) => [key, hostTensor(a)])) as unknown as ParamState["tensors"] });
      }
    }
    if (!root) return undefined;
    return new Proxy(opt, {
      get(target, prop, receiver) {
        if (prop === "stateOf") return (p: Tensor) => gathered.get(p) ?? target.stateOf(p);
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }

  /** Contiguous runs of one owner's parameters, at most BUCKET_BYTES each (a larger parameter alone). */
  private buckets(): { root: number; items: { p: Tensor; offset: number }[]; elems: number }[] {
    const out: { root: number; items: { p: Tensor; offset: number }[]; elems: number }[] = [];
    let cur: (typeof out)[number] | undefined;
    for (const { p } of this.list) {
      const root = this.owner.get(p)!;
      if (!cur || cur.root !== root || (cur.elems > 0 && (cur.elems + p.size) * 4 > BUCKET_BYTES)) out.push((cur = { root, items: [], elems: 0 }));
      cur.items.push({ p, offset: cur.elems });
      cur.elems += p.size;
    }
    return out;
  }
}

/** What the checkpoint writer reads of a state tensor (`data()`), from host memory. */
function hostTensor(a: Float32Array): { data(): Promise<Float32Array>; toArray(): Promise<Float32Array>; size: number } {
  return { data: async () => a, toArray: async () => a, size: a.length };
}

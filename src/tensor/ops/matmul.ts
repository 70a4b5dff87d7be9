/**
 * Matrix products: `matmul(a, b, { transA, transB })` (2-D and batched) and `linear(x, w, bias)` (HF/PyTorch
 * `nn.Linear`: y = x · wᵀ + bias, weight [out, in]). Launchers: src/kernels/matmul.ts (kernel variants, the
 * device's choice among them, and their tuner).
 *
 * Batching: a [...batch, M, K] and b [...batch, K, N] with equal batch dimensions, or one of them 2-D and
 * shared across the other's batch (a weight, as PyTorch broadcasts it), give [...batch, M, N].
 *
 * Backward, with op(X) = X or Xᵀ as the flags say and C = op(A) · op(B):
 *   d op(A) = dC · op(B)ᵀ     d op(B) = op(A)ᵀ · dC
 * each one product of the same kernel with the transposes folded into its flags. A 2-D operand shared by a
 * batch gets the sum over the batch: when the batch can be folded into the reduction dimension (the other
 * operand and dC flattened to [batch * M, ...]) that is one product; otherwise one batched product followed
 * by a sum over the batch.
 *
 * In-place accumulation: where the autograd engine offers a rule the gradient an input already has (`acc`,
 * src/tensor/autograd.ts: a tensor feeding several products, a leaf's `.grad` from an earlier micro-batch), a
 * gradient that is one product (not the batch sum) is added into it by the product itself (the launcher's
 * `accumulate`: C += op(A) · op(B)), and the rule returns it: no separate grad.accumulate pass.
 *
 * Half precision (needs the device feature `shader-f16`): f16 operands are read as f16 and converted, every
 * product accumulates in f32, and the result is stored as `outDtype`: by default the inputs' dtype (f16 in,
 * f16 out, as under torch.autocast), or f32 on request (e.g. logits for a loss). Public operands (and a
 * linear's bias) must share one dtype; backward products mix them freely (an f32 dC with an f16 operand),
 * and each input's gradient comes out in that input's dtype. f16 gradient sums (a bias, a weight shared by a
 * batch) reduce in f32 and round once.
 */
import { matmulProduct, type MatmulDType, type MatmulProblem } from "../../kernels/matmul.ts";
import { attach } from "../autograd.ts";
import { fmtShape, numel, sameShape, TensorError, type Shape } from "../shape.ts";
import { Tensor, type DType } from "../tensor.ts";
import { cast } from "./cast.ts";
import { sum } from "./reduce.ts";

export interface MatmulOptions {
  /** Use aᵀ: a is [..., K, M]. */
  transA?: boolean;
  /** Use bᵀ: b is [..., N, K] (a weight in [out, in] layout). */
  transB?: boolean;
  /** The result's dtype (f32 or f16); default: the operands'. Accumulation is f32 either way. */
  outDtype?: DType;
}

/**
 * Record the launch(es) of `pr` into `out` ([batch, M, N] elements), reading a, b and optionally bias [N] (f32/f16:
 * checkFloat); with `accumulate`, added into out's contents (out distinct from a, b and bias).
 */
function launch(name: string, pr: MatmulProblem, a: Tensor, b: Tensor, bias: Tensor | null, out: Tensor, accumulate = false): void {
  const dt = (t: Tensor) => t.dtype as MatmulDType;
  const io = bias ? { a: a.buffer, b: b.buffer, c: out.buffer, bias: bias.buffer } : { a: a.buffer, b: b.buffer, c: out.buffer };
  matmulProduct(out.gpu, io, { ...pr, dtypes: { a: dt(a), b: dt(b), c: dt(out), ...(bias ? { bias: dt(bias) } : {}) }, name, accumulate });
}

const describe = (x: string, t: Tensor, trans: boolean) => `${x} ${fmtShape(t.shape)}${trans ? " (transposed)" : ""}`;

/**
 * Check operands (and the result dtype) for `op`: live, one device, f32 or f16, f16 only where the device
 * has shader-f16, and (for the public entry points, `same`) one dtype for all.
 */
function checkFloat(op: string, ts: readonly Tensor[], out: DType, same: boolean): void {
  const gpu = ts[0]!.gpu;
  for (const t of ts) {
    t.assertLive();
    if (t.gpu !== gpu) throw new TensorError(`${op}: operands live on different GPU devices`);
    if (t.dtype !== "f32" && t.dtype !== "f16") throw new TensorError(`${op}: ${t} has dtype ${t.dtype}; matrix products take f32 or f16`);
    if (same && t.dtype !== ts[0]!.dtype) throw new TensorError(`${op}: operands have different dtypes: ${ts.map(String).join(", ")}`);
  }
  if (out !== "f32" && out !== "f16") throw new TensorError(`${op}: outDtype must be f32 or f16, got ${out}`);
  if ((out === "f16" || ts.some((t) => t.dtype === "f16")) && !gpu.features.has("shader-f16"))
    throw new TensorError(`${op}: f16 needs the device feature shader-f16, which ${gpu.adapter.description} lacks`);
}

/** Shapes of op(a) · op(b): the launch problem and the output shape. Throws naming `op` and both shapes. */
function plan(op: string, a: Tensor, b: Tensor, transA: boolean, transB: boolean): { pr: MatmulProblem; shape: number[] } {
  const both = `${describe("a", a, transA)} and ${describe("b", b, transB)}`;
  if (a.rank < 2 || b.rank < 2) throw new TensorError(`${op}: needs operands of rank >= 2 (matrices or batches of them), got ${both}`);
  const [ra, ca] = a.shape.slice(-2) as [number, number];
  const [rb, cb] = b.shape.slice(-2) as [number, number];
  const [M, Ka] = transA ? [ca, ra] : [ra, ca];
  const [Kb, N] = transB ? [cb, rb] : [rb, cb];
  if (Ka !== Kb) throw new TensorError(`${op}: inner dimensions differ: ${both} (K = ${Ka} vs ${Kb})`);
  const ba = a.shape.slice(0, -2);
  const bb = b.shape.slice(0, -2);
  let batchShape: Shape;
  if (sameShape(ba, bb)) batchShape = ba;
  else if (bb.length === 0) batchShape = ba;
  else if (ba.length === 0) batchShape = bb;
  else throw new TensorError(`${op}: batch dimensions differ: ${both} (they must be equal, or one operand 2-D)`);
  const batch = numel(batchShape);
  const pr = { M, N, K: Ka, batch, sharedA: ba.length === 0 && batch > 1, sharedB: bb.length === 0 && batch > 1, transA, transB };
  return { pr, shape: [...batchShape, M, N] };
}

/**
 * op(a) · op(b) as a new `dtype` tensor, no autograd (operand dtypes may differ); or, given `into` (a gradient the
 * engine offered: `dtype`, as many elements as the product, any shape), added into it in place, returning `into`.
 */
function product(op: string, a: Tensor, b: Tensor, transA: boolean, transB: boolean, dtype: DType, into?: Tensor): Tensor {
  checkFloat(op, [a, b], dtype, false);
  const { pr, shape } = plan(op, a, b, transA, transB);
  if (into && (into.dtype !== dtype || into.size !== numel(shape)))
    throw new TensorError(`internal: ${op} cannot accumulate a ${dtype} ${fmtShape(shape)} product into ${into}`);
  const out = into ?? Tensor.empty(a.gpu, shape, { dtype });
  launch(op, pr, a, b, null, out, into !== undefined);
  return out;
}

/** The engine's offered gradient when the rule's gradient would have its dtype (else the rule makes a new one). */
const accInto = (acc: Tensor | undefined, dtype: DType): Tensor | undefined => (acc && acc.dtype === dtype ? acc : undefined);

/** Sum t [n, ...rest] over its first dimension in f32, consuming t; the result in `dtype`. */
function sumFirst(t: Tensor, rest: Shape, dtype: DType): Tensor {
  const flat = t.reshape([numel(t.shape) / numel(rest), ...rest]);
  t.release();
  const wide = flat.dtype === "f32" ? flat : cast(flat, "f32");
  if (wide !== flat) flat.release();
  const s = sum(wide, 0);
  wide.release();
  if (dtype === "f32") return s;
  const r = cast(s, dtype);
  s.release();
  return r;
}

/**
 * Gradient of op(X) (X = A when `which` is "a"), in X's stored layout, from dC and the other operand.
 * d op(A) = dC · op(B)ᵀ, so dA = dC · op(B)ᵀ, or its transpose op(B) · dCᵀ when A is stored transposed;
 * likewise dB = op(A)ᵀ · dC, or dCᵀ · op(A) when B is stored transposed. `acc`: the engine's offered gradient
 * of X; where the gradient is one product it is added into acc, which is returned.
 */
function gradOf(which: "a" | "b", g: Tensor, other: Tensor, tA: boolean, tB: boolean, xShape: Shape, xDtype: DType, acc?: Tensor): Tensor {
  const name = `matmul.grad_${which}`;
  const sharedX = xShape.length === 2 && other.rank > 2;
  const into = accInto(acc, xDtype);
  const one = (gg: Tensor, o: Tensor, dt = xDtype, dst?: Tensor): Tensor =>
    which === "a"
      ? tA
        ? product(name, o, gg, tB, true, dt, dst)
        : product(name, gg, o, false, !tB, dt, dst)
      : tB
        ? product(name, gg, o, true, tA, dt, dst)
        : product(name, o, gg, !tA, false, dt, dst);
  if (!sharedX) return one(g, other, xDtype, into);
  // X is a 2-D weight shared by the batch. When `other` is not transposed relative to the flattening
  // (A not transposed for dB; never for dA), fold the batch into the reduction: one 2-D product.
  if (which === "b" && !tA) {
    const K = xShape[tB ? 1 : 0]!;
    const o2 = other.reshape(-1, K);
    const g2 = g.reshape(-1, g.shape[g.rank - 1]!);
    const r = one(g2, o2, xDtype, into);
    o2.release();
    g2.release();
    return r;
  }
  return sumFirst(one(g, other, "f32"), xShape, xDtype);
}

/**
 * Matrix product op(a) · op(b), op = transpose where `transA` / `transB` say. a [...batch, M, K] (or
 * [..., K, M] with transA), b [...batch, K, N] (or [..., N, K] with transB); batch dimensions equal, or one
 * operand 2-D and shared across the batch. Returns [...batch, M, N] in `outDtype` (default: a's dtype).
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const tA = opts.transA ?? false;
  const tB = opts.transB ?? false;
  const dtype = opts.outDtype ?? a.dtype;
  checkFloat("matmul", [a, b], dtype, true);
  const out = product("matmul", a, b, tA, tB, dtype);
  const [aShape, bShape, aDtype, bDtype] = [a.shape, b.shape, a.dtype, b.dtype];
  return attach(out, {
    op: "matmul",
    inputs: [a, b],
    save: (needs) => [needs[1] ? a : null, needs[0] ? b : null],
    backward: (g, [sa, sb], needs, acc) => [
      needs[0] ? gradOf("a", g, sb!, tA, tB, aShape, aDtype, acc[0]) : null,
      needs[1] ? gradOf("b", g, sa!, tA, tB, bShape, bDtype, acc[1]) : null,
    ],
  });
}

/**
 * PyTorch `F.linear` / HF `nn.Linear`: y = x · wᵀ (+ bias). x [..., in] (any leading dimensions, or none),
 * w [out, in], bias [out], one dtype (f32 or f16). Returns [..., out] in `opts.outDtype` (default: x's
 * dtype). The bias is added in the product's epilogue, before the result is rounded to its dtype.
 */
export function linear(x: Tensor, w: Tensor, bias?: Tensor | null, opts: { outDtype?: DType } = {}): Tensor {
  const op = "linear";
  const ins = bias ? [x, w, bias] : [x, w];
  const dtype = opts.outDtype ?? x.dtype;
  checkFloat(op, ins, dtype, true);
  const shapes = `x ${fmtShape(x.shape)}, w ${fmtShape(w.shape)}${bias ? `, bias ${fmtShape(bias.shape)}` : ""}`;
  if (w.rank !== 2 || x.rank < 1) throw new TensorError(`${op}: needs x [..., in] and w [out, in], got ${shapes}`);
  const [nOut, nIn] = w.shape as [number, number];
  if (x.shape[x.rank - 1] !== nIn) throw new TensorError(`${op}: x's last dimension must equal w's in-features (w is [out, in]), got ${shapes}`);
  if (bias && !sameShape(bias.shape, [nOut])) throw new TensorError(`${op}: bias must be [out] = [${nOut}], got ${shapes}`);
  const lead = x.shape.slice(0, -1);
  const rows = numel(lead);
  const out = Tensor.empty(x.gpu, [...lead, nOut], { dtype });
  const pr: MatmulProblem = { M: rows, N: nOut, K: nIn, batch: 1, sharedA: false, sharedB: false, transA: false, transB: true };
  launch(op, pr, x, w, bias ?? null, out);
  const [xShape, xDtype] = [x.shape, x.dtype];
  return attach(out, {
    op,
    inputs: ins,
    save: (needs) => [needs[1] ? x : null, needs[0] ? w : null],
    backward: (g, [sx, sw], needs, acc) => {
      const g2 = g.reshape(rows, nOut);
      let dx: Tensor | null = null;
      if (needs[0]) {
        const into = accInto(acc[0], sw!.dtype);
        const d = product(`${op}.grad_x`, g2, sw!, false, false, sw!.dtype, into);
        dx = into ?? d.reshape(xShape);
        if (!into) d.release();
      }
      let dw: Tensor | null = null;
      if (needs[1]) {
        const x2 = sx!.reshape(rows, nIn);
        dw = product(`${op}.grad_w`, g2, x2, true, false, x2.dtype, accInto(acc[1], x2.dtype));
        x2.release();
      }
      const db = needs[2] ? sumFirst(g2.detach(), [nOut], xDtype) : null;
      g2.release();
      return bias ? [dx, dw, db] : [dx, dw];
    },
  });
}

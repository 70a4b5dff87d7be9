/**
 * The op table: every op as a function, and as a Tensor method (`x.mul(w).add(b).sum()`).
 * A new op family adds its module's exports here and its methods below.
 */
import { Tensor } from "../tensor.ts";
import { add, div, mul, sub } from "./binary.ts";
import { max, mean, sum } from "./reduce.ts";
import { linear, matmul, type MatmulOptions } from "./matmul.ts";
import { clamp, contiguous, expand, permute, slice, transpose } from "./shape_ops.ts";
import { logSoftmax, softmax } from "./softmax.ts";
import { addScalar, exp, gelu, log, mulScalar, neg, pow, rsqrt, sigmoid, silu, sqrt, tanh } from "./unary.ts";

export * from "./attention.ts";
export * from "./attention_decode.ts";
export * from "./binary.ts";
export * from "./cast.ts";
export * from "./embedding.ts";
export * from "./loss.ts";
export * from "./matmul.ts";
export * from "./norm.ts";
export * from "./random.ts";
export * from "./reduce.ts";
export * from "./rope.ts";
export * from "./shape_ops.ts";
export * from "./softmax.ts";
export * from "./unary.ts";

declare module "../tensor.ts" {
  interface Tensor {
    add(other: Tensor): Tensor;
    sub(other: Tensor): Tensor;
    mul(other: Tensor): Tensor;
    div(other: Tensor): Tensor;
    neg(): Tensor;
    exp(): Tensor;
    log(): Tensor;
    sqrt(): Tensor;
    rsqrt(): Tensor;
    tanh(): Tensor;
    sigmoid(): Tensor;
    silu(): Tensor;
    gelu(approximate?: "none" | "tanh"): Tensor;
    pow(e: number): Tensor;
    mulScalar(s: number): Tensor;
    addScalar(s: number): Tensor;
    sum(axis?: number, keepdim?: boolean): Tensor;
    mean(axis?: number, keepdim?: boolean): Tensor;
    max(axis?: number, keepdim?: boolean): Tensor;
    softmax(): Tensor;
    logSoftmax(): Tensor;
    transpose(d0: number, d1: number): Tensor;
    permute(perm: readonly number[]): Tensor;
    slice(axis: number, start?: number, end?: number, step?: number): Tensor;
    expand(shape: readonly number[]): Tensor;
    contiguous(): Tensor;
    clamp(min?: number, max?: number): Tensor;
    matmul(other: Tensor, opts?: MatmulOptions): Tensor;
    linear(w: Tensor, bias?: Tensor | null): Tensor;
  }
}

type OpMethod =
  | "add" | "sub" | "mul" | "div" | "neg" | "exp" | "log" | "sqrt" | "rsqrt" | "tanh" | "sigmoid" | "silu" | "gelu" | "pow"
  | "mulScalar" | "addScalar" | "sum" | "mean" | "max" | "softmax" | "logSoftmax" | "transpose" | "permute" | "slice" | "expand"
  | "contiguous" | "clamp" | "matmul" | "linear";

const methods = {
  add(o: Tensor) { return add(this, o); },
  sub(o: Tensor) { return sub(this, o); },
  mul(o: Tensor) { return mul(this, o); },
  div(o: Tensor) { return div(this, o); },
  neg() { return neg(this); },
  exp() { return exp(this); },
  log() { return log(this); },
  sqrt() { return sqrt(this); },
  rsqrt() { return rsqrt(this); },
  tanh() { return tanh(this); },
  sigmoid() { return sigmoid(this); },
  silu() { return silu(this); },
  gelu(approximate?: "none" | "tanh") { return gelu(this, approximate); },
  pow(e: number) { return pow(this, e); },
  mulScalar(s: number) { return mulScalar(this, s); },
  addScalar(s: number) { return addScalar(this, s); },
  sum(axis?: number, keepdim?: boolean) { return sum(this, axis, keepdim); },
  mean(axis?: number, keepdim?: boolean) { return mean(this, axis, keepdim); },
  max(axis?: number, keepdim?: boolean) { return max(this, axis, keepdim); },
  softmax() { return softmax(this); },
  logSoftmax() { return logSoftmax(this); },
  transpose(d0: number, d1: number) { return transpose(this, d0, d1); },
  permute(perm: readonly number[]) { return permute(this, perm); },
  slice(axis: number, start?: number, end?: number, step?: number) { return slice(this, axis, start, end, step); },
  expand(shape: readonly number[]) { return expand(this, shape); },
  contiguous() { return contiguous(this); },
  clamp(min?: number, max?: number) { return clamp(this, min, max); },
  matmul(o: Tensor, opts?: MatmulOptions) { return matmul(this, o, opts); },
  linear(w: Tensor, bias?: Tensor | null) { return linear(this, w, bias); },
} satisfies { [K in OpMethod]: (this: Tensor, ...args: Parameters<Tensor[K]>) => Tensor };
for (const [name, fn] of Object.entries(methods)) Object.defineProperty(Tensor.prototype, name, { value: fn, writable: true, configurable: true });

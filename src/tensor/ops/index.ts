/**
 * The op table: every op as a function, and as a Tensor method (`x.mul(w).add(b).sum()`).
 * A new op family adds its module's exports here and its methods below.
 */
import { Tensor } from "../tensor.ts";
import { add, div, mul, sub } from "./binary.ts";
import { mean, sum } from "./reduce.ts";
import { addScalar, exp, gelu, log, mulScalar, neg, pow, rsqrt, sigmoid, silu, sqrt, tanh } from "./unary.ts";

export * from "./binary.ts";
export * from "./reduce.ts";
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
  }
}

type OpMethod = "add" | "sub" | "mul" | "div" | "neg" | "exp" | "log" | "sqrt" | "rsqrt" | "tanh" | "sigmoid" | "silu" | "gelu" | "pow" | "mulScalar" | "addScalar" | "sum" | "mean";

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
} satisfies { [K in OpMethod]: (this: Tensor, ...args: Parameters<Tensor[K]>) => Tensor };
for (const [name, fn] of Object.entries(methods)) Object.defineProperty(Tensor.prototype, name, { value: fn, writable: true, configurable: true });

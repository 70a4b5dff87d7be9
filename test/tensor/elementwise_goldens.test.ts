// PyTorch goldens for the elementwise and reduction ops (tools/goldens/elementwise.py): forward values and
// input gradients of sum(out * upstream). The float64 references live in test/reference/{binary,unary,reduce}.ts
// (their finite-difference checks in binary/unary/reduce.test.ts, the launchers' table in
// test/kernels/launchers.test.ts); this file pins the semantics to torch's (broadcasting, GELU forms, pow,
// torch.amax tie sharing).
import { describe, test } from "bun:test";
import { add, div, max, mean, mul, sub, sum, Tensor } from "../../src/tensor/index.ts";
import { exp, gelu, log, neg, pow, rsqrt, sigmoid, silu, sqrt, tanh } from "../../src/tensor/index.ts";
import { loadGoldens, type GoldenCase } from "./goldens.ts";
import { expectClose, getGpu } from "./helpers.ts";

const BINARY = { add, sub, mul, div } as const;
const UNARY: Record<string, (x: Tensor) => Tensor> = {
  neg, exp, log, sqrt, rsqrt, tanh, sigmoid, silu,
  gelu: (x) => gelu(x),
  gelu_tanh: (x) => gelu(x, "tanh"),
};
const REDUCE = { sum, mean, max } as const;

const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

function run(c: GoldenCase, inputs: Record<string, Tensor>): Tensor {
  const p = c.params as Record<string, unknown>;
  if (p.kind === "binary") return BINARY[p.op as keyof typeof BINARY](inputs.a!, inputs.b!);
  if (p.kind === "unary") return UNARY[p.op as string]!(inputs.x!);
  if (p.kind === "pow") return pow(inputs.x!, p.e as number);
  const dim = p.dim === null ? undefined : (p.dim as number);
  return REDUCE[p.op as keyof typeof REDUCE](inputs.x!, dim, p.keepdim as boolean);
}

describe("elementwise and reduction ops vs PyTorch goldens", () => {
  test("every case: forward and input gradients", async () => {
    const gpu = await getGpu();
    for (const c of loadGoldens("elementwise")) {
      const inputs: Record<string, Tensor> = {};
      for (const [k, t] of Object.entries(c.inputs)) inputs[k] = Tensor.fromArray(gpu, t.data, t.shape, { requiresGrad: true });
      const out = run(c, inputs);
      const ref = c.outputs.out!;
      if (JSON.stringify(out.shape) !== JSON.stringify(ref.shape)) throw new Error(`${c.name}: shape ${out.shape} vs ${ref.shape}`);
      expectClose(`${c.name} forward`, await out.toArray(), ref.data, { atol: 1e-6 * maxAbs(ref.data) });
      const up = Tensor.fromArray(gpu, c.upstream.out!.data, c.upstream.out!.shape);
      out.backward(up);
      for (const [k, t] of Object.entries(inputs)) {
        const want = c.grads[k]!.data;
        // Broadcast and reduction gradients are sums: judge them against the tensor's largest magnitude.
        expectClose(`${c.name} grad ${k}`, await t.grad!.toArray(), want, { atol: 1e-5 * maxAbs(want) });
        t.release();
      }
      out.release();
      up.release();
    }
  }, 120_000);
});

// PyTorch goldens (tools/goldens/optim.py, torch 1.13 in float64): several AdamW / SGD steps on three
// parameters of odd sizes with given gradients, some of them null (torch skips those parameters), compared
// after every step, plus the final optimizer state; and clip_grad_norm_ on three gradients of odd sizes.
import { describe, expect, test } from "bun:test";
import { AdamW, clipGradNorm, SGD, type Optimizer } from "../../src/optim/index.ts";
import { Tensor } from "../../src/tensor/index.ts";
import { loadGoldens, type GoldenCase, type GoldenTensor } from "../tensor/goldens.ts";
import { expectClose, getGpu } from "../tensor/helpers.ts";

const cases = loadGoldens("optim");
const upload = (gpu: Awaited<ReturnType<typeof getGpu>>, t: GoldenTensor, requiresGrad = false) =>
  Tensor.fromArray(gpu, t.data, t.shape, { requiresGrad });

/** torch's hyperparameter names → ours; absent ones fall back to our defaults (which must equal torch's). */
function makeOptimizer(c: GoldenCase, params: Tensor[]): Optimizer<{ lr: number }> {
  const h = c.params as { kind: string; lr: number; weight_decay?: number; betas?: [number, number]; eps?: number; momentum?: number; dampening?: number; nesterov?: boolean };
  const pick = <T extends object>(o: T) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
  const common = { lr: h.lr, ...pick({ weightDecay: h.weight_decay }) };
  if (h.kind === "adamw") return new AdamW(params, { ...common, ...pick({ betas: h.betas, eps: h.eps }) });
  return new SGD(params, { ...common, ...pick({ momentum: h.momentum, dampening: h.dampening, nesterov: h.nesterov }) });
}

describe("optimizer goldens (PyTorch)", () => {
  for (const c of cases.filter((c) => c.params.kind !== undefined))
    test(`${c.name}: ${c.params.steps} steps`, async () => {
      const gpu = await getGpu();
      const params = [0, 1, 2].map((i) => upload(gpu, c.inputs[`p${i}`]!, true));
      const opt = makeOptimizer(c, params);
      // Every hyperparameter torch resolved (its defaults for those the case leaves out) equals ours.
      const ours = opt.groups[0]!.options as Record<string, unknown>;
      const camel = (k: string) => k.replace(/_(\w)/g, (_, ch: string) => ch.toUpperCase());
      for (const [k, v] of Object.entries(c.params.resolved as Record<string, unknown>)) expect([k, ours[camel(k)]]).toEqual([k, v]);
      let skipped = 0;
      for (let s = 1; s <= (c.params.steps as number); s++) {
        params.forEach((p, i) => {
          p.zeroGrad();
          const g = c.inputs[`g${s}_${i}`];
          if (g) p.grad = upload(gpu, g);
          else skipped++;
        });
        opt.step();
        for (let i = 0; i < 3; i++) expectClose(`${c.name} p${i} after step ${s}`, await params[i]!.toArray(), c.outputs[`p${i}_s${s}`]!.data);
      }
      // Final state, under torch's names; a parameter torch never stepped has none here either.
      for (let i = 0; i < 3; i++) {
        const st = opt.stateOf(params[i]!);
        for (const key of ["exp_avg", "exp_avg_sq", "momentum_buffer"]) {
          const want = c.outputs[`${key}${i}`];
          if (!want) expect(st?.tensors[key]).toBeUndefined();
          else expectClose(`${c.name} ${key}${i}`, await st!.tensors[key]!.toArray(), want.data);
        }
      }
      expect(skipped).toBe(c.name.startsWith("sgd_") || c.name === "adamw_wd" ? 2 : 0);
      opt.release();
      for (const p of params) p.release();
    });

  for (const c of cases.filter((c) => c.params.max_norm !== undefined))
    test(`${c.name}: clip_grad_norm_ to ${c.params.max_norm}`, async () => {
      const gpu = await getGpu();
      const params = [0, 1, 2].map((i) => {
        const p = Tensor.zeros(gpu, c.inputs[`g${i}`]!.shape, { requiresGrad: true });
        p.grad = upload(gpu, c.inputs[`g${i}`]!);
        return p;
      });
      using norm = clipGradNorm(params, c.params.max_norm as number);
      expect(norm.shape).toEqual([]);
      expectClose(`${c.name} total_norm`, [await norm.item()], c.outputs.total_norm!.data);
      for (let i = 0; i < 3; i++) expectClose(`${c.name} c${i}`, await params[i]!.grad!.toArray(), c.outputs[`c${i}`]!.data);
      for (const p of params) p.release();
    });
});

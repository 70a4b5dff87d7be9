/**
 * `alignx parity --model DIR --batch BATCH.json --out OUT.safetensors`: one forward + loss + backward of a HF
 * checkpoint on one batch, with everything a PyTorch comparison needs written to OUT.safetensors:
 *
 *   logits             F32 [B, T, V]
 *   loss               F32 [] (a 0-d scalar, as torch's loss tensor)
 *   grad.<HF name>     F32, the parameter's shape, for every parameter (a tied lm_head has no entry of its own:
 *                      grad.model.embed_tokens.weight holds both uses, as torch's tied Parameter does)
 *
 * BATCH.json is {input_ids: B × T, labels?: B × T (-100 ignored; default input_ids, padding NOT masked, as HF),
 * attention_mask?: B × T (1 token, 0 padding)}; errors name the file, the field and the position.
 * tools/parity_reference.py runs the same batch through a torch re-implementation of HF's LlamaForCausalLM and
 * writes the same names, so the two files compare name by name. Prints one line: loss, max |grad|, time.
 * Exit code 0; failures throw (CheckpointError, BatchError: exitCode 1), which main.ts prints.
 */
import { tuneMatmul } from "../tensor/ops/matmul.ts";
import { Gpu, type DeviceOptions } from "../gpu/index.ts";
import { writeSafetensors, type TensorToWrite } from "../io/index.ts";
import { readBatch } from "../nn/batch.ts";
import { LlamaModel } from "../nn/llama.ts";

export interface ParityOptions extends DeviceOptions {
  /** Checkpoint directory (config.json + model.safetensors or shards). */
  model: string;
  /** BATCH.json */
  batch: string;
  /** OUT.safetensors */
  out: string;
  /** Use this device instead of opening one (tests); it is not destroyed. */
  gpu?: Gpu;
  /** Where the summary line goes (default console.log). */
  log?: (line: string) => void;
}

export async function parity(opts: ParityOptions): Promise<number> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const gpu = opts.gpu ?? (await Gpu.open({ adapter: opts.adapter, cpu: opts.cpu }));
  const t0 = performance.now();
  let model: LlamaModel | undefined;
  try {
    await tuneMatmul(gpu); // first run on this adapter: time the matmul variants (cached on disk after)
    model = await LlamaModel.fromPretrained(gpu, opts.model, { requiresGrad: true });
    const batch = await readBatch(opts.batch, model.config.vocabSize);
    const { logits, loss } = model.forwardLoss(batch.inputIds, { attentionMask: batch.attentionMask, labels: batch.labels });
    try {
      loss.backward();
      const lossValue = await loss.item();
      const tensors: TensorToWrite[] = [
        { name: "logits", dtype: "F32", shape: logits.shape, data: () => logits.toArray() },
        { name: "loss", dtype: "F32", shape: [], data: Float32Array.of(lossValue) },
      ];
      let maxGrad = 0;
      for (const [name, p] of model.params) {
        if (!p.grad) throw new Error(`parity: parameter ${name} got no gradient`);
        const g = await p.grad.toArray();
        for (const v of g) maxGrad = Math.max(maxGrad, Math.abs(v));
        tensors.push({ name: `grad.${name}`, dtype: "F32", shape: p.shape, data: g });
      }
      await writeSafetensors(opts.out, tensors, { format: "pt" });
      const [B, T] = logits.shape;
      const secs = (performance.now() - t0) / 1000;
      log(
        `parity: ${model.config.modelType} ${(model.parameterCount / 1e6).toFixed(3)}M params, batch ${B}x${T}: ` +
          `loss ${lossValue.toPrecision(8)}, max |grad| ${maxGrad.toPrecision(4)}, ${secs.toFixed(2)} s -> ${opts.out}`,
      );
      return 0;
    } finally {
      logits.release();
      loss.release();
    }
  } finally {
    model?.release();
    if (!opts.gpu) gpu.destroy();
  }
}

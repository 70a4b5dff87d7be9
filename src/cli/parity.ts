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
 *
 * `--stage 1` (AlignX's stage-1 objective, ../shared/ALIGNX.md; src/align/losses.ts): BATCH.json must also hold
 * `src_tgt_index` (B × T), `src_lang` and `tgt_lang` (B); the settings (align_layer, λ's, τ, the classifier's
 * width) come from the model's config.json under the reference's names, else their defaults (readStage1Config).
 * `loss` is then L_NTP + λ_ctr·L_CTR + λ_lam·L_LAM and the gradients are of it; OUT also holds
 *
 *   loss_ntp, loss_ctr, loss_lam                F32 [] each, the unweighted terms
 *   grad.language_matching_classifier.<p>.weight   for gate_proj, up_proj and down_proj
 *
 * The classifier's weights are read from the model directory's safetensors under their HF names
 * (language_matching_classifier.{gate,up,down}_proj.weight, as a stage-1 checkpoint holds them) when all three
 * are there. Otherwise they are initialized as nn.Linear (LanguageMatchingClassifier.create) from the fixed seed
 * STAGE1_CLASSIFIER_SEED, the same on every run and device, and OUT also holds those weights under their HF names,
 * so `tools/parity_reference.py run --stage 1 --classifier OUT` uses exactly the same ones.
 *
 * With `--expected REF.safetensors` (what tools/parity_reference.py wrote for the same model and batch), the
 * outputs are also checked against it, each tensor by max |ours - ref| / max |ref| (loss: plain relative
 * error): logits and loss within 1e-4, every gradient within 1e-3. Logits count only at positions that see a
 * key (a left-padding position sees none; there HF eager and alignx differ by design, see src/nn/llama.ts).
 * A second line gives the errors; a tensor over its tolerance, or missing from REF, is exit code 1. Under
 * --stage 1 the loss terms count as loss (relative error; absolute where the reference's term is 0), the
 * classifier's gradients as gradients, and classifier weights written to OUT must equal REF's copy (1e-7).
 */
import "../tensor/index.ts"; // registers the ops' tuners, which Gpu.open({ tune: true }) runs
import { Gpu, type DeviceOptions } from "../gpu/index.ts";
import { openCommandGpu } from "./gpu.ts";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { prepareOutput, readSafetensors, writeSafetensors, type TensorToWrite } from "../io/index.ts";
import { BatchError, readBatch } from "../nn/batch.ts";
import { LlamaModel } from "../nn/llama.ts";
import { loadParameters } from "../nn/module.ts";
import { openCheckpoint } from "../io/index.ts";
import { CLASSIFIER_PREFIX, LanguageMatchingClassifier, readStage1Config, stage1Loss } from "../align/index.ts";
import type { Tensor } from "../tensor/index.ts";

export interface ParityOptions extends DeviceOptions {
  /** Checkpoint directory (config.json + model.safetensors or shards). */
  model: string;
  /** BATCH.json */
  batch: string;
  /** OUT.safetensors */
  out: string;
  /** Use this device instead of opening one (tests); it is neither tuned nor destroyed here (its policy is the caller's). */
  gpu?: Gpu;
  /** Where the summary line goes (default console.log). */
  log?: (line: string) => void;
  /** A reference file (tools/parity_reference.py's output) to check the outputs against. */
  expected?: string;
  /** 0 (default): the plain next-token loss; 1: AlignX's stage-1 objective (see the header). */
  stage?: 0 | 1;
}

/** The seed of a stage-1 classifier the model directory does not hold. */
export const STAGE1_CLASSIFIER_SEED = 20250924;

/** Tolerances of `--expected` (and of test/nn/parity.test.ts), relative to the largest |reference| value. */
export const PARITY_TOL = { logits: 1e-4, loss: 1e-4, hidden: 1e-4, grad: 1e-3 };

/** Which (b, t) positions see at least one key under causal + key-padding masking (row-major B × T). */
export function seesAKey(mask: number[][] | undefined, B: number, T: number): boolean[] {
  const ok: boolean[] = [];
  for (let b = 0; b < B; b++) {
    let seen = false;
    for (let t = 0; t < T; t++) {
      if (!mask || mask[b]![t] === 1) seen = true;
      ok.push(seen);
    }
  }
  return ok;
}

/**
 * max |got - ref| / max |ref| over the elements `keep` selects (per row of `rowLen` elements; all when
 * undefined). NaN anywhere in got → Infinity.
 */
export function relMaxError(got: ArrayLike<number>, ref: ArrayLike<number>, rowLen = 1, keep?: boolean[]): number {
  if (got.length !== ref.length) throw new Error(`length ${got.length} vs ${ref.length}`);
  let err = 0;
  let mag = 0;
  for (let i = 0; i < ref.length; i++) {
    if (keep && !keep[Math.floor(i / rowLen)]) continue;
    const g = got[i]!;
    if (Number.isNaN(g)) return Infinity;
    err = Math.max(err, Math.abs(g - ref[i]!));
    mag = Math.max(mag, Math.abs(ref[i]!));
  }
  return mag === 0 ? err : err / mag;
}

/** An output over its tolerance (or missing from the reference): exit code 1. */
export class ParityMismatch extends Error {
  readonly exitCode = 1;
}

/** Check the written tensors against REF; returns the summary line, throws ParityMismatch naming the worst. */
async function checkAgainst(ref: string, ours: Map<string, { shape: readonly number[]; data: ArrayLike<number> }>, keep: boolean[], vocab: number): Promise<string> {
  const { tensors } = await readSafetensors(ref);
  const want = new Map(tensors.map((t) => [t.name, t]));
  const errs = { logits: 0, loss: 0, grad: 0 };
  let worst = "";
  let worstLoss = "loss";
  for (const [name, t] of ours) {
    const r = want.get(name);
    if (!r) throw new ParityMismatch(`parity: ${ref} has no tensor '${name}' to compare with`);
    if (r.shape.join(",") !== t.shape.join(",")) throw new ParityMismatch(`parity: ${name} is [${t.shape}] here and [${r.shape}] in ${ref}`);
    const data = r.data as ArrayLike<number>;
    if (name === "logits") errs.logits = relMaxError(t.data, data, vocab, keep);
    else if (name === "loss" || name.startsWith("loss_")) {
      const e = data[0] === 0 ? Math.abs(t.data[0]!) : Math.abs(t.data[0]! - data[0]!) / Math.abs(data[0]!);
      if (!(e <= errs.loss)) [errs.loss, worstLoss] = [e, name];
    } else if (name.startsWith(`${CLASSIFIER_PREFIX}.`)) {
      if (!(relMaxError(t.data, data) <= 1e-7)) throw new ParityMismatch(`parity: ${name} (the initialized classifier weight) differs from ${ref}'s: not the same classifier`);
    } else {
      const e = relMaxError(t.data, data);
      if (e > errs.grad || Number.isNaN(e)) [errs.grad, worst] = [e, name];
    }
  }
  const line = `parity check vs ${ref}: logits ${errs.logits.toExponential(1)}, ${worstLoss === "loss" ? "loss" : `worst loss (${worstLoss})`} ${errs.loss.toExponential(1)}, worst gradient ${errs.grad.toExponential(1)}${worst ? ` (${worst})` : ""}`;
  for (const k of ["logits", "loss", "grad"] as const)
    if (!(errs[k] <= PARITY_TOL[k])) throw new ParityMismatch(`${line}: ${k} error exceeds ${PARITY_TOL[k]}`);
  return `${line}: within ${PARITY_TOL.logits} (logits, loss) and ${PARITY_TOL.grad} (gradients)`;
}

/**
 * The output path, checked before any work (src/io/output.ts): not an input (--model's directory and files,
 * --batch, --expected), a writable regular file or a new path in a writable directory, and at least half the
 * weight files' size free (a safe lower bound: the F32 gradients alone hold as many bytes as the weights' data).
 * Exit 2 naming the path otherwise.
 */
async function checkOut(opts: ParityOptions): Promise<void> {
  let weights = 0;
  const names = await readdir(opts.model).catch(() => [] as string[]);
  for (const n of names) if (/^model(-\d+-of-\d+)?\.safetensors$/.test(n)) weights += (await stat(join(opts.model, n)).catch(() => null))?.size ?? 0;
  await prepareOutput(opts.out, {
    kind: "file",
    label: "parity: --out",
    inputs: [
      { path: opts.model, label: "--model" },
      { path: opts.batch, label: "--batch" },
      ...(opts.expected ? [{ path: opts.expected, label: "--expected" }] : []),
    ],
    minBytes: Math.floor(weights / 2),
  });
}

export async function parity(opts: ParityOptions): Promise<number> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const stage = opts.stage ?? 0;
  await checkOut(opts);
  const gpu = opts.gpu ?? (await openCommandGpu({ adapter: opts.adapter, cpu: opts.cpu }));
  const t0 = performance.now();
  let model: LlamaModel | undefined;
  let classifier: LanguageMatchingClassifier | undefined;
  const held: Tensor[] = [];
  try {
    const isClassifier = (n: string) => n.startsWith(`${CLASSIFIER_PREFIX}.`);
    model = await LlamaModel.fromPretrained(gpu, opts.model, { requiresGrad: true, foreign: stage === 1 ? isClassifier : undefined });
    const batch = await readBatch(opts.batch, model.config.vocabSize);
    const tensors: TensorToWrite[] = [];
    const ours = new Map<string, { shape: readonly number[]; data: ArrayLike<number> }>();
    let logits: Tensor;
    let loss: Tensor;
    let terms = "";
    if (stage === 1) {
      if (!batch.srcTgtIndex || !batch.srcLang || !batch.tgtLang)
        throw new BatchError(`${opts.batch}: --stage 1 needs src_tgt_index (B × T), src_lang and tgt_lang (B) besides input_ids`);
      const configPath = join(opts.model, "config.json");
      const rawConfig = JSON.parse(await Bun.file(configPath).text()) as Record<string, unknown>;
      const cfg = readStage1Config(rawConfig, { numLayers: model.config.numHiddenLayers, source: configPath });
      const d = model.config.hiddenSize;
      const specs = LanguageMatchingClassifier.specs(d, cfg.languageMatchingIntermediateSize);
      const ckpt = await openCheckpoint(opts.model);
      try {
        const present = specs.filter((s) => ckpt.has(s.name));
        if (present.length === specs.length) classifier = LanguageMatchingClassifier.fromTensors(gpu, d, await loadParameters(gpu, ckpt, specs, { requiresGrad: true }));
        else if (present.length)
          throw new ParityMismatch(`parity: ${ckpt.path} holds ${present.map((s) => s.name).join(", ")} but not all of ${specs.map((s) => s.name).join(", ")}`);
      } finally {
        await ckpt.close();
      }
      const initialized = !classifier;
      classifier ??= LanguageMatchingClassifier.create(gpu, d, cfg.languageMatchingIntermediateSize, { seed: STAGE1_CLASSIFIER_SEED });
      if (initialized)
        for (const [name, p] of classifier.params) {
          const w = await p.toArray();
          tensors.push({ name, dtype: "F32", shape: p.shape, data: w });
          ours.set(name, { shape: p.shape, data: w });
        }
      const out = stage1Loss(model, classifier, { ...batch, srcTgtIndex: batch.srcTgtIndex, srcLang: batch.srcLang, tgtLang: batch.tgtLang }, cfg);
      held.push(out.logits, out.loss, out.ntp, out.ctr, out.lam);
      [logits, loss] = [out.logits, out.loss];
      loss.backward();
      const vals: string[] = [];
      for (const [k, t] of [["loss_ntp", out.ntp], ["loss_ctr", out.ctr], ["loss_lam", out.lam]] as const) {
        const v = await t.item();
        tensors.push({ name: k, dtype: "F32", shape: [], data: Float32Array.of(v) });
        ours.set(k, { shape: [], data: [v] });
        vals.push(`${k.slice(5)} ${v.toPrecision(6)}`);
      }
      terms = ` (${vals.join(", ")}; align_layer ${cfg.alignLayer}, classifier ${initialized ? `seed ${STAGE1_CLASSIFIER_SEED}` : "from the checkpoint"})`;
    } else {
      const out = model.forwardLoss(batch.inputIds, { attentionMask: batch.attentionMask, labels: batch.labels });
      held.push(out.logits, out.loss);
      [logits, loss] = [out.logits, out.loss];
      loss.backward();
    }
    const lossValue = await loss.item();
    tensors.unshift(
      { name: "logits", dtype: "F32", shape: logits.shape, data: () => logits.toArray() },
      { name: "loss", dtype: "F32", shape: [], data: Float32Array.of(lossValue) },
    );
    let maxGrad = 0;
    const params: [string, Tensor][] = [...model.params, ...(classifier ? classifier.params : [])];
    for (const [name, p] of params) {
      if (!p.grad) throw new Error(`parity: parameter ${name} got no gradient`);
      const g = await p.grad.toArray();
      for (const v of g) maxGrad = Math.max(maxGrad, Math.abs(v));
      tensors.push({ name: `grad.${name}`, dtype: "F32", shape: p.shape, data: g });
      ours.set(`grad.${name}`, { shape: p.shape, data: g });
    }
    await writeSafetensors(opts.out, tensors, { format: "pt" });
    const [B, T] = logits.shape as [number, number, number];
    const secs = (performance.now() - t0) / 1000;
    log(
      `parity: ${model.config.modelType} ${(model.parameterCount / 1e6).toFixed(3)}M params, batch ${B}x${T}${stage === 1 ? ", stage 1" : ""}: ` +
        `loss ${lossValue.toPrecision(8)}${terms}, max |grad| ${maxGrad.toPrecision(4)}, ${secs.toFixed(2)} s -> ${opts.out}`,
    );
    if (opts.expected) {
      ours.set("logits", { shape: logits.shape, data: await logits.toArray() });
      ours.set("loss", { shape: [], data: [lossValue] });
      log(await checkAgainst(opts.expected, ours, seesAKey(batch.attentionMask, B, T), model.config.vocabSize));
    }
    return 0;
  } finally {
    for (const t of held) t.release();
    classifier?.release();
    model?.release();
    if (!opts.gpu) gpu.destroy();
  }
}

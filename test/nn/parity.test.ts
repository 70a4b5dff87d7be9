// PyTorch parity of LlamaModel: for each fixture under test/fixtures/parity (tiny LLaMA MHA with biases, LLaMA-3
// GQA with llama3 rope scaling and tied embeddings, Mistral GQA, Gemma MQA with head_dim != hidden/heads), the
// logits, loss, HF hidden_states and the gradient of every parameter against tools/parity_reference.py (a torch
// re-implementation of HF LlamaForCausalLM, run in float64 on the same BF16 weights).
//
// Tolerances, each relative to the largest |reference| value of the tensor compared (max |got - ref| / max |ref|):
// logits, hidden states 1e-4; loss 1e-4 (plain relative error); gradients 1e-3. Logits and hidden states are
// compared only at positions that see at least one key: a left-padding position sees none, and there HF eager
// and alignx differ by design (see src/nn/llama.ts); the fixtures' labels keep those positions out of the loss.
// Also: the `parity` command on a fixture writes what the reference wrote (same names, shapes, values), and
// rejects bad batch files naming the file, field and position.
//
// Stage 1 (AlignX, src/align/losses.ts): on each fixture's batch_stage1.json (B = 3, spans and mixed languages),
// stage1Loss against expected_stage1.safetensors (tools/parity_reference.py run --stage 1, the reference's loss
// code from tools/goldens/alignx_losses.py, float64): logits 1e-4, each of loss, loss_ntp, loss_ctr, loss_lam 1e-4
// (relative), every gradient 1e-3, the classifier's included. The fixtures' model directories hold no classifier,
// so the command initializes it from its fixed seed and the expected file holds those weights (the test loads them
// from there); `parity --stage 1` is also run with the classifier inside the model directory's safetensors.
import { afterAll, describe, expect, test } from "bun:test";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parity } from "../../src/cli/parity.ts";
import { readBatch } from "../../src/nn/batch.ts";
import { readSafetensors, writeSafetensors } from "../../src/io/index.ts";
import { CLASSIFIER_PREFIX, LanguageMatchingClassifier, readStage1Config, stage1Loss } from "../../src/align/index.ts";
import { Tensor } from "../../src/tensor/index.ts";
import { LlamaModel } from "../../src/nn/llama.ts";
import { getGpu } from "../tensor/helpers.ts";
import { attendingPositions as seesAKey, FAMILIES, FIXTURES, maxRelError as relMaxError, readExpected, TEST_TOL as TOL } from "./parity_helpers.ts";

const HAS_TORCH = Bun.spawnSync(["/usr/bin/python3", "-c", "import torch"], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;

const tmp = await mkdtemp(join(tmpdir(), "alignx-parity-"));
afterAll(() => rm(tmp, { recursive: true, force: true }));

/** A parity fixture: the model, its batch`suffix`.json and expected`suffix`.safetensors, and which positions see a key. */
async function loadFixture(fam: string, suffix: "" | "_stage1") {
  const gpu = await getGpu();
  const dir = join(FIXTURES, fam);
  const model = await LlamaModel.fromPretrained(gpu, dir);
  const c = model.config;
  const batch = await readBatch(join(dir, `batch${suffix}.json`), c.vocabSize);
  const ref = await readExpected(join(dir, `expected${suffix}.safetensors`));
  const [B, T] = [batch.inputIds.length, batch.inputIds[0]!.length];
  return { gpu, dir, model, c, batch, ref, B, T, keep: seesAKey(batch.attentionMask, B, T) };
}

describe("LlamaModel vs PyTorch (HF LlamaForCausalLM re-implementation)", () => {
  for (const fam of FAMILIES) {
    test(fam, async () => {
      const { gpu, model, c, batch, ref, B, T, keep } = await loadFixture(fam, "");
      const { logits, loss, hiddenStates } = model.forwardLoss(batch.inputIds, {
        attentionMask: batch.attentionMask,
        labels: batch.labels,
        outputHiddenStates: true,
      });
      loss.backward();

      expect(logits.shape).toEqual([B, T, c.vocabSize]);
      const errs: Record<string, number> = {};
      errs.logits = relMaxError(await logits.toArray(), ref.get("logits")!.data, c.vocabSize, keep);
      const [got, want] = [await loss.item(), ref.get("loss")!.data[0]!];
      errs.loss = Math.abs(got - want) / Math.abs(want);
      expect(hiddenStates!.length).toBe(c.numHiddenLayers + 1);
      errs.hidden = 0;
      for (let i = 0; i <= c.numHiddenLayers; i++) {
        const r = ref.get(`hidden_states.${i}`)!;
        expect(hiddenStates![i]!.shape).toEqual(r.shape);
        errs.hidden = Math.max(errs.hidden, relMaxError(await hiddenStates![i]!.toArray(), r.data, c.hiddenSize, keep));
      }
      // Every reference gradient has a parameter, and every parameter a gradient.
      const refGrads = [...ref.keys()].filter((k) => k.startsWith("grad.")).sort();
      expect(refGrads).toEqual([...model.params.keys()].map((n) => `grad.${n}`).sort());
      errs.grad = 0;
      let worst = "";
      for (const [name, p] of model.params) {
        const e = relMaxError(await p.grad!.toArray(), ref.get(`grad.${name}`)!.data);
        if (e > errs.grad) [errs.grad, worst] = [e, name];
      }
      console.log(
        `  ${fam.padEnd(8)} logits ${errs.logits!.toExponential(1)}  loss ${errs.loss!.toExponential(1)}  hidden ${errs.hidden!.toExponential(1)}  ` +
          `grad ${errs.grad!.toExponential(1)} (${worst}); ${keep.filter((k) => !k).length} masked-out position(s) skipped`,
      );
      for (const k of Object.keys(TOL) as (keyof typeof TOL)[]) {
        if (!(errs[k]! <= TOL[k])) throw new Error(`${fam}: ${k} error ${errs[k]} exceeds ${TOL[k]}${k === "grad" ? ` (${worst})` : ""}`);
      }
      logits.release();
      loss.release();
      for (const h of hiddenStates!) h.release();
      model.release();
    });
  }
});

describe("parity command", () => {
  test("writes logits, loss and grad.<name> that match the reference file", async () => {
    const gpu = await getGpu();
    const dir = join(FIXTURES, "gemma");
    const out = join(tmp, "gemma.safetensors");
    const lines: string[] = [];
    const code = await parity({ model: dir, batch: join(dir, "batch.json"), out, gpu, log: (s) => lines.push(s) });
    expect(code).toBe(0);
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatch(/^parity: gemma .* loss \d\.\d+, max \|grad\| [\d.e-]+, [\d.]+ s -> /);
    const got = await readExpected(out);
    const batch = await readBatch(join(dir, "batch.json"), 80);
    const ref = await readExpected(join(dir, "expected.safetensors"));
    const refNames = [...ref.keys()].filter((k) => !k.startsWith("hidden_states.")).sort();
    expect([...got.keys()].sort()).toEqual(refNames);
    expect(got.get("loss")!.shape).toEqual([]);
    for (const name of refNames) {
      expect(got.get(name)!.shape).toEqual(ref.get(name)!.shape);
      const keep = name === "logits" ? seesAKey(batch.attentionMask, 2, 8) : undefined;
      const e = relMaxError(got.get(name)!.data, ref.get(name)!.data, name === "logits" ? 80 : 1, keep);
      expect(e).toBeLessThanOrEqual(name.startsWith("grad.") ? TOL.grad : TOL.logits);
    }
  });

  test("--expected: checks the outputs against the reference file; a mismatch or a missing tensor is exit 1", async () => {
    const gpu = await getGpu();
    const dir = join(FIXTURES, "llama");
    const args = { model: dir, batch: join(dir, "batch.json"), out: join(tmp, "llama.safetensors"), gpu };
    const lines: string[] = [];
    expect(await parity({ ...args, expected: join(dir, "expected.safetensors"), log: (s) => lines.push(s) })).toBe(0);
    expect(lines[1]).toMatch(/^parity check vs .*expected\.safetensors: logits [\d.e+-]+, loss [\d.e+-]+, worst gradient [\d.e+-]+ \(grad\.[\w.]+\): within 0\.0001 \(logits, loss\) and 0\.001 \(gradients\)$/);
    // A reference whose loss is 1% off: the check names loss and fails with exit code 1.
    const ref = await readExpected(join(dir, "expected.safetensors"));
    const tampered = join(tmp, "tampered.safetensors");
    await writeSafetensors(
      tampered,
      [...ref].map(([name, t]) => ({ name, dtype: "F32" as const, shape: t.shape, data: name === "loss" ? Float32Array.of(t.data[0]! * 1.01) : t.data })),
      { format: "pt" },
    );
    const bad = await parity({ ...args, expected: tampered, log: () => {} }).catch((e) => e);
    expect(bad.message).toMatch(/loss error exceeds 0\.0001/);
    expect(bad.exitCode).toBe(1);
    // Another model's reference: shapes differ, named.
    const other = await parity({ ...args, expected: join(FIXTURES, "gemma", "expected.safetensors"), log: () => {} }).catch((e) => e);
    expect(other.message).toMatch(/parity: (logits|grad\.[\w.]+) is \[[\d,]+\] here and \[[\d,]+\] in |has no tensor/);
  });

  test("bad batch files: the error names the file, the field and the position; nothing leaks", async () => {
    const gpu = await getGpu();
    const dir = join(FIXTURES, "llama");
    const live = gpu.memory().liveBuffers;
    const cases: [string, unknown, RegExp][] = [
      ["ragged", { input_ids: [[1, 2, 3], [1, 2]] }, /input_ids\[1\] has 2 values, but input_ids\[0\] has 3/],
      ["range", { input_ids: [[1, 2, 3], [1, 80, 3]] }, /input_ids\[1\]\[1\] = 80 is not a token id in \[0, 80\)/],
      ["float", { input_ids: [[1, 2.5]] }, /input_ids\[0\]\[1\] = 2\.5 is not an integer/],
      ["mask", { input_ids: [[1, 2]], attention_mask: [[1, 2]] }, /attention_mask\[0\]\[1\] = 2 is not 0 or 1/],
      ["maskshape", { input_ids: [[1, 2]], attention_mask: [[1, 1, 1]] }, /attention_mask\[0\] has 3 values, but input_ids rows have 2/],
      ["labels", { input_ids: [[1, 2]], labels: [[1, -5]] }, /labels\[0\]\[1\] = -5 is not a token id in \[0, 80\) or -100/],
      ["labelrows", { input_ids: [[1, 2]], labels: [[1, 2], [1, 2]] }, /labels has 2 rows, but input_ids has 1/],
      ["unknown", { input_ids: [[1, 2]], attention_masks: [[1, 1]] }, /unknown field\(s\) "attention_masks"/],
      ["missing", { labels: [[1, 2]] }, /input_ids is missing/],
      ["empty", { input_ids: [] }, /input_ids is empty/],
      ["notjson", "{input_ids:", /not valid JSON/],
    ];
    for (const [name, doc, re] of cases) {
      const path = join(tmp, `${name}.json`);
      await writeFile(path, typeof doc === "string" ? doc : JSON.stringify(doc));
      const run = parity({ model: dir, batch: path, out: join(tmp, "never.safetensors"), gpu, log: () => {} });
      await expect(run).rejects.toThrow(re);
      await expect(parity({ model: dir, batch: path, out: join(tmp, "never.safetensors"), gpu, log: () => {} })).rejects.toThrow(path);
    }
    await expect(parity({ model: dir, batch: join(tmp, "nope.json"), out: join(tmp, "x.safetensors"), gpu, log: () => {} })).rejects.toThrow(/nope\.json: no such file/);
    await expect(parity({ model: join(tmp, "nomodel"), batch: join(dir, "batch.json"), out: join(tmp, "x.safetensors"), gpu, log: () => {} })).rejects.toThrow(/nomodel/);
    expect(gpu.memory().liveBuffers).toBe(live); // failed runs release the model they loaded
  });
});

describe("stage 1 (AlignX losses) vs PyTorch", () => {
  for (const fam of FAMILIES) {
    test(fam, async () => {
      const { gpu, dir, model, c, batch, ref, B, keep } = await loadFixture(fam, "_stage1");
      expect(B).toBeGreaterThanOrEqual(2);
      const cfg = readStage1Config(await Bun.file(join(dir, "config.json")).json(), { numLayers: c.numHiddenLayers });
      const weights = new Map<string, Tensor>();
      for (const s of LanguageMatchingClassifier.specs(c.hiddenSize, cfg.languageMatchingIntermediateSize)) {
        const r = ref.get(s.name)!;
        expect(r.shape).toEqual(s.shape);
        weights.set(s.name, Tensor.fromArray(gpu, r.data, s.shape));
      }
      const classifier = LanguageMatchingClassifier.fromTensors(gpu, c.hiddenSize, weights);
      const out = stage1Loss(model, classifier, { ...batch, srcTgtIndex: batch.srcTgtIndex!, srcLang: batch.srcLang!, tgtLang: batch.tgtLang! }, cfg);
      out.loss.backward();
      const errs: Record<string, number> = {};
      errs.logits = relMaxError(await out.logits.toArray(), ref.get("logits")!.data, c.vocabSize, keep);
      errs.loss = 0;
      for (const [k, t] of [["loss", out.loss], ["loss_ntp", out.ntp], ["loss_ctr", out.ctr], ["loss_lam", out.lam]] as const) {
        const want = ref.get(k)!.data[0]!;
        expect(Math.abs(want)).toBeGreaterThan(0.05); // every term is non-trivial on these batches
        errs.loss = Math.max(errs.loss, Math.abs((await t.item()) - want) / Math.abs(want));
      }
      const params = [...model.params, ...classifier.params];
      const refGrads = [...ref.keys()].filter((k) => k.startsWith("grad.")).sort();
      expect(refGrads).toEqual(params.map(([n]) => `grad.${n}`).sort());
      expect(refGrads.filter((k) => k.startsWith(`grad.${CLASSIFIER_PREFIX}.`)).length).toBe(3);
      errs.grad = 0;
      let worst = "";
      for (const [name, p] of params) {
        const r = ref.get(`grad.${name}`)!.data;
        if (name.startsWith(CLASSIFIER_PREFIX)) expect(r.reduce((m, v) => Math.max(m, Math.abs(v)), 0)).toBeGreaterThan(0);
        const e = relMaxError(await p.grad!.toArray(), r);
        if (e > errs.grad) [errs.grad, worst] = [e, name];
      }
      console.log(`  ${fam.padEnd(8)} stage 1: logits ${errs.logits!.toExponential(1)}  losses ${errs.loss!.toExponential(1)}  grad ${errs.grad!.toExponential(1)} (${worst})`);
      for (const k of ["logits", "loss", "grad"] as const) {
        if (!(errs[k]! <= TOL[k])) throw new Error(`${fam} stage 1: ${k} error ${errs[k]} exceeds ${TOL[k]}${k === "grad" ? ` (${worst})` : ""}`);
      }
      for (const t of [out.logits, out.loss, out.ntp, out.ctr, out.lam]) t.release();
      classifier.release();
      model.release();
    });
  }

  test("parity --stage 1: the seeded classifier and its outputs match the reference file; --expected passes", async () => {
    const gpu = await getGpu();
    const dir = join(FIXTURES, "mistral");
    const out = join(tmp, "mistral-s1.safetensors");
    const lines: string[] = [];
    const args = { model: dir, batch: join(dir, "batch_stage1.json"), out, gpu, stage: 1 as const, log: (s: string) => lines.push(s) };
    expect(await parity({ ...args, expected: join(dir, "expected_stage1.safetensors") })).toBe(0);
    expect(lines[0]).toMatch(/^parity: mistral .* batch 3x7, stage 1: loss \d\.\d+ \(ntp [\d.]+, ctr [\d.]+, lam [\d.]+; align_layer 1, classifier seed \d+\), max \|grad\| /);
    expect(lines[1]).toMatch(/^parity check vs .*expected_stage1\.safetensors: .* within 0\.0001 \(logits, loss\) and 0\.001 \(gradients\)$/);
    const got = await readExpected(out);
    const ref = await readExpected(join(dir, "expected_stage1.safetensors"));
    expect([...got.keys()].sort()).toEqual([...ref.keys()].filter((k) => !k.startsWith("hidden_states.")).sort());
    for (const [name, r] of ref) {
      if (name.startsWith("hidden_states.")) continue;
      expect(got.get(name)!.shape).toEqual(r.shape);
      if (name.startsWith(`${CLASSIFIER_PREFIX}.`)) expect(relMaxError(got.get(name)!.data, r.data)).toBe(0); // the same seeded weights
      else if (name.startsWith("loss")) expect(Math.abs(got.get(name)!.data[0]! - r.data[0]!) / Math.abs(r.data[0]!)).toBeLessThanOrEqual(TOL.loss);
    }
    // A reference whose loss_lam is 1% off fails the check, naming the term.
    const tampered = join(tmp, "tampered-s1.safetensors");
    await writeSafetensors(
      tampered,
      [...ref].map(([name, t]) => ({ name, dtype: "F32" as const, shape: t.shape, data: name === "loss_lam" ? Float32Array.of(t.data[0]! * 1.01) : t.data })),
      { format: "pt" },
    );
    const bad = await parity({ ...args, expected: tampered, log: () => {} }).catch((e) => e);
    expect(bad.message).toMatch(/worst loss \(loss_lam\) .*loss error exceeds 0\.0001/);
    expect(bad.exitCode).toBe(1);
    // The stage-0 reference lacks the stage-1 tensors.
    const stage0 = await parity({ ...args, batch: join(dir, "batch_stage1.json"), expected: join(dir, "expected.safetensors"), log: () => {} }).catch((e) => e);
    expect(stage0.exitCode).toBe(1);
  });

  // The last check runs the torch reference on a directory made here: it needs Debian's python3-torch.
  test.skipIf(!HAS_TORCH)(`parity --stage 1 takes the classifier from the model directory's safetensors when there${HAS_TORCH ? "" : " (skipped: /usr/bin/python3 has no torch; apt-get install python3-torch)"}`, async () => {
    const gpu = await getGpu();
    const src = join(FIXTURES, "gemma");
    const dir = join(tmp, "gemma-with-classifier");
    await rm(dir, { recursive: true, force: true });
    await Bun.write(join(dir, "config.json"), Bun.file(join(src, "config.json")));
    const ref = await readExpected(join(src, "expected_stage1.safetensors"));
    const { tensors } = await readSafetensors(join(src, "model.safetensors"));
    // Scaled ×3 so that they differ from the seeded classifier and the outputs must change accordingly.
    const cls = [...ref].filter(([n]) => n.startsWith(`${CLASSIFIER_PREFIX}.`));
    expect(cls.length).toBe(3);
    await writeSafetensors(join(dir, "model.safetensors"), [...tensors, ...cls.map(([name, t]) => ({ name, dtype: "F32" as const, shape: t.shape, data: t.data.map((v) => v * 3) }))], { format: "pt" });
    await copyFile(join(src, "batch_stage1.json"), join(tmp, "gemma-batch_stage1.json"));
    const out = join(tmp, "gemma-s1-cls.safetensors");
    const lines: string[] = [];
    expect(await parity({ model: dir, batch: join(tmp, "gemma-batch_stage1.json"), out, gpu, stage: 1, log: (s) => lines.push(s) })).toBe(0);
    expect(lines[0]).toMatch(/classifier from the checkpoint\)/);
    const got = await readExpected(out);
    expect([...got.keys()].some((k) => k.startsWith(`${CLASSIFIER_PREFIX}.`))).toBe(false); // not re-written: they are an input
    expect(got.has(`grad.${CLASSIFIER_PREFIX}.down_proj.weight`)).toBe(true);
    expect(Math.abs(got.get("loss_lam")!.data[0]! - ref.get("loss_lam")!.data[0]!)).toBeGreaterThan(1e-4);
    expect(got.get("loss_ntp")!.data[0]!).toBeCloseTo(ref.get("loss_ntp")!.data[0]!, 4);
    // The torch reference, given the same directory, agrees.
    const refOut = join(tmp, "gemma-s1-cls-ref.safetensors");
    const py = Bun.spawnSync(["/usr/bin/python3", "tools/parity_reference.py", "run", dir, join(tmp, "gemma-batch_stage1.json"), refOut, "--stage", "1"], { cwd: join(import.meta.dir, "..", "..") });
    expect(py.exitCode).toBe(0);
    const check: string[] = [];
    expect(await parity({ model: dir, batch: join(tmp, "gemma-batch_stage1.json"), out, gpu, stage: 1, expected: refOut, log: (s) => check.push(s) })).toBe(0);
    expect(check[1]).toMatch(/within 0\.0001/);
  });

  test("stage-1 batch fields: validated, errors name the file, the field and the position", async () => {
    const gpu = await getGpu();
    const dir = join(FIXTURES, "llama");
    const base = { input_ids: [[1, 2, 3, 4], [1, 5, 6, 7]], src_tgt_index: [[0, 1, 2, 0], [0, 1, 2, 0]], src_lang: [0, 1], tgt_lang: [1, 0] };
    const cases: [string, unknown, RegExp][] = [
      ["idxval", { ...base, src_tgt_index: [[0, 1, 3, 0], [0, 1, 2, 0]] }, /src_tgt_index\[0\]\[2\] = 3 is not 0, 1 \(source\) or 2 \(target\)/],
      ["idxshape", { ...base, src_tgt_index: [[0, 1, 2], [0, 1, 2]] }, /src_tgt_index\[0\] has 3 values, but input_ids rows have 4/],
      ["nosrc", { ...base, src_tgt_index: [[0, 2, 2, 0], [0, 1, 2, 0]] }, /src_tgt_index\[0\] has no source \(1\) position/],
      ["pad", { ...base, attention_mask: [[1, 1, 1, 1], [1, 1, 1, 0]], src_tgt_index: [[0, 1, 2, 0], [0, 1, 0, 2]] }, /src_tgt_index\[1\]\[3\] = 2 marks a padding position/],
      ["langlen", { ...base, src_lang: [0] }, /src_lang has 1 values, but input_ids has 2 rows/],
      ["langval", { ...base, tgt_lang: [1, 0.5] }, /tgt_lang\[1\] = 0\.5 is not an integer/],
      ["partial", { input_ids: base.input_ids, src_tgt_index: base.src_tgt_index }, /src_tgt_index given without src_lang, tgt_lang/],
      ["missing", { input_ids: base.input_ids }, /--stage 1 needs src_tgt_index/],
    ];
    for (const [name, doc, re] of cases) {
      const path = join(tmp, `s1-${name}.json`);
      await writeFile(path, JSON.stringify(doc));
      const run = parity({ model: dir, batch: path, out: join(tmp, "never.safetensors"), gpu, stage: 1, log: () => {} });
      await expect(run).rejects.toThrow(re);
      await expect(parity({ model: dir, batch: path, out: join(tmp, "never.safetensors"), gpu, stage: 1, log: () => {} })).rejects.toThrow(path);
    }
  });
});

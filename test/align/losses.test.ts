// AlignX's stage-1 losses (src/align/losses.ts) against the reference: the PyTorch goldens of
// tools/goldens/alignx_losses.py (the reference's own computation in float64: values and gradients wrt the
// states and the classifier's weights), the float64 CPU reference of test/reference/alignx.ts (itself checked
// against the goldens) on random batches, central differences for the gradients wrt the states, the
// pair-decomposed classifier against the materialized one, the stage-1 objective on a tiny LLaMA (terms,
// weighting, λ = 0, B = 1), input and config errors naming what is wrong, and a flat-memory training loop.
import { describe, expect, test } from "bun:test";
import {
  AlignConfigError,
  CLASSIFIER_PREFIX,
  contrastiveLoss,
  LanguageMatchingClassifier,
  languageMatchingLoss,
  readStage1Config,
  stage1Loss,
  type Stage1Config,
} from "../../src/align/index.ts";
import { LlamaModel } from "../../src/nn/index.ts";
import { AdamW } from "../../src/optim/index.ts";
import { noGrad, Tensor } from "../../src/tensor/index.ts";
import { expectFlatMemory } from "../helpers.ts";
import { TINY_LLAMA } from "../nn/tiny.ts";
import * as ref from "../reference/alignx.ts";
import { loadGoldens, type GoldenTensor } from "../tensor/goldens.ts";
import { centralDiff, expectClose, getGpu, rng, seedOf, uniform } from "../tensor/helpers.ts";

const P = CLASSIFIER_PREFIX;
const f32 = (gpu: Awaited<ReturnType<typeof getGpu>>, t: GoldenTensor | Float64Array, shape?: readonly number[], requiresGrad = false) =>
  "data" in t ? Tensor.fromArray(gpu, Float32Array.from(t.data), t.shape, { requiresGrad }) : Tensor.fromArray(gpu, Float32Array.from(t), shape!, { requiresGrad });
const rows = (t: GoldenTensor): number[][] => Array.from({ length: t.shape[0]! }, (_, b) => t.data.slice(b * t.shape[1]!, (b + 1) * t.shape[1]!));
const maxAbs = (v: ArrayLike<number>) => Array.from(v).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

/** Gradients: every element within 1e-3 relative plus 1e-4 of the largest one (f32 sums over short spans). */
function expectGrad(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  expectClose(what, got, want, { rtol: 1e-3, atol: 1e-4 * maxAbs(want) });
}

function classifierFrom(gpu: Awaited<ReturnType<typeof getGpu>>, D: number, gate: GoldenTensor | Float64Array, up: GoldenTensor | Float64Array, down: GoldenTensor | Float64Array, w: number) {
  return LanguageMatchingClassifier.fromTensors(
    gpu,
    D,
    new Map([
      [`${P}.gate_proj.weight`, f32(gpu, gate, [w, 2 * D])],
      [`${P}.up_proj.weight`, f32(gpu, up, [w, 2 * D])],
      [`${P}.down_proj.weight`, f32(gpu, down, [2, w])],
    ]),
  );
}

describe("the PyTorch goldens (the reference's computation, float64)", () => {
  const cases = loadGoldens("alignx_losses");

  test("the float64 CPU reference reproduces every golden value", () => {
    for (const c of cases) {
      const { B, T, D, w, temperature } = c.params as { B: number; T: number; D: number; w: number; temperature: number };
      const idx = rows(c.inputs.src_tgt_index!);
      const cw = { gate: c.inputs.gate!.data, up: c.inputs.up!.data, down: c.inputs.down!.data, w };
      const lam = ref.languageMatchingLoss(c.inputs.last!.data, idx, c.inputs.src_lang!.data, c.inputs.tgt_lang!.data, cw, B, T, D);
      expectClose(`${c.name}: reference lam`, [lam], c.outputs.lam!.data, { rtol: 1e-6 });
      const ctr = ref.contrastiveLoss(c.inputs.hidden!.data, idx, B, T, D, temperature);
      expectClose(`${c.name}: reference ctr`, [ctr], c.outputs.ctr?.data ?? [0], { rtol: 1e-6 });
    }
  });

  for (const c of cases)
    test(`ours on the GPU (f32): ${c.name}`, async () => {
      const gpu = await getGpu();
      const { B, D, w, temperature } = c.params as { B: number; D: number; w: number; temperature: number };
      const idx = rows(c.inputs.src_tgt_index!);
      const hidden = f32(gpu, c.inputs.hidden!, undefined, true);
      const last = f32(gpu, c.inputs.last!, undefined, true);
      using clf = classifierFrom(gpu, D, c.inputs.gate!, c.inputs.up!, c.inputs.down!, w);

      const ctr = contrastiveLoss(hidden, idx, { temperature });
      expect(ctr.shape).toEqual([]);
      if (B === 1) {
        expect(await ctr.item()).toBe(0);
        expect(ctr.requiresGrad).toBe(false);
      } else {
        expectClose(`${c.name}: ctr`, [await ctr.item()], c.outputs.ctr!.data, { rtol: 1e-5, atol: 1e-6 });
        ctr.backward();
        expectGrad(`${c.name}: d ctr / d hidden`, await hidden.grad!.toArray(), c.grads.hidden!.data);
      }

      const lam = languageMatchingLoss(last, idx, c.inputs.src_lang!.data, c.inputs.tgt_lang!.data, clf);
      expect(lam.shape).toEqual([]);
      expectClose(`${c.name}: lam`, [await lam.item()], c.outputs.lam!.data, { rtol: 1e-5, atol: 1e-6 });
      lam.backward();
      expectGrad(`${c.name}: d lam / d last`, await last.grad!.toArray(), c.grads.last!.data);
      for (const k of ["gate", "up", "down"] as const)
        expectGrad(`${c.name}: d lam / d ${k}_proj`, await clf.param(`${P}.${k}_proj.weight`).grad!.toArray(), c.grads[k]!.data);
      for (const t of [hidden, last, ctr, lam]) t.release();
    });
});

// ---- random batches against the float64 reference --------------------------------------------------------

/** A batch in the packer's layout (BOS, template, source, template, target, EOS, right padding). */
function randomIndex(r: () => number, B: number, T: number): number[][] {
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  return Array.from({ length: B }, () => {
    const row = new Array<number>(T).fill(0);
    // at least 3 target tokens and the EOS fit (T >= 9)
    const pre = int(1, 3);
    const src = int(1, Math.min(4, T - pre - 4 - 2));
    const mid = int(0, Math.min(2, T - pre - src - 4));
    const tgt = int(3, T - pre - src - mid - 1);
    for (let t = pre; t < pre + src; t++) row[t] = 1;
    for (let t = pre + src + mid; t < Math.min(T - 1, pre + src + mid + tgt); t++) row[t] = 2;
    return row;
  });
}

describe("random batches against the float64 reference", () => {
  test("values for B = 1..6, T up to 40, D up to 48, w 8..128, several temperatures and language sets", async () => {
    const gpu = await getGpu();
    for (const [B, T, D, w, tau] of [
      [1, 9, 4, 8, 0.1],
      [2, 14, 7, 16, 0.1],
      [3, 23, 33, 128, 0.07],
      [5, 40, 48, 32, 0.5],
      [6, 17, 16, 128, 0.1],
    ] as const) {
      const what = `B=${B} T=${T} D=${D} w=${w} τ=${tau}`;
      const r = rng(seedOf(what));
      const idx = randomIndex(r, B, T);
      const H = uniform(r, B * T * D, -2, 2);
      const Lh = uniform(r, B * T * D, -2, 2);
      const bound = 3 / Math.sqrt(2 * D);
      const [G, U, Dn] = [uniform(r, w * 2 * D, -bound, bound), uniform(r, w * 2 * D, -bound, bound), uniform(r, 2 * w, -3 / Math.sqrt(w), 3 / Math.sqrt(w))];
      const langs = Array.from({ length: 2 * B }, () => Math.floor(r() * 3));
      const [sl, tl] = [langs.slice(0, B), langs.slice(B)];
      using clf = classifierFrom(gpu, D, G, U, Dn, w);
      using h = f32(gpu, H, [B, T, D]);
      using l = f32(gpu, Lh, [B, T, D]);
      using ctr = contrastiveLoss(h, idx, { temperature: tau });
      using lam = languageMatchingLoss(l, idx, sl, tl, clf);
      expectClose(`${what}: ctr`, [await ctr.item()], [ref.contrastiveLoss(H, idx, B, T, D, tau)], { rtol: 2e-5, atol: 1e-6 });
      expectClose(`${what}: lam`, [await lam.item()], [ref.languageMatchingLoss(Lh, idx, sl, tl, { gate: G, up: U, down: Dn, w }, B, T, D)], { rtol: 2e-5, atol: 1e-6 });
    }
  });

  test("gradients wrt the states against central differences of the float64 reference", async () => {
    const gpu = await getGpu();
    const [B, T, D, w, tau] = [3, 10, 5, 6, 0.2];
    const r = rng(seedOf("alignx central differences"));
    const idx = randomIndex(r, B, T);
    const H = uniform(r, B * T * D);
    const G = uniform(r, w * 2 * D, -0.5, 0.5);
    const U = uniform(r, w * 2 * D, -0.5, 0.5);
    const Dn = uniform(r, 2 * w, -0.5, 0.5);
    const [sl, tl] = [[0, 1, 0], [1, 1, 2]];
    const cw = { gate: G, up: U, down: Dn, w };
    using clf = classifierFrom(gpu, D, G, U, Dn, w);
    using h = f32(gpu, H, [B, T, D], true);
    using l = f32(gpu, H, [B, T, D], true);
    using ctr = contrastiveLoss(h, idx, { temperature: tau });
    using lam = languageMatchingLoss(l, idx, sl, tl, clf);
    ctr.backward();
    lam.backward();
    expectGrad("d ctr / d hidden", await h.grad!.toArray(), centralDiff((x) => ref.contrastiveLoss(x, idx, B, T, D, tau), Float64Array.from(H)));
    expectGrad("d lam / d last", await l.grad!.toArray(), centralDiff((x) => ref.languageMatchingLoss(x, idx, sl, tl, cw, B, T, D), Float64Array.from(H)));
  });
});

// ---- the classifier ---------------------------------------------------------------------------------------

describe("LanguageMatchingClassifier", () => {
  test("HF names and shapes; nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) init, seeded", async () => {
    const gpu = await getGpu();
    using c = LanguageMatchingClassifier.create(gpu, 64, 128, { seed: 7 });
    expect(c.namedParameters().map(([n, t]) => [n, t.shape])).toEqual([
      ["language_matching_classifier.gate_proj.weight", [128, 128]],
      ["language_matching_classifier.up_proj.weight", [128, 128]],
      ["language_matching_classifier.down_proj.weight", [2, 128]],
    ]);
    expect(c.intermediateSize).toBe(128);
    for (const [name, t] of c.namedParameters()) {
      expect(t.requiresGrad).toBe(true);
      const v = await t.toArray();
      const bound = 1 / Math.sqrt(t.shape[1]!);
      expect(maxAbs(v)).toBeLessThanOrEqual(bound);
      const mean = v.reduce((s, x) => s + x, 0) / v.length;
      const std = Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length);
      expect(Math.abs(std / (bound / Math.sqrt(3)) - 1)).toBeLessThan(name.includes("down") ? 0.2 : 0.03);
    }
    using again = LanguageMatchingClassifier.create(gpu, 64, 128, { seed: 7 });
    expect(await again.param(`${P}.gate_proj.weight`).toArray()).toEqual(await c.param(`${P}.gate_proj.weight`).toArray());
  });

  test("pairLogits (split weights, broadcast add) equals the classifier on the materialized [e_i ; e_j], with gradients", async () => {
    const gpu = await getGpu();
    const [N, D] = [6, 24];
    const r = rng(seedOf("pair logits"));
    const E = uniform(r, N * D, -2, 2);
    const pairs = new Float64Array(N * N * 2 * D);
    for (let i = 0; i < N; i++)
      for (let j = 0; j < N; j++) {
        pairs.set(E.subarray(i * D, (i + 1) * D), (i * N + j) * 2 * D);
        pairs.set(E.subarray(j * D, (j + 1) * D), (i * N + j) * 2 * D + D);
      }
    using c = LanguageMatchingClassifier.create(gpu, D, 16, { seed: 3 });
    using e = f32(gpu, E, [N, D], true);
    using x = f32(gpu, pairs, [N * N, 2 * D]);
    const up = uniform(r, N * N * 2);
    using g = f32(gpu, up, [N * N, 2]);
    using fast = c.pairLogits(e);
    expect(fast.shape).toEqual([N * N, 2]);
    using slow = c.forward(x);
    expectClose("pair logits", await fast.toArray(), await slow.toArray(), { rtol: 1e-5, atol: 1e-6 });
    slow.backward(g);
    const want = await Promise.all(c.namedParameters().map(([, t]) => t.grad!.toArray()));
    c.zeroGrad();
    fast.backward(g);
    const got = await Promise.all(c.namedParameters().map(([, t]) => t.grad!.toArray()));
    c.namedParameters().forEach(([n], k) => expectGrad(`d ${n}`, got[k]!, want[k]!));
    // d e_i = Σ_j (d x[i·N + j])[:D] + Σ_j (d x[j·N + i])[D:], from the materialized path's input gradient
    using xg = f32(gpu, pairs, [N * N, 2 * D], true);
    using s2 = c.forward(xg);
    s2.backward(g);
    const dx = await xg.grad!.toArray();
    const de = new Float64Array(N * D);
    for (let i = 0; i < N; i++)
      for (let j = 0; j < N; j++)
        for (let d = 0; d < D; d++) {
          de[i * D + d]! += dx[(i * N + j) * 2 * D + d]!;
          de[j * D + d]! += dx[(i * N + j) * 2 * D + D + d]!;
        }
    expectGrad("d e", await e.grad!.toArray(), de);
  });
});

// ---- errors -------------------------------------------------------------------------------------------------

describe("bad input is named", () => {
  test("index values, shapes, empty spans, temperature, languages, widths", async () => {
    const gpu = await getGpu();
    using h = Tensor.zeros(gpu, [2, 6, 4]);
    using c = LanguageMatchingClassifier.create(gpu, 4, 8);
    const ok = [
      [0, 1, 1, 0, 2, 2],
      [0, 1, 0, 2, 2, 0],
    ];
    expect(() => contrastiveLoss(h, [ok[0]!], { temperature: 0.1 })).toThrow(/srcTgtIndex must have 2 rows/);
    expect(() => contrastiveLoss(h, [ok[0]!, [0, 1, 2]], { temperature: 0.1 })).toThrow(/srcTgtIndex\[1\] has 3 values, but the states have 6/);
    expect(() => contrastiveLoss(h, [ok[0]!, [0, 1, 3, 2, 2, 0]], { temperature: 0.1 })).toThrow(/srcTgtIndex\[1\]\[2\] = 3 is not 0, 1/);
    expect(() => contrastiveLoss(h, ok, { temperature: 0 })).toThrow(/temperature must be finite and > 0, got 0/);
    expect(() => contrastiveLoss(h, [ok[0]!, [0, 0, 0, 2, 2, 0]], { temperature: 0.1 })).toThrow(/example 1 has no source \(index 1\) token/);
    // L_LAM drops the first position of the index: a source only at position 0 leaves none
    expect(() => languageMatchingLoss(h, [ok[0]!, [1, 0, 0, 2, 2, 0]], [0, 1], [1, 0], c)).toThrow(/example 1 has no source \(index 1\) token after the first position/);
    expect(() => languageMatchingLoss(h, ok, [0], [1, 0], c)).toThrow(/srcLang must hold 2 language ids/);
    expect(() => languageMatchingLoss(h, ok, [0, 1.5], [1, 0], c)).toThrow(/srcLang\[1\] = 1.5 is not an integer/);
    using wide = Tensor.zeros(gpu, [2, 6, 5]);
    expect(() => languageMatchingLoss(wide, ok, [0, 1], [1, 0], c)).toThrow(/width 5 is not the classifier's hidden size 4/);
    expect(() => LanguageMatchingClassifier.create(gpu, 4, 0)).toThrow(/language_matching_intermediate_size must be a positive integer, got 0/);
  });
});

describe("readStage1Config", () => {
  test("defaults (the reference's run script), config.json values, flags over both", () => {
    expect(readStage1Config({}, { numLayers: 32 })).toEqual({
      alignLayer: 16,
      contrastiveLambda: 0.3,
      contrastiveTemperature: 0.1,
      languageMatchingLambda: 0.4,
      languageMatchingIntermediateSize: 128,
    });
    const cfg = { hidden_size: 8, align_layer: 3, contrastive_lambda: 1, contrastive_temperature: 0.05, language_matching_lambda: 0, language_matching_intermediate_size: 64 };
    expect(readStage1Config(cfg, { numLayers: 4 })).toEqual({ alignLayer: 3, contrastiveLambda: 1, contrastiveTemperature: 0.05, languageMatchingLambda: 0, languageMatchingIntermediateSize: 64 });
    expect(readStage1Config(cfg, { numLayers: 4, overrides: { align_layer: "4", contrastive_lambda: 0, language_matching_lambda: undefined } })).toMatchObject({
      alignLayer: 4,
      contrastiveLambda: 0,
      languageMatchingLambda: 0,
    });
  });

  test("out-of-range values name the field and where it came from", () => {
    const bad = (cfg: Record<string, unknown>, re: RegExp, overrides?: Record<string, unknown>) => {
      let err: unknown;
      try {
        readStage1Config(cfg, { numLayers: 2, source: "m/config.json", overrides });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(AlignConfigError);
      expect((err as Error).message).toMatch(re);
      expect((err as AlignConfigError).exitCode).toBe(2);
    };
    bad({ align_layer: 3 }, /^m\/config\.json: align_layer must be an integer in 0\.\.2 \(the model has 2 layers; 0 = embeddings\), got 3$/);
    bad({ align_layer: -1 }, /align_layer must be an integer in 0\.\.2/);
    bad({ align_layer: 1.5 }, /align_layer must be an integer/);
    bad({ contrastive_lambda: -0.1 }, /^m\/config\.json: contrastive_lambda must be a number >= 0, got -0\.1$/);
    bad({}, /^--contrastive-temperature must be a number > 0, got 0$/, { contrastive_temperature: 0 });
    bad({ contrastive_temperature: -1 }, /contrastive_temperature must be a number > 0, got -1/);
    bad({ language_matching_lambda: "lots" }, /language_matching_lambda must be a number >= 0, got "lots"/);
    bad({ language_matching_lambda: Number.NaN }, /language_matching_lambda must be a number >= 0, got NaN/);
    bad({ language_matching_intermediate_size: 0 }, /language_matching_intermediate_size must be an integer in 1\.\.1048576, got 0/);
  });
});

// ---- the stage-1 objective on a tiny LLaMA ----------------------------------------------------------------

const TINY = { ...TINY_LLAMA, initializer_range: 0.2, pad_token_id: 0 };

function tinyBatch(B: number, T: number, seed: number) {
  const r = rng(seed);
  const srcTgtIndex = randomIndex(r, B, T);
  const lens = srcTgtIndex.map((row) => row.lastIndexOf(2) + 2); // target, then EOS
  const inputIds = lens.map((n) => Array.from({ length: T }, (_, t) => (t < n ? 1 + Math.floor(r() * 63) : 0)));
  const attentionMask = lens.map((n) => Array.from({ length: T }, (_, t) => (t < n ? 1 : 0)));
  const labels = inputIds.map((row, b) => row.map((id, t) => (t < lens[b]! ? id : -100)));
  return { inputIds, attentionMask, labels, srcTgtIndex, srcLang: Array.from({ length: B }, (_, b) => b % 3), tgtLang: Array.from({ length: B }, (_, b) => (b + 1) % 3) };
}

describe("stage1Loss", () => {
  test("L_NTP + λ_ctr·L_CTR + λ_lam·L_LAM at align_layer, each term as the reference computes it; gradients reach the model and the classifier", async () => {
    const gpu = await getGpu();
    using m = LlamaModel.fromConfig(gpu, TINY, { seed: 5 });
    const D = m.config.hiddenSize;
    using c = LanguageMatchingClassifier.create(gpu, D, 16, { seed: 9 });
    const cfg = readStage1Config({ align_layer: 1 }, { numLayers: 2 });
    const batch = tinyBatch(3, 20, 11);
    const out = stage1Loss(m, c, batch, cfg);
    const [loss, ntp, ctr, lam] = await Promise.all([out.loss.item(), out.ntp.item(), out.ctr.item(), out.lam.item()]);
    expect(loss).toBeCloseTo(Math.fround(Math.fround(ntp + Math.fround(0.3 * ctr)) + Math.fround(0.4 * lam)), 6);

    // The same forward with the hidden states, and the reference on them.
    const plain = noGrad(() => m.forwardLoss(batch.inputIds, { attentionMask: batch.attentionMask, labels: batch.labels, outputHiddenStates: true }));
    expect(await plain.loss.item()).toBe(ntp);
    const [B, T] = [3, 20];
    const hk = await plain.hiddenStates![1]!.toArray();
    const hl = await plain.hiddenStates![2]!.toArray();
    const w = Object.fromEntries(await Promise.all(c.namedParameters().map(async ([n, t]) => [n, await t.toArray()] as const)));
    const cw = { gate: w[`${P}.gate_proj.weight`]!, up: w[`${P}.up_proj.weight`]!, down: w[`${P}.down_proj.weight`]!, w: 16 };
    expectClose("ctr at hidden_states[1]", [ctr], [ref.contrastiveLoss(hk, batch.srcTgtIndex, B, T, D, 0.1)], { rtol: 2e-5 });
    expectClose("lam at hidden_states[L]", [lam], [ref.languageMatchingLoss(hl, batch.srcTgtIndex, batch.srcLang, batch.tgtLang, cw, B, T, D)], { rtol: 2e-5 });
    for (const t of [plain.logits, plain.loss, ...plain.hiddenStates!]) t.release();

    out.loss.backward();
    for (const [n, t] of [...m.namedParameters(), ...c.namedParameters()]) {
      expect(t.grad, n).toBeDefined();
      expect(maxAbs(await t.grad!.toArray()), n).toBeGreaterThan(0);
    }
    for (const t of Object.values(out)) t.release();
  });

  test("λ = 0 leaves a term out of the graph (the loss is L_NTP bit for bit); B = 1 has no contrastive term", async () => {
    const gpu = await getGpu();
    using m = LlamaModel.fromConfig(gpu, TINY, { seed: 5 });
    using c = LanguageMatchingClassifier.create(gpu, m.config.hiddenSize, 8, { seed: 9 });
    const off: Stage1Config = { ...readStage1Config({}, { numLayers: 2 }), contrastiveLambda: 0, languageMatchingLambda: 0 };
    const batch = tinyBatch(2, 16, 3);
    const out = stage1Loss(m, c, batch, off);
    expect(await out.loss.item()).toBe(await out.ntp.item());
    expect(out.ctr.requiresGrad).toBe(false);
    expect(out.lam.requiresGrad).toBe(false);
    expect(await out.ctr.item()).toBeGreaterThan(0); // still computed, for the metrics
    out.loss.backward();
    for (const [n, t] of c.namedParameters()) expect(t.grad ?? null, n).toBeNull();
    for (const t of Object.values(out)) t.release();
    m.zeroGrad();

    const one = tinyBatch(1, 16, 4);
    const o1 = stage1Loss(m, c, one, readStage1Config({}, { numLayers: 2 }));
    expect(await o1.ctr.item()).toBe(0);
    const [l, n, lam] = await Promise.all([o1.loss.item(), o1.ntp.item(), o1.lam.item()]);
    expect(l).toBe(Math.fround(n + Math.fround(0.4 * lam)));
    for (const t of Object.values(o1)) t.release();
  });

  test("align_layer and the classifier must fit the model", async () => {
    const gpu = await getGpu();
    using m = LlamaModel.fromConfig(gpu, TINY, { seed: 5 });
    using c = LanguageMatchingClassifier.create(gpu, m.config.hiddenSize, 8);
    using other = LanguageMatchingClassifier.create(gpu, 16, 8);
    const cfg = readStage1Config({}, { numLayers: 2 });
    const batch = tinyBatch(2, 12, 1);
    expect(() => stage1Loss(m, c, batch, { ...cfg, alignLayer: 3 })).toThrow(/align_layer 3 is outside the model's hidden states 0\.\.2/);
    expect(() => stage1Loss(m, other, batch, cfg)).toThrow(/classifier's hidden size 16 is not the model's 32/);
  });

  test("a stage-1 training loop (forward, backward, AdamW on model and classifier) keeps GPU memory flat", async () => {
    const gpu = await getGpu();
    const before = gpu.memory().liveBuffers;
    const m = LlamaModel.fromConfig(gpu, TINY, { seed: 5 });
    const c = LanguageMatchingClassifier.create(gpu, m.config.hiddenSize, 16, { seed: 2 });
    const opt = new AdamW({ ...m.parameters(), ...c.parameters() }, { lr: 1e-3, weightDecay: 0 });
    const cfg = readStage1Config({ align_layer: 1 }, { numLayers: 2 });
    const batch = tinyBatch(4, 18, 21);
    await expectFlatMemory(gpu, 8, () => {
      const out = stage1Loss(m, c, batch, cfg);
      out.loss.backward();
      opt.step();
      opt.zeroGrad();
      for (const t of Object.values(out)) t.release();
    });
    opt.release();
    c.release();
    m.release();
    expect(gpu.memory().liveBuffers).toBe(before);
  });
});


// The pieces of `alignx eval` (src/eval/translate.ts, flores_set.ts, lid.ts, eval_report.ts, align_report.ts):
//   - the prompt is exactly the packer's translation prompt (the first promptLen ids of buildTranslation's example);
//   - the response extraction (a following "###" section cut, line breaks joined, Python's strip);
//   - greedy batched translation equals unbatched, prompt by prompt (batch 1 vs batch 4 with left padding), and
//     the outputs are the decoded greedy continuations of generate() run on each prompt alone;
//   - the default batch size and what lowers it; the FLORES set (default languages, the first N lines, the file
//     named for a missing language, FLORES-101's root, empty lines left out);
//   - the language detector on the fixture's references, and the off-target rate;
//   - directions; the nearest-centroid language-ID probe on separable and on identical clusters, its split;
//   - runTranslationEval in-process: its report's BLEU and chrF++ equal scoring its written files.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildTranslation } from "../../src/data/examples.ts";
import { alpacaPrompt } from "../../src/data/prompt.ts";
import { loadTokenizer, type HfTokenizer } from "../../src/data/tokenizer.ts";
import { nearestCentroidProbe, probeSplit } from "../../src/eval/align_report.ts";
import { evalDirections, parseDirections, runTranslationEval } from "../../src/eval/eval_report.ts";
import { EvalInputError, loadFloresSet } from "../../src/eval/flores_set.ts";
import { corpusScore, makeMetric, readLines } from "../../src/eval/index.ts";
import { LanguageDetector, lidSupports, offTargetRate } from "../../src/eval/lid.ts";
import { defaultBatchSize, extractResponse, translate, translationPrompt, translationPromptIds } from "../../src/eval/translate.ts";
import type { Gpu } from "../../src/gpu/index.ts";
import { generate, LlamaModel } from "../../src/nn/index.ts";
import { getGpu } from "../helpers.ts";
import { buildEvalFixture, EVAL_CONFIG, TINY_FLORES, type EvalFixture } from "./eval_fixture.ts";

let gpu: Gpu;
let fx: EvalFixture;
let tok: HfTokenizer;
let model: LlamaModel;

beforeAll(async () => {
  gpu = await getGpu();
  fx = await buildEvalFixture(gpu);
  tok = await loadTokenizer(fx.model);
  model = await LlamaModel.fromPretrained(gpu, fx.model, { requiresGrad: false });
});
afterAll(() => {
  model?.release();
  fx?.cleanup();
});

const DIRS: [string, string][] = [
  ["eng", "deu"],
  ["deu", "eng"],
  ["eng", "fra"],
  ["fra", "eng"],
  ["deu", "fra"],
];

describe("the prompt", () => {
  test("is the packer's translation prompt, text and ids, for every direction", () => {
    for (const [src, tgt] of DIRS)
      for (let i = 0; i < 5; i++) {
        const s = TINY_FLORES[src]![i]!;
        const t = TINY_FLORES[tgt]![i]!;
        const packed = buildTranslation(tok, { srcLang: src, tgtLang: tgt, src: s, tgt: t }, 512);
        if (!packed.ok) throw new Error(`the packer dropped ${src}-${tgt} ${i}: ${packed.reason}`);
        const ids = translationPromptIds(tok, src, tgt, s);
        expect(ids).toEqual(packed.ids.slice(0, packed.promptLen));
        expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(translationPrompt(src, tgt, s));
      }
  });

  test("reads as the reference's Alpaca prompt", () => {
    const p = translationPrompt("deu", "eng", "Hallo Welt.");
    expect(p).toBe(alpacaPrompt({ instruction: "Translate the following sentences from German to English.", input: "Hallo Welt." }));
    expect(p.endsWith("### Input:\nHallo Welt.\n\n### Response:\n")).toBe(true);
    expect(p.startsWith("Below is an instruction that describes a task, paired with an input")).toBe(true);
    expect(translationPromptIds(tok, "deu", "eng", "Hallo Welt.")[0]).toBe(tok.bosId!);
  });
});

describe("extractResponse", () => {
  test.each([
    ["Hallo Welt.", "Hallo Welt."],
    ["  Hallo Welt.  \n", "Hallo Welt."],
    ["Hallo Welt.\n\n### Instruction:\nTranslate ...", "Hallo Welt."],
    ["Hallo Welt.\r\n### Response:\nmore", "Hallo Welt."],
    ["Hallo\nWelt.", "Hallo Welt."],
    ["a\rb\u2028c", "a b c"],
    ["### at the start stays", "### at the start stays"],
    ["x ### y", "x ### y"],
    ["", ""],
    ["\n###", ""],
    ["\u00a0 non-breaking\u3000", "non-breaking"],
  ])("%j → %j", (raw, want) => {
    expect(extractResponse(raw)).toBe(want);
  });
});

describe("translate", () => {
  const prompts = () => DIRS.flatMap(([s, t]) => TINY_FLORES[s]!.slice(0, 2).map((x) => translationPromptIds(tok, s, t, x)));
  const o = { maxNewTokens: 6, eosTokenIds: [1], padTokenId: 2 };

  test("batch 4 (left-padded) gives every prompt the output of batch 1", async () => {
    const ps = prompts();
    expect(new Set(ps.map((p) => p.length)).size).toBeGreaterThan(3); // the batches really are padded
    const one = await translate(model, tok, ps, { ...o, batchSize: 1 });
    const four = await translate(model, tok, ps, { ...o, batchSize: 4 });
    expect(four.raw).toEqual(one.raw);
    expect(four.outputs).toEqual(one.outputs);
    expect(four.newTokens).toBe(one.newTokens);
    expect(four.hitMaxNewTokens).toBe(one.hitMaxNewTokens);
    expect(one.outputs.length).toBe(ps.length);
    expect(one.newTokens).toBeGreaterThan(0);
  });

  test("outputs are generate()'s greedy continuations, decoded up to the EOS and extracted", async () => {
    const ps = prompts().slice(0, 3);
    const r = await translate(model, tok, ps, { ...o, batchSize: 3 });
    for (let i = 0; i < ps.length; i++) {
      const g = await generate(model, [ps[i]!], { ...o, useCache: false });
      const ids = g.tokens[0]!.slice(0, g.lengths[0]);
      const body = g.finished[0] === "eos" ? ids.slice(0, -1) : ids;
      expect(r.raw[i]).toBe(tok.decode(body, { skipSpecialTokens: true }));
      expect(r.outputs[i]).toBe(extractResponse(r.raw[i]!));
    }
  });

  test("rejects a batch size below 1", async () => {
    await expect(translate(model, tok, prompts(), { ...o, batchSize: 0 })).rejects.toThrow(/batchSize/);
  });
});

describe("defaultBatchSize", () => {
  const c = LlamaModel.config(EVAL_CONFIG);
  test("16 when it fits, lowered by a budget or by the device's buffer limits, never below 1", () => {
    expect(defaultBatchSize(c, { promptTokens: 100, maxNewTokens: 100 })).toBe(16);
    expect(defaultBatchSize(c, { promptTokens: 100, maxNewTokens: 100, budgetBytes: Infinity })).toBe(16);
    const lowered = defaultBatchSize(c, { promptTokens: 100, maxNewTokens: 100, budgetBytes: 2_000_000 });
    expect(lowered).toBeLessThan(16);
    expect(lowered).toBeGreaterThanOrEqual(1);
    expect(defaultBatchSize(c, { promptTokens: 100, maxNewTokens: 100, budgetBytes: 1 })).toBe(1);
    // [B·T, I] = B × 200 × 64 × 4 bytes must fit one binding: 4 rows do at 204800 bytes, 8 do not.
    expect(defaultBatchSize(c, { promptTokens: 100, maxNewTokens: 100, limits: { maxStorageBufferBindingSize: 204_800, maxBufferSize: 1 << 30 } })).toBe(4);
  });
});

describe("loadFloresSet", () => {
  test("default languages: the AlignX ones present; --max-sentences keeps the first N lines", async () => {
    const s = await loadFloresSet(fx.flores);
    expect(s.langs).toEqual(["deu", "eng", "fra"]);
    expect(s.n).toBe(5);
    expect(s.split).toBe(".devtest");
    expect(s.sentences.fra).toEqual(TINY_FLORES.fra!);
    const three = await loadFloresSet(fx.flores, { langs: ["fra"], require: ["eng"], maxSentences: 3 });
    expect(three.langs).toEqual(["eng", "fra"]);
    expect(three.sentences.eng).toEqual(TINY_FLORES.eng!.slice(0, 3));
  });

  test("a missing language names the file expected (FLORES's name for Chinese); bad directories", async () => {
    await expect(loadFloresSet(fx.flores, { langs: ["spa"] })).rejects.toThrow(`${join(fx.flores, "spa.devtest")}: no such file`);
    await expect(loadFloresSet(fx.flores, { langs: ["zho"] })).rejects.toThrow(`${join(fx.flores, "cmn_Hans.devtest")}: no such file`);
    await expect(loadFloresSet(join(fx.root, "nowhere"))).rejects.toBeInstanceOf(EvalInputError);
    await expect(loadFloresSet(fx.model)).rejects.toThrow(/not a FLORES directory/);
    await expect(loadFloresSet(fx.flores, { maxSentences: 0 })).rejects.toThrow(/max-sentences/);
  });

  test("FLORES-101's root reads its devtest/; a line empty in a requested language is left out", async () => {
    const root = join(fx.root, "flores-root");
    mkdirSync(join(root, "devtest"), { recursive: true });
    mkdirSync(join(root, "dev"));
    const lines = { eng: ["a b", "c d", "e f"], deu: ["A B", "", "E F"], cmn_Hans: ["甲", "乙", "丙"] };
    for (const [l, xs] of Object.entries(lines)) {
      writeFileSync(join(root, "devtest", `${l}.devtest`), `${xs.join("\n")}\n`);
      writeFileSync(join(root, "dev", `${l}.dev`), "x\n");
    }
    const s = await loadFloresSet(root);
    expect(s.dir).toBe(join(root, "devtest"));
    expect(s.langs).toEqual(["deu", "eng", "zho"]);
    expect(s.sentences.eng).toEqual(["a b", "e f"]);
    expect(s.sentences.zho).toEqual(["甲", "丙"]);
    expect(s.emptyLines).toBe(1);
    const noDeu = await loadFloresSet(root, { langs: ["zho"], require: ["eng"] });
    expect(noDeu.sentences.zho).toEqual(["甲", "乙", "丙"]);
  });
});

describe("language identification", () => {
  test("each fixture reference is detected as its language; the off-target rate", () => {
    const lid = new LanguageDetector(["ben", "deu", "eng", "fra", "jpn", "rus", "spa", "swh", "tha", "zho"]);
    for (const [lang, xs] of Object.entries(TINY_FLORES)) {
      for (const x of xs) expect(lid.detect(x)).toBe(lang);
      expect(offTargetRate(lid, xs, lang)).toBe(0);
    }
    expect(offTargetRate(lid, TINY_FLORES.deu!, "eng")).toBe(1);
    expect(offTargetRate(lid, [...TINY_FLORES.deu!.slice(0, 3), "", "Hello, how are you today?"], "deu")).toBe(0.4);
    expect(lid.detect("这是一个句子。")).toBe("zho");
    expect(lid.detect("これは日本語の文です。")).toBe("jpn");
    expect(lid.detect("Это предложение на русском языке.")).toBe("rus");
    expect(lid.detect("นี่คือประโยคภาษาไทย")).toBe("tha");
    expect(lid.detect("   ")).toBeNull();
    expect(lid.isLang("這是一個句子。", "zho_Hant")).toBe(true);
    expect(lidSupports("kam")).toBe(false);
    expect(offTargetRate(lid, ["x"], "kam")).toBeNull();
  });
});

describe("directions", () => {
  test("en-x, x-en, all; bad specs", () => {
    const langs = ["deu", "eng", "fra"];
    expect(evalDirections(langs, parseDirections("en-x,x-en"))).toEqual([["eng", "deu"], ["eng", "fra"], ["deu", "eng"], ["fra", "eng"]]);
    expect(evalDirections(langs, parseDirections("x-en"))).toEqual([["deu", "eng"], ["fra", "eng"]]);
    expect(evalDirections(langs, parseDirections("all")).length).toBe(6);
    expect(() => parseDirections("en-y")).toThrow(EvalInputError);
    expect(() => parseDirections("all,en-x")).toThrow(/alone/);
  });
});

describe("the language-ID probe", () => {
  const d = 4;
  const n = 10;
  const matrix = (f: (i: number, k: number) => number) => Float32Array.from({ length: n * d }, (_, j) => f(Math.floor(j / d), j % d));

  test("its split: half and half, disjoint, seeded", () => {
    const a = probeSplit(n, 3);
    expect(a.train.length).toBe(5);
    expect([...a.train, ...a.test].sort((x, y) => x - y)).toEqual([...Array(n).keys()]);
    expect(probeSplit(n, 3)).toEqual(a);
    expect(probeSplit(n, 4)).not.toEqual(a);
    expect(() => probeSplit(1, 0)).toThrow(/at least 2/);
  });

  test("separable languages: accuracy 1; identical states: chance (ties go to the first language)", () => {
    const split = probeSplit(n, 0);
    const wiggle = (i: number, k: number) => 0.1 * Math.sin(7 * i + 3 * k);
    const apart = { a: matrix((i, k) => (k === 0 ? 1 : 0) + wiggle(i, k)), b: matrix((i, k) => (k === 1 ? 1 : 0) + wiggle(i, k)), c: matrix((i, k) => (k === 2 ? 1 : 0) + wiggle(i, k)) };
    expect(nearestCentroidProbe(apart, ["a", "b", "c"], n, d, split)).toEqual({ accuracy: 1, langs: { a: 1, b: 1, c: 1 } });
    const same = matrix((i, k) => 1 + wiggle(i, k));
    const r = nearestCentroidProbe({ a: same, b: same, c: same }, ["a", "b", "c"], n, d, split);
    expect(r.langs).toEqual({ a: 1, b: 0, c: 0 });
    expect(r.accuracy).toBeCloseTo(1 / 3, 12);
    // the scale of a state does not matter (cosine to unit centroids)
    const scaled = { ...apart, b: matrix((i, k) => 100 * ((k === 1 ? 1 : 0) + wiggle(i, k))) };
    expect(nearestCentroidProbe(scaled, ["a", "b", "c"], n, d, split).accuracy).toBe(1);
  });
});

describe("runTranslationEval", () => {
  test("writes refs, hypotheses and report.json; its BLEU and chrF++ are those of the written files", async () => {
    const out = fx.path("lib");
    mkdirSync(out, { recursive: true });
    const set = await loadFloresSet(fx.flores, { maxSentences: 4 });
    const lid = new LanguageDetector(set.langs);
    const report = await runTranslationEval(model, tok, { out, set, directions: [["eng", "deu"], ["fra", "eng"]], batchSize: 3, maxNewTokens: 5, eosTokenIds: [1], padTokenId: 2, lid, model: fx.model });
    expect(JSON.parse(readFileSync(join(out, "report.json"), "utf8"))).toEqual(JSON.parse(JSON.stringify(report)));
    expect(report.results.map((r) => [r.src, r.tgt, r.n])).toEqual([["eng", "deu", 4], ["fra", "eng", 4]]);
    for (const r of report.results) {
      const hyps = readLines(join(out, r.hyp));
      const refs = readLines(join(out, r.ref));
      expect(hyps.length).toBe(4);
      expect(refs).toEqual(TINY_FLORES[r.tgt]!.slice(0, 4));
      expect(r.bleu).toBe(corpusScore(makeMetric("bleu"), hyps, [refs]).score.score);
      expect(r["chrf++"]).toBe(corpusScore(makeMetric("chrf++"), hyps, [refs]).score.score);
      expect(r.off_target_ref).toBe(0);
    }
    expect(Object.keys(report.averages)).toEqual(["en-x", "x-en", "all"]);
  });
});

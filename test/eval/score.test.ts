// src/eval against sacreBLEU: every case of test/fixtures/goldens/sacrebleu.json (tools/goldens/sacrebleu_cases.py)
// must print exactly what sacreBLEU printed (text at widths 1 and 2, JSON), with the same signature and, for BLEU,
// the same components; cases typed in from sacreBLEU's test suite also meet its published values. Plus numpy's
// bootstrap generator draw for draw, the tokenizers' Python-isms, and the input reader's errors.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tempDir } from "../helpers.ts";
import {
  Bleu,
  bootstrapCI,
  Chrf,
  computeBleu,
  corpusScore,
  formatScore,
  getTokenizer,
  numpyChoice,
  pyFixed,
  pyFloatRepr,
  pyJsonDumps,
  readLines,
  SACREBLEU_VERSION,
  ScoreInputError,
  scoreJson,
  sentenceScores,
  type BleuScore,
  type Metric,
  type ScoreResult,
  type SmoothMethod,
} from "../../src/eval/index.ts";
import golden from "../fixtures/goldens/sacrebleu.json" with { type: "json" };

interface Expected {
  score: number;
  signature: string;
  name: string;
  text1: string;
  text2: string;
  json1: Record<string, unknown>;
  counts?: number[];
  totals?: number[];
  precisions?: number[];
  bp?: number;
  sys_len?: number;
  ref_len?: number;
  ci_mean?: number;
  ci?: number;
}
interface Case {
  name: string;
  metric: "bleu" | "chrf" | "chrf++";
  hyps: string[];
  refs: string[][];
  options: Record<string, unknown>;
  sentence: boolean;
  ci: boolean;
  seed?: number;
  source?: string;
  published?: number;
  epsilon?: number;
  expected: Expected | Expected[];
}
const G = golden as unknown as { sacrebleu_version: string; cases: Case[]; compute_bleu: any[]; rng: any[] };

function metricOf(c: Case): Metric {
  const o = c.options as Record<string, any>;
  if (c.metric === "bleu")
    return new Bleu({
      tokenize: o.tokenize ?? undefined,
      lowercase: o.lowercase,
      smoothMethod: o.smooth_method,
      smoothValue: o.smooth_value ?? undefined,
      effectiveOrder: o.effective_order,
    });
  return new Chrf({
    charOrder: o.char_order,
    wordOrder: o.word_order ?? (c.metric === "chrf++" ? 2 : 0),
    beta: o.beta,
    lowercase: o.lowercase,
    whitespace: o.whitespace,
    epsSmoothing: o.eps_smoothing,
  });
}

const run = (c: Case): ScoreResult[] => {
  const m = metricOf(c);
  return c.sentence ? sentenceScores(m, c.hyps, c.refs) : [corpusScore(m, c.hyps, c.refs, { ci: c.ci, seed: c.seed })];
};

/** JSON as the golden holds it (Python floats become numbers). */
const plainJson = (s: string): unknown => JSON.parse(s);

/** Relative closeness for values sacreBLEU computes with the same operations (last-bit differences only). */
const close = (a: number, b: number, rel = 1e-12) => Math.abs(a - b) <= rel * Math.max(1, Math.abs(b));

describe("sacreBLEU goldens", () => {
  test("the goldens are of the sacreBLEU release the signature names", () => {
    expect(G.sacrebleu_version).toBe(SACREBLEU_VERSION);
    expect(G.cases.length).toBeGreaterThanOrEqual(120);
  });

  for (const c of G.cases) {
    test(`${c.name}${c.source ? ` (${c.source})` : ""}`, () => {
      const got = run(c);
      const exp = Array.isArray(c.expected) ? c.expected : [c.expected];
      expect(got.length).toBe(exp.length);
      exp.forEach((e, i) => {
        const r = got[i]!;
        // What sacreBLEU prints, exactly.
        expect(formatScore(r.score, 1, r.signature)).toBe(e.text1);
        expect(formatScore(r.score, 2, r.signature)).toBe(e.text2);
        expect(plainJson(pyJsonDumps(scoreJson(r.score, 1, r.signature)))).toEqual(e.json1);
        expect(r.signature).toBe(e.signature);
        expect(r.score.name).toBe(e.name);
        expect(close(r.score.score, e.score)).toBe(true);
        if (e.counts) {
          const b = r.score as BleuScore;
          expect(b.counts).toEqual(e.counts);
          expect(b.totals).toEqual(e.totals!);
          expect(b.sysLen).toBe(e.sys_len!);
          expect(b.refLen).toBe(e.ref_len!);
          expect(close(b.bp, e.bp!)).toBe(true);
          b.precisions.forEach((p, k) => expect(close(p, e.precisions![k]!)).toBe(true));
        }
        if (e.ci_mean !== undefined) {
          expect(close(r.score.ciMean!, e.ci_mean, 1e-9)).toBe(true);
          expect(close(r.score.ci!, e.ci!, 1e-9)).toBe(true);
        } else expect(r.score.ciMean).toBeUndefined();
      });
      if (c.published !== undefined) expect(Math.abs(got[0]!.score.score - c.published)).toBeLessThan(c.epsilon!);
    });
  }

  test("compute_bleu on given statistics (sacreBLEU test_bleu.py test_case_scoring, test_case_degenerate_stats)", () => {
    for (const k of G.compute_bleu) {
      const s = computeBleu(k.correct, k.total, k.sys_len, k.ref_len, { smoothMethod: k.smooth_method as SmoothMethod, smoothValue: k.smooth_value ?? undefined });
      expect(close(s.score, k.score)).toBe(true);
      expect(Math.abs(s.score - k.published)).toBeLessThan(1e-6);
    }
  });
});

describe("numpy's generator (sacreBLEU's bootstrap draws)", () => {
  for (const r of G.rng)
    test(`default_rng(${r.seed}).choice(${r.n}, size=(${r.rows}, ${r.n}))`, () => {
      const got = numpyChoice(r.seed, r.n, r.n * r.rows);
      if (r.idx) expect(Array.from(got)).toEqual(r.idx);
      expect(Array.from(got.slice(0, 50))).toEqual(r.head);
      expect(got.reduce((a, b) => a + b, 0)).toBe(r.sum);
    });

  test("bootstrap: same seed, same interval; the interval holds the corpus score of identical segments", () => {
    const stats = Array.from({ length: 40 }, (_, i) => [10, 10 + (i % 3), 8 - (i % 5), 6 - (i % 4), 4, 2, 10, 9, 8, 7]);
    const bleu = new Bleu();
    const f = (s: Float32Array) => bleu.fromStats(s, true).score;
    const a = bootstrapCI(stats, f, { seed: 1 }), b = bootstrapCI(stats, f, { seed: 1 }), c = bootstrapCI(stats, f, { seed: 2 });
    expect(a).toEqual(b);
    expect(a.scores).not.toEqual(c.scores);
    expect(a.scores.length).toBe(1000);
    const same = bootstrapCI(Array.from({ length: 10 }, () => [5, 5, 5, 4, 3, 2, 5, 4, 3, 2]), f, { seed: 3 });
    expect(same.ci).toBe(0);
    expect(close(same.mean, bleu.fromStats([50, 50, 50, 40, 30, 20, 50, 40, 30, 20]).score, 1e-6)).toBe(true);
  });
});

describe("formatting as Python", () => {
  test("f'{x:.Nf}' rounds ties to even; toFixed elsewhere", () => {
    expect(pyFixed(12.25, 1)).toBe("12.2");
    expect(pyFixed(12.75, 1)).toBe("12.8");
    expect(pyFixed(0.125, 2)).toBe("0.12");
    expect(pyFixed(0.375, 2)).toBe("0.38");
    expect(pyFixed(2.5, 0)).toBe("2");
    expect(pyFixed(3.5, 0)).toBe("4");
    expect(pyFixed(-12.25, 1)).toBe("-12.2");
    expect(pyFixed(48.530827, 1)).toBe("48.5");
    expect(pyFixed(100, 1)).toBe("100.0");
  });

  test("repr(float)", () => {
    expect(pyFloatRepr(100)).toBe("100.0");
    expect(pyFloatRepr(48.5)).toBe("48.5");
    expect(pyFloatRepr(0)).toBe("0.0");
    expect(pyFloatRepr(0.00001)).toBe("1e-05");
    expect(pyFloatRepr(1e16)).toBe("1e+16");
  });
});

describe("tokenizers: Python's semantics", () => {
  test("13a: mteval's escapes and punctuation", () => {
    const t = getTokenizer("13a");
    expect(t("He said &quot;yes&quot; &amp; left <skipped> 3,5 and 1.5, x-2 9-3.")).toBe('He said " yes " & left 3,5 and 1.5 , x-2 9 - 3 .');
  });

  test("zh: sacreBLEU's range comparisons, including the two-character bounds ('\\u20000' is U+2000 + '0')", () => {
    const t = getTokenizer("zh");
    expect(t("我们a—b")).toBe("我 们 a — b"); // U+2014 counts as Chinese (U+2001..U+2A6D)
    expect(t("x\u2000y")).toBe("x y"); // U+2000 itself does not, and is whitespace
    expect(t("𠀀𠀁")).toBe("𠀀𠀁"); // Extension B is not split
  });

  test("split / strip use Python's whitespace: U+001C..U+001F and U+0085 split, U+FEFF does not", () => {
    const t = getTokenizer("none");
    const b = new Bleu({ tokenize: "none" });
    expect(b.preprocess("a\u001cb\u0085c\ufeffd  ")).toBe(t("a\u001cb\u0085c\ufeffd"));
    const s = b.segmentStats(b.preprocess("a\u001cb\u0085c\ufeffd"), b.refInfo(["a b c\ufeffd"]));
    expect(s.slice(0, 2)).toEqual([3, 3]);
  });

  test("char and chrF count code points, not UTF-16 units", () => {
    expect(getTokenizer("char")("a😀b")).toBe("a 😀 b");
    const c = new Chrf();
    expect(c.segmentStats("😀", c.refInfo(["😀"])).slice(0, 3)).toEqual([1, 1, 1]);
  });

  test("unknown and unavailable tokenizers say why", () => {
    expect(() => getTokenizer("moses")).toThrow(/unknown tokenizer "moses"; choose one of 13a/);
    expect(() => getTokenizer("flores200")).toThrow(/--spm-model FILE/);
    expect(() => getTokenizer("spm", { spmModel: join(tmpdir(), "alignx-no-such.model") })).toThrow(/tokenizer spm: --spm-model .*alignx-no-such\.model: cannot read the SentencePiece model/);
    expect(() => getTokenizer("ja-mecab")).toThrow(/MeCab/);
  });
});

describe("readLines: files as sacreBLEU reads them", () => {
  const dir = tempDir("alignx-score-");
  const file = (name: string, bytes: string | Uint8Array) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };

  test("split at \\n only, trailing whitespace (\\r included) stripped, a BOM kept, a final \\n ends the last line", () => {
    expect(readLines(file("a.txt", "x y \r\n\n\u2028z\u00a0\nlast"))).toEqual(["x y", "", "\u2028z", "last"]);
    expect(readLines(file("b.txt", "\ufeffa\n"))).toEqual(["\ufeffa"]);
    expect(readLines(file("c.txt", "\n"))).toEqual([""]);
  });

  test("an empty file, a missing file, bytes that are not UTF-8: errors naming the file (and line)", () => {
    expect(() => readLines(file("e.txt", ""), "--hyp e.txt")).toThrow("--hyp e.txt: the file is empty");
    expect(() => readLines(join(dir, "nope.txt"), "--ref nope.txt")).toThrow("--ref nope.txt: no such file");
    const bad = file("bad.txt", new Uint8Array([0x61, 0x0a, 0x62, 0x63, 0xff, 0x0a]));
    expect(() => readLines(bad, "--hyp bad.txt")).toThrow("--hyp bad.txt:2: not UTF-8 (byte 0xff at offset 4)");
    try {
      readLines(bad);
    } catch (e) {
      expect(e).toBeInstanceOf(ScoreInputError);
      expect((e as ScoreInputError).exitCode).toBe(2);
    }
  });
});

// spBLEU: sacreBLEU's TokenizerSPM is `" ".join(sp.EncodeAsPieces(line))`, so BLEU with `--tokenize spm` on raw
// lines must equal BLEU with `--tokenize none` on the lines as SentencePiece itself (Debian's 0.1.97, through
// tools/goldens/sentencepiece_cases.py) split them with the same model; then the same through `alignx score` on files.
describe("spBLEU (--tokenize spm / flores101 / flores200 with --spm-model)", () => {
  const SPM_DIR = join(import.meta.dir, "..", "fixtures", "sentencepiece");
  const spmGolden = require(join(SPM_DIR, "goldens.json")) as { bleu: { model: string; hyps: string[]; refs: string[]; hyp_pieces: string[]; ref_pieces: string[] } };
  const B = spmGolden.bleu;
  const model = join(SPM_DIR, B.model);

  test("the tokenizer is the model's pieces joined by spaces, signed as sacreBLEU signs it", () => {
    const t = getTokenizer("spm", { spmModel: model });
    B.hyps.forEach((h, i) => expect(t(h)).toBe(B.hyp_pieces[i]!));
    expect(t.signature).toBe("flores101");
    expect(getTokenizer("flores101", { spmModel: model }).signature).toBe("flores101");
    expect(getTokenizer("flores200", { spmModel: model }).signature).toBe("flores200");
  });

  test("spBLEU on raw lines = BLEU with tokenize none on SentencePiece's pieces", () => {
    for (const name of ["spm", "flores101", "flores200"]) {
      const sp = corpusScore(new Bleu({ tokenize: name, spmModel: model }), B.hyps, [B.refs]);
      const pre = corpusScore(new Bleu({ tokenize: "none" }), B.hyp_pieces, [B.ref_pieces]);
      expect(sp.score.score).toBe(pre.score.score);
      expect(sp.score.verbose).toBe(pre.score.verbose);
      expect(sp.signature).toBe(pre.signature.replace("tok:none", `tok:${name === "flores200" ? "flores200" : "flores101"}`));
      expect(sp.score.score).toBeGreaterThan(10);
      expect(sp.score.score).toBeLessThan(100);
      // and not what 13a gives on the same lines (the Thai, Chinese and Japanese lines are one token each there)
      expect(corpusScore(new Bleu(), B.hyps, [B.refs]).score.score).not.toBe(sp.score.score);
    }
  });

  test("a file that is not a SentencePiece model: the file and the byte", () => {
    const dir = tempDir("alignx-spbleu-");
    const bad = join(dir, "bad.model");
    writeFileSync(bad, "not a model\n");
    expect(() => new Bleu({ tokenize: "flores200", spmModel: bad })).toThrow(/tokenizer flores200: --spm-model .*bad\.model: byte \d+: /);
  });

  test("alignx score --tokenize spm --spm-model FILE on files", async () => {
    const dir = tempDir("alignx-spbleu-cli-");
    writeFileSync(join(dir, "hyp.txt"), B.hyps.map((l) => `${l}\n`).join(""));
    writeFileSync(join(dir, "ref.txt"), B.refs.map((l) => `${l}\n`).join(""));
    writeFileSync(join(dir, "hyp.tok"), B.hyp_pieces.map((l) => `${l}\n`).join(""));
    writeFileSync(join(dir, "ref.tok"), B.ref_pieces.map((l) => `${l}\n`).join(""));
    const main = join(import.meta.dir, "..", "..", "src", "cli", "main.ts");
    const alignx = async (...args: string[]) => {
      const proc = Bun.spawn({ cmd: [process.execPath, main, "score", ...args], cwd: dir, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 45_000, killSignal: "SIGKILL" });
      const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      return { stdout, stderr, code };
    };
    const sp = await alignx("--hyp", "hyp.txt", "--ref", "ref.txt", "--tokenize", "spm", "--spm-model", model, "--metrics", "bleu", "--width", "2");
    const none = await alignx("--hyp", "hyp.tok", "--ref", "ref.tok", "--tokenize", "none", "--metrics", "bleu", "--width", "2");
    expect(sp.stderr).toBe("");
    expect(sp.code).toBe(0);
    expect(none.code).toBe(0);
    expect(sp.stdout).toContain("|tok:flores101|");
    expect(sp.stdout).toBe(none.stdout.replace("|tok:none|", "|tok:flores101|"));
    const bad = await alignx("--hyp", "hyp.txt", "--ref", "ref.txt", "--tokenize", "flores200", "--spm-model", "hyp.txt");
    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe("");
    expect(bad.stderr).toMatch(/tokenizer flores200: --spm-model hyp\.txt: byte \d+: /);
  }, 60_000);
});

// `alignx eval` end to end (subprocesses of src/cli/main.ts on a tiny random LLaMA and a 5-line FLORES-like
// directory of eng, deu, fra; test/eval/eval_fixture.ts):
//   - the translation evaluation writes report.json, one hypothesis file per direction with one line per sentence,
//     and its BLEU / chrF++ equal scoring those files against the FLORES files with `alignx score`'s library;
//   - greedy output does not depend on the batch size (--batch-size 1 and 4 write the same hypothesis files);
//   - --json prints the report; --max-sentences and --directions all;
//   - bad inputs exit 2 naming the file or flag, before anything is written;
//   - --align-report writes alignment.json (per layer: retrieval, cosine, CKA, the language-ID probe; the align
//     layer of config.json) and alignment.svg; and, when ../shared has FLORES-101, on 3 languages × 20 sentences of
//     its devtest (skipped otherwise).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { corpusScore, makeMetric, readLines } from "../../src/eval/index.ts";
import { alignxCmd, cliEnv, type CliResult, ROOT } from "../align/train_fixture.ts";
import { buildEvalFixture, TINY_FLORES, type EvalFixture } from "../eval/eval_fixture.ts";
import { getGpu } from "../helpers.ts";

const SHARED_FLORES = join(ROOT, "..", "shared", "data", "flores101");
let fx: EvalFixture;

beforeAll(async () => {
  fx = await buildEvalFixture(await getGpu());
});
afterAll(() => fx?.cleanup());

/** Run alignx from the repo root without kernel autotuning (the built-in kernel choices: a first tune costs ~10 s). */
async function alignx(args: readonly string[], timeoutMs = 60_000): Promise<CliResult> {
  const proc = Bun.spawn({ cmd: alignxCmd(args), cwd: ROOT, env: { ...cliEnv(), ALIGNX_AUTOTUNE: "0" }, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: timeoutMs, killSignal: "SIGKILL" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (proc.signalCode) throw new Error(`alignx ${args.join(" ")}: killed by ${proc.signalCode}\n${stdout}\n${stderr}`);
  return { code, signal: null, stdout, stderr };
}

const json = (path: string) => JSON.parse(readFileSync(path, "utf8"));
const lineCount = (path: string) => readFileSync(path, "utf8").split("\n").length - 1;

describe("alignx eval (translation)", () => {
  let out1 = "";

  test("writes the report and one hypothesis line per sentence; its scores are those of the written files", async () => {
    out1 = fx.path("b4");
    const r = await alignx(["eval", "--model", fx.model, "--data", fx.flores, "--out", out1, "--max-new-tokens", "6", "--batch-size", "4"]);
    expect(r.stderr).toContain("alignx eval: 4 directions × 5 sentences");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^direction +n +BLEU +chrF\+\+ +off-target +tok\/s +seconds$/m);
    expect(r.stdout).toMatch(/^average all +4 /m);
    expect(r.stdout).toContain("BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
    const rep = json(join(out1, "report.json"));
    expect(rep.format).toBe("alignx-eval");
    expect(rep.n).toBe(5);
    expect(rep.batch_size).toBe(4);
    expect(rep.results.map((d: { src: string; tgt: string }) => `${d.src}-${d.tgt}`)).toEqual(["eng-deu", "eng-fra", "deu-eng", "fra-eng"]);
    expect(Object.keys(rep.averages)).toEqual(["en-x", "x-en", "all"]);
    for (const d of rep.results) {
      for (const k of ["bleu", "chrf++", "off_target", "tokens_per_s", "seconds", "n", "bleu_signature", "chrf_signature"]) expect(d).toHaveProperty(k);
      expect(d.n).toBe(5);
      expect(d.hyp).toBe(`hyp.${d.src}-${d.tgt}.txt`);
      expect(lineCount(join(out1, d.hyp))).toBe(5);
      expect(d.off_target_ref).toBe(0);
      expect(d.tokens_per_s).toBeGreaterThan(0);
      const hyps = readLines(join(out1, d.hyp));
      const refs = readLines(join(fx.flores, `${d.tgt}.devtest`));
      expect(d.bleu).toBe(corpusScore(makeMetric("bleu"), hyps, [refs]).score.score);
      expect(d["chrf++"]).toBe(corpusScore(makeMetric("chrf++"), hyps, [refs]).score.score);
      expect(readLines(join(out1, d.ref))).toEqual(refs);
    }
    expect(readdirSync(out1).sort()).toEqual(["hyp.deu-eng.txt", "hyp.eng-deu.txt", "hyp.eng-fra.txt", "hyp.fra-eng.txt", "ref.deu.txt", "ref.eng.txt", "ref.fra.txt", "report.json"]);
  });

  test("batch 1 writes the same hypotheses as batch 4; a finished --out is refused without --overwrite", async () => {
    const out = fx.path("b1");
    const r = await alignx(["eval", "--model", fx.model, "--data", fx.flores, "--out", out, "--max-new-tokens", "6", "--batch-size", "1"]);
    expect(r.code).toBe(0);
    for (const f of readdirSync(out1).filter((n) => n.startsWith("hyp."))) expect(readFileSync(join(out, f), "utf8")).toBe(readFileSync(join(out1, f), "utf8"));
    const again = await alignx(["eval", "--model", fx.model, "--data", fx.flores, "--out", out, "--max-new-tokens", "6"]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`${join(out, "report.json")} exists`);
    const over = await alignx(["eval", "--model", fx.model, "--data", fx.flores, "--out", out, "--max-new-tokens", "2", "--overwrite", "--directions", "x-en"]);
    expect(over.code).toBe(0);
    expect(json(join(out, "report.json")).max_new_tokens).toBe(2);
    expect(readdirSync(out).sort()).toEqual(["hyp.deu-eng.txt", "hyp.fra-eng.txt", "ref.eng.txt", "report.json"]); // the en-x files of the first run are gone
  });

  test("--json --directions all --max-sentences 2 --langs fr,de", async () => {
    const out = fx.path("json");
    const r = await alignx(["eval", "--model", fx.model, "--data", fx.flores, "--out", out, "--max-new-tokens", "3", "--directions", "all", "--max-sentences", "2", "--langs", "fr,de", "--json"]);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep).toEqual(json(join(out, "report.json")));
    expect(rep.langs).toEqual(["eng", "fra", "deu"]);
    expect(rep.results.length).toBe(6);
    for (const d of rep.results) expect(lineCount(join(out, d.hyp))).toBe(2);
    expect(readLines(join(out, "ref.fra.txt"))).toEqual(TINY_FLORES.fra!.slice(0, 2));
  });

  test("bad inputs: exit 2 with the file or flag named, nothing written", async () => {
    const cases: [string[], RegExp | string][] = [
      [["--langs", "spa"], `${join(fx.flores, "spa.devtest")}: no such file`],
      [["--langs", "zh"], `${join(fx.flores, "cmn_Hans.devtest")}: no such file`],
      [["--langs", "xx"], /--langs: unknown language code 'xx'/],
      [["--max-sentences", "0"], /--max-sentences must be an integer >= 1, got 0/],
      [["--model", fx.noTokenizer], `${join(fx.noTokenizer, "tokenizer.json")}: no such file`],
      [["--model", join(fx.root, "nope")], /--model .*nope: no such directory/],
      [["--data", join(fx.root, "nope")], /--data .*nope: no such directory/],
      [["--data", fx.model], /not a FLORES directory/],
      [["--directions", "en-y"], /--directions: unknown "en-y"/],
      [["--tokenize", "bogus"], /--tokenize: unknown tokenizer "bogus"/],
      [["--tokenize", "spm"], /spm needs the SentencePiece model/],
      [["--spm-model", join(fx.root, "x.model")], /--spm-model applies only to --tokenize spm, flores101 or flores200 \(got --tokenize auto\)/],
      [["--batch-size", "0"], /--batch-size must be an integer in \[1, 4096\], got 0/],
      [["--seed", "1"], /--seed applies to --align-report/],
      [["--align-report", "--directions", "all"], /--directions applies to the translation evaluation/],
    ];
    for (const [args, msg] of cases) {
      const out = fx.path("bad");
      const base = ["eval", ...(args.includes("--model") ? [] : ["--model", fx.model]), ...(args.includes("--data") ? [] : ["--data", fx.flores]), "--out", out];
      const r = await alignx([...base, ...args]);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      if (typeof msg === "string") expect(r.stderr).toContain(msg);
      else expect(r.stderr).toMatch(msg);
      expect(r.stdout).toBe("");
      expect(existsSync(out)).toBe(false);
    }
    const noModel = await alignx(["eval", "--data", fx.flores]);
    expect(noModel.code).toBe(2);
    expect(noModel.stderr).toContain("--model DIR is required");
  });
});

/** The shape of alignment.json for `langs` (pivot first) × n sentences and a 2-layer model with align_layer 1. */
function checkAlignment(a: Record<string, any>, langs: string[], n: number): void {
  expect(a.format).toBe("alignx-alignment");
  expect(a.langs).toEqual(langs);
  expect(a.pivot).toBe("eng");
  expect(a.n).toBe(n);
  expect(a.num_layers).toBe(2);
  expect(a.align_layer).toBe(1);
  expect(a.alignment.layers.map((l: { layer: number }) => l.layer)).toEqual([0, 1, 2]);
  for (const l of a.alignment.layers) {
    expect(Object.keys(l.langs)).toEqual(langs.slice(1));
    for (const k of ["x2pivot", "pivot2x", "meanCos", "randomCos", "cka"]) expect(Number.isFinite(l.mean[k])).toBe(true);
  }
  expect(a.lid_probe.langs).toEqual(langs);
  expect(a.lid_probe.train + a.lid_probe.test).toBe(n);
  expect(a.lid_probe.chance).toBeCloseTo(1 / langs.length, 12);
  expect(a.lid_probe.layers.map((l: { layer: number }) => l.layer)).toEqual([0, 1, 2]);
  for (const l of a.lid_probe.layers) {
    expect(l.accuracy).toBeGreaterThanOrEqual(0);
    expect(l.accuracy).toBeLessThanOrEqual(1);
    expect(Object.keys(l.langs)).toEqual(langs);
  }
}

describe("alignx eval --align-report", () => {
  test("alignment.json and alignment.svg on the fixture (3 languages × 5 sentences)", async () => {
    const out = fx.path("align");
    const r = await alignx(["eval", "--align-report", "--model", fx.model, "--data", fx.flores, "--out", out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^1 \(align\) /m);
    checkAlignment(json(join(out, "alignment.json")), ["eng", "deu", "fra"], 5);
    const svg = readFileSync(join(out, "alignment.svg"), "utf8");
    expect(svg.startsWith("<svg") || svg.startsWith("<?xml")).toBe(true);
    for (const s of ["align layer", "retrieval top-1", "linear CKA", "language-ID probe accuracy", "translations − random"]) expect(svg).toContain(s);
    expect(readdirSync(out).sort()).toEqual(["alignment.json", "alignment.svg"]);
  });

  test.skipIf(!existsSync(SHARED_FLORES))("3 languages × 20 sentences of ../shared's FLORES-101 devtest (skipped without ../shared)", async () => {
    const out = fx.path("align-shared");
    const r = await alignx(["eval", "--align-report", "--model", fx.model, "--data", SHARED_FLORES, "--langs", "deu,zh", "--max-sentences", "20", "--out", out, "--json"]);
    expect(r.code).toBe(0);
    const a = JSON.parse(r.stdout);
    expect(a).toEqual(json(join(out, "alignment.json")));
    expect(a.data).toBe(join(SHARED_FLORES, "devtest"));
    checkAlignment(a, ["eng", "deu", "zho"], 20);
  });
});

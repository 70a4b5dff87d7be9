// `alignx score` end to end: each test spawns `bun src/cli/main.ts score …` on files written from
// test/fixtures/goldens/sacrebleu.json and compares stdout with what sacreBLEU's own command line printed for the
// same files (`sacrebleu REF... -i HYP -m ... -f text|json`), byte for byte; then every bad input: exit 2, a message
// naming the file (and line), nothing on stdout.
import { beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { tempDir } from "../helpers.ts";
import golden from "../fixtures/goldens/sacrebleu.json" with { type: "json" };

const ROOT = resolve(import.meta.dir, "..", "..");
const MAIN = join(ROOT, "src/cli/main.ts");
const SPAWN_TIMEOUT_MS = 45_000;

interface CliRun {
  refs: string[];
  hyp: string;
  sacrebleu_args: string[];
  ours: { metrics?: string; json?: boolean; lc?: boolean; tokenize?: string; sentence?: boolean; ci?: boolean };
  stdout: string;
}
const G = golden as unknown as { files: Record<string, string[]>; cli: CliRun[]; cases: { name: string; expected: { text1: string } }[] };

let dir = "";
const at = (name: string) => join(dir, name);

async function alignx(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = Bun.spawn({ cmd: [process.execPath, MAIN, ...args], cwd: dir, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: SPAWN_TIMEOUT_MS, killSignal: "SIGKILL" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (proc.signalCode) throw new Error(`alignx ${args.join(" ")}: killed by ${proc.signalCode}`);
  return { code, stdout, stderr };
}

beforeAll(() => {
  dir = tempDir("alignx-score-cli-");
  for (const [name, lines] of Object.entries(G.files)) writeFileSync(at(name), lines.map((l) => `${l}\n`).join(""));
  writeFileSync(at("short.txt"), "one\ntwo\n");
  writeFileSync(at("empty.txt"), "");
  writeFileSync(at("latin1.txt"), Buffer.from([0x6f, 0x6b, 0x0a, 0x63, 0x61, 0x66, 0xe9, 0x0a, 0x78, 0x0a])); // "café" in Latin-1 on line 2
  writeFileSync(at("x.model"), "not a model");
});

describe("alignx score prints what sacreBLEU prints", () => {
  for (const r of G.cli)
    test(`sacrebleu ${r.refs.join(" ")} -i ${r.hyp} ${r.sacrebleu_args.join(" ")}`, async () => {
      const args = ["score", "--hyp", r.hyp, ...r.refs.flatMap((f) => ["--ref", f])];
      const o = r.ours;
      if (o.metrics) args.push("--metrics", o.metrics);
      if (o.tokenize) args.push("--tokenize", o.tokenize);
      if (o.lc) args.push("--lc");
      if (o.sentence) args.push("--sentence");
      if (o.ci) args.push("--ci");
      if (o.json) args.push("--json");
      const res = await alignx(...args);
      expect(res.stderr).toBe("");
      expect(res.code).toBe(0);
      expect(res.stdout).toBe(r.stdout);
    });

  test("bleu, chrf and chrf++ in one run: sacreBLEU's lines, aligned on '='", async () => {
    const res = await alignx("score", "--hyp", "hyp.txt", "--ref", "ref1.txt", "--ref=ref2.txt", "--metrics", "chrf++,bleu,chrf");
    expect(res.code).toBe(0);
    const line = (name: string) => G.cases.find((c) => c.name === name)!.expected.text1;
    const lines = ["readme 2 refs bleu", "readme 2 refs chrf", "readme 2 refs chrf++"].map(line);
    const w = Math.max(...lines.map((l) => l.indexOf("=") - 1));
    expect(res.stdout).toBe(lines.map((l) => l.slice(0, l.indexOf("=") - 1).padStart(w) + l.slice(l.indexOf("=") - 1)).join("\n") + "\n");
  });

  test("--ci --seed: the seed is the bootstrap's and the signature's; the same seed gives the same interval", async () => {
    const a = await alignx("score", "--hyp", "bs_hyp.txt", "--ref", "bs_ref.txt", "--ci", "--seed", "7", "--metrics", "chrf");
    const b = await alignx("score", "--hyp", "bs_hyp.txt", "--ref", "bs_ref.txt", "--ci", "--seed", "7", "--metrics", "chrf");
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout).toBe(`${G.cases.find((c) => c.name === "bootstrap seed 7 chrf")!.expected.text1}\n`);
  });

  test("--sentence --json: one JSON object per line", async () => {
    const res = await alignx("score", "--hyp", "hyp.txt", "--ref", "ref1.txt", "--sentence", "--json");
    expect(res.code).toBe(0);
    const objs = res.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(objs.map((o) => o.line)).toEqual([1, 2, 3]);
    expect(objs[0].name).toBe("BLEU");
    expect(objs[0].eff).toBe("yes");
  });
});

describe("alignx score: bad input is exit 2 naming the file (and line), nothing printed", () => {
  const cases: [string, string[], RegExp][] = [
    ["fewer reference lines", ["--hyp", "hyp.txt", "--ref", "short.txt"], /--ref short\.txt has 2 lines but --hyp hyp\.txt has 3 \(line 3 of --hyp hyp\.txt has no reference line\)/],
    ["more reference lines", ["--hyp", "short.txt", "--ref", "ref1.txt"], /--ref ref1\.txt has 3 lines but --hyp short\.txt has 2 \(line 3 of --ref ref1\.txt has no hypothesis line\)/],
    ["second reference mismatched", ["--hyp", "hyp.txt", "--ref", "ref1.txt", "--ref", "short.txt"], /--ref short\.txt has 2 lines/],
    ["empty hypothesis file", ["--hyp", "empty.txt", "--ref", "ref1.txt"], /--hyp empty\.txt: the file is empty/],
    ["empty reference file", ["--hyp", "hyp.txt", "--ref", "empty.txt"], /--ref empty\.txt: the file is empty/],
    ["missing file", ["--hyp", "nope.txt", "--ref", "ref1.txt"], /--hyp nope\.txt: no such file/],
    ["non-UTF-8 hypothesis", ["--hyp", "latin1.txt", "--ref", "ref1.txt"], /--hyp latin1\.txt:2: not UTF-8 \(byte 0xe9 at offset 6\)/],
    ["non-UTF-8 reference", ["--hyp", "hyp.txt", "--ref", "latin1.txt"], /--ref latin1\.txt:2: not UTF-8/],
    ["unknown tokenizer", ["--hyp", "hyp.txt", "--ref", "ref1.txt", "--tokenize", "moses"], /--tokenize: unknown tokenizer "moses"; choose one of 13a, intl, zh, char, none/],
    ["ja-mecab", ["--hyp", "hyp.txt", "--ref", "ref1.txt", "--tokenize", "ja-mecab"], /ja-mecab \/ ko-mecab are not supported/],
    ["unknown metric", ["--hyp", "hyp.txt", "--ref", "ref1.txt", "--metrics", "bleu,ter"], /--metrics: unknown metric "ter"; choose from bleu, chrf, chrf\+\+/],
    ["spm without a model", ["--hyp", "hyp.txt", "--ref", "ref1.txt", "--tokenize", "flores200"], /tokenizer flores200 needs the SentencePiece model: pass --spm-model FILE/],
    ["spm with a model", ["--hyp", "hyp.txt", "--ref", "ref1.txt", "--tokenize", "spm", "--spm-model", "x.model"], /tokenizer spm: --spm-model x\.model: byte 0: unsupported protobuf wire type/],
    ["spm model missing", ["--hyp", "hyp.txt", "--ref", "ref1.txt", "--tokenize", "spm", "--spm-model", "none.model"], /--spm-model none\.model: no such file/],
    ["--ci with --sentence", ["--hyp", "hyp.txt", "--ref", "ref1.txt", "--ci", "--sentence"], /--ci is not available with --sentence/],
    ["--seed without --ci", ["--hyp", "hyp.txt", "--ref", "ref1.txt", "--seed", "3"], /--seed applies only with --ci/],
    ["--seed out of range", ["--hyp", "hyp.txt", "--ref", "ref1.txt", "--ci", "--seed", "-1"], /--seed must be an integer in \[0, 4294967295\], got -1/],
    ["no --hyp", ["--ref", "ref1.txt"], /--hyp FILE is required/],
    ["no --ref", ["--hyp", "hyp.txt"], /--ref FILE is required/],
    ["--hyp twice", ["--hyp", "hyp.txt", "--hyp", "hyp.txt", "--ref", "ref1.txt"], /--hyp is given more than once/],
  ];
  for (const [name, args, re] of cases)
    test(name, async () => {
      const res = await alignx("score", ...args);
      expect(res.stderr).toMatch(re);
      expect(res.stderr.startsWith("alignx: ")).toBe(true);
      expect(res.code).toBe(2);
      expect(res.stdout).toBe("");
    });
});

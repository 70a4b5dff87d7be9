// `alignx pack` and `alignx verify` end to end: each test spawns `bun src/cli/main.ts …` from the repo root with a
// hard timeout (SIGKILL), and checks the exit code, the output, and what is (not) left on disk.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { scratchDirs } from "../data/helpers.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const MAIN = join(ROOT, "src/cli/main.ts");
const TOKENIZER = join(ROOT, "test/fixtures/tokenizers/bytelevel");
const SPAWN_TIMEOUT_MS = 45_000;
const TEST_TIMEOUT_MS = 60_000;

const { scratch } = scratchDirs("alignx-pack-cli-");

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run alignx from the repo root; SIGKILL after SPAWN_TIMEOUT_MS so nothing can hang the suite. */
async function alignx(...args: string[]): Promise<Result> {
  const env: Record<string, string | undefined> = { ...process.env };
  delete env.ALIGNX_ADAPTER;
  delete env.ALIGNX_CPU;
  const proc = Bun.spawn({ cmd: [process.execPath, MAIN, ...args], cwd: ROOT, env, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: SPAWN_TIMEOUT_MS, killSignal: "SIGKILL" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (proc.signalCode) throw new Error(`alignx ${args.join(" ")}: killed by ${proc.signalCode} (timeout ${SPAWN_TIMEOUT_MS} ms?)\n${stdout}\n${stderr}`);
  return { code, stdout, stderr };
}


const pairs = (k: number) => Array.from({ length: k }, (_, i) => `Der Fuchs Nummer ${i} wohnt in Köln.\tThe fox number ${i} lives in Cologne.\n`).join("");

describe("alignx pack + verify", () => {
  test(
    "pack then verify exit 0 and print their summaries",
    async () => {
      const { dir, w } = scratch();
      const tsv = w("deu-eng.tsv", pairs(30));
      const out = join(dir, "out");
      const p = await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--workers", "1", tsv);
      expect(p.stderr).not.toContain("alignx:");
      expect(p.code).toBe(0);
      expect(p.stdout).toContain(`pack: task stage1, 1 worker, tokenizer ${TOKENIZER}`);
      expect(p.stdout).toMatch(/^60 records, [\d,]+ tokens in 1 shard \([\d.]+ MiB\); languages deu eng$/m);
      expect(p.stdout).toMatch(/^translation +60 +[\d,]+$/m);
      expect(p.stdout).toMatch(/^deu +30 +[\d,]+$/m);
      expect(p.stdout).toMatch(/^eng +30 +[\d,]+$/m);
      expect(p.stdout).toContain(`wrote ${join(out, "manifest.json")}`);
      expect(readdirSync(out).sort()).toEqual(["manifest.json", "shard-00000.axs"]);

      const v = await alignx("verify", out);
      expect(v.stderr).not.toContain("alignx:");
      expect(v.code).toBe(0);
      const shardLine = v.stdout.split("\n").find((l) => l.startsWith(join(out, "shard-00000.axs")));
      expect(shardLine).toMatch(/ 60 records +[\d,]+ tokens +[\d.]+ MB$/);
      expect(v.stdout).toMatch(/^deu-eng +30 +[\d,]+$/m);
      expect(v.stdout).toMatch(/^eng-deu +30 +[\d,]+$/m);
      expect(v.stdout).toContain(`ok: every shard, block and record checked; the shards and counts match ${join(out, "manifest.json")}`);

      const j = await alignx("verify", "--json", out);
      expect(j.code).toBe(0);
      const report = JSON.parse(j.stdout) as { ok: boolean; records: number; error: unknown };
      expect(report.ok).toBe(true);
      expect(report.records).toBe(60);
      expect(report.error).toBeNull();
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "verify exits 1 on a shard with one flipped byte, naming the file and the byte",
    async () => {
      const { dir, w } = scratch();
      const out = join(dir, "out");
      const p = await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--workers", "0", w("deu-eng.tsv", pairs(30)));
      expect(p.code).toBe(0);
      const shard = join(out, "shard-00000.axs");
      const bytes = readFileSync(shard);
      const at = Math.floor(bytes.length / 2); // inside the (only) block of records
      bytes[at] = bytes[at]! ^ 0x10;
      writeFileSync(shard, bytes);
      const v = await alignx("verify", out);
      expect(v.code).toBe(1);
      const m = new RegExp(`^alignx: (\\S+) \\(byte (\\d+), record (\\d+)\\): block (\\d+) checksum mismatch`).exec(v.stderr);
      expect(m).not.toBeNull();
      expect(m![1]).toBe(shard);
      // The byte named is where the damaged block starts: after the header, at or before the flipped byte.
      expect(Number(m![2])).toBeGreaterThanOrEqual(64);
      expect(Number(m![2])).toBeLessThanOrEqual(at);
      expect(v.stdout).not.toContain("ok:");
    },
    TEST_TIMEOUT_MS,
  );
});

describe("alignx pack: usage errors exit 2 before any work", () => {
  const cases: [string, string[], RegExp][] = [
    ["an unknown --task", ["--task", "stage3"], /--task must be one of pretrain, stage1, stage2, got "stage3"/],
    ["--cutoff abc", ["--cutoff", "abc"], /--cutoff must be an integer, got "abc"/],
    ["--workers=-1", ["--workers=-1"], /--workers must be an integer in \[0, 256\], got -1/],
    // cac reads the -1 of `--workers -1` as a short option: still a usage error, though it does not name --workers.
    ["--workers -1", ["--workers", "-1"], /Unknown option `-1`|--workers/],
    ["--mix nonsense", ["--task", "stage2", "--mix", "nonsense"], /--mix takes translation=W,general=W, got "nonsense"/],
    ["--langs with an empty item", ["--langs", "deu,,eng"], /--langs must be a comma-separated list without empty items, got "deu,,eng"/],
    ["an unknown --format", ["--format", "csv"], /--format must be one of flores, moses, tsv, jsonl, alpaca, squad, text, udhr, got "csv"/],
    ["an unknown --pairs", ["--pairs", "some"], /--pairs must be one of english-centric, all/],
    ["--mix with stage1", ["--mix", "translation=1,general=1"], /--mix applies to --task stage2 only/],
    ["an unknown --langs code", ["--langs", "deu,xxq"], /xxq/],
  ];
  for (const [what, args, message] of cases) {
    test(
      what,
      async () => {
        const { dir, w } = scratch();
        const tsv = w("deu-eng.tsv", pairs(3));
        const out = join(dir, "out");
        const r = await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, ...args, tsv);
        expect(r.stderr).toMatch(message);
        expect(r.stderr).toMatch(/^alignx: /);
        expect(r.code).toBe(2);
        expect(readdirSync(dir)).toEqual(["deu-eng.tsv"]);
      },
      TEST_TIMEOUT_MS,
    );
  }

  test(
    "a missing --tokenizer, no inputs, a glob that matches nothing",
    async () => {
      const { dir, w } = scratch();
      const tsv = w("deu-eng.tsv", pairs(3));
      const out = join(dir, "out");
      const noTok = await alignx("pack", "--out", out, tsv);
      expect(noTok.stderr).toContain("alignx: pack: --tokenizer is required");
      expect(noTok.code).toBe(2);
      const noOut = await alignx("pack", "--tokenizer", TOKENIZER, tsv);
      expect(noOut.stderr).toContain("alignx: pack: --out is required");
      expect(noOut.code).toBe(2);
      const noInputs = await alignx("pack", "--tokenizer", TOKENIZER, "--out", out);
      expect(noInputs.stderr).toContain("alignx: pack: no INPUTS given");
      expect(noInputs.code).toBe(2);
      const glob = join(dir, "nothing", "*.tsv");
      const noMatch = await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, glob);
      expect(noMatch.stderr).toContain(`alignx: ${glob}: no file matches this pattern`);
      expect(noMatch.code).toBe(2);
      expect(readdirSync(dir)).toEqual(["deu-eng.tsv"]);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "an existing output directory is refused without --overwrite, and left as it was",
    async () => {
      const { dir, w } = scratch();
      const tsv = w("deu-eng.tsv", pairs(3));
      const out = join(dir, "out");
      expect((await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--workers", "0", tsv)).code).toBe(0);
      const before = readFileSync(join(out, "manifest.json"), "utf8");
      const mtime = statSync(join(out, "shard-00000.axs")).mtimeMs;
      const r = await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--workers", "0", "--seed", "3", tsv);
      expect(r.stderr).toContain(`alignx: pack: ${out} exists; pass --overwrite to replace it`);
      expect(r.code).toBe(2);
      expect(readFileSync(join(out, "manifest.json"), "utf8")).toBe(before);
      expect(statSync(join(out, "shard-00000.axs")).mtimeMs).toBe(mtime);
      const o = await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--workers", "0", "--seed", "3", "--overwrite", tsv);
      expect(o.code).toBe(0);
      expect(JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")).seed).toBe(3);
      expect(readdirSync(dir).sort()).toEqual(["deu-eng.tsv", "out"]);
    },
    TEST_TIMEOUT_MS,
  );
});

describe("alignx pack: bad data exits 1 naming where", () => {
  test(
    "a non-UTF-8 input names the file and the line; nothing is written",
    async () => {
      const { dir, w } = scratch();
      const tsv = w("deu-eng.tsv", Buffer.concat([Buffer.from("Hallo.\tHello.\nGut.\tGood.\nSch"), Buffer.from([0xf6]), Buffer.from("n.\tNice.\n")]));
      const out = join(dir, "out");
      const r = await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--workers", "0", tsv);
      expect(r.stderr).toContain(`alignx: ${tsv}:3: not valid UTF-8`);
      expect(r.code).toBe(1);
      expect(existsSync(out)).toBe(false);
      expect(readdirSync(dir)).toEqual(["deu-eng.tsv"]);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "parallel files with different line counts name both files",
    async () => {
      const { dir, w } = scratch();
      const de = w("x.deu", "Eins.\nZwei.\nDrei.\n");
      const en = w("x.eng", "One.\nTwo.\n");
      const out = join(dir, "out");
      const r = await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--workers", "0", de, en);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("line counts differ");
      expect(r.stderr).toContain(`${de} has 3 lines`);
      expect(r.stderr).toContain(`${en} has 2`);
      expect(existsSync(out)).toBe(false);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "a broken JSONL line stops the pack at FILE:LINE; --skip-bad-records reports and counts it",
    async () => {
      const { dir, w } = scratch();
      const ok = (i: number) => JSON.stringify({ translation: { de: `Satz ${i}.`, en: `Sentence ${i}.` } });
      const jl = w("pairs.jsonl", [ok(1), ok(2), "{oops", ok(3)].join("\n") + "\n");
      const out = join(dir, "out");
      const r = await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--workers", "0", jl);
      expect(r.stderr).toContain(`alignx: ${jl}:3`);
      expect(r.code).toBe(1);
      expect(existsSync(out)).toBe(false);
      const s = await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--workers", "0", jl, "--skip-bad-records");
      expect(s.code).toBe(0);
      expect(s.stderr + s.stdout).toContain(`${jl}:3`);
      expect(s.stdout).toMatch(/^6 records, /m);
      expect(JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")).dropped.bad_records).toBe(1);
    },
    TEST_TIMEOUT_MS,
  );

  // cac 7 registers boolean options with its parser (mri) by their camelCased names, so `--skip-bad-records FILE`
  // would take FILE as the flag's value; main.ts spells such flags camelCased before parsing.
  test(
    "--skip-bad-records before an input takes no value",
    async () => {
      const { dir, w } = scratch();
      const jl = w("pairs.jsonl", [JSON.stringify({ translation: { de: "Satz.", en: "Sentence." } }), "{oops"].join("\n") + "\n");
      const out = join(dir, "out");
      const s = await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--workers", "0", "--skip-bad-records", jl);
      expect(s.stderr).not.toContain("no INPUTS");
      expect(s.code).toBe(0);
      expect(JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")).dropped.bad_records).toBe(1);
    },
    TEST_TIMEOUT_MS,
  );
});

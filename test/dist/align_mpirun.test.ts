// `alignx align` under mpirun (src/align/pipeline.ts with src/dist, lavapipe): `mpirun -np 2 ... align --quick`
// completes, rank 0 alone prints the pipeline and writes OUT (the same files as one process, the report once),
// every phase trains on both ranks with the global batch of one process, and so the report's numbers are those of
// `align --quick` in one process, exactly (data parallelism is bit for bit, test/dist/data_parallel.test.ts);
// `--resume` on a fresh mpirun reuses the finished phases, continues the interrupted one from its checkpoint and
// writes the same report; a batch that does not split over the ranks, or ranks started with different options,
// stop both with the same message (exit 2, nothing written). Skipped, saying why, where mpirun is not installed.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { RUN_FILE } from "../../src/align/trainer.ts";
import { alignxCmd } from "../align/train_fixture.ts";
import { expectRefusedByBoth, launch as launchRanks, MPIRUN, mpirunCmd, mpirunMpmd, NO_MPIRUN } from "./mpirun.ts";
import { tempDir } from "../helpers.ts";

const skip = NO_MPIRUN ? ` (skipped: ${NO_MPIRUN})` : "";
const root = tempDir("alignx-align-mpirun-");

/** The smallest whole pipeline: two languages, one step per phase (the baseline two) with no warm-up (the first step's LR would be 0), 4-token translations. */
const NO_WARMUP = join(root, "no-warmup.json");
writeFileSync(NO_WARMUP, JSON.stringify({ warmup_steps: 0 }));
const QUICK = ["align", "--quick", "--langs", "eng,deu", "--max-steps", "1", "--max-new-tokens", "4", "--config", NO_WARMUP];

/** Run `cmd` from the repo root (./mpirun.ts `launch`: a rank in which Bun itself crashed is run once more). */
const launch = (cmd: string[], timeoutMs = 400_000) => launchRanks("align under mpirun", cmd, timeoutMs);

const count = (text: string, re: RegExp) => (text.match(new RegExp(re.source, `${re.flags.replace("g", "")}g`)) ?? []).length;
/** Every file under `dir`, relative, sorted. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

interface Report {
  world_size: number;
  training: { phase: string; steps: number; loss: number | null }[];
  heldout_rows: number;
  languages: string[];
  models: { name: string; dir: string; heldout_loss: number; align_layer: { x2pivot: number; pivot2x: number; cka: number } }[];
}
const reportOf = (out: string) => JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as Report;
/** `x` without the keys that time things (tokens_per_s, seconds, generation_seconds). */
const untimed = (x: unknown): unknown =>
  Array.isArray(x) ? x.map(untimed) : x && typeof x === "object" ? Object.fromEntries(Object.entries(x).filter(([k]) => !/^(tokens_per_s|seconds|generation_seconds)$/.test(k)).map(([k, v]) => [k, untimed(v)])) : x;
/** The report's measurements (the model directories name OUT; times and the world size differ by design). */
const numbers = (r: Report) => ({ training: r.training.map((t) => [t.phase, t.steps, t.loss]), heldout_rows: r.heldout_rows, languages: r.languages, models: r.models.map((m) => untimed({ ...m, dir: undefined })) });

describe("align under mpirun", () => {
  const one = join(root, "one-process");
  const two = join(root, "two-ranks");

  test.skipIf(!MPIRUN)(`mpirun -np 2 align --quick: rank 0 prints and writes, both train, the report is one process's exactly${skip}`, async () => {
    const b = await launch(alignxCmd([...QUICK, "--out", one])); // first: its autotuning fills the run's cache, which the ranks then read
    expect(b.code, b.stderr).toBe(0);
    const a = await launch(mpirunCmd(2, alignxCmd([...QUICK, "--out", two])));
    console.log(`align --quick: one process ${b.seconds.toFixed(1)} s, mpirun -np 2 ${a.seconds.toFixed(1)} s wall`);
    expect(a.code, a.stderr).toBe(0);

    // Each rank names its adapter; the pipeline's lines come once (rank 0).
    expect(a.stderr).toMatch(/align: rank 0 of 2 \(local rank 0, (Open MPI|MPICH)\): \S/);
    expect(a.stderr).toMatch(/align: rank 1 of 2 \(local rank 1, (Open MPI|MPICH)\): \S/);
    for (const re of [/^alignx align: the built-in run/m, /^corpus: /m, /\[1\/7\] tokenizer:/, /\[3\/7\] pretrain:/, /\[4\/7\] stage 1:/, /\[6\/7\] baseline:/, /\[7\/7\] evaluate:/, /^# AlignX run: /m, /^report: /m])
      expect(count(a.stderr, re), `${re} in\n${a.stderr}`).toBe(1);
    // Every phase on 2 ranks with one process's global batch: 16 = 8 × 1 × 2 ranks (one process: 8 × 2).
    expect(count(a.stderr, /steps of 16 \(= 8 × 1 × 2 ranks\)/)).toBe(4);
    expect(count(b.stderr, /steps of 16 \(= 8 × 2\)/)).toBe(4);
    for (const phase of ["pretrain", "stage1", "stage2", "baseline"]) {
      const run = JSON.parse(readFileSync(join(two, phase, RUN_FILE), "utf8")) as { world_size: number; global_batch: number; options: { gradient_accumulation_steps: number } };
      expect([phase, run.world_size, run.global_batch, run.options.gradient_accumulation_steps]).toEqual([phase, 2, 16, 1]);
    }

    // Rank 0 alone wrote OUT: the files of one process, no more (no second report, no temp file of rank 1).
    expect(tree(two)).toEqual(tree(one));
    // The same weights, hence the same report: every loss, retrieval, cosine, CKA, BLEU and chrF++.
    for (const f of ["pretrain/model/model.safetensors", "stage1/model/model.safetensors", "baseline/model/model.safetensors"])
      expect(Buffer.compare(readFileSync(join(two, f)), readFileSync(join(one, f))), `${f} differs between 2 ranks and 1 process`).toBe(0);
    const [r2, r1] = [reportOf(two), reportOf(one)];
    expect([r2.world_size, r1.world_size]).toEqual([2, 1]);
    expect(numbers(r2)).toEqual(numbers(r1));
    // ... and sane: three models, finite held-out losses below the uniform guess's ln(512), retrievals in [0, 1].
    expect(r2.models.map((m) => m.name)).toEqual(["after stage 1", "alignx", "no-align"]);
    expect(r2.languages).toEqual(["deu", "eng"]);
    expect(r2.training.map((t) => [t.phase, t.steps])).toEqual([["pretrain", 1], ["stage 1", 1], ["stage 2", 1], ["baseline", 2]]);
    for (const m of r2.models) {
      expect(m.heldout_loss).toBeGreaterThan(0);
      expect(m.heldout_loss).toBeLessThan(Math.log(512) + 0.5);
      for (const x of [m.align_layer.x2pivot, m.align_layer.pivot2x]) expect(x >= 0 && x <= 1).toBe(true);
    }
    expect(readFileSync(join(two, "report.md"), "utf8")).toStartWith("# AlignX run: after stage 1 vs alignx vs no-align");
  }, 900_000);

  test.skipIf(!MPIRUN)(`--resume on a fresh mpirun: finished phases reused, the interrupted one continued from its checkpoint, the same report${skip}`, async () => {
    if (!existsSync(join(two, "report.json"))) throw new Error("needs the run of the test before");
    const before = numbers(reportOf(two));
    // A run stopped during the baseline, after its last checkpoint: no model/, no report.
    for (const p of ["report.json", "report.md", "alignment.svg", "translations", "baseline/model", "baseline/loss.svg"]) rmSync(join(two, p), { recursive: true, force: true });
    const a = await launch(mpirunCmd(2, alignxCmd([...QUICK, "--out", two, "--resume"])));
    expect(a.code, a.stderr).toBe(0);
    for (const phase of ["pretrain", "stage 1", "stage 2"]) expect(count(a.stderr, new RegExp(`  ${phase}: done before \\(1 steps\\)`)), a.stderr).toBe(1);
    expect(count(a.stderr, /resumed from \S+checkpoint-000002 at step 2 of 2/), a.stderr).toBe(1);
    // The same models, so the same measurements; no phase trained a step here, so no training loss is reported.
    const after = numbers(reportOf(two));
    expect(after.models).toEqual(before.models);
    expect(after.training).toEqual(before.training.map((t) => [t[0], t[1], null]));
    expect(tree(two)).toEqual(tree(one));
  }, 900_000);

  /** Both ranks stop before any work with the same message, exit 2, and `out` is not created. */
  const refused = (cmd: string[], out: string, message: RegExp) => expectRefusedByBoth("align under mpirun", cmd, out, message, 120_000);
  test.skipIf(!MPIRUN)(`a global batch that does not split over the ranks: both stop with the same message naming --config, exit 2, nothing written${skip}`, async () => {
    const out = join(root, "bad-batch");
    const config = join(root, "micro16.json");
    writeFileSync(config, JSON.stringify({ per_device_train_batch_size: 16 })); // from-scratch's global 16: accumulation 1
    await refused(mpirunCmd(2, alignxCmd([...QUICK.slice(0, -2), "--config", config, "--out", out])), out, /under mpirun -np 2 every phase keeps the global batch of one process \(16 = micro-batch 16 × accumulation 1\).* in --config/);
  }, 180_000);
  test.skipIf(!MPIRUN)(`ranks started with different options: both stop with the same message, exit 2, nothing written${skip}`, async () => {
    const out = join(root, "mismatch");
    await refused(mpirunMpmd([alignxCmd([...QUICK, "--out", out]), alignxCmd([...QUICK, "--out", out, "--seed", "7"])]), out, /^alignx: align: rank 1 of 2 was started with other options than rank 0/);
  }, 180_000);
});

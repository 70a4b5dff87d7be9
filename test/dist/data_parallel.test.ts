// Data-parallel training (src/align/trainer.ts with src/dist, src/align/data_parallel.ts) under mpirun, on the tiny
// fixture of test/align/train_fixture.ts (lavapipe): 2 ranks of micro-batch 2 and accumulation 1 end with the
// same weights as one process of micro-batch 2 and accumulation 2 (bit for bit: see the test); rank 0 alone
// writes the output; a rank killed mid-run ends the job (non-zero, the launcher names the dead rank) and a
// fresh mpirun with --resume latest completes it, equal to the uninterrupted run; SIGTERM to one rank stops every
// rank at the same step with one checkpoint; --shard-optimizer (ZeRO-1) changes no bit; bad input stops every rank
// with the same message (exit 2, nothing written). Skipped, saying why, where mpirun is not installed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { OPTIMIZER_FILE, TRAINER_STATE_FILE } from "../../src/align/checkpoint.ts";
import { METRICS_FILE, RUN_FILE, type StepMetrics } from "../../src/align/trainer.ts";
import { getGpu } from "../helpers.ts";
import { alignx, alignxCmd, buildTrainFixture, ROOT, type TrainFixture } from "../align/train_fixture.ts";
import { expectRefusedByBoth, launch as launchRanks, launchEnv, MPIRUN, mpirunCmd, mpirunMpmd, NO_MPIRUN } from "./mpirun.ts";

let fx: TrainFixture;
beforeAll(async () => {
  if (MPIRUN) fx = await buildTrainFixture(await getGpu());
});
afterAll(() => fx?.cleanup());

const skip = NO_MPIRUN ? ` (skipped: ${NO_MPIRUN})` : "";
/** Run an mpirun line (./mpirun.ts `launch`: a rank in which Bun itself crashed is run once more). */
const launch = (cmd: string[], timeoutMs = 120_000) => launchRanks("data parallel", cmd, timeoutMs);

const ranks = (np: number, args: readonly string[]) => mpirunCmd(np, alignxCmd(args));
const metricsOf = (out: string) =>
  readFileSync(join(out, METRICS_FILE), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as StepMetrics);
const bytes = (path: string) => new Uint8Array(readFileSync(path));
const count = (text: string, re: RegExp) => (text.match(new RegExp(re.source, "g")) ?? []).length;
const listing = (dir: string) => readdirSync(dir).sort();

/** Stage 2 on the fixture, micro-batch 2, `steps` steps, accumulation `accum` per rank, a checkpoint every `save` steps. */
const stage2 = (out: string, accum: number, steps: number, save = 2) => [
  "train", "--stage", "2", "--model", fx.start, "--data", fx.s2, "--out", out,
  "--preset", "from-scratch", "--micro-batch", "2", "--gradient-accumulation-steps", String(accum), "--seed", "3", "--logging-steps", "1",
  "--max-steps", String(steps), "--save-steps", String(save),
];

describe("data parallel", () => {
  test.skipIf(!MPIRUN)(`mpirun -np 2 with accumulation 1 ends with the weights of one process with accumulation 2${skip}`, async () => {
    const one = fx.path("one-rank-accum-2");
    const two = fx.path("two-ranks-accum-1");
    const b = await alignx(stage2(one, 2, 4)); // first: its autotuning fills the run's cache, which the ranks then read
    expect(b.code, b.stderr).toBe(0);
    const a = await launch(ranks(2, stage2(two, 1, 4)));
    console.log(`equivalence: mpirun -np 2 train (4 steps) ${a.seconds.toFixed(1)} s wall`);
    expect(a.code, a.stderr).toBe(0);

    // The weights, the AdamW moments and the checkpoints: byte for byte.
    for (const f of ["model/model.safetensors", `checkpoint-000002/model.safetensors`, `checkpoint-000004/${OPTIMIZER_FILE}`])
      expect(Buffer.compare(bytes(join(two, f)), bytes(join(one, f))), `${f} differs between 2 ranks × accumulation 1 and 1 rank × accumulation 2`).toBe(0);
    // The metrics: the same losses, norms, LRs, tokens and epochs (the loss terms averaged over the ranks).
    const [ma, mb] = [metricsOf(two), metricsOf(one)];
    const values = (x: StepMetrics) => [x.step, x.loss, x.loss_ntp, x.grad_norm, x.lr, x.tokens, x.epoch];
    expect(ma.map(values)).toEqual(mb.map(values));
    for (const x of ma) expect(x.comm_seconds).toBeGreaterThanOrEqual(0);
    for (const x of mb) expect(x.comm_seconds).toBeUndefined();
    // The loader state in the checkpoint is the shared stream's: the same as the single process's.
    const state = (dir: string) => JSON.parse(readFileSync(join(dir, "checkpoint-000004", TRAINER_STATE_FILE), "utf8")) as { loader: unknown; microBatches: number; step: number };
    expect(state(two).loader).toEqual(state(one).loader);
    expect([state(two).step, state(two).microBatches]).toEqual([4, 8]);

    // Rank 0 alone wrote OUT: the same files as the single process's; run.json says 2 ranks of global batch 4.
    expect(listing(two)).toEqual(listing(one));
    const run = JSON.parse(readFileSync(join(two, RUN_FILE), "utf8")) as { world_size: number; global_batch: number; options: { gradient_accumulation_steps: number } };
    expect([run.world_size, run.global_batch, run.options.gradient_accumulation_steps]).toEqual([2, 4, 1]);
    // Each rank names its adapter; the rest is printed once (by rank 0).
    expect(a.stderr).toMatch(/train: rank 0 of 2 \(local rank 0, (Open MPI|MPICH)\): \S/);
    expect(a.stderr).toMatch(/train: rank 1 of 2 \(local rank 1, (Open MPI|MPICH)\): \S/);
    expect(count(a.stderr, /4 steps of 4 \(= 2 × 1 × 2 ranks\)/)).toBe(1);
    expect(count(a.stderr, /stage 2 step 4\/4 /)).toBe(1);
    expect(count(a.stderr, /stage 2: done, 4 steps/)).toBe(1);
  }, 240_000);

  test.skipIf(!MPIRUN)(`--shard-optimizer (ZeRO-1): the same weights and checkpoints, half the moments on rank 0, an exact sharded resume${skip}`, async () => {
    const one = fx.path("one-rank-reference");
    const sharded = fx.path("sharded");
    const b = await alignx(stage2(one, 2, 4));
    expect(b.code, b.stderr).toBe(0);
    const a = await launch(ranks(2, [...stage2(sharded, 1, 4), "--shard-optimizer"]));
    expect(a.code, a.stderr).toBe(0);
    const m = /optimizer state sharded over 2 ranks: rank 0 keeps AdamW moments for ([\d,]+) of ([\d,]+) parameters/.exec(a.stderr);
    expect(m, a.stderr).not.toBeNull();
    const [owned, total] = [Number(m![1]!.replaceAll(",", "")), Number(m![2]!.replaceAll(",", ""))];
    expect(Math.abs(owned / total - 0.5)).toBeLessThan(0.1);
    // Checkpoints in the unsharded format, byte for byte those of one process (AdamW's moments gathered on rank 0).
    const files = ["model/model.safetensors", `checkpoint-000002/${OPTIMIZER_FILE}`, `checkpoint-000004/${OPTIMIZER_FILE}`, "checkpoint-000004/model.safetensors"];
    for (const f of files) expect(Buffer.compare(bytes(join(sharded, f)), bytes(join(one, f))), f).toBe(0);
    // Rank 0's GPU memory: the moments of the parameters it does not own (2 × 4 bytes each) are not there.
    const live = (out: string) => metricsOf(out).at(-1)!.gpu_live_bytes;
    console.log(`sharded: rank 0 owns ${owned} of ${total} parameters; live GPU bytes ${live(sharded)} vs ${live(one)} unsharded`);
    expect(live(one) - live(sharded)).toBeGreaterThanOrEqual(0.9 * 8 * (total - owned));
    // A sharded resume from checkpoint 2 (each rank loads its own parameters' moments) ends the same.
    rmSync(join(sharded, "checkpoint-000004"), { recursive: true });
    rmSync(join(sharded, "model"), { recursive: true });
    const r = await launch(ranks(2, [...stage2(sharded, 1, 4), "--shard-optimizer", "--resume", "latest"]));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("at step 2 of 4");
    for (const f of files) expect(Buffer.compare(bytes(join(sharded, f)), bytes(join(one, f))), `${f} after the resume`).toBe(0);
  }, 240_000);

  test.skipIf(!MPIRUN)(`a rank killed mid-run ends every rank; mpirun names it; --resume latest on a fresh mpirun completes the run exactly${skip}`, async () => {
    const steps = 12;
    const killed = fx.path("killed");
    const whole = fx.path("uninterrupted-one-rank");
    const proc = Bun.spawn({ cmd: ranks(2, stage2(killed, 1, steps)), cwd: ROOT, env: launchEnv(), stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 120_000, killSignal: "SIGKILL" });
    const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    const metrics = join(killed, METRICS_FILE);
    const lines = () => (existsSync(metrics) ? readFileSync(metrics, "utf8").split("\n").filter(Boolean).length : 0);
    while (proc.exitCode === null && lines() < 3) await Bun.sleep(2);
    const rank1 = rankPid(proc.pid, 1);
    expect(rank1, "rank 1's process").toBeDefined();
    process.kill(rank1!, "SIGKILL");
    const code = await proc.exited;
    const [stdout, stderr] = await output;
    const text = `${stdout}${stderr}`;
    console.log(`rank 1 (pid ${rank1}) killed once metrics.jsonl had ${lines()} lines; mpirun exited ${code}; checkpoints ${listing(killed).filter((n) => n.startsWith("checkpoint-")).join(" ")}`);
    expect(code).not.toBe(0);
    expect(text).toMatch(/rank 1\b.*(signal 9|Killed)|KILLED BY SIGNAL: 9/);
    expect(existsSync(join(killed, "model"))).toBe(false);
    expect(lines()).toBeLessThan(steps);

    const r = await launch(ranks(2, [...stage2(killed, 1, steps), "--resume", "latest"]));
    expect(r.code, r.stderr).toBe(0);
    const m = /resumed from \S+checkpoint-(\d+) at step (\d+) of 12/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    expect(Number(m![2])).toBeGreaterThanOrEqual(2);
    expect(metricsOf(killed).map((x) => x.step)).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
    // ... ending where one process with the same global batch (accumulation 2) ends, uninterrupted.
    const u = await alignx(stage2(whole, 2, steps));
    expect(u.code, u.stderr).toBe(0);
    expect(Buffer.compare(bytes(join(killed, "model/model.safetensors")), bytes(join(whole, "model/model.safetensors")))).toBe(0);
  }, 300_000);

  test.skipIf(!MPIRUN)(`SIGTERM to one rank: the ranks agree on a step, rank 0 saves a checkpoint there, all stop${skip}`, async () => {
    const out = fx.path("sigterm");
    const proc = Bun.spawn({ cmd: ranks(2, stage2(out, 1, 40, 100)), cwd: ROOT, env: launchEnv(), stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 120_000, killSignal: "SIGKILL" });
    const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    const metrics = join(out, METRICS_FILE);
    const lines = () => (existsSync(metrics) ? readFileSync(metrics, "utf8").split("\n").filter(Boolean).length : 0);
    while (proc.exitCode === null && lines() < 2) await Bun.sleep(2);
    // What Ctrl-C on mpirun does (SIGTERM to the ranks), but to rank 1 alone: rank 0 must stop at the same step.
    const rank1 = rankPid(proc.pid, 1);
    expect(rank1, "rank 1's process").toBeDefined();
    process.kill(rank1!, "SIGTERM");
    const code = await proc.exited;
    const [, stderr] = await output;
    const step = metricsOf(out).at(-1)!.step;
    console.log(`SIGTERM to rank 1: mpirun exited ${code}; stopped at step ${step}`);
    expect(code, stderr).not.toBe(0); // the ranks exit 130
    expect(stderr).not.toMatch(/signal 9|Killed/);
    expect(step).toBeLessThan(40);
    expect(count(stderr, new RegExp(`interrupted at step ${step} of 40`))).toBe(1);
    expect(listing(out)).toEqual([`checkpoint-${String(step).padStart(6, "0")}`, METRICS_FILE, RUN_FILE].sort());
  }, 120_000);

  describe("bad input: every rank stops with the same message, exit 2, nothing written", () => {
    const refused = (cmd: string[], out: string, message: RegExp) => expectRefusedByBoth("data parallel", cmd, out, message, 120_000);
    test.skipIf(!MPIRUN)(`a global batch that does not divide by micro-batch × ranks${skip}`, async () => {
      const out = fx.path("bad-global");
      const args = stage2(out, 1, 2).filter((a, i, all) => a !== "--gradient-accumulation-steps" && all[i - 1] !== "--gradient-accumulation-steps");
      await refused(ranks(2, [...args, "--global-batch-size", "6"]), out, /--global-batch-size = 6 is not a multiple of the micro-batch × ranks = 2 × 2 = 4/);
    }, 120_000);
    test.skipIf(!MPIRUN)(`ranks started with different options (the job hash differs)${skip}`, async () => {
      const out = fx.path("mismatch");
      await refused(mpirunMpmd([alignxCmd(stage2(out, 1, 2)), alignxCmd([...stage2(out, 1, 2), "--learning-rate", "0.001"])]), out, /train: rank 1 of 2 was started with another job than rank 0/);
    }, 120_000);
    test.skipIf(!MPIRUN)(`a rank that cannot open its adapter${skip}`, async () => {
      const out = fx.path("no-adapter");
      await refused(mpirunMpmd([alignxCmd(stage2(out, 1, 2)), alignxCmd(["--adapter", "no-such-adapter", ...stage2(out, 1, 2)])]), out, /train: rank 1 of 2 cannot open its adapter: no adapter matches 'no-such-adapter'/);
    }, 120_000);
  });
});

/** The process of rank `rank` under mpirun `pid`: the descendant whose environment says OMPI_COMM_WORLD_RANK (or PMI_RANK) = rank. */
function rankPid(pid: number, rank: number): number | undefined {
  const re = new RegExp(`\\0(OMPI_COMM_WORLD_RANK|PMI_RANK)=${rank}\\0`);
  return childrenOf(pid).find((p) => re.test(`\0${environOf(p)}`));
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(name), ...childrenOf(Number(name)));
    } catch {
      // gone
    }
  }
  return out;
}

function environOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/environ`, "utf8");
  } catch {
    return "";
  }
}

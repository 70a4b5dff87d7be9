// The trainer (src/align/trainer.ts, options.ts, checkpoint.ts, src/cli/train.ts) on a tiny LLaMA and the UDHR
// (test/align/train_fixture.ts): exact resume after SIGKILL (the CLI), gradient accumulation with mean semantics
// (by hand), non-finite losses, inputs refused before any work (exit 2, nothing written), checkpoints and
// keep-last-K, the metrics and the plot, and the options table (presets, file, flags). `train()` runs in-process
// where the process does not matter; the CLI runs as a subprocess for exit codes and SIGKILL.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLASSIFIER_FILE, OPTIMIZER_FILE, TRAINER_STATE_FILE } from "../../src/align/checkpoint.ts";
import { PRESET_VALUES, resolveTrainOptions, TrainOptionError } from "../../src/align/options.ts";
import { METRICS_FILE, PLOT_FILE, RUN_FILE, train, type StepMetrics } from "../../src/align/trainer.ts";
import { hyperFromCli } from "../../src/cli/train.ts";
import { Loader, loadTokenizer, type LoaderBatch } from "../../src/data/index.ts";
import type { Gpu } from "../../src/gpu/index.ts";
import { LlamaModel } from "../../src/nn/index.ts";
import { getLinearScheduleWithWarmup } from "../../src/optim/index.ts";
import { scope } from "../../src/tensor/index.ts";
import { getGpu } from "../helpers.ts";
import { alignx, alignxCmd, buildTrainFixture, cliEnv, ROOT, TINY_FLAGS, tinyHyper, type TrainFixture } from "./train_fixture.ts";

let gpu: Gpu;
let fx: TrainFixture;

beforeAll(async () => {
  gpu = await getGpu();
  fx = await buildTrainFixture(gpu);
});
afterAll(() => fx?.cleanup());

const quiet = { handleSignals: false, log: () => {} } as const;
const gpuHasF16 = () => gpu?.features.has("shader-f16") ?? true;

function metricsOf(out: string): StepMetrics[] {
  return readFileSync(join(out, METRICS_FILE), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as StepMetrics);
}

const checkpointDirs = (out: string) => readdirSync(out).filter((n) => n.startsWith("checkpoint-")).sort();
const bytes = (path: string) => new Uint8Array(readFileSync(path));
const rows = (a: Int32Array, B: number, T: number) => Array.from({ length: B }, (_, b) => Array.from(a.subarray(b * T, (b + 1) * T)));
/** `args` without `flag` and its value. */
const without = (args: string[], flag: string) => args.filter((_, i) => args[i] !== flag && args[i - 1] !== flag);
const relErr = (got: number, want: number) => Math.abs(got - want) / Math.max(Math.abs(want), 1e-30);

/** The files of a directory with their sizes and mtimes, to show a refused command changed nothing. */
function snapshot(dir: string): string {
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) => {
      const p = join(d, e.name);
      return e.isDirectory() ? [`${p}/`, ...walk(p)] : [`${p} ${Bun.file(p).size} ${Bun.file(p).lastModified}`];
    });
  return walk(dir).sort().join("\n");
}

describe("fp16 mixed precision", () => {
  test.skipIf(!gpuHasF16())("the losses follow fp32's within f16 rounding, the loss scale is logged and checkpointed, and a resume is exact", async () => {
    const run = async (precision: "fp32" | "fp16", out: string, steps = 4, resume?: string) =>
      train(gpu, { stage: 1, model: fx.start, data: fx.s1, out, hyper: tinyHyper({ max_steps: steps, save_steps: 2, precision }), resume, ...quiet });
    const a = fx.path("fp32");
    const b = fx.path("fp16");
    await run("fp32", a);
    await run("fp16", b);
    const ma = metricsOf(a), mb = metricsOf(b);
    expect(mb.map((m) => m.step)).toEqual([1, 2, 3, 4]);
    for (let i = 0; i < 4; i++) {
      expect(relErr(mb[i]!.loss, ma[i]!.loss)).toBeLessThan(2e-3);
      expect(mb[i]!.loss_scale).toBe(65536);
      expect(ma[i]!.loss_scale).toBe(1);
    }
    const st = JSON.parse(readFileSync(join(b, "checkpoint-000004", TRAINER_STATE_FILE), "utf8")) as { scaler: { scale: number } | null };
    expect(st.scaler?.scale).toBe(65536);
    // resume from checkpoint 2 of a copy, to the same end
    const c = fx.path("fp16-resume");
    await run("fp16", c, 4);
    const { rmSync } = await import("node:fs");
    rmSync(join(c, "checkpoint-000004"), { recursive: true });
    rmSync(join(c, "model"), { recursive: true });
    await run("fp16", c, 4, "latest");
    expect(bytes(join(c, "model", "model.safetensors"))).toEqual(bytes(join(b, "model", "model.safetensors")));
  }, 120_000);
});

describe("Ctrl-C", () => {
  test("SIGINT finishes the step, saves a checkpoint at it and exits 130; --resume latest then completes the run", async () => {
    const args = ["train", "--stage", "2", "--model", fx.start, "--data", fx.s2, ...TINY_FLAGS, "--max-steps", "30", "--save-steps", "100"];
    const out = fx.path("sigint");
    const proc = Bun.spawn({ cmd: alignxCmd([...args, "--out", out]), cwd: ROOT, env: cliEnv(), stdin: "ignore", stdout: "ignore", stderr: "pipe", timeout: 60_000, killSignal: "SIGKILL" });
    const stderr = new Response(proc.stderr).text();
    const metrics = join(out, METRICS_FILE);
    const lines = () => (existsSync(metrics) ? readFileSync(metrics, "utf8").split("\n").filter(Boolean).length : 0);
    while (proc.exitCode === null && lines() < 2) await Bun.sleep(2);
    proc.kill("SIGINT");
    const code = await proc.exited;
    const text = await stderr;
    expect(code, text).toBe(130);
    const step = metricsOf(out).at(-1)!.step;
    expect(step).toBeLessThan(30);
    expect(text).toContain("SIGINT received");
    expect(text).toContain(`interrupted at step ${step} of 30`);
    expect(checkpointDirs(out)).toEqual([`checkpoint-${String(step).padStart(6, "0")}`]);
    expect(existsSync(join(out, "model"))).toBe(false);
    const r = await alignx([...args, "--out", out, "--resume", "latest"]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`resumed from ${join(out, `checkpoint-${String(step).padStart(6, "0")}`)} at step ${step} of 30`);
    expect(metricsOf(out).map((m) => m.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
  }, 120_000);
});

describe("exact resume", () => {
  test(
    "a stage-1 run killed with SIGKILL and resumed with --resume latest ends byte-identical to the uninterrupted run",
    async () => {
      const args = ["train", "--stage", "1", "--model", fx.start, "--data", fx.s1, ...TINY_FLAGS, "--max-steps", "8", "--save-steps", "2"];
      const outA = fx.path("resume-A");
      const outB = fx.path("resume-B");
      const a = await alignx([...args, "--out", outA]);
      expect(a.stderr).not.toContain("alignx:");
      expect(a.code).toBe(0);

      // B: killed once its metrics.jsonl has k lines (k drawn in [3, 6], so checkpoint 2 at least is complete).
      const k = 3 + Math.floor(Math.random() * 4);
      console.log(`exact resume: SIGKILL once metrics.jsonl has ${k} lines`);
      const proc = Bun.spawn({ cmd: alignxCmd([...args, "--out", outB]), cwd: ROOT, env: cliEnv(), stdin: "ignore", stdout: "ignore", stderr: "pipe", timeout: 60_000, killSignal: "SIGKILL" });
      const stderrB = new Response(proc.stderr).text();
      const metricsB = join(outB, METRICS_FILE);
      const lines = () => (existsSync(metricsB) ? readFileSync(metricsB, "utf8").split("\n").filter(Boolean).length : 0);
      while (proc.exitCode === null && proc.signalCode === null && lines() < k) await Bun.sleep(2);
      proc.kill("SIGKILL");
      await proc.exited;
      const killedAt = lines();
      expect(proc.signalCode, `run B was not killed (it ended with ${proc.exitCode}): ${await stderrB}`).toBe("SIGKILL");
      expect(killedAt).toBeGreaterThanOrEqual(k);
      expect(killedAt).toBeLessThan(8);
      expect(existsSync(join(outB, "model"))).toBe(false);
      const complete = checkpointDirs(outB).filter((n) => /^checkpoint-\d+$/.test(n) && existsSync(join(outB, n, TRAINER_STATE_FILE)));
      const latest = Number(complete.at(-1)!.slice("checkpoint-".length));
      console.log(`exact resume: killed with ${killedAt} metrics lines; checkpoints ${checkpointDirs(outB).join(" ")}`);
      expect([2, 4, 6]).toContain(latest);
      expect(latest).toBeLessThanOrEqual(killedAt);
      expect(latest).toBeGreaterThanOrEqual(2 * Math.floor(killedAt / 2) - 2); // the one being written at the kill may be missing

      const r = await alignx([...args, "--out", outB, "--resume", "latest"]);
      expect(r.stderr).not.toContain("alignx:");
      expect(r.code).toBe(0);
      const m = /resumed from (\S+) at step (\d+) of 8/.exec(r.stderr);
      expect(m, r.stderr).not.toBeNull();
      expect(m![1]).toBe(join(outB, `checkpoint-00000${latest}`));
      expect(Number(m![2])).toBe(latest);

      for (const f of ["model/model.safetensors", `model/${CLASSIFIER_FILE}`, `checkpoint-000008/${OPTIMIZER_FILE}`]) {
        const [x, y] = [bytes(join(outA, f)), bytes(join(outB, f))];
        expect(y.length, f).toBe(x.length);
        expect(Buffer.compare(x, y), `${f} differs between the uninterrupted and the resumed run`).toBe(0);
      }
      // metrics.jsonl: cut back to the checkpoint and rewritten: one line per step, the same values as A's.
      const [ma, mb] = [metricsOf(outA), metricsOf(outB)];
      expect(mb.map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(ma.map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      const values = (x: StepMetrics) => [x.loss, x.loss_ntp, x.loss_ctr, x.loss_lam, x.grad_norm, x.lr, x.tokens, x.epoch];
      expect(mb.map(values)).toEqual(ma.map(values));
      expect(readdirSync(outB).filter((n) => n.includes(".tmp-") || n.includes(".old-"))).toEqual([]);
    },
    120_000,
  );
});

describe("gradient accumulation", () => {
  test("a step of 2 micro-batches has the gradient of the mean of their losses (stage 2, no clipping)", async () => {
    const out = fx.path("accum");
    const hyper = tinyHyper({ max_steps: 1, max_grad_norm: 0 });
    expect(hyper.gradient_accumulation_steps).toBe(2);
    const steps: StepMetrics[] = [];
    const r = await train(gpu, { stage: 2, model: fx.start, data: fx.s2, out, hyper, ...quiet, onStep: (m) => void steps.push(m) });
    expect(r.status).toBe("done");
    expect(steps.length).toBe(1);
    const logged = steps[0]!;

    // The same two micro-batches, from a loader opened as the trainer opens it.
    const tok = await loadTokenizer(fx.start);
    const loader = await Loader.open({
      data: fx.s2,
      batchSize: hyper.per_device_train_batch_size,
      seed: hyper.seed,
      shuffleBuffer: hyper.shuffle_buffer,
      groupByLength: hyper.group_by_length,
      padToMultipleOf: hyper.pad_to_multiple_of,
      maxLength: hyper.cutoff_len,
      trainOnInputs: hyper.train_on_inputs,
      padId: tok.padId ?? tok.eosId ?? 0,
      expectTokenizerHash: tok.hash,
    });
    const batches: LoaderBatch[] = [];
    try {
      batches.push(await loader.next(), await loader.next());
    } finally {
      await loader.close();
    }
    expect(batches[0]!.tokens + batches[1]!.tokens).toBe(logged.tokens);

    using model = await LlamaModel.fromPretrained(gpu, fx.start, { requiresGrad: true });
    const params = Object.entries(model.parameters());
    const sum = new Map(params.map(([n, p]) => [n, new Float64Array(p.size)]));
    const losses: number[] = [];
    for (const b of batches) {
      const o = model.forwardLoss(rows(b.inputIds, b.batch, b.length), { attentionMask: rows(b.attentionMask, b.batch, b.length), labels: rows(b.labels, b.batch, b.length) });
      o.logits.release();
      losses.push(await o.loss.item());
      scope(() => o.loss.backward());
      o.loss.release();
      for (const [n, p] of params) {
        const g = await p.grad!.toArray();
        const s = sum.get(n)!;
        for (let i = 0; i < g.length; i++) s[i]! += g[i]!;
      }
      model.zeroGrad();
    }
    let sq = 0;
    for (const s of sum.values()) for (const x of s) sq += (x / 2) ** 2;
    const meanNorm = Math.sqrt(sq);
    console.log(`accumulation: micro-batch losses ${losses.map((x) => x.toFixed(4)).join(", ")}; |mean grad| ${meanNorm.toPrecision(6)}, logged ${logged.grad_norm.toPrecision(6)}`);
    expect(relErr(logged.loss, (losses[0]! + losses[1]!) / 2)).toBeLessThan(1e-6);
    expect(logged.loss).toBe(logged.loss_ntp);
    expect(relErr(logged.grad_norm, meanNorm)).toBeLessThan(1e-5); // a sum would be twice this
  });
});

describe("non-finite loss", () => {
  test("a model with a NaN weight: exit 1 after max_bad_steps, naming the step; no checkpoint or model written", async () => {
    const out = fx.path("nan");
    const r = await alignx(["train", "--stage", "2", "--model", fx.nan, "--data", fx.s2, "--out", out, ...TINY_FLAGS, "--max-steps", "4", "--save-steps", "1", "--max-bad-steps", "2"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/step 1: the loss is not finite \(NaN\); step skipped \(1 in a row\)/);
    expect(r.stderr).toMatch(/step 1: the loss is not finite \(NaN\); step skipped \(2 in a row\)/); // step 1 again: no step was done
    expect(r.stderr).toMatch(/alignx: stage 2: 2 steps in a row with a non-finite loss or gradient \(max_bad_steps 2\); stopping at step 0\b/);
    expect(readdirSync(out).sort()).toEqual([METRICS_FILE, RUN_FILE]);
    const m = metricsOf(out);
    expect(m.length).toBe(2);
    for (const x of m) {
      expect(x.skipped).toBe(true);
      expect(x.step).toBe(0);
      expect(Number.isNaN(x.loss)).toBe(false); // JSON has no NaN: written as null
    }
    expect(m.map((x) => x.loss as unknown)).toEqual([null, null]);
  });
});

describe("bad input: exit 2 before any work, nothing written", () => {
  const base = () => ["train", "--stage", "1", "--model", fx.start, "--data", fx.s1, ...TINY_FLAGS, "--max-steps", "2"];
  const refused = async (args: string[], message: RegExp, out = fx.path("refused")) => {
    const r = await alignx([...args, "--out", out]);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/^alignx: train: /);
    expect(r.stderr).not.toContain("train: train:");
    expect(r.stderr.trim().split("\n").length, r.stderr).toBe(1);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    return out;
  };
  const cases: [string, () => string[], RegExp][] = [
    ["a missing --model directory", () => base().map((a) => (a === fx.start ? `${fx.root}/no-such-model` : a)), /--model \S*no-such-model: no config\.json there/],
    ["--data packed with another tokenizer", () => base().map((a) => (a === fx.s1 ? fx.s1Other : a)), /--data: .*tokenizer/],
    ["stage 1 on pretrain shards", () => base().map((a) => (a === fx.s1 ? fx.pre : a)), /--data \S+manifest\.json holds pretrain examples; stage 1 trains on stage1 shards/],
    ["--align-layer 3 on a 2-layer model", () => [...base(), "--align-layer", "3"], /--align-layer must be an integer in 0\.\.2 .*got 3/],
    ["--global-batch-size 5 with --micro-batch 2", () => [...without(base(), "--global-batch-size"), "--global-batch-size", "5"], /--global-batch-size = 5 is not a multiple of the micro-batch .* = 2\b/],
    ["--learning-rate -1", () => [...base(), "--learning-rate", "-1"], /--learning-rate must be a number >= 0, got -1/],
    ["--contrastive-lambda -0.1", () => [...base(), "--contrastive-lambda=-0.1"], /--contrastive-lambda must be a number >= 0, got -0\.1/],
    ["--contrastive-temperature 0", () => [...base(), "--contrastive-temperature", "0"], /--contrastive-temperature must be a number > 0, got 0/],
    ["--no-ctr with --contrastive-lambda 0.3", () => [...base(), "--no-ctr", "--contrastive-lambda", "0.3"], /--no-ctr and --contrastive-lambda conflict/],
    ["--precision bf16", () => [...base(), "--precision", "bf16"], /--precision = "bf16": WebGPU has no bf16 arithmetic/],
  ];
  for (const [what, args, message] of cases)
    test(what, async () => {
      const out = await refused(args(), message);
      expect(existsSync(out)).toBe(false);
    });

  test("--out exists and is not empty, without --overwrite", async () => {
    const out = fx.path("not-empty");
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, "notes.txt"), "mine\n");
    const before = snapshot(out);
    await refused(base(), /--out \S+ exists and is not empty; pass --overwrite/, out);
    expect(snapshot(out)).toBe(before);
  });

  test("--config with an unknown key names the file and the key", async () => {
    const dir = fx.path("config-unknown");
    mkdirSync(dir, { recursive: true });
    const file = join(dir, "train.json");
    writeFileSync(file, JSON.stringify({ learning_rate: 1e-3, warmup_stepz: 3 }));
    const out = await refused([...base(), "--config", file], new RegExp(`${file.replaceAll(".", "\\.")}: unknown option "warmup_stepz"`));
    expect(existsSync(out)).toBe(false);
  });

  test("--config with a JSON syntax error names file:line:col", async () => {
    const dir = fx.path("config-syntax");
    mkdirSync(dir, { recursive: true });
    const file = join(dir, "train.json");
    writeFileSync(file, `{\n  "learning_rate": 1e-3,\n  "seed": 4,\n}\n`);
    const out = await refused([...base(), "--config", file], new RegExp(`--config ${file.replaceAll(".", "\\.")}:4:1: not valid JSON`));
    expect(existsSync(out)).toBe(false);
  });

  test("--resume latest of a run made with another --learning-rate names learning_rate and changes nothing", async () => {
    const out = fx.path("resume-other-lr");
    const r = await train(gpu, { stage: 1, model: fx.start, data: fx.s1, out, hyper: tinyHyper({ max_steps: 2, save_steps: 1 }), ...quiet });
    expect(r.status).toBe("done");
    const before = snapshot(out);
    await refused([...base(), "--resume", "latest", "--learning-rate", "0.001"], /checkpoint was made by another run \(hyper\.learning_rate: 0\.003 in the checkpoint, 0\.001 now\)/, out);
    expect(snapshot(out)).toBe(before);
  });
});

describe("checkpoints", () => {
  test("keep-last-K, the files of each, model/ equal to the last checkpoint; stage 2 from a stage-1 output drops the classifier", async () => {
    const out1 = fx.path("ckpt-stage1");
    const r1 = await train(gpu, { stage: 1, model: fx.start, data: fx.s1, out: out1, hyper: tinyHyper({ max_steps: 5, save_steps: 1, save_total_limit: 2 }), ...quiet });
    expect(r1.status).toBe("done");
    expect(r1.steps).toBe(5);
    expect(checkpointDirs(out1)).toEqual(["checkpoint-000004", "checkpoint-000005"]);
    const stage1Files = ["config.json", CLASSIFIER_FILE, "model.safetensors", OPTIMIZER_FILE, "tokenizer.json", "tokenizer_config.json", TRAINER_STATE_FILE];
    for (const c of checkpointDirs(out1)) {
      expect(readdirSync(join(out1, c)).sort()).toEqual([...stage1Files].sort());
      const st = JSON.parse(readFileSync(join(out1, c, TRAINER_STATE_FILE), "utf8")) as { step: number; totalSteps: number; microBatches: number };
      expect(st.step).toBe(Number(c.slice("checkpoint-".length)));
      expect(st.totalSteps).toBe(5);
      expect(st.microBatches).toBe(2 * st.step);
    }
    const final = join(out1, "model");
    expect(readdirSync(final).sort()).toEqual(["config.json", CLASSIFIER_FILE, "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
    expect(Buffer.compare(bytes(join(final, "tokenizer.json")), bytes(join(fx.start, "tokenizer.json")))).toBe(0);
    expect(Buffer.compare(bytes(join(final, CLASSIFIER_FILE)), bytes(join(out1, "checkpoint-000005", CLASSIFIER_FILE)))).toBe(0);
    const cfg = JSON.parse(readFileSync(join(final, "config.json"), "utf8")) as Record<string, unknown>;
    // The AlignX settings in force, as the reference saves them (default align_layer ⌊L/2⌋ = 1), in model/ and the checkpoint.
    const alignx = { align_layer: 1, contrastive_lambda: 0.3, contrastive_temperature: 0.1, language_matching_lambda: 0.4, language_matching_intermediate_size: 128 };
    expect(cfg).toMatchObject({ ...alignx, vocab_size: 512, num_hidden_layers: 2 });
    expect(JSON.parse(readFileSync(join(out1, "checkpoint-000005", "config.json"), "utf8"))).toMatchObject(alignx);

    const ids = [[0, 17, 99, 300, 5, 511, 42, 7]];
    const logitsOf = async (dir: string) => {
      using m = await LlamaModel.fromPretrained(gpu, dir, { requiresGrad: false });
      const o = m.forward(ids);
      try {
        return await o.logits.toArray();
      } finally {
        o.logits.release();
      }
    };
    const [lf, lc, l0] = [await logitsOf(final), await logitsOf(join(out1, "checkpoint-000005")), await logitsOf(fx.start)];
    expect(lf.length).toBe(8 * 512);
    expect(Array.from(lf)).toEqual(Array.from(lc));
    expect(Array.from(lf)).not.toEqual(Array.from(l0)); // it did train

    // Stage 2 from the stage-1 output: the classifier is not loaded, trained or written.
    const out2 = fx.path("ckpt-stage2");
    const r2 = await train(gpu, { stage: 2, model: final, data: fx.s2, out: out2, hyper: tinyHyper({ max_steps: 2 }), ...quiet });
    expect(r2.status).toBe("done");
    expect(checkpointDirs(out2)).toEqual(["checkpoint-000002"]);
    expect(readdirSync(join(out2, "checkpoint-000002")).sort()).toEqual(stage1Files.filter((f) => f !== CLASSIFIER_FILE).sort());
    expect(readdirSync(join(out2, "model")).sort()).toEqual(["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]);
    const cfg2 = JSON.parse(readFileSync(join(out2, "model", "config.json"), "utf8")) as Record<string, unknown>;
    expect(cfg2.vocab_size).toBe(512);
    for (const x of metricsOf(out2)) {
      expect(x.loss_ctr).toBeUndefined();
      expect(x.loss).toBe(x.loss_ntp);
    }
  });
});

describe("metrics and plot", () => {
  test("one line per step with every term; lr follows warmup then linear decay; loss = ntp + λ_ctr·ctr + λ_lam·lam; loss.svg", async () => {
    const out = fx.path("metrics");
    const hyper = tinyHyper({ max_steps: 6, warmup_steps: 2, learning_rate: 1e-3 });
    const r = await train(gpu, { stage: 1, model: fx.start, data: fx.s1, out, hyper, ...quiet });
    expect(r.status).toBe("done");
    const run = JSON.parse(readFileSync(join(out, RUN_FILE), "utf8")) as { total_steps: number; warmup_steps: number; global_batch: number; stage: number };
    expect([run.stage, run.total_steps, run.warmup_steps, run.global_batch]).toEqual([1, 6, 2, 4]);
    const m = metricsOf(out);
    expect(m.map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6]);
    const sched = getLinearScheduleWithWarmup({ numWarmupSteps: 2, numTrainingSteps: 6 });
    for (const x of m) {
      for (const k of ["loss", "loss_ntp", "loss_ctr", "loss_lam", "grad_norm", "lr", "loss_scale", "tokens_per_s", "gpu_live_bytes"] as const) {
        expect(typeof x[k], `step ${x.step}: ${k}`).toBe("number");
        expect(Number.isFinite(x[k]), `step ${x.step}: ${k}`).toBe(true);
      }
      expect(x.loss_scale).toBe(1);
      expect(x.tokens_per_s).toBeGreaterThan(0);
      expect(x.gpu_live_bytes).toBeGreaterThan(0);
      expect(x.grad_norm).toBeGreaterThan(0);
      expect(x.total_steps).toBe(6);
      expect(x.skipped).toBeUndefined();
      expect(relErr(x.lr, 1e-3 * sched(x.step - 1)) < 1e-12 || (x.lr === 0 && sched(x.step - 1) === 0), `step ${x.step}: lr ${x.lr}`).toBe(true);
      expect(relErr(x.loss, x.loss_ntp + 0.3 * x.loss_ctr! + 0.4 * x.loss_lam!)).toBeLessThan(1e-5);
    }
    [0, 5e-4, 1e-3, 7.5e-4, 5e-4, 2.5e-4].forEach((v, i) => expect(m[i]!.lr).toBeCloseTo(v, 15));
    const svg = readFileSync(join(out, PLOT_FILE), "utf8");
    expect(svg.startsWith("<svg")).toBe(true);
    for (const name of ["L_NTP", "L_CTR", "L_LAM", "learning rate"]) expect(svg).toContain(name);
  });

  test("--no-ctr --no-lam: stage 1's loss equals loss_ntp at every step", async () => {
    const hyper = await hyperFromCli("train", { preset: "from-scratch", maxSteps: "3", microBatch: "2", globalBatchSize: "4", seed: "3", ctr: false, lam: false });
    expect(hyper.stage1).toEqual({ contrastive_lambda: 0, language_matching_lambda: 0 });
    expect([hyper.max_steps, hyper.gradient_accumulation_steps]).toEqual([3, 2]);
    const out = fx.path("no-ctr-no-lam");
    const r = await train(gpu, { stage: 1, model: fx.start, data: fx.s1, out, hyper, ...quiet });
    expect(r.status).toBe("done");
    const m = metricsOf(out);
    expect(m.length).toBe(3);
    for (const x of m) {
      expect(x.loss).toBe(x.loss_ntp);
      expect(x.loss_ctr).toBeDefined();
    }
  });
});

describe("the options table", () => {
  test("precedence: preset < file < flags, each value checked where it came from", () => {
    const h = resolveTrainOptions({
      preset: "from-scratch",
      file: { path: "cfg.json", doc: { learning_rate: 1e-4, warmup_steps: 7, seed: 11 } },
      flags: { learning_rate: 5e-4 },
    });
    expect(h.learning_rate).toBe(5e-4); // flag over file
    expect(h.warmup_steps).toBe(7); // file over preset (none)
    expect(h.seed).toBe(11); // file over preset (42)
    expect(h.weight_decay).toBe(0.01); // preset
    expect(h.preset).toBe("from-scratch");
    expect(() => resolveTrainOptions({ file: { path: "cfg.json", doc: { learning_rate: -2 } } })).toThrow(/cfg\.json: learning_rate must be a number >= 0, got -2/);
    // The file's preset applies when no flag names one.
    expect(resolveTrainOptions({ file: { path: "cfg.json", doc: { preset: "from-scratch" } } }).learning_rate).toBe(3e-3);
    expect(resolveTrainOptions({ file: { path: "cfg.json", doc: { preset: "from-scratch" } }, flags: { preset: "finetune" } }).learning_rate).toBe(2e-6);
  });

  test("the finetune preset is the reference's optimisation (ALIGNX.md)", () => {
    const h = resolveTrainOptions({});
    expect(h.preset).toBe("finetune");
    expect({
      lr: h.learning_rate,
      warmup: h.warmup_steps,
      micro: h.per_device_train_batch_size,
      accum: h.gradient_accumulation_steps,
      epochs: h.num_train_epochs,
      clip: h.max_grad_norm,
      wd: h.weight_decay,
      betas: [h.adam_beta1, h.adam_beta2],
      eps: h.adam_epsilon,
      precision: h.precision,
    }).toEqual({ lr: 2e-6, warmup: 100, micro: 16, accum: 8, epochs: 2, clip: 1.0, wd: 0, betas: [0.9, 0.999], eps: 1e-8, precision: "fp32" });
    expect(h.per_device_train_batch_size * h.gradient_accumulation_steps).toBe(128);
    expect(PRESET_VALUES.finetune.global_batch_size).toBe(128);
  });

  test("accumulation vs global batch: a conflict is an error; accumulation alone overrides the preset's global batch", () => {
    let err: unknown;
    try {
      resolveTrainOptions({ flags: { gradient_accumulation_steps: 4, global_batch_size: 128, per_device_train_batch_size: 16 } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TrainOptionError);
    expect((err as TrainOptionError).exitCode).toBe(2);
    expect((err as Error).message).toMatch(/--gradient-accumulation-steps = 4 conflicts with --global-batch-size = 128/);
    const h = resolveTrainOptions({ flags: { gradient_accumulation_steps: 4 } });
    expect([h.per_device_train_batch_size, h.gradient_accumulation_steps]).toEqual([16, 4]);
    const g = resolveTrainOptions({ flags: { global_batch_size: 64 } });
    expect(g.gradient_accumulation_steps).toBe(4);
    expect(resolveTrainOptions({ flags: { gradient_accumulation_steps: 8, global_batch_size: 128 } }).gradient_accumulation_steps).toBe(8); // consistent: fine
    expect(() => resolveTrainOptions({ flags: { precision: "bf16" } })).toThrow(/no bf16 arithmetic/);
    expect(() => resolveTrainOptions({ flags: { precision: "fp8" } })).toThrow(/must be fp32 or fp16/);
    expect(resolveTrainOptions({ flags: { precision: "fp16" } }).precision).toBe("fp16");
  });
});

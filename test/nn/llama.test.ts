// LlamaModel beyond the PyTorch parity (test/nn/parity.test.ts): HF-style initialization, HF checkpoints in
// and out (save → load bit-exact, single file and shards; BF16 bytes kept; every bad tensor listed in one
// error), input checks, padding invariance, inference without a graph, memory (nothing leaks; flat over a
// training run; the memoryReport estimate against a measured peak) and a tiny model trained from scratch.
import { afterAll, describe, expect, test } from "bun:test";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CheckpointError, expectedParameters, openCheckpoint, parameterCount, parseHfConfig, readHfConfig, writeCheckpoint, type TensorToWrite } from "../../src/io/index.ts";
import { LlamaModel, memoryReport } from "../../src/nn/index.ts";
import { AdamW } from "../../src/optim/index.ts";
import { noGrad, type Tensor } from "../../src/tensor/index.ts";
import { getGpu } from "../tensor/helpers.ts";
import { FIXTURES } from "./parity_helpers.ts";
import { TINY_LLAMA } from "./tiny.ts";

const tmp = await mkdtemp(join(tmpdir(), "alignx-llama-"));
afterAll(() => rm(tmp, { recursive: true, force: true }));

const TINY = { ...TINY_LLAMA, initializer_range: 0.02, attention_bias: true, pad_token_id: 3 };

const bits = async (t: Tensor) => new Uint32Array((await t.toArray()).buffer);

async function expectSameParams(a: LlamaModel, b: LlamaModel): Promise<void> {
  expect([...b.params.keys()]).toEqual([...a.params.keys()]);
  for (const [name, t] of a.params) {
    const [x, y] = [await bits(t), await bits(b.param(name))];
    let diff = 0;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) diff++;
    if (diff) throw new Error(`${name}: ${diff} of ${x.length} values differ`);
  }
}

function stats(v: Float32Array): { mean: number; std: number } {
  let s = 0;
  for (const x of v) s += x;
  const mean = s / v.length;
  let q = 0;
  for (const x of v) q += (x - mean) ** 2;
  return { mean, std: Math.sqrt(q / v.length) };
}

describe("initialization (HF _init_weights)", () => {
  test("normal(0, initializer_range) weights, zero biases and padding row, unit norms; seeded", async () => {
    const gpu = await getGpu();
    const m = LlamaModel.fromConfig(gpu, TINY, { seed: 7 });
    const cfg = parseHfConfig(TINY);
    expect(m.specs.map((s) => s.name)).toEqual(expectedParameters(cfg).map((s) => s.name));
    expect(m.parameterCount).toBe(parameterCount(cfg));
    for (const [name, t] of m.params) {
      const v = await t.toArray();
      expect(t.requiresGrad).toBe(true);
      if (name.endsWith("norm.weight")) expect(v.every((x) => x === 1)).toBe(true);
      else if (name.endsWith(".bias")) expect(v.every((x) => x === 0)).toBe(true);
      else {
        const rows = name === "model.embed_tokens.weight" ? v.filter((_, i) => Math.floor(i / 32) !== 3) : v;
        const s = stats(rows);
        const n = rows.length; // 4 standard errors of the sample mean and std
        expect(Math.abs(s.mean)).toBeLessThan((4 * 0.02) / Math.sqrt(n));
        expect(Math.abs(s.std / 0.02 - 1)).toBeLessThan(4 / Math.sqrt(2 * n));
      }
    }
    const emb = await m.param("model.embed_tokens.weight").toArray();
    expect(emb.subarray(3 * 32, 4 * 32).every((x) => x === 0)).toBe(true); // pad_token_id 3
    expect(emb.subarray(2 * 32, 3 * 32).some((x) => x !== 0)).toBe(true);

    const again = LlamaModel.fromConfig(gpu, TINY, { seed: 7 });
    await expectSameParams(m, again);
    const other = LlamaModel.fromConfig(gpu, TINY, { seed: 8 });
    expect((await other.param("lm_head.weight").toArray())[0]).not.toBe((await m.param("lm_head.weight").toArray())[0]);
    for (const x of [m, again, other]) x.release();
  });

  test("Gemma: norms start at 0 (applied as 1 + w), tied head, no lm_head parameter", async () => {
    const gpu = await getGpu();
    const cfg = JSON.parse(await readFile(join(FIXTURES, "gemma", "config.json"), "utf8"));
    const m = LlamaModel.fromConfig(gpu, cfg, { seed: 1 });
    expect(m.params.has("lm_head.weight")).toBe(false);
    for (const [name, t] of m.params) if (name.endsWith("norm.weight")) expect((await t.toArray()).every((x) => x === 0)).toBe(true);
    const emb = await m.param("model.embed_tokens.weight").toArray();
    expect(emb.subarray(0, 32).every((x) => x === 0)).toBe(true); // Gemma's pad_token_id defaults to 0
    m.release();
  });
});

describe("checkpoints", () => {
  test("save → load is bit-exact, as one file and as shards; config round-trips", async () => {
    const gpu = await getGpu();
    const live = gpu.memory().liveBuffers;
    const m = LlamaModel.fromConfig(gpu, TINY, { seed: 3 });
    const one = join(tmp, "one");
    const w = await m.save(one);
    expect(w.shards).toEqual(["model.safetensors"]);
    expect((await readdir(one)).sort()).toEqual(["config.json", "model.safetensors"]);
    const a = await LlamaModel.fromPretrained(gpu, one);
    await expectSameParams(m, a);
    const cfg = await readHfConfig(one);
    expect(cfg.torchDtype).toBe("float32");
    expect({ ...cfg, raw: null, torchDtype: null }).toEqual({ ...m.config, raw: null, torchDtype: null });

    const sharded = join(tmp, "sharded");
    const ws = await m.save(sharded, { maxShardBytes: 20_000 });
    expect(ws.shards.length).toBeGreaterThan(2);
    expect((await readdir(sharded)).sort()).toEqual(["config.json", "model.safetensors.index.json", ...ws.shards].sort());
    const b = await LlamaModel.fromPretrained(gpu, sharded);
    await expectSameParams(m, b);

    // Same parameters, same ops: the same logits, bit for bit.
    const ids = [[1, 5, 9, 33, 2]];
    const [la, lb] = [m.forward(ids).logits, b.forward(ids).logits];
    expect(await bits(lb)).toEqual(await bits(la));
    for (const x of [la, lb, m, a, b]) x.release();
    expect(gpu.memory().liveBuffers).toBe(live);
  });

  test("a BF16 checkpoint saved as BF16 keeps its tensors' bytes", async () => {
    const gpu = await getGpu();
    const src = join(FIXTURES, "llama");
    const m = await LlamaModel.fromPretrained(gpu, src);
    const out = join(tmp, "bf16");
    await m.save(out, { dtype: "BF16" });
    expect((await readHfConfig(out)).torchDtype).toBe("bfloat16");
    const [x, y] = [await openCheckpoint(src), await openCheckpoint(out)];
    expect(y.names()).toEqual(x.names());
    for (const name of x.names()) {
      expect(y.entry(name).dtype).toBe("BF16");
      expect(await y.get(name).file.readBytes(name)).toEqual(await x.get(name).file.readBytes(name));
    }
    m.release();
  });

  test("a checkpoint that does not fit its config: one error lists every missing, unexpected and mis-shaped tensor", async () => {
    const gpu = await getGpu();
    const src = join(FIXTURES, "llama");
    const ck = await openCheckpoint(src);
    const tensors: TensorToWrite[] = [];
    for (const name of ck.names()) {
      if (name === "model.layers.1.mlp.up_proj.weight" || name === "lm_head.weight") continue; // missing
      const data = await ck.readF32(name);
      if (name === "model.norm.weight") tensors.push({ name, dtype: "F32", shape: [4, 8], data }); // mis-shaped
      else if (name === "model.layers.0.self_attn.q_proj.bias") tensors.push({ name, dtype: "F32", shape: [31], data: data.subarray(0, 31) });
      else tensors.push({ name, dtype: "F32", shape: ck.entry(name).shape, data });
    }
    tensors.push({ name: "model.layers.2.mlp.up_proj.weight", dtype: "F32", shape: [2], data: new Float32Array(2) }); // unexpected
    tensors.push({ name: "model.layers.0.self_attn.rotary_emb.inv_freq", dtype: "F32", shape: [4], data: new Float32Array(4) }); // ignored, as HF
    const bad = join(tmp, "bad");
    await writeCheckpoint(bad, tensors, { files: { "config.json": await readFile(join(src, "config.json")) } });
    const live = gpu.memory().liveBuffers;
    const err = await LlamaModel.fromPretrained(gpu, bad).then(
      () => null,
      (e: Error) => e,
    );
    expect(err).not.toBeNull();
    const msg = err!.message;
    expect(msg).toContain(bad);
    expect(msg).toContain("2 missing, 1 unexpected, 2 mis-shaped");
    expect(msg).toContain("missing: model.layers.1.mlp.up_proj.weight [40, 32]");
    expect(msg).toContain("missing: lm_head.weight [80, 32]");
    expect(msg).toContain("unexpected: model.layers.2.mlp.up_proj.weight [2]");
    expect(msg).toContain("mis-shaped: model.norm.weight is [4, 8], expected [32]");
    expect(msg).toContain("mis-shaped: model.layers.0.self_attn.q_proj.bias is [31], expected [32]");
    expect(msg).not.toContain("inv_freq");
    expect(gpu.memory().liveBuffers).toBe(live); // checked before anything is uploaded

    await expect(LlamaModel.fromPretrained(gpu, join(tmp, "no-such-dir"))).rejects.toThrow(/no-such-dir.*no such file/);
  });

  test("strict inputs: a config out of proportion to its checkpoint fails at once, naming config.json and the field", async () => {
    const gpu = await getGpu();
    const src = join(FIXTURES, "llama");
    const cfg = JSON.parse(await readFile(join(src, "config.json"), "utf8"));
    const dirWith = async (name: string, patch: Record<string, unknown>) => {
      const d = join(tmp, name);
      await mkdir(d, { recursive: true });
      await copyFile(join(src, "model.safetensors"), join(d, "model.safetensors"));
      await writeFile(join(d, "config.json"), JSON.stringify({ ...cfg, ...patch }));
      return d;
    };
    const live = gpu.memory().liveBuffers;
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    for (const [layers, re] of [
      [1e9, /\(field "num_hidden_layers"\): 1000000000 layers are more than the 10000 this loader accepts/],
      [2e5, /\(field "num_hidden_layers"\): 200000 layers are more than the 10000/],
      [5000, /\(field "num_hidden_layers"\): the config describes 41\.2M parameters in 80003 tensors \(5000 layers, hidden 32, .*\), but the checkpoint .* holds 21632 in 35 tensors \(2 layers\): the config does not describe these weights/],
    ] as const) {
      const d = await dirWith(`layers-${layers}`, { num_hidden_layers: layers });
      const e = await LlamaModel.fromPretrained(gpu, d).then(() => null, (x: Error) => x);
      expect(e).toBeInstanceOf(CheckpointError);
      expect(e!.message.startsWith(`${join(d, "config.json")} (field "num_hidden_layers"): `)).toBe(true);
      expect(e!.message).toMatch(re);
    }
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(process.memoryUsage().rss - rss0).toBeLessThan(200 * 2 ** 20);
    expect(gpu.memory().liveBuffers).toBe(live);
  });

  test("strict inputs: head_dim the kernels cannot run and --model pointing at a file name config.json / the path", async () => {
    const gpu = await getGpu();
    const src = join(FIXTURES, "llama");
    const cfg = JSON.parse(await readFile(join(src, "config.json"), "utf8"));
    const d = join(tmp, "head-dim-6");
    await mkdir(d, { recursive: true });
    await copyFile(join(src, "model.safetensors"), join(d, "model.safetensors"));
    await writeFile(join(d, "config.json"), JSON.stringify({ ...cfg, head_dim: 6 }));
    await expect(LlamaModel.fromPretrained(gpu, d)).rejects.toThrow(`${join(d, "config.json")} (field "head_dim"): head_dim 6 is not a multiple of 4, which the attention kernel needs`);
    // Without head_dim in the file: hidden_size / num_attention_heads, and that field is named.
    await writeFile(join(d, "config.json"), JSON.stringify({ ...cfg, hidden_size: 24, num_attention_heads: 4, num_key_value_heads: 4 }));
    await expect(LlamaModel.fromPretrained(gpu, d)).rejects.toThrow(`(field "num_attention_heads"): head_dim 6 (hidden_size 24 / num_attention_heads 4) is not a multiple of 4`);
    for (const file of ["model.safetensors", "config.json"]) {
      const p = join(src, file);
      const e = await LlamaModel.fromPretrained(gpu, p).then(() => null, (x: Error) => x);
      expect(e).toBeInstanceOf(CheckpointError);
      expect(e!.message).toBe(`${p}: is a file, not a checkpoint directory (a directory holding config.json and model.safetensors or model.safetensors.index.json with its shards); give its directory, ${src}`);
    }
  });

  test("a tied model loads a checkpoint that also stores lm_head.weight (ignored, as HF)", async () => {
    const gpu = await getGpu();
    const src = join(FIXTURES, "gemma");
    const ck = await openCheckpoint(src);
    const tensors: TensorToWrite[] = [];
    for (const name of ck.names()) tensors.push({ name, dtype: "F32", shape: ck.entry(name).shape, data: await ck.readF32(name) });
    tensors.push({ name: "lm_head.weight", dtype: "F32", shape: ck.entry("model.embed_tokens.weight").shape, data: await ck.readF32("model.embed_tokens.weight") });
    const dir = join(tmp, "tied-with-head");
    await writeCheckpoint(dir, tensors, { files: { "config.json": await readFile(join(src, "config.json")) } });
    const m = await LlamaModel.fromPretrained(gpu, dir);
    expect(m.params.has("lm_head.weight")).toBe(false);
    m.release();
  });
});

describe("forward", () => {
  test("checks its inputs, naming the field and position", async () => {
    const gpu = await getGpu();
    const m = LlamaModel.fromConfig(gpu, TINY, { seed: 1 });
    const live = gpu.memory().liveBuffers;
    expect(() => m.forward([[1, 2], [3]])).toThrow(/input_ids\[1\] has 1 values, but input_ids\[0\] has 2/);
    expect(() => m.forward([[1, 64]])).toThrow(/input_ids\[0\]\[1\] = 64 is not a token id in \[0, 64\)/);
    expect(() => m.forward([])).toThrow(/input_ids is empty/);
    expect(() => m.forward([[1, 2]], { attentionMask: [[1]] })).toThrow(/attention_mask\[0\] has 1 values/);
    expect(() => m.forward([[1, 2]], { positionIds: [0, 1, 2] })).toThrow(/positionIds has 3 positions/);
    const { logits } = m.forward([[1, 2, 3]]);
    expect(() => m.loss(logits, [[1, 2]])).toThrow(/labels\[0\] has 2 values, but input_ids rows have 3/);
    expect(() => m.loss(logits, [[1, 2, 99]])).toThrow(/labels\[0\]\[2\] = 99/);
    logits.release();
    expect(gpu.memory().liveBuffers).toBe(live);
    m.release();

    const mistral = LlamaModel.fromConfig(gpu, { ...TINY, model_type: "mistral", attention_bias: false, sliding_window: 4 }, { seed: 1 });
    expect(() => mistral.forward([[1, 2, 3, 4, 5]])).toThrow(/sequence length 5 exceeds sliding_window 4/);
    mistral.forward([[1, 2, 3, 4]]).logits.release();
    mistral.release();
    expect(() => LlamaModel.fromConfig(gpu, { ...TINY, head_dim: 6 })).toThrow(/head_dim 6 is not a multiple of 4/);
  });

  test("padding does not change the real tokens' logits (left padding with shifted positions, right padding)", async () => {
    const gpu = await getGpu();
    const m = await LlamaModel.fromPretrained(gpu, join(FIXTURES, "llama3"));
    const S = [90, 12, 55, 7, 81];
    const alone = await m.forward([S]).logits.toArray();
    const V = m.config.vocabSize;
    const { logits } = m.forward([[0, 0, ...S], [...S, 0, 0]], {
      attentionMask: [[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]],
      positionIds: [[0, 0, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6]],
    });
    const both = await logits.toArray();
    let err = 0;
    for (let t = 0; t < S.length; t++)
      for (let v = 0; v < V; v++) {
        const ref = alone[t * V + v]!;
        err = Math.max(err, Math.abs(both[(0 * 7 + 2 + t) * V + v]! - ref), Math.abs(both[(1 * 7 + t) * V + v]! - ref));
      }
    expect(err).toBeLessThan(1e-5);
    expect(both.every(Number.isFinite)).toBe(true); // positions that see no key give finite (garbage) logits
    // Explicit arange positions are the default.
    const def = m.forward([S]).logits;
    const exp = m.forward([S], { positionIds: [0, 1, 2, 3, 4] }).logits;
    expect(await bits(exp)).toEqual(await bits(def));
    for (const x of [logits, def, exp]) x.release();
    m.release();
  });

  test("under noGrad: the same logits, no graph, no gradients; outputs are all that stays alive", async () => {
    const gpu = await getGpu();
    const m = await LlamaModel.fromPretrained(gpu, join(FIXTURES, "gemma"));
    const live = gpu.memory().liveBuffers;
    const ids = [[2, 50, 7, 73, 25, 12, 44, 1]];
    const train = m.forward(ids, { outputHiddenStates: true });
    const infer = noGrad(() => m.forward(ids, { outputHiddenStates: true }));
    expect(infer.logits.requiresGrad).toBe(false);
    expect(train.logits.requiresGrad).toBe(true);
    expect(await bits(infer.logits)).toEqual(await bits(train.logits));
    expect(infer.hiddenStates!.length).toBe(3);
    const plain = m.forward(ids);
    expect(plain.hiddenStates).toBeUndefined();
    plain.logits.release();
    for (const o of [train, infer]) {
      o.logits.release();
      for (const h of o.hiddenStates!) h.release();
    }
    expect(gpu.memory().liveBuffers).toBe(live);
    m.release();
  });
});

describe("memory", () => {
  test("a parameter larger than one buffer binding is named before anything is allocated (fromConfig, fromPretrained)", async () => {
    const gpu = await getGpu();
    const limit = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
    // An embedding (and untied head) one row past the limit, as f32; nothing is allocated, so any size works.
    const V = Math.floor(limit / (4 * 64)) + 1;
    const raw = { model_type: "llama", hidden_size: 64, intermediate_size: 176, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: V };
    const live = gpu.memory().liveBuffers;
    expect(() => LlamaModel.fromConfig(gpu, raw)).toThrow(
      new RegExp(`^LlamaModel: 2 parameters are larger than one buffer binding of .* as f32: model\\.embed_tokens\\.weight \\[${V}, 64\\] [0-9.]+ MiB, lm_head\\.weight \\[${V}, 64\\]`),
    );
    expect(gpu.memory().liveBuffers).toBe(live);
    // A checkpoint on a device whose binding limit is below its embedding: a CheckpointError naming the directory
    // and the tensor, before any upload.
    const dir = join(FIXTURES, "llama");
    const real = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(gpu), "limits")!;
    const small = { ...gpu.limits, maxStorageBufferBindingSize: 1024, maxBufferSize: gpu.limits.maxBufferSize } as GPUSupportedLimits;
    Object.defineProperty(gpu, "limits", { get: () => small, configurable: true });
    try {
      const e = await LlamaModel.fromPretrained(gpu, dir).then(() => null, (err: unknown) => err);
      expect(e).toBeInstanceOf(CheckpointError);
      expect((e as CheckpointError).message).toContain(dir);
      expect((e as CheckpointError).message).toMatch(/parameters are larger than one buffer binding of .* \(1\.00 KiB: maxStorageBufferBindingSize \/ maxBufferSize\), as f32: model\.embed_tokens\.weight \[/);
      expect(gpu.memory().liveBuffers).toBe(live);
    } finally {
      delete (gpu as unknown as Record<string, unknown>).limits;
      expect(Object.getOwnPropertyDescriptor(Object.getPrototypeOf(gpu), "limits")).toEqual(real);
    }
  });

  /**
   * The pool's peak during the second of two AdamW training steps of a fresh model of `raw` on B×T ids (bytes above
   * what was live before the model), with the logits or, given `lossChunk`, the chunked loss; and the model's
   * parameter bytes.
   */
  async function measuredPeak(raw: Record<string, unknown>, B: number, T: number, lossChunk?: number): Promise<{ peak: number; parameterBytes: number }> {
    const gpu = await getGpu();
    const V = raw.vocab_size as number;
    const base = gpu.memory().liveBytes;
    const m = LlamaModel.fromConfig(gpu, raw, { seed: 1 });
    const opt = new AdamW(m.parameters(), { lr: 1e-3 });
    const ids = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => (b * 31 + t * 7) % V));
    let peak = 0;
    for (let s = 0; s < 2; s++) {
      gpu.pool.resetPeak();
      const { logits, loss } = lossChunk === undefined ? m.forwardLoss(ids) : m.forwardLoss(ids, { logits: false, lossChunk });
      loss.backward();
      opt.step();
      await loss.item();
      peak = gpu.memory().peakBytes - base;
      logits?.release();
      loss.release();
      opt.zeroGrad();
    }
    const parameterBytes = m.parameterBytes;
    opt.release();
    m.release();
    return { peak, parameterBytes };
  }

  test("memoryReport: an estimate at or a little above the measured peak of a training step", async () => {
    const raw = { model_type: "llama", hidden_size: 64, intermediate_size: 176, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 1000 };
    const [B, T] = [2, 64];
    const { peak, parameterBytes } = await measuredPeak(raw, B, T);
    const r = memoryReport(raw, { batch: B, seq: T });
    console.log(`${r.text}\n  measured peak of step 2: ${(peak / 2 ** 20).toFixed(2)} MiB (estimate / measured = ${(r.total / peak).toFixed(2)})`);
    expect(r.parameters).toBe(parameterBytes);
    expect(r.total).toBeGreaterThanOrEqual(peak);
    expect(r.total).toBeLessThan(1.35 * peak);
    expect(r.fits).toBe(true);

    const tight = memoryReport(raw, { batch: B, seq: T, budgetBytes: 1e6, limits: { maxStorageBufferBindingSize: 300_000, maxBufferSize: 2 ** 30 } });
    expect(tight.fits).toBe(false);
    expect(tight.problems.join("\n")).toMatch(/estimated peak .* exceeds the budget/);
    expect(tight.problems.join("\n")).toMatch(/logits \[B\*T, V\] needs 500\.00 KiB, over the device's largest buffer binding/);
    expect(memoryReport(raw, { batch: B, seq: T, training: false }).total).toBeLessThan(r.total / 3);
  });

  test("memoryReport with the chunked loss the trainer runs: at or a little above its measured peak; no [B*T, V] logits", async () => {
    // Vocabulary 8000 at B·T 128 in chunks of 1024 columns (the default chunk would cover it whole at this size).
    const raw = { model_type: "llama", hidden_size: 64, intermediate_size: 176, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 8000 };
    const [B, T] = [2, 64];
    const { peak } = await measuredPeak(raw, B, T, 1024);
    const r = memoryReport(raw, { batch: B, seq: T, loss: "chunked", lossChunk: 1024 });
    const full = memoryReport(raw, { batch: B, seq: T });
    console.log(`${r.text}\n  measured peak of step 2: ${(peak / 2 ** 20).toFixed(2)} MiB (estimate / measured = ${(r.total / peak).toFixed(2)}; with the logits the estimate is ${(full.total / 2 ** 20).toFixed(2)} MiB)`);
    expect(r.total).toBeGreaterThanOrEqual(peak);
    expect(r.total).toBeLessThan(1.35 * peak);
    expect(full.total - r.total).toBeGreaterThan(B * T * 8000 * 4); // the logits (and their gradient) are gone

    const limits = { maxStorageBufferBindingSize: 300_000, maxBufferSize: 2 ** 30 };
    expect(memoryReport(raw, { batch: B, seq: T, limits }).problems.join("\n")).toMatch(/logits \[B\*T, V\] needs 3\.91 MiB, over the device's largest buffer binding/);
    const chunked = memoryReport(raw, { batch: B, seq: T, limits, loss: "chunked" });
    expect(chunked.problems.filter((p) => p.includes("logits"))).toEqual([]);
    expect(chunked.text).not.toContain("logits [B*T, V]");
  });

  test("a tiny model trained from scratch: 30 AdamW steps, the loss falls, live memory stays flat", async () => {
    const gpu = await getGpu();
    const before = gpu.memory().liveBuffers;
    const cfg = { ...TINY, vocab_size: 256, attention_bias: false, pad_token_id: null };
    const m = LlamaModel.fromConfig(gpu, cfg, { seed: 42 });
    const opt = new AdamW(m.parameters(), { lr: 1e-2, weightDecay: 0 });
    const text = [...new TextEncoder().encode("the quick brown fox jumps over the lazy dog. the quick brown fox jumps.")];
    const ids = [text.slice(0, 24), text.slice(9, 33)];
    const losses: number[] = [];
    const live: number[] = [];
    const bytes: number[] = [];
    for (let step = 0; step < 30; step++) {
      const { logits, loss } = m.forwardLoss(ids);
      loss.backward();
      opt.step();
      opt.zeroGrad();
      losses.push(await loss.item());
      logits.release();
      loss.release();
      live.push(gpu.memory().liveBuffers);
      bytes.push(gpu.memory().liveBytes);
    }
    console.log(`  loss ${losses[0]!.toFixed(3)} → ${losses[29]!.toFixed(3)}; live buffers after steps 2, 10, 30: ${live[1]}, ${live[9]}, ${live[29]}`);
    expect(Math.abs(losses[0]! - Math.log(256))).toBeLessThan(0.05); // small init: near-uniform predictions
    expect(losses[29]!).toBeLessThan(0.5 * losses[0]!);
    const windows = [0, 1, 2, 3, 4, 5].map((w) => losses.slice(5 * w, 5 * w + 5).reduce((a, b) => a + b) / 5);
    for (let w = 1; w < 6; w++) expect(windows[w]!).toBeLessThan(windows[w - 1]!); // mean loss of each 5 steps falls
    for (let i = 1; i < 30; i++) {
      expect(live[i]).toBe(live[1]!);
      expect(bytes[i]).toBe(bytes[1]!);
    }
    opt.release();
    m.release();
    expect(gpu.memory().liveBuffers).toBe(before);
  });
});

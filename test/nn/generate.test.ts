// Generation (src/nn/generate.ts, src/nn/kv_cache.ts, LlamaModel.forwardCached, src/cli/generate.ts):
//   - the KV cache: per-row positions under left padding, errors, buffers given back;
//   - forwardCached (prefill, then chunks of 3 and 1 tokens through the decode attention op) = the full
//     forward's logits, on a random tiny LLaMA (GQA, biases) and the LLaMA-3 / Gemma / Mistral fixtures;
//   - greedy generation with the cache = greedy recomputing the full forward each step, batched with left
//     padding, and each row of a batch = that row alone;
//   - sampling: deterministic per seed, top-k 1 and a tiny top-p = greedy, the top-k / top-p / temperature
//     distribution on known logits, draws that follow it;
//   - EOS stops a row (then padding), all rows stopped ends generation; memory flat over the steps;
//   - logits that are not finite (a NaN weight) stop generation with an error naming the step (exit 1 from the CLI);
//   - `alignx generate` on a model trained from scratch here: a byte-level BPE trained on udhr.txt, a tiny
//     LLaMA trained with AdamW on two of its sentences, saved with its tokenizer, reloaded bit-exactly,
//     and greedy generation from a sentence's prefix reproduces the memorized words.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generate as generateCli } from "../../src/cli/generate.ts";
import { HfTokenizer, saveTrainedBpe, trainBpe } from "../../src/data/index.ts";
import { generate, samplingDistribution, sampleToken, type GenerateOptions } from "../../src/nn/generate.ts";
import { mulberry32 } from "../../src/tensor/rng.ts";
import { KvCache } from "../../src/nn/kv_cache.ts";
import { LlamaModel } from "../../src/nn/llama.ts";
import { AdamW } from "../../src/optim/index.ts";
import { noGrad, type Tensor } from "../../src/tensor/index.ts";
import { getGpu } from "../tensor/helpers.ts";
import { FIXTURES } from "./parity_helpers.ts";
import { TINY_LLAMA } from "./tiny.ts";

const tmp = await mkdtemp(join(tmpdir(), "alignx-generate-"));
afterAll(() => rm(tmp, { recursive: true, force: true }));

/** A random tiny LLaMA with GQA and biases; weights wide enough (std 0.2) that greedy choices are not near-ties. */
const TINY = { ...TINY_LLAMA, attention_bias: true, pad_token_id: 3 };

async function models(): Promise<[string, LlamaModel][]> {
  const gpu = await getGpu();
  const out: [string, LlamaModel][] = [["tiny llama", LlamaModel.fromConfig(gpu, TINY, { seed: 5, requiresGrad: false })]];
  for (const name of ["llama3", "gemma", "mistral"]) out.push([name, await LlamaModel.fromPretrained(gpu, join(FIXTURES, name), { requiresGrad: false })]);
  return out;
}

/** Prompts of lengths 7, 3, 5 with ids below `V` (deterministic). */
function prompts(V: number): number[][] {
  return [7, 3, 5].map((n, b) => Array.from({ length: n }, (_, t) => (5 + 13 * b + 7 * t * (t + b)) % V));
}

describe("KvCache", () => {
  test("positions per row under left padding; errors; buffers given back", async () => {
    const gpu = await getGpu();
    const live = gpu.memory().liveBuffers;
    const cache = new KvCache(gpu, { batch: 2, layers: 3, kvHeads: 2, headDim: 8, maxLength: 6 });
    expect(gpu.memory().liveBuffers).toBe(live + 7); // k and v of 3 layers, the mask
    expect(cache.bytes).toBe(4 * (2 * 3 * 2 * 2 * 6 * 8 + 2 * 6));
    const s0 = cache.plan(3, [[0, 0, 1], [1, 1, 1]]);
    expect(s0).toMatchObject({ offset: 0, length: 3, positionIds: [[1, 1, 0], [0, 1, 2]], padded: true });
    expect(cache.length).toBe(0); // planning changes nothing
    cache.writeMask(s0);
    cache.commit(s0);
    expect(cache.positions).toEqual([1, 3]);
    expect([...cache.maskHost]).toEqual([0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0]);
    expect([...(await cache.mask.toArray())]).toEqual([...cache.maskHost]);
    const s1 = cache.plan(1);
    expect(s1).toMatchObject({ offset: 3, positionIds: [[1], [3]], padded: true });
    expect(() => cache.plan(4)).toThrow(/KvCache: 4 more tokens after 3 exceed the cache's 6 slots/);
    expect(() => cache.plan(1, [[1, 1]])).toThrow(/attention mask must be 2 × 1/);
    expect(() => cache.plan(1, [[2], [1]])).toThrow(/mask values must be 0 or 1, got 2/);
    cache.writeMask(s1);
    cache.commit(s1);
    expect([...(await cache.mask.toArray())]).toEqual([0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0]);
    expect(() => cache.commit(s1)).toThrow(/planned at slot 3, but the cache is at 4/);
    expect(() => cache.keys(3)).toThrow(/no layer 3 \(the cache has 3\)/);
    cache.reset();
    expect([cache.length, ...cache.positions]).toEqual([0, 0, 0]);
    // No padding: the GPU mask is not written (nor read); the first padded step uploads every slot so far.
    for (const m of [undefined, [[0], [1]]]) {
      const s = cache.plan(m ? 1 : 2, m);
      expect(s.padded).toBe(!!m);
      cache.writeMask(s);
      cache.commit(s);
    }
    const gm = await cache.mask.toArray();
    expect([...gm.subarray(0, 3), ...gm.subarray(6, 9)]).toEqual([1, 1, 0, 1, 1, 1]);
    expect(cache.positions).toEqual([2, 3]);
    cache.reset();
    cache.release();
    cache.release();
    expect(() => cache.plan(1)).toThrow(/the cache was released/);
    expect(gpu.memory().liveBuffers).toBe(live);
    expect(() => new KvCache(gpu, { batch: 0, layers: 1, kvHeads: 1, headDim: 4, maxLength: 1 })).toThrow(/batch must be a positive integer/);
  });
});

describe("forwardCached", () => {
  test("prefill, then chunks of 3, 1 and 1 tokens = the full forward's logits (left padding, GQA, every family)", async () => {
    const gpu = await getGpu();
    for (const [name, m] of await models()) {
      const V = m.config.vocabSize;
      const live = gpu.memory().liveBuffers;
      // Row 0 is left-padded by 2 in the prompt; the full sequence is 5 + 3 + 1 + 1 = 10 tokens.
      const ids = [0, 1].map((b) => Array.from({ length: 10 }, (_, t) => (3 + 11 * b + 5 * t) % V));
      const mask = [[0, 0, 1, 1, 1, 1, 1, 1, 1, 1], new Array(10).fill(1)];
      const positionIds = mask.map((row) => {
        let n = 0;
        return row.map((x) => (x ? n++ : 1));
      });
      const full = noGrad(() => m.forward(ids, { attentionMask: mask, positionIds }).logits);
      const ref = await full.toArray();
      full.release();
      const cache = KvCache.forModel(m, { batch: 2, maxLength: 10 });
      const got: Float32Array[] = [];
      let t0 = 0;
      for (const n of [5, 3, 1, 1]) {
        const cut = (rows: number[][]) => rows.map((r) => r.slice(t0, t0 + n));
        const { logits } = m.forwardCached(cut(ids), cache, { attentionMask: t0 === 0 ? cut(mask) : undefined });
        expect(logits.shape).toEqual([2, n, V]);
        expect(logits.requiresGrad).toBe(false);
        got.push(await logits.toArray());
        logits.release();
        t0 += n;
      }
      expect(cache.length).toBe(10);
      expect(cache.positions).toEqual([8, 10]);
      // Compare every real position (row 0's padding positions see no key: their logits are garbage).
      let err = 0;
      let scale = 0;
      for (let b = 0; b < 2; b++) {
        let t = 0;
        for (const [c, n] of [5, 3, 1, 1].entries()) {
          for (let i = 0; i < n; i++, t++) {
            if (!mask[b]![t]) continue;
            for (let v = 0; v < V; v++) {
              const r = ref[(b * 10 + t) * V + v]!;
              err = Math.max(err, Math.abs(got[c]![(b * n + i) * V + v]! - r));
              scale = Math.max(scale, Math.abs(r));
            }
          }
        }
      }
      expect(err).toBeLessThan(2e-5 * Math.max(1, scale));
      // lastTokenOnly: the last column only.
      cache.reset();
      const last = m.forwardCached(ids.map((r) => r.slice(0, 5)), cache, { attentionMask: mask.map((r) => r.slice(0, 5)), lastTokenOnly: true }).logits;
      expect(last.shape).toEqual([2, 1, V]);
      const l = await last.toArray();
      for (let b = 0; b < 2; b++) for (let v = 0; v < V; v++) expect(l[b * V + v]).toBe(got[0]![(b * 5 + 4) * V + v]!);
      last.release();
      // The wrong cache for the batch is an error naming both.
      const small = new KvCache(gpu, { batch: 1, layers: m.config.numHiddenLayers, kvHeads: m.config.numKeyValueHeads, headDim: m.config.headDim, maxLength: 4 });
      expect(() => m.forwardCached(ids, small)).toThrow(/forwardCached: the cache \(batch 1, .*\) does not fit this model and batch \(batch 2/);
      small.release();
      cache.release();
      await gpu.sync();
      expect(gpu.memory().liveBuffers, name).toBe(live);
      m.release();
    }
  });
});

describe("generate", () => {
  const greedy = { maxNewTokens: 8, eosTokenIds: [] } satisfies GenerateOptions;

  test("greedy with the cache = greedy recomputing the full forward; a batched row = the row alone", async () => {
    for (const [name, m] of await models()) {
      const ps = prompts(m.config.vocabSize);
      const cached = await generate(m, ps, greedy);
      const recomputed = await generate(m, ps, { ...greedy, useCache: false });
      expect(cached.tokens, name).toEqual(recomputed.tokens);
      expect(cached.tokens.every((r) => r.length === 8)).toBe(true);
      expect(cached.finished).toEqual(["length", "length", "length"]);
      for (let b = 0; b < ps.length; b++) {
        const alone = await generate(m, [ps[b]!], greedy);
        expect(alone.tokens[0], `${name} row ${b}`).toEqual(cached.tokens[b]!);
      }
      expect(new Set(cached.tokens.flat()).size).toBeGreaterThan(3); // not a degenerate model
      m.release();
    }
  });

  test("EOS stops a row (kept, then padding); when every row has stopped, generation ends", async () => {
    const gpu = await getGpu();
    const m = LlamaModel.fromConfig(gpu, TINY, { seed: 5, requiresGrad: false });
    const ps = prompts(64);
    const free = await generate(m, ps, { maxNewTokens: 10, eosTokenIds: [] });
    const eos = free.tokens[0]![2]!; // row 0's third token
    const stopAt = free.tokens.map((r) => r.indexOf(eos));
    const r = await generate(m, ps, { maxNewTokens: 10, eosTokenIds: [eos], padTokenId: 3 });
    ps.forEach((_, b) => {
      const s = stopAt[b]!;
      if (s < 0) {
        expect(r.finished[b]).toBe("length");
        expect(r.lengths[b]).toBe(10);
        expect(r.tokens[b]).toEqual(free.tokens[b]!);
      } else {
        expect(r.finished[b]).toBe("eos");
        expect(r.lengths[b]).toBe(s + 1);
        expect(r.tokens[b]!.slice(0, s + 1)).toEqual(free.tokens[b]!.slice(0, s + 1));
        expect(r.tokens[b]!.slice(s + 1).every((t) => t === 3)).toBe(true);
      }
    });
    expect(r.lengths[0]).toBe(stopAt[0]! + 1);
    // Row 0 alone stops at its EOS: one step per token, no more.
    let steps = 0;
    const alone = await generate(m, [ps[0]!], { maxNewTokens: 10, eosTokenIds: [eos], onStep: () => steps++ });
    expect(alone.tokens[0]).toEqual(free.tokens[0]!.slice(0, stopAt[0]! + 1));
    expect(steps).toBe(stopAt[0]! + 1);
    m.release();
  });

  test("sampling: the same seed gives the same tokens; top-k 1 and a tiny top-p give the greedy tokens", async () => {
    const gpu = await getGpu();
    const m = LlamaModel.fromConfig(gpu, TINY, { seed: 9, requiresGrad: false });
    const ps = prompts(64);
    const opts = { maxNewTokens: 10, eosTokenIds: [], temperature: 1.5 } satisfies GenerateOptions;
    const a = await generate(m, ps, { ...opts, seed: 1 });
    const b = await generate(m, ps, { ...opts, seed: 1 });
    const c = await generate(m, ps, { ...opts, seed: 2 });
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    const g = await generate(m, ps, { maxNewTokens: 10, eosTokenIds: [] });
    expect(a.tokens).not.toEqual(g.tokens); // temperature 1.5 on 64 tokens does not follow greedy
    expect((await generate(m, ps, { ...opts, topK: 1, seed: 3 })).tokens).toEqual(g.tokens);
    expect((await generate(m, ps, { ...opts, topP: 1e-6, seed: 3 })).tokens).toEqual(g.tokens);
    m.release();
  });

  test("the sampling distribution on known logits: temperature, top-k (ties kept), top-p; draws follow it", () => {
    const p = [0.05, 0.5, 0.1, 0.2, 0.15]; // token 1 most likely, then 3, 4, 2, 0
    const logits = p.map(Math.log);
    const close = (got: Float64Array, want: number[]) => want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, 12));
    close(samplingDistribution(logits, { temperature: 1 }), p);
    const sq = p.map(Math.sqrt);
    const zs = sq.reduce((x, y) => x + y);
    close(samplingDistribution(logits, { temperature: 2 }), sq.map((x) => x / zs));
    close(samplingDistribution(logits, { temperature: 1, topK: 2 }), [0, 0.5 / 0.7, 0, 0.2 / 0.7, 0]);
    // top-p: keep the most likely tokens while the mass before them is < p (the token crossing p is kept).
    close(samplingDistribution(logits, { temperature: 1, topP: 0.6 }), [0, 0.5 / 0.7, 0, 0.2 / 0.7, 0]);
    close(samplingDistribution(logits, { temperature: 1, topP: 0.75 }), [0, 0.5 / 0.85, 0, 0.2 / 0.85, 0.15 / 0.85]);
    close(samplingDistribution(logits, { temperature: 1, topP: 0.4 }), [0, 1, 0, 0, 0]);
    close(samplingDistribution(logits, { temperature: 1, topP: 1 }), p);
    // top-k then top-p on the renormalized top-k: {0.5, 0.2, 0.15} / 0.85, p = 0.8 keeps 0.5/0.85 + 0.2/0.85 = 0.82.
    close(samplingDistribution(logits, { temperature: 1, topK: 3, topP: 0.8 }), [0, 0.5 / 0.7, 0, 0.2 / 0.7, 0]);
    // Ties at the k-th value are kept.
    close(samplingDistribution([0, 1, 1, 1, -1], { temperature: 1, topK: 2 }), [0, 1 / 3, 1 / 3, 1 / 3, 0]);
    expect(() => samplingDistribution(logits, { temperature: 0 })).toThrow(/temperature 0 is greedy/);
    expect(() => samplingDistribution(logits, { temperature: 1, topP: 0 })).toThrow(/topP must be in \(0, 1\]/);
    expect(() => samplingDistribution(logits, { temperature: -1 })).toThrow(/temperature must be >= 0/);
    expect(() => samplingDistribution(logits, { temperature: 1, topK: 1.5 })).toThrow(/topK must be an integer >= 0/);
    expect(() => sampleToken([0, Number.NaN], {}, Math.random)).toThrow(/logit 1 is NaN/);
    // 40000 draws: every frequency within 5 standard errors of its probability, filtered tokens never drawn.
    const rand = mulberry32(1234);
    const want = samplingDistribution(logits, { temperature: 1, topP: 0.75 });
    const counts = new Array(5).fill(0);
    const N = 40000;
    for (let i = 0; i < N; i++) counts[sampleToken(logits, { temperature: 1, topP: 0.75 }, rand)]++;
    counts.forEach((n, i) => {
      const q = want[i]!;
      expect(Math.abs(n / N - q)).toBeLessThanOrEqual(5 * Math.sqrt((q * (1 - q)) / N));
      if (q === 0) expect(n).toBe(0);
    });
  });

  test("no graph, memory flat over the steps, everything given back; input errors", async () => {
    const gpu = await getGpu();
    const m = LlamaModel.fromConfig(gpu, TINY, { seed: 5 }); // parameters require grad: generate must not build a graph
    await gpu.sync();
    const before = gpu.memory();
    const live: number[] = [];
    const bytes: number[] = [];
    await generate(m, prompts(64), {
      maxNewTokens: 12,
      eosTokenIds: [],
      temperature: 0.8,
      topK: 20,
      onStep: () => {
        const s = gpu.memory();
        live.push(s.liveBuffers);
        bytes.push(s.liveBytes);
      },
    });
    expect(live.length).toBe(12);
    expect(new Set(live).size).toBe(1);
    expect(new Set(bytes).size).toBe(1);
    await gpu.sync();
    expect(gpu.memory().liveBuffers).toBe(before.liveBuffers);
    expect(gpu.memory().liveBytes).toBe(before.liveBytes);
    for (const t of m.params.values()) expect(t.grad).toBeNull();

    await expect(generate(m, [], greedy)).rejects.toThrow(/generate: no prompts/);
    await expect(generate(m, [[1], []], greedy)).rejects.toThrow(/prompt 1 is empty/);
    await expect(generate(m, [[1]], { maxNewTokens: 0 })).rejects.toThrow(/maxNewTokens must be a positive integer, got 0/);
    await expect(generate(m, [[1]], { ...greedy, eosTokenIds: [64] })).rejects.toThrow(/eosTokenIds 64 is not a token id in \[0, 64\)/);
    await expect(generate(m, [[1, 99]], greedy)).rejects.toThrow(/input_ids\[0\]\[1\] = 99 is not a token id/);
    await expect(generate(m, [[1]], { ...greedy, topP: 2 })).rejects.toThrow(/topP must be in \(0, 1\]/);
    await gpu.sync();
    expect(gpu.memory().liveBuffers).toBe(before.liveBuffers);
    m.release();
  });
});

describe("non-finite logits", () => {
  test("stop generation with an error naming the step (prefill or a decode step, with and without the cache); memory given back", async () => {
    const gpu = await getGpu();
    const m = LlamaModel.fromConfig(gpu, TINY, { seed: 5, requiresGrad: false });
    await gpu.sync();
    const live = gpu.memory().liveBuffers;
    const prompt = [[1, 2, 3, 4]];
    const opts = { maxNewTokens: 3, eosTokenIds: [] } satisfies GenerateOptions;
    // The first token greedy picks (not in the prompt); a NaN in its embedding row makes step 2's forward NaN,
    // the decode attention's included: its logits must stop generation, not give a token.
    const first = (await generate(m, prompt, { ...opts, maxNewTokens: 1 })).tokens[0]![0]!;
    expect(prompt[0]).not.toContain(first);
    gpu.write(m.param("model.embed_tokens.weight").buffer, Float32Array.of(NaN), 4 * first * TINY.hidden_size);
    for (const useCache of [true, false])
      await expect(generate(m, prompt, { ...opts, useCache })).rejects.toThrow(
        /^generate: step 2 of 3: the logits of prompt 0 are not finite \(logit 0 is NaN\); the model's weights or activations hold NaN or inf/,
      );
    // A NaN in one q weight: the prefill's logits (step 1), of every row of a batch (the first named).
    gpu.write(m.param("model.layers.0.self_attn.q_proj.weight").buffer, Float32Array.of(NaN), 4 * 5);
    await expect(generate(m, prompts(64), opts)).rejects.toThrow(/^generate: step 1 of 3: the logits of prompt 0 are not finite \(logit 0 is NaN\)/);
    await expect(generate(m, prompt, { ...opts, temperature: 0.8, topP: 0.9 })).rejects.toThrow(/^generate: step 1 of 3: the logits of prompt 0 are not finite/);
    await gpu.sync();
    expect(gpu.memory().liveBuffers).toBe(live);
    m.release();
  });
});

const LINES = (await readFile(join(import.meta.dir, "../fixtures/tokenizers/udhr.txt"), "utf8")).split("\n").filter((l) => l.length > 0);

describe("alignx generate", () => {
  const TRAIN = [LINES[1]!, LINES[3]!]; // "Everyone has the right to life, ..." and "Everyone has the right to freedom of ..."

  test("a tiny model trained from scratch on real text generates what it memorized, after save and a bit-exact reload", async () => {
    const gpu = await getGpu();
    const t0 = performance.now();
    const bpe = trainBpe(LINES, { vocabSize: 300 });
    const tok = HfTokenizer.fromJson(bpe.tokenizerJson, { tokenizerConfig: bpe.tokenizerConfig });
    const [bos, eos, pad] = [tok.bosId!, tok.eosId!, tok.padId!];
    const enc = TRAIN.map((l) => [...tok.encode(l), eos]);
    expect(enc.every((e) => e[0] === bos)).toBe(true);
    const T = Math.max(...enc.map((e) => e.length));
    const ids = enc.map((e) => [...e, ...new Array<number>(T - e.length).fill(pad)]);
    const labels = enc.map((e) => [...e, ...new Array<number>(T - e.length).fill(-100)]);
    const attentionMask = enc.map((e) => [...new Array<number>(e.length).fill(1), ...new Array<number>(T - e.length).fill(0)]);
    const cfg = {
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      vocab_size: tok.vocabSize,
      max_position_embeddings: 256,
      bos_token_id: bos,
      eos_token_id: eos,
      pad_token_id: pad,
    };
    const m = LlamaModel.fromConfig(gpu, cfg, { seed: 1 });
    const opt = new AdamW(m.parameters(), { lr: 1e-2, weightDecay: 0 });
    const losses: number[] = [];
    for (let step = 0; step < 200; step++) {
      const { logits, loss } = m.forwardLoss(ids, { attentionMask, labels });
      loss.backward();
      opt.step();
      opt.zeroGrad();
      logits.release();
      losses.push(await loss.item());
      loss.release();
    }
    const trained = performance.now();
    opt.release();
    expect(losses.at(-1)!).toBeLessThan(0.1);

    const dir = join(tmp, "udhr-llama");
    await m.save(dir);
    await saveTrainedBpe(dir, bpe);
    const back = await LlamaModel.fromPretrained(gpu, dir, { requiresGrad: false });
    for (const [name, t] of m.params) {
      const [x, y] = [new Uint32Array((await t.toArray()).buffer), new Uint32Array((await back.param(name).toArray()).buffer)];
      expect(y, name).toEqual(x);
    }

    // Both rows in one batch (prompts of different lengths, left padding): each continues its own sentence.
    const prefixes = ["Everyone has the right to life", "Everyone has the right to freedom of"];
    const r = await generate(back, prefixes.map((p) => tok.encode(p)), { maxNewTokens: 12, eosTokenIds: [eos] });
    prefixes.forEach((p, b) => {
      const prefix = tok.encode(p);
      const truth = enc[b]!.slice(prefix.length);
      expect(enc[b]!.slice(0, prefix.length)).toEqual(prefix); // the prefix ends on a token boundary
      const n = Math.min(8, truth.length);
      expect(r.tokens[b]!.slice(0, n), `row ${b}: ${tok.decode(r.tokens[b]!, { skipSpecialTokens: true })}`).toEqual(truth.slice(0, n));
    });
    back.release();
    m.release();

    // The command: loads the directory (weights + tokenizer), prints the continuation up to EOS.
    const printed: string[] = [];
    const code = await generateCli({ model: dir, prompt: "Everyone has the right to life", maxNewTokens: 24, gpu, log: (s) => printed.push(s) });
    expect(code).toBe(0);
    expect(printed.length).toBe(1);
    expect(printed[0]!.startsWith(", liberty and security")).toBe(true);
    console.log(
      `  bpe + ${losses.length} AdamW steps: loss ${losses[0]!.toFixed(3)} → ${losses.at(-1)!.toFixed(4)} in ${((trained - t0) / 1000).toFixed(1)} s; ` +
        `alignx generate "Everyone has the right to life" → ${JSON.stringify(printed[0])}`,
    );
  });

  test("non-finite logits: an error naming the step, exit 1 (not a token sampled from them)", async () => {
    const gpu = await getGpu();
    const dir = join(tmp, "nan-weight");
    const tokDir = join(import.meta.dir, "../fixtures/tokenizers/bytelevel");
    const m = LlamaModel.fromConfig(gpu, { ...TINY, vocab_size: 512, bos_token_id: 0, eos_token_id: 1, pad_token_id: 2 }, { seed: 1 });
    gpu.write(m.param("model.layers.1.self_attn.k_proj.weight").buffer, Float32Array.of(NaN), 4 * 3);
    await m.save(dir);
    m.release();
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) await Bun.write(join(dir, f), Bun.file(join(tokDir, f)));
    const e = await generateCli({ model: dir, prompt: "hello world", maxNewTokens: 4, gpu, log: () => {} }).then(() => null, (x: Error & { exitCode?: number }) => x);
    expect(e?.message).toMatch(/^generate: step 1 of 4: the logits of prompt 0 are not finite \(logit 0 is NaN\)/);
    expect(e?.exitCode).toBe(1);
    // The command itself: the message on stderr, exit 1, nothing on stdout.
    const p = Bun.spawn([process.execPath, join(import.meta.dir, "../../src/cli/main.ts"), "generate", "--model", dir, "--prompt", "hello world", "--max-new-tokens", "4"], {
      env: { ...process.env, ALIGNX_AUTOTUNE: "0", ALIGNX_CACHE_DIR: join(tmp, "cache") },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
    expect(err).toContain("alignx: generate: step 1 of 4: the logits of prompt 0 are not finite (logit 0 is NaN)");
    expect(out).toBe("");
    expect(code).toBe(1);
  }, 120_000);

  test("errors: a missing tokenizer names the file, bad options are usage errors", async () => {
    const gpu = await getGpu();
    const dir = join(tmp, "no-tokenizer");
    const m = LlamaModel.fromConfig(gpu, TINY, { seed: 1 });
    await m.save(dir);
    m.release();
    const live = gpu.memory().liveBuffers;
    await expect(generateCli({ model: dir, prompt: "x", gpu })).rejects.toThrow(new RegExp(`${dir}: no tokenizer\\.json in this directory`));
    await expect(generateCli({ model: join(tmp, "nowhere"), prompt: "x", gpu })).rejects.toThrow(/nowhere: no such file or directory/);
    const usage = async (o: Partial<Parameters<typeof generateCli>[0]>, re: RegExp) => {
      const e = await generateCli({ model: dir, prompt: "x", gpu, ...o }).then(() => null, (x: Error & { exitCode?: number }) => x);
      expect(e?.message).toMatch(re);
      expect(e?.exitCode).toBe(2);
    };
    await usage({ maxNewTokens: "ten" }, /--max-new-tokens must be an integer, got "ten"/);
    await usage({ maxNewTokens: 0 }, /--max-new-tokens must be an integer in \[1, 1048576\], got 0/);
    await usage({ temperature: "-1" }, /--temperature must be a number >= 0, got -1/);
    await usage({ topP: "1.5" }, /--top-p must be a number in \(0, 1\], got 1.5/);
    await usage({ topK: "2.5" }, /--top-k must be an integer/);
    await usage({ seed: "x" }, /--seed must be an integer/);
    await usage({ model: "" }, /--model is required/);
    expect(gpu.memory().liveBuffers).toBe(live);
  });
});

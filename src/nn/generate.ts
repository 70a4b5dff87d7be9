/**
 * Text generation with a LlamaModel: batched prompts, a KV cache, greedy or sampled decoding on the host.
 *
 *   const r = await generate(model, [[1, 450, 4996], [1, 306]], { maxNewTokens: 32, temperature: 0.7, topP: 0.9, seed: 1 });
 *   r.tokens[b]      row b's new tokens (after its EOS: padTokenId up to the batch's last step)
 *   r.lengths[b]     how many of them count (up to and including the EOS)
 *   r.finished[b]    "eos" or "length"
 *
 * How, as HF's generate does it:
 *   - prompts are LEFT-padded to one length (attention mask 0 on the padding; each row's positions count
 *     only its real tokens), so every row's next token comes from the same last column;
 *   - prefill: one forward over the padded prompts writes every layer's keys and values into a KvCache
 *     (src/nn/kv_cache.ts) and gives the last position's logits; then one token per step: a forward of
 *     B × 1 tokens attends to the cache with the decode attention op (LlamaModel.forwardCached);
 *   - the next token is chosen on the host from the B × V logits read back each step: greedy (temperature 0,
 *     or topK 1) takes the first maximum; otherwise logits / temperature, then top-k (ties at the k-th value
 *     kept), then top-p (the smallest set of most likely tokens whose probability reaches p; the token that
 *     crosses p is kept), then a draw from a seeded PRNG, one stream per row, so the same seed gives the
 *     same tokens;
 *   - a row stops at the first of `eosTokenIds` (kept in its output) and is padded after it; generation stops
 *     when every row has stopped or after maxNewTokens;
 *   - logits that are not finite (NaN or inf in a running row) stop generation with a TensorError naming the
 *     step (1-based), the row and the logit, instead of sampling from them.
 * Everything runs under noGrad; each step's tensors are released before the next, so GPU memory stays flat
 * (the cache is allocated once, for prompt + maxNewTokens slots, and released at the end).
 *
 * `useCache: false` recomputes the full forward over the whole sequence each step instead (slow; the
 * reference the cached path is tested against).
 */
import { mixSeed, mulberry32, narrow, noGrad, scope, TensorError, type Tensor } from "../tensor/index.ts";
import { KvCache } from "./kv_cache.ts";
import type { LlamaModel } from "./llama.ts";

export interface SamplingOptions {
  /** 0 = greedy (default). Otherwise logits are divided by it before sampling. */
  temperature?: number;
  /** Keep the k most likely tokens (0 = no limit, default). */
  topK?: number;
  /** Keep the most likely tokens up to total probability p (1 = no limit, default). */
  topP?: number;
}

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** PRNG seed for sampling (default 0). */
  seed?: number;
  /** Tokens that end a row (default: the model config's eos_token_id). [] = none. */
  eosTokenIds?: readonly number[];
  /** Fills prompts' left padding and rows that have stopped (default: config pad_token_id, else the first EOS, else 0). */
  padTokenId?: number;
  /** false: recompute the full forward each step (the reference for tests). Default true. */
  useCache?: boolean;
  /** Called after each step with the step's token per row (stopped rows: padTokenId). */
  onStep?: (step: number, tokens: readonly number[]) => void;
}

export interface GenerateResult {
  /** B rows of new tokens, all as long as the number of steps run; padTokenId after a row's EOS. */
  tokens: number[][];
  /** Per row: how many new tokens count (up to and including the EOS). */
  lengths: number[];
  finished: ("eos" | "length")[];
}

export async function generate(model: LlamaModel, promptIds: number[][], opts: GenerateOptions): Promise<GenerateResult> {
  const c = model.config;
  const V = c.vocabSize;
  const fail = (msg: string) => new TensorError(`generate: ${msg}`);
  if (!Array.isArray(promptIds) || promptIds.length === 0) throw fail("no prompts");
  promptIds.forEach((p, b) => {
    if (!Array.isArray(p) || p.length === 0) throw fail(`prompt ${b} is empty (a prompt needs at least one token, e.g. BOS)`);
  });
  const { maxNewTokens } = opts;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw fail(`maxNewTokens must be a positive integer, got ${maxNewTokens}`);
  const sampling = checkSampling(opts, "generate");
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed)) throw fail(`seed must be an integer, got ${seed}`);
  const eos = new Set(opts.eosTokenIds ?? c.eosTokenIds);
  const pad = opts.padTokenId ?? c.padTokenId ?? [...eos][0] ?? 0;
  for (const [what, id] of [["padTokenId", pad], ...[...eos].map((e) => ["eosTokenIds", e] as const)] as const)
    if (!Number.isInteger(id) || id < 0 || id >= V) throw fail(`${what} ${id} is not a token id in [0, ${V})`);
  const useCache = opts.useCache ?? true;

  const B = promptIds.length;
  const Tp = Math.max(...promptIds.map((p) => p.length));
  const seqs = promptIds.map((p) => [...new Array<number>(Tp - p.length).fill(pad), ...p]);
  const mask = promptIds.map((p) => [...new Array<number>(Tp - p.length).fill(0), ...new Array<number>(p.length).fill(1)]);
  const rand = promptIds.map((_, b) => mulberry32(mixSeed(seed, b)));
  const tokens: number[][] = promptIds.map(() => []);
  const lengths = new Array<number>(B).fill(maxNewTokens);
  const finished = new Array<"eos" | "length">(B).fill("length");
  const done = new Array<boolean>(B).fill(false);

  const cache = useCache ? KvCache.forModel(model, { batch: B, maxLength: Tp + maxNewTokens - 1 }) : null;
  try {
    let logits: Tensor = noGrad(() =>
      cache ? model.forwardCached(seqs, cache, { attentionMask: mask, lastTokenOnly: true }).logits : lastLogits(model, seqs, mask),
    );
    for (let step = 0; ; step++) {
      let host: Float32Array;
      try {
        host = await logits.toArray();
      } finally {
        logits.release();
      }
      checkFinite(host, V, done, step, maxNewTokens);
      const next = promptIds.map((_, b) => {
        const t = done[b] ? pad : sampleToken(host.subarray(b * V, (b + 1) * V), sampling, rand[b]!);
        if (!done[b] && eos.has(t)) {
          done[b] = true;
          finished[b] = "eos";
          lengths[b] = step + 1;
        }
        return t;
      });
      next.forEach((t, b) => tokens[b]!.push(t));
      opts.onStep?.(step, next);
      if (step + 1 >= maxNewTokens || done.every(Boolean)) break;
      if (cache) logits = noGrad(() => model.forwardCached(next.map((t) => [t]), cache, { lastTokenOnly: true }).logits);
      else {
        next.forEach((t, b) => (seqs[b]!.push(t), mask[b]!.push(1)));
        logits = noGrad(() => lastLogits(model, seqs, mask));
      }
    }
  } finally {
    cache?.release();
  }
  return { tokens, lengths, finished };
}

/**
 * Stop, rather than sample from logits that are not finite: a NaN or an infinity in a running row's logits (from NaN
 * or inf in the weights or in the activations) is an error naming the step, the row and the first such logit.
 */
function checkFinite(host: Float32Array, V: number, done: readonly boolean[], step: number, maxNewTokens: number): void {
  done.forEach((d, b) => {
    if (d) return;
    for (let i = b * V; i < (b + 1) * V; i++)
      if (!Number.isFinite(host[i]!))
        throw new TensorError(
          `generate: step ${step + 1} of ${maxNewTokens}: the logits of prompt ${b} are not finite (logit ${i - b * V} is ${host[i]}); ` +
            "the model's weights or activations hold NaN or inf, so no token can be chosen",
        );
  });
}

/** The full forward over left-padded `ids` (HF positions: cumsum(mask) - 1, padding 1); logits of the last column [B, 1, V]. */
function lastLogits(model: LlamaModel, ids: number[][], mask: number[][]): Tensor {
  const positionIds = mask.map((row) => {
    let n = 0;
    return row.map((m) => (m ? n++ : 1));
  });
  const T = ids[0]!.length;
  const padded = mask.some((row) => row.includes(0));
  return scope(() => narrow(model.forward(ids, { attentionMask: padded ? mask : undefined, positionIds }).logits, 1, T - 1, 1));
}

// ---- sampling on the host -----------------------------------------------------------------------------------

/** Checked sampling options with defaults filled in; errors name `who`. */
export function checkSampling(o: SamplingOptions, who: string): Required<SamplingOptions> {
  const temperature = o.temperature ?? 0;
  const topK = o.topK ?? 0;
  const topP = o.topP ?? 1;
  if (!(Number.isFinite(temperature) && temperature >= 0)) throw new TensorError(`${who}: temperature must be >= 0 (0 = greedy), got ${temperature}`);
  if (!(Number.isInteger(topK) && topK >= 0)) throw new TensorError(`${who}: topK must be an integer >= 0 (0 = off), got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new TensorError(`${who}: topP must be in (0, 1] (1 = off), got ${topP}`);
  return { temperature, topK, topP };
}

/** Index of the first maximum (torch.argmax); a NaN logit is an error. */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i]!;
    if (Number.isNaN(x)) throw new TensorError(`generate: logit ${i} is NaN`);
    if (x > logits[best]!) best = i;
  }
  return best;
}

/**
 * The distribution sampling draws from, as HF's warpers build it: softmax(logits / temperature) restricted
 * to the top-k logits (every token tied with the k-th kept) and then to the top-p nucleus (tokens in order of
 * probability, most likely first, while the probability before them is < p), renormalized. Filtered tokens
 * get 0. Ties in probability keep the lower token id first. temperature must be > 0.
 */
export function samplingDistribution(logits: ArrayLike<number>, o: SamplingOptions): Float64Array {
  const { temperature, topK, topP } = checkSampling(o, "samplingDistribution");
  if (temperature === 0) throw new TensorError("samplingDistribution: temperature 0 is greedy (argmax), not a distribution");
  const V = logits.length;
  const order = Array.from({ length: V }, (_, i) => i);
  for (const i of order) if (Number.isNaN(logits[i]!)) throw new TensorError(`generate: logit ${i} is NaN`);
  order.sort((a, b) => logits[b]! - logits[a]! || a - b);
  let n = V;
  if (topK > 0 && topK < V) {
    const kth = logits[order[topK - 1]!]!;
    while (n > topK && logits[order[n - 1]!]! < kth) n--;
  }
  const top = logits[order[0]!]! / temperature;
  const probs = new Float64Array(V);
  let z = 0;
  for (let r = 0; r < n; r++) z += probs[order[r]!] = Math.exp(logits[order[r]!]! / temperature - top);
  if (topP < 1) {
    let before = 0;
    let keep = 0;
    while (keep < n && before < topP) before += probs[order[keep++]!]! / z;
    for (let r = keep; r < n; r++) probs[order[r]!] = 0;
    n = keep;
    z = 0;
    for (let r = 0; r < n; r++) z += probs[order[r]!]!;
  }
  for (let r = 0; r < n; r++) probs[order[r]!]! /= z;
  return probs;
}

/** The next token from one row of logits: greedy for temperature 0 or topK 1, else a draw with `rand`. */
export function sampleToken(logits: ArrayLike<number>, o: SamplingOptions, rand: () => number): number {
  const temperature = o.temperature ?? 0;
  if (temperature === 0 || o.topK === 1) return argmax(logits);
  const p = samplingDistribution(logits, o);
  const u = rand();
  let acc = 0;
  let last = -1;
  for (let i = 0; i < p.length; i++) {
    if (p[i]! <= 0) continue;
    acc += p[i]!;
    last = i;
    if (u < acc) return i;
  }
  return last; // u within rounding of 1
}



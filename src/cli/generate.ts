/**
 * `alignx generate --model DIR --prompt TEXT [--max-new-tokens N --temperature T --top-k K --top-p P --seed S]`:
 * load a HF checkpoint directory and its tokenizer (tokenizer.json next to the weights), encode the prompt
 * as the tokenizer does (BOS added when its post-processor adds it), generate with a KV cache
 * (src/nn/generate.ts) and print the continuation: the new tokens up to the first EOS, decoded without
 * special tokens. Defaults: 64 new tokens, temperature 0 (greedy), no top-k / top-p, seed 0. EOS: the
 * tokenizer's and the config's eos_token_id(s).
 *
 * Exit code 0. Before the device is opened: --model must be a directory (a CheckpointError naming the path
 * otherwise), a missing or unreadable tokenizer is a TokenizerError naming the file, and so is a tokenizer
 * with more ids than config.json's vocab_size; a bad option is a UsageError (exit 2); checkpoint problems are CheckpointErrors.
 */
import { join } from "node:path";
import { checkTokenizerFits, loadTokenizer } from "../data/tokenizer.ts";
import { readHfConfig, requireCheckpointDir } from "../io/index.ts";
import "../tensor/index.ts"; // registers the ops' tuners, which Gpu.open({ tune: true }) runs
import { Gpu, type DeviceOptions } from "../gpu/index.ts";
import { openCommandGpu } from "./gpu.ts";
import { checkSampling, generate as generateTokens } from "../nn/generate.ts";
import { LlamaModel } from "../nn/llama.ts";
import { numOption, SEED, UsageError } from "./usage.ts";

export interface GenerateCliOptions extends DeviceOptions {
  /** Checkpoint directory (config.json, *.safetensors, tokenizer.json). */
  model: string;
  prompt: string;
  /** Numbers, or the strings the command line gave. */
  maxNewTokens?: number | string;
  temperature?: number | string;
  topK?: number | string;
  topP?: number | string;
  seed?: number | string;
  /** Use this device instead of opening one (tests); it is neither tuned nor destroyed here (its policy is the caller's). */
  gpu?: Gpu;
  /** Where the continuation goes (default console.log). */
  log?: (line: string) => void;
}

/** The most tokens one call generates (the KV cache holds prompt + this many). */
export const MAX_NEW_TOKENS = 2 ** 20;

export async function generate(opts: GenerateCliOptions): Promise<number> {
  const log = opts.log ?? ((s: string) => console.log(s));
  if (typeof opts.model !== "string" || opts.model === "") throw new UsageError("generate: --model is required (see alignx generate --help)");
  if (typeof opts.prompt !== "string") throw new UsageError("generate: --prompt is required (see alignx generate --help)");
  // The ranges are checkSampling's (src/nn/generate.ts), checked here to name the flags; seeds as every command's.
  const maxNewTokens = numOption("generate", "max-new-tokens", opts.maxNewTokens, { integer: true, min: 1, max: MAX_NEW_TOKENS }) ?? 64;
  const seed = numOption("generate", "seed", opts.seed, SEED) ?? 0;
  const sampling = checkSampling(
    {
      temperature: numOption("generate", "temperature", opts.temperature, { min: 0 }) ?? 0,
      topK: numOption("generate", "top-k", opts.topK, { integer: true, min: 0 }) ?? 0,
      topP: numOption("generate", "top-p", opts.topP, { min: 0, minOpen: true, max: 1 }) ?? 1,
    },
    "generate",
  );

  // The model directory and its config first (cheap, before the device opens): a file given as --model, or a
  // tokenizer with ids the model's embeddings lack, fails naming the path and the cause.
  await requireCheckpointDir(opts.model);
  const configPath = join(opts.model, "config.json");
  const config = await readHfConfig(configPath);
  const tokenizer = await loadTokenizer(opts.model);
  checkTokenizerFits(tokenizer, config.vocabSize, `${configPath}'s vocab_size`);
  const promptIds = tokenizer.encode(opts.prompt);
  if (promptIds.length === 0) throw new UsageError("generate: the prompt is empty and the tokenizer adds no BOS token; give some text");
  const gpu = opts.gpu ?? (await openCommandGpu({ adapter: opts.adapter, cpu: opts.cpu }));
  let model: LlamaModel | undefined;
  try {
    model = await LlamaModel.fromPretrained(gpu, opts.model, { requiresGrad: false });
    const eos = [...new Set([...tokenizer.eosIds, ...model.config.eosTokenIds])];
    const pad = tokenizer.padId ?? model.config.padTokenId ?? undefined;
    const r = await generateTokens(model, [promptIds], { maxNewTokens, seed, ...sampling, eosTokenIds: eos, padTokenId: pad });
    const ids = r.tokens[0]!.slice(0, r.lengths[0]);
    log(tokenizer.decode(ids, { skipSpecialTokens: true }));
    return 0;
  } finally {
    model?.release();
    if (!opts.gpu) gpu.destroy();
  }
}

/**
 * `alignx generate --model DIR --prompt TEXT [--max-new-tokens N --temperature T --top-k K --top-p P --seed S]`:
 * load a HF checkpoint directory and its tokenizer (tokenizer.json next to the weights), encode the prompt
 * as the tokenizer does (BOS added when its post-processor adds it), generate with a KV cache
 * (src/nn/generate.ts) and print the continuation: the new tokens up to the first EOS, decoded without
 * special tokens. Defaults: 64 new tokens, temperature 0 (greedy), no top-k / top-p, seed 0. EOS: the
 * tokenizer's and the config's eos_token_id(s).
 *
 * Exit code 0. A missing or unreadable tokenizer is a TokenizerError naming the file (checked before the
 * device is opened); a bad option is a UsageError (exit 2); checkpoint problems are CheckpointErrors.
 */
import { loadTokenizer } from "../data/tokenizer.ts";
import "../tensor/index.ts"; // registers the ops' tuners, which Gpu.open({ tune: true }) runs
import { Gpu, type DeviceOptions } from "../gpu/index.ts";
import { checkSampling, generate as generateTokens } from "../nn/generate.ts";
import { LlamaModel } from "../nn/llama.ts";
import { UsageError } from "./usage.ts";

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

/** A numeric option: a finite number (an integer when `integer`), or a UsageError naming the flag. */
function num(flag: string, v: number | string | undefined, dflt: number, integer: boolean): number {
  if (v === undefined) return dflt;
  const x = typeof v === "number" ? v : v.trim() === "" ? Number.NaN : Number(v);
  if (!Number.isFinite(x) || (integer && !Number.isInteger(x))) throw new UsageError(`generate: --${flag} must be ${integer ? "an integer" : "a number"}, got ${JSON.stringify(v)}`);
  return x;
}

export async function generate(opts: GenerateCliOptions): Promise<number> {
  const log = opts.log ?? ((s: string) => console.log(s));
  if (typeof opts.model !== "string" || opts.model === "") throw new UsageError("generate: --model is required (see alignx generate --help)");
  if (typeof opts.prompt !== "string") throw new UsageError("generate: --prompt is required (see alignx generate --help)");
  const maxNewTokens = num("max-new-tokens", opts.maxNewTokens, 64, true);
  if (maxNewTokens < 1) throw new UsageError(`generate: --max-new-tokens must be at least 1, got ${maxNewTokens}`);
  const seed = num("seed", opts.seed, 0, true);
  let sampling;
  try {
    sampling = checkSampling(
      { temperature: num("temperature", opts.temperature, 0, false), topK: num("top-k", opts.topK, 0, true), topP: num("top-p", opts.topP, 1, false) },
      "generate",
    );
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/temperature|topK|topP/, (m) => `--${{ temperature: "temperature", topK: "top-k", topP: "top-p" }[m]}`));
  }

  const tokenizer = await loadTokenizer(opts.model);
  const promptIds = tokenizer.encode(opts.prompt);
  if (promptIds.length === 0) throw new UsageError("generate: the prompt is empty and the tokenizer adds no BOS token; give some text");
  const gpu = opts.gpu ?? (await Gpu.open({ adapter: opts.adapter, cpu: opts.cpu, tune: true })); // tune: time the kernel variants on a first run (cached on disk after)
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

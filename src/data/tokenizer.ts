/**
 * Hugging Face tokenizers, read from `tokenizer.json` through `@huggingface/tokenizers` (tokenizers.js, the
 * pure-JS port maintained by Hugging Face; no native code, so it works under Bun and inside
 * `bun build --compile`). Supported: what that library supports, i.e.
 *   - byte-level BPE (GPT-2, LLaMA-3, and the tokenizers `trainBpe` writes),
 *   - SentencePiece-style BPE with byte fallback (LLaMA-1/2, Mistral, Gemma: "▁" for spaces, <0xNN> tokens),
 *   - Unigram (T5, ALBERT, XLM-R, mT5) and WordPiece (BERT).
 * SentencePiece's own `tokenizer.model` (protobuf) is not read: convert it with transformers first.
 *
 * Special token ids: the tokens named in tokenizer_config.json (bos_token / eos_token / pad_token /
 * unk_token, as a string or an AddedToken object), else special_tokens_map.json, else the ids in
 * config.json (bos_token_id / eos_token_id / pad_token_id). `eosIds` adds config.json's and
 * generation_config.json's eos_token_id lists (LLaMA-3-Instruct stops at <|eot_id|> and <|end_of_text|>).
 *
 * As transformers' LlamaTokenizerFast / GemmaTokenizerFast do, a tokenizer_config.json of those classes
 * decides whether BOS/EOS are added (add_bos_token, default true; add_eos_token, default false), whatever
 * the tokenizer.json post-processor says. Decoding cleans up spaces before punctuation only when
 * tokenizer_config.json asks for it (clean_up_tokenization_spaces), as transformers does; the Rust
 * library and this module default to no clean-up, so decode(encode(x)) === x for byte-level tokenizers.
 *
 * Every error names the file it is about; turning errors into exit codes is the caller's job.
 */
import { Tokenizer as HfJsTokenizer } from "@huggingface/tokenizers";
import { readFile, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** A tokenizer file could not be read or is not usable. `file` is the file (or directory) at fault. */
export class TokenizerError extends Error {
  exitCode = 1;
  constructor(
    message: string,
    readonly file: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "TokenizerError";
  }
}

export interface EncodeOptions {
  /** Add the tokens the post-processor adds (BOS for LLaMA-family models). Default true, as in HF. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out special tokens (BOS, EOS, padding, ...). Default false. */
  skipSpecialTokens?: boolean;
  /** " ." → "." etc. (transformers' clean_up_tokenization). Default: tokenizer_config.json's value, else false. */
  cleanUpTokenizationSpaces?: boolean;
}

/** What the data pipeline needs from a tokenizer. */
export interface TextTokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  tokenToId(token: string): number | undefined;
}

export type TokenizerModelType = "BPE" | "Unigram" | "WordPiece";
const MODEL_TYPES: readonly string[] = ["BPE", "Unigram", "WordPiece"];

type Json = Record<string, unknown>;

/** The side files next to tokenizer.json, already parsed (each optional). */
export interface TokenizerSideFiles {
  tokenizerConfig?: Json | null;
  specialTokensMap?: Json | null;
  /** config.json of the model. */
  modelConfig?: Json | null;
  generationConfig?: Json | null;
}

export class HfTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** Every id that ends a sequence: eosId first, then config.json's / generation_config.json's. */
  readonly eosIds: number[];
  readonly padId: number | null;
  readonly unkId: number | null;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly modelType: TokenizerModelType;
  /** Ids of all special added tokens. */
  readonly specialIds: ReadonlySet<number>;
  /** Things that were accepted but deserve a look (a named special token missing from the vocabulary, ...). */
  readonly warnings: string[] = [];
  /**
   * SHA-256 (hex) of what decides the ids: tokenizer.json as loaded (with the BOS/EOS template that
   * tokenizer_config.json imposes) and the special-token ids. Corpus shards record it, and a shard packed
   * with another tokenizer is refused. Whitespace in the file does not change it; reordered JSON keys do
   * (counted as another tokenizer: the conservative answer).
   */
  readonly hash: string;
  private readonly cleanUp: boolean;

  private constructor(
    /** The underlying tokenizers.js object, for what this class does not wrap. */
    readonly hf: HfJsTokenizer,
    /** Where it came from (a path, or a description), for messages. */
    readonly source: string,
    json: Json,
    side: TokenizerSideFiles,
  ) {
    this.modelType = (json.model as Json).type as TokenizerModelType;
    const model = hf.model!;
    let size = model.vocab.length;
    const special = new Set<number>();
    for (const [id, t] of hf.get_added_tokens_decoder()) {
      size = Math.max(size, id + 1);
      if (t.special) special.add(id);
    }
    this.vocabSize = size;
    this.specialIds = special;
    this.unkId = model.unk_token_id ?? null;
    const tc = side.tokenizerConfig ?? {};
    const stm = side.specialTokensMap ?? {};
    const mc = side.modelConfig ?? {};
    const gc = side.generationConfig ?? {};
    const pick = (name: string): { token: string | null; id: number | null } => {
      for (const [src, file] of [[tc, "tokenizer_config.json"], [stm, "special_tokens_map.json"]] as const) {
        if (!(name in src)) continue;
        const v = src[name];
        if (v === null) return { token: null, id: null };
        const token = typeof v === "string" ? v : v && typeof v === "object" && typeof (v as Json).content === "string" ? ((v as Json).content as string) : undefined;
        if (token === undefined) {
          this.warnings.push(`${file}: ${name} is neither a string nor an object with "content"; ignored`);
          continue;
        }
        const id = hf.token_to_id(token);
        if (id === undefined) {
          this.warnings.push(`${file}: ${name} ${JSON.stringify(token)} is not in the vocabulary; ignored`);
          continue;
        }
        return { token, id };
      }
      const fromConfig = [mc[`${name}_id`], gc[`${name}_id`]].find((x) => x !== undefined && x !== null);
      const id = Array.isArray(fromConfig) ? fromConfig[0] : fromConfig;
      if (typeof id === "number" && Number.isInteger(id) && id >= 0 && id < size) return { token: hf.id_to_token(id) ?? null, id };
      return { token: null, id: null };
    };
    const bos = pick("bos_token"), eos = pick("eos_token"), pad = pick("pad_token");
    this.bosId = bos.id;
    this.bosToken = bos.token;
    this.eosId = eos.id;
    this.eosToken = eos.token;
    this.padId = pad.id;
    this.padToken = pad.token;
    const eosIds: number[] = [];
    for (const v of [eos.id, mc.eos_token_id, gc.eos_token_id].flat()) {
      if (typeof v === "number" && Number.isInteger(v) && v >= 0 && v < size && !eosIds.includes(v)) eosIds.push(v);
    }
    this.eosIds = eosIds;
    this.cleanUp = tc.clean_up_tokenization_spaces === true;
    const h = new Bun.CryptoHasher("sha256");
    h.update(JSON.stringify(json));
    h.update(JSON.stringify({ bos: this.bosId, eos: this.eosId, pad: this.padId, unk: this.unkId, vocab: this.vocabSize }));
    this.hash = h.digest("hex");
  }

  /**
   * Build from parsed tokenizer.json (and optional side files). `source` names the file in errors.
   * The object is not modified.
   */
  static fromJson(tokenizerJson: unknown, side: TokenizerSideFiles = {}, source = "tokenizer.json"): HfTokenizer {
    if (tokenizerJson === null || typeof tokenizerJson !== "object" || Array.isArray(tokenizerJson)) {
      throw new TokenizerError("is not a tokenizer.json: the top level is not a JSON object", source);
    }
    const json = { ...(tokenizerJson as Json) };
    const model = json.model;
    if (model === null || typeof model !== "object" || Array.isArray(model)) {
      throw new TokenizerError(`is not a tokenizer.json: no "model" object`, source);
    }
    const type = (model as Json).type;
    if (typeof type !== "string" || !MODEL_TYPES.includes(type)) {
      throw new TokenizerError(
        `unsupported tokenizer model type ${JSON.stringify(type ?? null)} (supported: ${MODEL_TYPES.join(", ")})`,
        source,
      );
    }
    // Fields tokenizers.js requires; the Rust library lets some be absent.
    for (const k of ["normalizer", "pre_tokenizer", "post_processor", "decoder"]) json[k] ??= null;
    json.added_tokens ??= [];
    const tc = side.tokenizerConfig ?? {};
    const override = bosEosTemplate(json, tc);
    if (override !== undefined) json.post_processor = override;
    let hf: HfJsTokenizer;
    try {
      hf = new HfJsTokenizer(json, tc);
    } catch (e) {
      throw new TokenizerError(`cannot be loaded: ${(e as Error).message}`, source);
    }
    fixByteFallback(hf.decoder);
    return new HfTokenizer(hf, source, json, side);
  }

  /** Token ids of `text`. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  /** Token strings of `text` (as in the vocabulary, e.g. "▁Hello" or "ĠHello"). */
  tokenize(text: string, opts: EncodeOptions = {}): string[] {
    return this.hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).tokens;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    if (ids.length === 0) return "";
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.hf.id_to_token(id) === undefined) {
        throw new RangeError(`${this.source}: decode: token id ${id} is not in the vocabulary (size ${this.vocabSize})`);
      }
    }
    if (opts.skipSpecialTokens && ids.every((id) => this.specialIds.has(id))) return "";
    return this.hf.decode([...ids], {
      skip_special_tokens: opts.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: opts.cleanUpTokenizationSpaces ?? this.cleanUp,
    });
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }
}

/**
 * tokenizers.js's ByteFallback decoder turns a run of <0xNN> tokens into text with a default TextDecoder,
 * which drops a leading U+FEFF and replaces invalid bytes by maximal subparts. The Rust library keeps U+FEFF
 * and, when the run is not valid UTF-8, gives one U+FFFD per byte. Give it a decoder that does the same
 * (checked against the Rust goldens in test/fixtures/tokenizers/goldens.json).
 */
function fixByteFallback(decoder: unknown): void {
  if (decoder === null || typeof decoder !== "object" && typeof decoder !== "function") return;
  const d = decoder as { constructor: { name: string }; decoders?: unknown[]; text_decoder?: unknown; config?: Json };
  if (Array.isArray(d.decoders)) for (const sub of d.decoders) fixByteFallback(sub);
  if (d.config?.type === "ByteFallback" && d.text_decoder !== undefined) {
    const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
    d.text_decoder = {
      decode(bytes: Uint8Array): string {
        try {
          return strict.decode(bytes);
        } catch {
          return "\uFFFD".repeat(bytes.length);
        }
      },
    };
  }
}

const BOS_EOS_CLASSES = /^(Llama|CodeLlama|Gemma)Tokenizer(Fast)?$/;

/**
 * transformers' LlamaTokenizerFast.update_post_processor: for these classes add_bos_token /
 * add_eos_token in tokenizer_config.json decide the template. Returns undefined to keep the file's.
 */
function bosEosTemplate(json: Json, tc: Json): Json | undefined {
  if (typeof tc.tokenizer_class !== "string" || !BOS_EOS_CLASSES.test(tc.tokenizer_class)) return undefined;
  if (!("add_bos_token" in tc) && !("add_eos_token" in tc)) return undefined;
  const name = (v: unknown): string | null =>
    typeof v === "string" ? v : v && typeof v === "object" && typeof (v as Json).content === "string" ? ((v as Json).content as string) : null;
  const addBos = tc.add_bos_token !== false, addEos = tc.add_eos_token === true;
  const bos = name(tc.bos_token), eos = name(tc.eos_token);
  if ((addBos && bos === null) || (addEos && eos === null)) return undefined;
  const idOf = (t: string): number | undefined => {
    for (const a of (json.added_tokens as Json[]) ?? []) if (a.content === t) return a.id as number;
    const vocab = (json.model as Json).vocab;
    if (Array.isArray(vocab)) {
      const i = vocab.findIndex((e) => Array.isArray(e) && e[0] === t);
      return i >= 0 ? i : undefined;
    }
    return (vocab as Record<string, number> | undefined)?.[t];
  };
  const single: Json[] = [], pair: Json[] = [], special: Json = {};
  const add = (list: Json[], t: string, typeId: number): void => {
    list.push({ SpecialToken: { id: t, type_id: typeId } });
    const id = idOf(t);
    if (id !== undefined) special[t] = { id: t, ids: [id], tokens: [t] };
  };
  if (addBos) add(single, bos!, 0);
  single.push({ Sequence: { id: "A", type_id: 0 } });
  if (addEos) add(single, eos!, 0);
  if (addBos) add(pair, bos!, 0);
  pair.push({ Sequence: { id: "A", type_id: 0 } });
  if (addEos) add(pair, eos!, 0);
  if (addBos) add(pair, bos!, 1);
  pair.push({ Sequence: { id: "B", type_id: 1 } });
  if (addEos) add(pair, eos!, 1);
  return { type: "TemplateProcessing", single, pair, special_tokens: special };
}

async function readJsonFile(path: string, required: boolean): Promise<Json | null> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (!required && code === "ENOENT") return null;
    throw new TokenizerError(code === "ENOENT" ? "no such file" : `cannot be read: ${(e as Error).message}`, path);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`is not valid JSON: ${(e as Error).message}`, path);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new TokenizerError("is not a JSON object", path);
  }
  return value as Json;
}

/**
 * Load a tokenizer from a model directory (holding tokenizer.json) or from a tokenizer.json path. The
 * side files (tokenizer_config.json, special_tokens_map.json, config.json, generation_config.json) are read
 * from the same directory when they exist.
 */
export async function loadTokenizer(pathOrDir: string): Promise<HfTokenizer> {
  let st;
  try {
    st = await stat(pathOrDir);
  } catch {
    throw new TokenizerError("no such file or directory", pathOrDir);
  }
  let dir: string, file: string;
  if (st.isDirectory()) {
    dir = pathOrDir;
    file = join(dir, "tokenizer.json");
    const exists = await stat(file).then((s) => s.isFile(), () => false);
    if (!exists) {
      const hasSp = await stat(join(dir, "tokenizer.model")).then(() => true, () => false);
      throw new TokenizerError(
        hasSp
          ? "no tokenizer.json here, only tokenizer.model (a SentencePiece model, which is not read): write tokenizer.json with transformers' AutoTokenizer.from_pretrained(dir).save_pretrained(dir)"
          : "no tokenizer.json in this directory",
        dir,
      );
    }
  } else {
    file = pathOrDir;
    dir = dirname(pathOrDir);
  }
  const json = await readJsonFile(file, true);
  // Side files belong to the model directory; a tokenizer.json named otherwise stands alone.
  const withSide = basename(file) === "tokenizer.json";
  const side: TokenizerSideFiles = withSide
    ? {
        tokenizerConfig: await readJsonFile(join(dir, "tokenizer_config.json"), false),
        specialTokensMap: await readJsonFile(join(dir, "special_tokens_map.json"), false),
        modelConfig: await readJsonFile(join(dir, "config.json"), false),
        generationConfig: await readJsonFile(join(dir, "generation_config.json"), false),
      }
    : {};
  return HfTokenizer.fromJson(json, side, file);
}

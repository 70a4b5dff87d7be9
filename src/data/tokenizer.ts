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
    // The model and the added tokens are checked here, naming the field: tokenizers.js assumes their shapes
    // (a merge that is not a string fails there as "x.split is not a function").
    validateModel(model as Json, type, source);
    if (type === "BPE" && (model as Json).merges == null) json.model = { ...(model as Json), merges: [] }; // the Rust library's default
    validateAddedTokens(json.added_tokens, source);
    validateComponents(json, model as Json, type, source);
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
    let r: { ids: number[]; tokens: string[] };
    try {
      r = this.hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true });
    } catch (e) {
      throw new TokenizerError(`cannot encode with this tokenizer: ${(e as Error)?.message ?? e}`, this.source);
    }
    // What load-time checks cannot foresee still fails naming the file, never as an id `undefined`.
    const bad = r.ids.findIndex((id) => !Number.isInteger(id));
    if (bad >= 0) throw new TokenizerError(`encode: token ${JSON.stringify(r.tokens[bad])} has no id (not in the vocabulary, and no unknown token)`, this.source);
    return r.ids;
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

/** The largest token id the Rust library can hold (u32). */
const MAX_TOKEN_ID = 2 ** 32 - 1;

const isId = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && v <= MAX_TOKEN_ID;

/** `v` for a message: JSON, shortened. */
function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * Check what tokenizers.js takes on trust in `model`, as strictly as the Rust library's deserializer does:
 * BPE: vocab {token: id}, merges all "left right" strings (one space) or all [left, right] pairs, each part and
 * their concatenation in the vocabulary (the Rust crate's MergeTokenOutOfVocabulary); WordPiece: vocab
 * {token: id}; Unigram: vocab [[piece, score], ...] (not empty) and unk_id an index into it. Errors name the
 * field (`model.merges[12]`).
 */
function validateModel(model: Json, type: string, source: string): void {
  const fail = (msg: string) => new TokenizerError(msg, source);
  if (type === "Unigram") {
    const vocab = model.vocab;
    if (!Array.isArray(vocab) || vocab.length === 0) throw fail(`model.vocab is ${show(vocab)}, not a non-empty list of [piece, score] pairs (Unigram)`);
    vocab.forEach((e: unknown, i) => {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== "string" || typeof e[1] !== "number" || !Number.isFinite(e[1]))
        throw fail(`model.vocab[${i}] is ${show(e)}, not a [piece, score] pair (a string and a finite number)`);
    });
    const unk = model.unk_id;
    if (unk != null && !(isId(unk) && unk < vocab.length)) throw fail(`model.unk_id is ${show(unk)}, not an index into model.vocab (${vocab.length} pieces) or null`);
    return;
  }
  const vocab = model.vocab;
  if (vocab === null || typeof vocab !== "object" || Array.isArray(vocab)) throw fail(`model.vocab is ${show(vocab)}, not an object {token: id} (${type})`);
  for (const [token, id] of Object.entries(vocab as Json)) if (!isId(id)) throw fail(`model.vocab[${show(token)}] is ${show(id)}, not a token id (an integer in [0, 2^32))`);
  for (const k of ["unk_token", "continuing_subword_prefix", "end_of_word_suffix"])
    if (model[k] != null && typeof model[k] !== "string") throw fail(`model.${k} is ${show(model[k])}, not a string or null`);
  if (type !== "BPE") return;
  for (const k of ["fuse_unk", "byte_fallback", "ignore_merges"])
    if (model[k] != null && typeof model[k] !== "boolean") throw fail(`model.${k} is ${show(model[k])}, not true or false`);
  const merges = model.merges;
  if (merges == null) return;
  if (!Array.isArray(merges)) throw fail(`model.merges is ${show(merges)}, not a list of merges ("left right" strings or [left, right] pairs)`);
  const pairs = merges.length > 0 && Array.isArray(merges[0]);
  const prefix = typeof model.continuing_subword_prefix === "string" ? model.continuing_subword_prefix : "";
  const has = (t: string) => Object.hasOwn(vocab, t);
  merges.forEach((m: unknown, i) => {
    let parts: unknown[];
    if (pairs) {
      if (!Array.isArray(m) || m.length !== 2 || typeof m[0] !== "string" || typeof m[1] !== "string")
        throw fail(`model.merges[${i}] is ${show(m)}, not a [left, right] pair of strings${i ? " like model.merges[0] (the two formats cannot be mixed)" : ""}`);
      parts = m;
    } else {
      if (typeof m !== "string")
        throw fail(`model.merges[${i}] is ${show(m)}, not ${i ? `a "left right" string like model.merges[0] (the two formats cannot be mixed)` : `a "left right" string or a [left, right] pair of strings`}`);
      if (m.startsWith("#version")) return; // a merges.txt header, which the Rust library skips
      parts = m.split(" ");
      if (parts.length !== 2) throw fail(`model.merges[${i}] is ${show(m)}, not two tokens separated by one space`);
    }
    const [a, b] = parts as [string, string];
    for (const t of [a, b, a + b.slice(prefix.length)]) if (!has(t)) throw fail(`model.merges[${i}] ${show(m)}: ${show(t)} is not in model.vocab`);
  });
}

/** added_tokens: a list of {id, content, ...} with a token id, a non-empty content and boolean flags. */
function validateAddedTokens(added: unknown, source: string): void {
  if (added == null) return;
  const fail = (msg: string) => new TokenizerError(msg, source);
  if (!Array.isArray(added)) throw fail(`added_tokens is ${show(added)}, not a list`);
  added.forEach((t: unknown, i) => {
    if (t === null || typeof t !== "object" || Array.isArray(t)) throw fail(`added_tokens[${i}] is ${show(t)}, not an object {id, content, ...}`);
    const o = t as Json;
    if (!isId(o.id)) throw fail(`added_tokens[${i}].id is ${show(o.id)}, not a token id (an integer in [0, 2^32))`);
    if (typeof o.content !== "string" || o.content === "") throw fail(`added_tokens[${i}].content is ${show(o.content)}, not a non-empty string`);
    for (const k of ["single_word", "lstrip", "rstrip", "normalized", "special"])
      if (o[k] != null && typeof o[k] !== "boolean") throw fail(`added_tokens[${i}].${k} is ${show(o[k])}, not true or false`);
  });
}

/**
 * What tokenizers.js would only trip over while encoding (a TypeError, an id `undefined`, or text silently
 * dropped), checked at load as the Rust library's deserializer does, naming the field: the unknown token must be
 * in the vocabulary (WordPiece needs one); Split / Replace patterns are {String} or {Regex}; a
 * TemplateProcessing template is a list of {Sequence: {id: "A" | "B"}} and {SpecialToken: {id}} pieces whose
 * special tokens are in the vocabulary; Bert/Roberta processing's sep and cls are [token, id] pairs.
 */
function validateComponents(json: Json, model: Json, type: string, source: string): void {
  const fail = (msg: string) => new TokenizerError(msg, source);
  const added = new Set(Array.isArray(json.added_tokens) ? (json.added_tokens as Json[]).map((t) => t.content as string) : []);
  const vocab = model.vocab;
  const known = (t: string): boolean =>
    added.has(t) || (Array.isArray(vocab) ? vocab.some((e) => Array.isArray(e) && e[0] === t) : Object.hasOwn(vocab as Json, t));
  if (type !== "Unigram") {
    const unk = model.unk_token;
    if (type === "WordPiece" && typeof unk !== "string") throw fail(`model.unk_token is ${show(unk)}: WordPiece needs an unknown token`);
    if (typeof unk === "string" && !known(unk)) throw fail(`model.unk_token ${show(unk)} is not in model.vocab or added_tokens`);
  }
  const walk = (node: unknown, path: string): void => {
    if (Array.isArray(node)) return node.forEach((x, i) => walk(x, `${path}[${i}]`));
    if (node === null || typeof node !== "object") return;
    const o = node as Json;
    if (o.type === "Split" || o.type === "Replace") {
      const p = o.pattern as Json | null | undefined;
      const ok = p !== null && typeof p === "object" && !Array.isArray(p) && (typeof p.String === "string" || typeof p.Regex === "string");
      if (!ok) throw fail(`${path}.pattern is ${show(p)}, not {"String": text} or {"Regex": pattern}`);
    }
    for (const k of ["normalizers", "pretokenizers", "decoders", "processors"]) if (o[k] != null) walk(o[k], `${path}.${k}`);
  };
  walk(json.normalizer, "normalizer");
  walk(json.pre_tokenizer, "pre_tokenizer");
  walk(json.decoder, "decoder");
  const post = (pp: unknown, path: string): void => {
    if (pp === null || pp === undefined) return;
    if (typeof pp !== "object" || Array.isArray(pp)) throw fail(`${path} is ${show(pp)}, not an object or null`);
    const o = pp as Json;
    if (o.type === "Sequence") {
      if (!Array.isArray(o.processors)) throw fail(`${path}.processors is ${show(o.processors)}, not a list`);
      return o.processors.forEach((x, i) => post(x, `${path}.processors[${i}]`));
    }
    if (o.type === "TemplateProcessing") {
      for (const k of ["single", "pair"]) {
        const t = o[k];
        if (!Array.isArray(t)) throw fail(`${path}.${k} is ${show(t)}, not a list of template pieces`);
        t.forEach((piece: unknown, i) => {
          const at = `${path}.${k}[${i}]`;
          const p = piece as Json | null;
          const seq = p && typeof p === "object" ? (p.Sequence as Json | undefined) : undefined;
          const sp = p && typeof p === "object" ? (p.SpecialToken as Json | undefined) : undefined;
          const typeId = (seq ?? sp)?.type_id;
          if (seq && typeof seq === "object" && (seq.id === "A" || seq.id === "B") && isId(typeId)) return;
          if (sp && typeof sp === "object" && typeof sp.id === "string" && isId(typeId)) {
            if (!known(sp.id)) throw fail(`${at}: special token ${show(sp.id)} is not in model.vocab or added_tokens`);
            return;
          }
          throw fail(`${at} is ${show(piece)}, not {"Sequence": {"id": "A" or "B", "type_id": n}} or {"SpecialToken": {"id": token, "type_id": n}}`);
        });
      }
      return;
    }
    if (o.type === "BertProcessing" || o.type === "RobertaProcessing")
      for (const k of ["sep", "cls"]) {
        const v = o[k];
        if (!Array.isArray(v) || v.length !== 2 || typeof v[0] !== "string" || !isId(v[1])) throw fail(`${path}.${k} is ${show(v)}, not a [token, id] pair`);
        if (!known(v[0])) throw fail(`${path}.${k}: ${show(v[0])} is not in model.vocab or added_tokens`);
      }
  };
  post(json.post_processor, "post_processor");
}

/**
 * A tokenizer must not produce ids a model lacks: its vocabulary (added tokens included) must fit the model's
 * `vocabSize` (`what` names where that number comes from, e.g. "DIR/config.json's vocab_size"). A smaller
 * tokenizer is fine (models pad their embeddings). Fails with a TokenizerError naming the tokenizer file.
 */
export function checkTokenizerFits(tok: HfTokenizer, vocabSize: number, what: string): void {
  if (tok.vocabSize <= vocabSize) return;
  throw new TokenizerError(
    `has ${tok.vocabSize} token ids (0..${tok.vocabSize - 1}), more than the model's ${vocabSize} (${what}): ids ${vocabSize} and up have no embedding; ` +
      `is this the tokenizer of another model?`,
    tok.source,
  );
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

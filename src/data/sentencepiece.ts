/**
 * SentencePiece's own `.model` files, read without SentencePiece: the ModelProto (protobuf, decoded by hand) and
 * `EncodeAsPieces` / `EncodeAsIds` / `DecodePieces` / `DecodeIds` as SentencePiece 0.1.97+ computes them, so that
 * spBLEU (`--tokenize spm|flores101|flores200`, src/eval/tokenizers.ts) equals sacreBLEU's TokenizerSPM
 * (`" ".join(sp.EncodeAsPieces(line))`), and so that src/data/tokenizer.ts could read a LLaMA `tokenizer.model`.
 *
 * The pieces of SentencePiece that are restated here (sentencepiece_model.proto, normalizer.cc, unigram_model.cc,
 * bpe_model.cc, char/word_model.cc, model_interface.cc and sentencepiece_processor.cc's PopulateSentencePieceText /
 * Decode), all working on UTF-8 bytes as SentencePiece does (strings below hold one byte per UTF-16 unit):
 *   - normalizer: the precompiled charsmap is `<u32 LE trie size><darts-clone double array><NUL-separated
 *     replacements>`; at each position the longest UTF-8 prefix the trie knows is replaced, anything else is kept
 *     one character at a time (user-defined symbols are never normalized); then remove_extra_whitespaces (leading,
 *     trailing and repeated spaces), add_dummy_prefix (a leading space, or trailing with treat_whitespace_as_suffix)
 *     and escape_whitespaces (" " → U+2581).
 *   - UNIGRAM: Viterbi over the pieces (the "optimized" encoder: the best path ending at each byte), user-defined
 *     symbols scored `length·max_score − 0.1`, an unknown character as one unk node scored `min_score − 10`, float32
 *     arithmetic as in C++.
 *   - BPE: characters (user-defined symbols frozen), then the highest-scoring adjacent pair that is a piece is merged
 *     (ties: the leftmost), unused pieces split back into their parts.
 *   - CHAR / WORD: one piece per character / per "▁"-started word.
 *   - then consecutive unknown pieces merge into one (id = unk), or, with byte_fallback, each unknown piece becomes
 *     its UTF-8 bytes as `<0xNN>` pieces.
 *   - decoding: control pieces vanish, `<unk>` becomes the unk surface (" ⁇ "), runs of `<0xNN>` pieces become their
 *     UTF-8 characters (U+FFFD per byte that starts none), "▁" becomes " ", and the dummy prefix's "▁" is dropped
 *     at the start (every leading one with remove_extra_whitespaces); then the denormalizer's charsmap, if any.
 * The pieces are matched with a byte trie in typed arrays (ByteTrie) where SentencePiece uses a darts-clone array:
 * a FLORES-200 model (256k pieces) loads in about a second.
 * Checked against Debian's SentencePiece 0.1.97: tools/goldens/sentencepiece_cases.py trains small models on the
 * UDHR and writes their pieces / ids / decodes to test/fixtures/sentencepiece/, which
 * test/data/sentencepiece.test.ts compares.
 *
 * A truncated or malformed file is a SentencePieceError naming the file and the byte offset.
 */
import { readFileSync } from "node:fs";

/** A SentencePiece model could not be read or is not usable. `file` is the file at fault, `offset` the byte. */
export class SentencePieceError extends Error {
  exitCode = 1;
  constructor(
    message: string,
    readonly file: string,
    readonly offset?: number,
  ) {
    super(`${file}: ${offset === undefined ? "" : `byte ${offset}: `}${message}`);
    this.name = "SentencePieceError";
  }
}

/** ModelProto.SentencePiece.Type. */
export const PieceType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;
/** TrainerSpec.ModelType. */
export const ModelType = { UNIGRAM: 1, BPE: 2, WORD: 3, CHAR: 4 } as const;

export interface SentencePiece {
  piece: string;
  score: number;
  type: number;
}

export interface TrainerSpec {
  modelType: number;
  vocabSize: number;
  treatWhitespaceAsSuffix: boolean;
  allowWhitespaceOnlyPieces: boolean;
  splitDigits: boolean;
  byteFallback: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  unkPiece: string;
  bosPiece: string;
  eosPiece: string;
  padPiece: string;
  unkSurface: string;
  userDefinedSymbols: string[];
  controlSymbols: string[];
}

export interface NormalizerSpec {
  name: string;
  /** The charsmap blob (empty: no normalization rule, e.g. `identity`). */
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export interface ModelProto {
  pieces: SentencePiece[];
  /** The raw bytes of each piece as a byte string (the matching key). */
  pieceBytes: string[];
  trainerSpec: TrainerSpec;
  normalizerSpec: NormalizerSpec;
  /** Present when the model has one with a charsmap (applied to decoded text). */
  denormalizerSpec?: NormalizerSpec;
}

// ---------------------------------------------------------------------------------------------------------------
// Bytes ⇄ strings. Internally a "byte string" holds one UTF-8 byte per char code (0..255).

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { ignoreBOM: true }); // a leading U+FEFF is text here

function bytesToBin(b: Uint8Array): string {
  let s = "";
  if (b.length <= 64) {
    for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
    return s;
  }
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode.apply(null, b.subarray(i, i + 8192) as unknown as number[]);
  return s;
}
/** UTF-8 bytes to text; ASCII-only bytes (most pieces) without a decoder call. */
function utf8Text(b: Uint8Array): string {
  for (let i = 0; i < b.length; i++) if (b[i]! >= 0x80) return utf8Decoder.decode(b);
  return bytesToBin(b);
}
/** UTF-8 bytes of `s` as a byte string (lone surrogates become U+FFFD, as any UTF-8 encoder writes them). */
export const toByteString = (s: string): string => bytesToBin(utf8.encode(s));
function binToBytes(b: string): Uint8Array {
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b.charCodeAt(i);
  return out;
}
/** A byte string back to text (invalid UTF-8 becomes U+FFFD). */
export const fromByteString = (b: string): string => utf8Decoder.decode(binToBytes(b));

/** SentencePiece's OneCharLen: the length of a UTF-8 sequence from its lead byte. */
const oneCharLen = (lead: number): number => [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4][lead >> 4]!;

/** SentencePiece's IsValidDecodeUTF8 on `s` at `i`: the length of a valid character there, or 0 if malformed. */
function validCharLen(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c < 0x80) return 1;
  const cont = (k: number) => i + k < s.length && (s.charCodeAt(i + k) & 0xc0) === 0x80;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    const cp = ((c & 0x0f) << 12) | ((s.charCodeAt(i + 1) & 0x3f) << 6) | (s.charCodeAt(i + 2) & 0x3f);
    return cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    const cp = ((c & 0x07) << 18) | ((s.charCodeAt(i + 1) & 0x3f) << 12) | ((s.charCodeAt(i + 2) & 0x3f) << 6) | (s.charCodeAt(i + 3) & 0x3f);
    return cp >= 0x10000 && cp <= 0x10ffff ? 4 : 0;
  }
  return 0;
}

const SPACE_SYMBOL = "\xe2\x96\x81"; // U+2581 as a byte string
const REPLACEMENT_CHAR = "\xef\xbf\xbd"; // U+FFFD as a byte string
const f32 = Math.fround;

// ---------------------------------------------------------------------------------------------------------------
// Protobuf (proto2 wire format: varint, fixed64, length-delimited, fixed32).

class ProtoReader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    readonly file: string,
    start: number,
    readonly end: number,
    readonly what: string,
    readonly dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength),
  ) {
    this.pos = start;
  }
  fail(msg: string, at = this.pos): never {
    throw new SentencePieceError(msg, this.file, at);
  }
  get done(): boolean {
    return this.pos >= this.end;
  }
  /** A varint as a JavaScript number (exact below 2^53; int32 fields take the low 32 bits, signed). */
  varint(): number {
    const at = this.pos;
    let result = 0;
    let mul = 1;
    for (let k = 0; k < 10; k++) {
      if (this.pos >= this.end) this.fail(`truncated varint in ${this.what}`, at);
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * mul;
      mul *= 128;
      if (b < 0x80) return result;
    }
    this.fail(`varint longer than 10 bytes in ${this.what}`, at);
  }
  /** An int32 field: the low 32 bits of the varint, as a signed number (negative values are 10-byte varints). */
  int32(): number {
    const at = this.pos;
    let lo = 0;
    let shift = 0;
    for (let k = 0; k < 10; k++) {
      if (this.pos >= this.end) this.fail(`truncated varint in ${this.what}`, at);
      const b = this.buf[this.pos++]!;
      if (shift < 32) lo |= (b & 0x7f) << shift;
      shift += 7;
      if (b < 0x80) return lo | 0;
    }
    this.fail(`varint longer than 10 bytes in ${this.what}`, at);
  }
  bool(): boolean {
    return this.varint() !== 0;
  }
  float(): number {
    if (this.pos + 4 > this.end) this.fail(`truncated float in ${this.what}`);
    const v = this.dv.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }
  /** A length-delimited field: [start, end) of its bytes. */
  span(): [number, number] {
    const at = this.pos;
    const n = this.varint();
    if (this.pos + n > this.end) this.fail(`length-delimited field of ${n} bytes runs past the end of ${this.what} (at byte ${this.end})`, at);
    const s: [number, number] = [this.pos, this.pos + n];
    this.pos += n;
    return s;
  }
  bytes(): Uint8Array {
    const [a, b] = this.span();
    return this.buf.subarray(a, b);
  }
  /** A `string` field as its raw bytes (a byte string). */
  binString(): string {
    return bytesToBin(this.bytes());
  }
  /** The next tag: [field number, wire type, offset of the tag]. */
  tag(): [number, number, number] {
    const at = this.pos;
    const t = this.varint();
    const field = Math.floor(t / 8);
    const wire = t % 8;
    if (field === 0) this.fail(`invalid field number 0 in ${this.what}`, at);
    if (wire === 3 || wire === 4 || wire > 5) this.fail(`unsupported protobuf wire type ${wire} (field ${field}) in ${this.what}`, at);
    return [field, wire, at];
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) {
      if (this.pos + 8 > this.end) this.fail(`truncated fixed64 in ${this.what}`);
      this.pos += 8;
    } else if (wire === 2) this.span();
    else if (wire === 5) {
      if (this.pos + 4 > this.end) this.fail(`truncated fixed32 in ${this.what}`);
      this.pos += 4;
    }
  }
  expect(field: number, wire: number, want: number, at: number): void {
    if (wire !== want) this.fail(`field ${field} of ${this.what} has wire type ${wire}, expected ${want}`, at);
  }
  sub(what: string): ProtoReader {
    const [a, b] = this.span();
    return new ProtoReader(this.buf, this.file, a, b, what, this.dv);
  }
}

function readPiece(r: ProtoReader): { piece: string; text: string; score: number; type: number; at: number } {
  const at = r.pos;
  let piece: string | undefined;
  let text = "";
  let score = 0;
  let type: number = PieceType.NORMAL;
  while (!r.done) {
    const [field, wire, t] = r.tag();
    if (field === 1) {
      r.expect(field, wire, 2, t);
      const b = r.bytes();
      piece = bytesToBin(b);
      text = utf8Text(b);
    }
    else if (field === 2) (r.expect(field, wire, 5, t), (score = r.float()));
    else if (field === 3) {
      r.expect(field, wire, 0, t);
      type = r.int32();
      if (type < 1 || type > 6) r.fail(`unknown piece type ${type} in ${r.what}`, t);
    } else r.skip(wire);
  }
  if (piece === undefined || piece === "") r.fail(`${r.what} has no piece string (pieces must not be empty)`, at);
  return { piece, text, score, type, at };
}

function readTrainerSpec(r: ProtoReader): TrainerSpec {
  const s: TrainerSpec = {
    modelType: ModelType.UNIGRAM, vocabSize: 8000, treatWhitespaceAsSuffix: false, allowWhitespaceOnlyPieces: false, splitDigits: false,
    byteFallback: false, unkId: 0, bosId: 1, eosId: 2, padId: -1, unkPiece: "<unk>", bosPiece: "<s>", eosPiece: "</s>", padPiece: "<pad>",
    unkSurface: " \u2047 ", userDefinedSymbols: [], controlSymbols: [],
  };
  while (!r.done) {
    const [field, wire, t] = r.tag();
    const v = (w: number) => r.expect(field, wire, w, t);
    const str = () => (v(2), fromByteString(r.binString()));
    switch (field) {
      case 3:
        v(0);
        s.modelType = r.int32();
        if (s.modelType < 1 || s.modelType > 4) r.fail(`unknown model_type ${s.modelType} in trainer_spec`, t);
        break;
      case 4: v(0); s.vocabSize = r.int32(); break;
      case 24: v(0); s.treatWhitespaceAsSuffix = r.bool(); break;
      case 26: v(0); s.allowWhitespaceOnlyPieces = r.bool(); break;
      case 25: v(0); s.splitDigits = r.bool(); break;
      case 35: v(0); s.byteFallback = r.bool(); break;
      case 40: v(0); s.unkId = r.int32(); break;
      case 41: v(0); s.bosId = r.int32(); break;
      case 42: v(0); s.eosId = r.int32(); break;
      case 43: v(0); s.padId = r.int32(); break;
      case 44: s.unkSurface = str(); break;
      case 45: s.unkPiece = str(); break;
      case 46: s.bosPiece = str(); break;
      case 47: s.eosPiece = str(); break;
      case 48: s.padPiece = str(); break;
      case 30: s.controlSymbols.push(str()); break;
      case 31: s.userDefinedSymbols.push(str()); break;
      default: r.skip(wire);
    }
  }
  return s;
}

function readNormalizerSpec(r: ProtoReader): NormalizerSpec {
  const s: NormalizerSpec = { name: "", precompiledCharsmap: new Uint8Array(0), addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true };
  while (!r.done) {
    const [field, wire, t] = r.tag();
    const v = (w: number) => r.expect(field, wire, w, t);
    switch (field) {
      case 1: v(2); s.name = fromByteString(r.binString()); break;
      case 2: v(2); s.precompiledCharsmap = r.bytes(); break;
      case 3: v(0); s.addDummyPrefix = r.bool(); break;
      case 4: v(0); s.removeExtraWhitespaces = r.bool(); break;
      case 5: v(0); s.escapeWhitespaces = r.bool(); break;
      default: r.skip(wire);
    }
  }
  return s;
}

/** Decodes a ModelProto. `file` names the source in errors. */
export function parseModelProto(buf: Uint8Array, file: string): ModelProto {
  const r = new ProtoReader(buf, file, 0, buf.length, "ModelProto");
  const pieces: SentencePiece[] = [];
  const pieceBytes: string[] = [];
  let trainerSpec: TrainerSpec | undefined;
  let normalizerSpec: NormalizerSpec | undefined;
  let denormalizerSpec: NormalizerSpec | undefined;
  while (!r.done) {
    const [field, wire, t] = r.tag();
    if (field === 1) {
      r.expect(field, wire, 2, t);
      const p = readPiece(r.sub(`piece ${pieces.length}`));
      pieces.push({ piece: p.text, score: p.score, type: p.type });
      pieceBytes.push(p.piece);
    } else if (field === 2) (r.expect(field, wire, 2, t), (trainerSpec = readTrainerSpec(r.sub("trainer_spec"))));
    else if (field === 3) (r.expect(field, wire, 2, t), (normalizerSpec = readNormalizerSpec(r.sub("normalizer_spec"))));
    else if (field === 5) (r.expect(field, wire, 2, t), (denormalizerSpec = readNormalizerSpec(r.sub("denormalizer_spec"))));
    else r.skip(wire);
  }
  if (pieces.length === 0) throw new SentencePieceError("not a SentencePiece model: no pieces (ModelProto field 1)", file);
  if (!trainerSpec) throw new SentencePieceError("not a SentencePiece model: no trainer_spec (ModelProto field 2)", file);
  return {
    pieces,
    pieceBytes,
    trainerSpec,
    normalizerSpec: normalizerSpec ?? readNormalizerSpec(new ProtoReader(buf, file, 0, 0, "normalizer_spec")),
    denormalizerSpec: denormalizerSpec && denormalizerSpec.precompiledCharsmap.length > 0 ? denormalizerSpec : undefined,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The pieces' trie. SentencePiece matches pieces with a darts-clone double array; here a trie whose edges live in
// one open-addressing hash table (key: node·256 + byte) does the same job: no sorting to build it, one probe per
// byte to walk it (a 256k-piece FLORES-200 model has ~1.5M nodes; a Map of every prefix took seconds to fill).

class ByteTrie {
  private readonly edgeKey: Int32Array; // node * 256 + byte + 1; 0 = empty slot
  private readonly edgeChild: Int32Array;
  private readonly mask: number;
  /** Per node: its value (-1: none). */
  private readonly value: Int32Array;

  /** `keys`: byte strings, `values[i]` that of `keys[i]`; a repeated key calls `dup(i, j)`, which throws. */
  constructor(keys: string[], values: number[], dup: (i: number, j: number) => never) {
    let total = 1;
    for (const k of keys) total += k.length;
    let cap = 1024;
    while (cap < total * 2) cap *= 2;
    this.edgeKey = new Int32Array(cap);
    this.edgeChild = new Int32Array(cap);
    this.mask = cap - 1;
    const value = new Int32Array(total).fill(-1);
    const owner = new Int32Array(total).fill(-1);
    let next = 1;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      let node = 0;
      for (let j = 0; j < k.length; j++) {
        const key = node * 256 + k.charCodeAt(j) + 1;
        let h = this.slot(key);
        while (this.edgeKey[h] !== 0 && this.edgeKey[h] !== key) h = (h + 1) & this.mask;
        if (this.edgeKey[h] === 0) {
          this.edgeKey[h] = key;
          this.edgeChild[h] = next++;
        }
        node = this.edgeChild[h]!;
      }
      if (owner[node]! >= 0) dup(owner[node]!, i);
      owner[node] = i;
      value[node] = values[i]!;
    }
    this.value = value;
  }

  private slot(key: number): number {
    return (Math.imul(key, 0x9e3779b1) >>> 7) & this.mask;
  }

  /** The child of `node` by byte `c`, or -1. */
  child(node: number, c: number): number {
    const key = node * 256 + c + 1;
    const keys = this.edgeKey;
    for (let h = this.slot(key); ; h = (h + 1) & this.mask) {
      const k = keys[h]!;
      if (k === key) return this.edgeChild[h]!;
      if (k === 0) return -1;
    }
  }

  valueAt(node: number): number {
    return this.value[node]!;
  }

  /** The value of the byte string s[start, start + len), or -1. */
  get(s: string, start = 0, len = s.length - start): number {
    let node = 0;
    for (let k = start; k < start + len && node >= 0; k++) node = this.child(node, s.charCodeAt(k));
    return node >= 0 ? this.value[node]! : -1;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Normalizer (normalizer.cc).

/** The longest of a set of byte strings that starts `s` at `i` (SentencePiece's PrefixMatcher over user symbols). */
class PrefixMatcher {
  private readonly set = new Set<string>();
  private maxLen = 0;
  constructor(keys: Iterable<string>) {
    for (const k of keys) {
      this.set.add(k);
      this.maxLen = Math.max(this.maxLen, k.length);
    }
  }
  get empty(): boolean {
    return this.set.size === 0;
  }
  /** The length of the longest key at `i`, or 0 if none. */
  match(s: string, i: number): number {
    for (let n = Math.min(this.maxLen, s.length - i); n > 0; n--) if (this.set.has(s.substr(i, n))) return n;
    return 0;
  }
}

class Normalizer {
  private readonly trie?: Uint32Array;
  private readonly replacements?: Uint8Array;
  /** The NUL-terminated replacement at each offset of `replacements` met so far, as byte strings. */
  private readonly replacementCache = new Map<number, string>();

  constructor(
    private readonly spec: NormalizerSpec,
    private readonly treatWhitespaceAsSuffix: boolean,
    private readonly matcher: PrefixMatcher | undefined,
    file: string,
    what: string,
  ) {
    const blob = spec.precompiledCharsmap;
    if (blob.length === 0) return;
    if (blob.length <= 4) throw new SentencePieceError(`${what}.precompiled_charsmap is broken (${blob.length} bytes)`, file);
    const trieSize = new DataView(blob.buffer, blob.byteOffset, 4).getUint32(0, true);
    if (trieSize >= blob.length) throw new SentencePieceError(`${what}.precompiled_charsmap: trie size ${trieSize} exceeds the blob (${blob.length} bytes)`, file);
    if (trieSize % 4 !== 0 || trieSize < 4) throw new SentencePieceError(`${what}.precompiled_charsmap: trie size ${trieSize} is not a whole number of 4-byte units`, file);
    const units = new Uint32Array(trieSize / 4);
    const dv = new DataView(blob.buffer, blob.byteOffset + 4, trieSize);
    for (let k = 0; k < units.length; k++) units[k] = dv.getUint32(4 * k, true);
    this.trie = units;
    this.replacements = blob.subarray(4 + trieSize);
  }

  /** darts-clone's commonPrefixSearch, longest match only: [length, value] or [0, 0]. */
  private longestRule(s: string, i: number): [number, number] {
    const a = this.trie!;
    const offset = (u: number) => (u >>> 10) << ((u & (1 << 9)) >>> 6);
    let node = offset(a[0]!);
    let bestLen = 0;
    let bestValue = 0;
    for (let k = i; k < s.length; k++) {
      const c = s.charCodeAt(k);
      node = (node ^ c) >>> 0;
      if (node >= a.length) break;
      const unit = a[node]!;
      if ((unit & ((1 << 31) | 0xff)) >>> 0 !== c) break; // label
      node = (node ^ offset(unit)) >>> 0;
      if ((unit >>> 8) & 1) {
        if (node >= a.length) break;
        bestLen = k - i + 1;
        bestValue = a[node]! & 0x7fffffff;
      }
    }
    return [bestLen, bestValue];
  }

  /** NormalizePrefix: [normalized bytes of the prefix at `i`, bytes consumed]. */
  private prefix(s: string, i: number): [string, number] {
    if (this.matcher) {
      const n = this.matcher.match(s, i);
      if (n > 0) return [s.substr(i, n), n];
    }
    if (this.trie) {
      const [len, value] = this.longestRule(s, i);
      if (len > 0) {
        let out = this.replacementCache.get(value);
        if (out === undefined) {
          const r = this.replacements!;
          let end = value;
          while (end < r.length && r[end] !== 0) end++;
          this.replacementCache.set(value, (out = bytesToBin(r.subarray(Math.min(value, r.length), end))));
        }
        return [out, len];
      }
    }
    const n = validCharLen(s, i);
    return n === 0 ? [REPLACEMENT_CHAR, 1] : [s.substr(i, n), n];
  }

  /** Normalize: a byte string in, a byte string out. */
  normalize(input: string): string {
    if (input.length === 0) return "";
    const spec = this.spec;
    let i = 0;
    if (spec.removeExtraWhitespaces)
      while (i < input.length) {
        const [sp, n] = this.prefix(input, i);
        if (sp !== " ") break;
        i += n;
      }
    if (i >= input.length) return "";
    const ws = spec.escapeWhitespaces ? SPACE_SYMBOL : " ";
    let out = "";
    if (!this.treatWhitespaceAsSuffix && spec.addDummyPrefix) out += ws;
    let isPrevSpace = spec.removeExtraWhitespaces;
    while (i < input.length) {
      let [sp, n] = this.prefix(input, i);
      if (isPrevSpace) {
        let k = 0;
        while (k < sp.length && sp.charCodeAt(k) === 0x20) k++;
        sp = sp.slice(k);
      }
      if (sp.length > 0) {
        out += spec.escapeWhitespaces && sp.includes(" ") ? sp.replaceAll(" ", SPACE_SYMBOL) : sp;
        isPrevSpace = sp.endsWith(" ");
      }
      i += n;
      if (!spec.removeExtraWhitespaces) isPrevSpace = false;
    }
    if (spec.removeExtraWhitespaces) while (out.endsWith(ws)) out = out.slice(0, out.length - ws.length);
    if (this.treatWhitespaceAsSuffix && spec.addDummyPrefix) out += ws;
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The processor.

/** One encoded piece: its text and id. */
export interface EncodedPiece {
  piece: string;
  id: number;
}

type RawResult = [bytes: string, id: number][];

/** A loaded SentencePiece model: `SentencePieceProcessor.load(file)`. */
export class SentencePieceProcessor {
  readonly proto: ModelProto;
  readonly unkId: number;
  /** NORMAL, USER_DEFINED and UNUSED pieces (SentencePiece's pieces_, the trie it matches with). */
  private readonly trie: ByteTrie;
  private readonly reservedIds = new Map<string, number>(); // UNKNOWN, CONTROL, BYTE
  private readonly matcher: PrefixMatcher;
  private readonly normalizer: Normalizer;
  private readonly denormalizer?: Normalizer;
  private readonly minScore: number;
  private readonly maxScore: number;

  constructor(
    proto: ModelProto,
    readonly file: string,
  ) {
    this.proto = proto;
    const ts = proto.trainerSpec;
    let unk = -1;
    const userDefined: string[] = [];
    const byteFound = new Array<boolean>(256).fill(false);
    let minScore = 3.4028234663852886e38; // FLT_MAX
    let maxScore = 1.1754943508222875e-38; // FLT_MIN, as SentencePiece starts it
    const keys: string[] = [];
    const keyIds: number[] = [];
    proto.pieces.forEach((p, id) => {
      const key = proto.pieceBytes[id]!;
      const normal = p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED || p.type === PieceType.UNUSED;
      if (normal) (keys.push(key), keyIds.push(id));
      else {
        if (this.reservedIds.has(key)) throw new SentencePieceError(`piece ${id} ${JSON.stringify(p.piece)} is already defined (id ${this.reservedIds.get(key)})`, file);
        this.reservedIds.set(key, id);
      }
      if (p.type === PieceType.USER_DEFINED) userDefined.push(key);
      if (p.type === PieceType.UNKNOWN) {
        if (unk >= 0) throw new SentencePieceError(`unk is defined twice (ids ${unk} and ${id})`, file);
        unk = id;
      }
      if (p.type === PieceType.BYTE) {
        if (!ts.byteFallback) throw new SentencePieceError(`byte piece ${JSON.stringify(p.piece)} (id ${id}) is found although byte_fallback is false`, file);
        const b = pieceToByte(p.piece);
        if (b < 0) throw new SentencePieceError(`byte piece ${JSON.stringify(p.piece)} (id ${id}) is invalid`, file);
        byteFound[b] = true;
      }
      if (p.type === PieceType.NORMAL) {
        minScore = Math.min(minScore, p.score);
        maxScore = Math.max(maxScore, p.score);
      }
    });
    this.trie = new ByteTrie(keys, keyIds, (i, j) => {
      throw new SentencePieceError(`piece ${keyIds[j]} ${JSON.stringify(proto.pieces[keyIds[j]!]!.piece)} is already defined (id ${keyIds[i]})`, file);
    });
    if (unk < 0) throw new SentencePieceError("unk is not defined (no piece of type UNKNOWN)", file);
    if (ts.byteFallback && byteFound.includes(false)) throw new SentencePieceError("byte_fallback is true but the 256 byte pieces <0x00>..<0xFF> are not all there", file);
    this.unkId = unk;
    this.minScore = minScore;
    this.maxScore = maxScore;
    this.matcher = new PrefixMatcher(userDefined);
    const m = this.matcher.empty ? undefined : this.matcher;
    this.normalizer = new Normalizer(proto.normalizerSpec, ts.treatWhitespaceAsSuffix, m, file, "normalizer_spec");
    if (proto.denormalizerSpec) this.denormalizer = new Normalizer(proto.denormalizerSpec, false, undefined, file, "denormalizer_spec");
  }

  /** Reads and checks a `.model` file. */
  static load(file: string): SentencePieceProcessor {
    let buf: Uint8Array;
    try {
      buf = readFileSync(file);
    } catch (e) {
      throw new SentencePieceError(`cannot read the SentencePiece model: ${(e as Error).message}`, file);
    }
    return new SentencePieceProcessor(parseModelProto(buf, file), file);
  }

  get vocabSize(): number {
    return this.proto.pieces.length;
  }

  /** PieceToId: reserved pieces first, then the others; anything else is unk. */
  pieceToId(piece: string): number {
    return this.idOfBytes(toByteString(piece));
  }

  idToPiece(id: number): string {
    const p = this.proto.pieces[id];
    if (!p) throw new SentencePieceError(`id ${id} is out of range (vocabulary of ${this.vocabSize})`, this.file);
    return p.piece;
  }

  private type(id: number): number {
    return this.proto.pieces[id]?.type ?? 0;
  }
  isUnknown = (id: number): boolean => this.type(id) === PieceType.UNKNOWN;
  isControl = (id: number): boolean => this.type(id) === PieceType.CONTROL;
  isByte = (id: number): boolean => this.type(id) === PieceType.BYTE;
  isUnused = (id: number): boolean => this.type(id) === PieceType.UNUSED;
  isUserDefined = (id: number): boolean => this.type(id) === PieceType.USER_DEFINED;

  /** The normalized text (spaces as U+2581 when escape_whitespaces), as SentencePiece's normalizer gives it. */
  normalize(text: string): string {
    return fromByteString(this.normalizer.normalize(toByteString(text)));
  }

  private idOfBytes(key: string): number {
    const r = this.reservedIds.get(key);
    if (r !== undefined) return r;
    const id = this.trie.get(key);
    return id >= 0 ? id : this.unkId;
  }

  /** unigram_model.cc's EncodeOptimized. */
  private encodeUnigram(s: string): RawResult {
    const size = s.length;
    const unkScore = f32(this.minScore - 10);
    const bestScore = new Float64Array(size + 1);
    const startsAt = new Int32Array(size + 1).fill(-1);
    const bestId = new Int32Array(size + 1).fill(-1);
    let start = 0;
    while (start < size) {
      const here = bestScore[start]!;
      let hasSingle = false;
      const mblen = Math.min(oneCharLen(s.charCodeAt(start)), size - start);
      for (let end = start + 1, node = 0; end <= size; end++) {
        node = this.trie.child(node, s.charCodeAt(end - 1));
        if (node < 0) break;
        const id = this.trie.valueAt(node);
        if (id < 0 || this.isUnused(id)) continue;
        const length = end - start;
        // User-defined symbols: `length * max_score_ - 0.1` in double, added to the float path score in double.
        const cand = this.isUserDefined(id) ? f32(length * this.maxScore) - 0.1 + here : f32(this.proto.pieces[id]!.score + here);
        if (startsAt[end] === -1 || cand > bestScore[end]!) {
          bestScore[end] = f32(cand);
          startsAt[end] = start;
          bestId[end] = id;
        }
        if (!hasSingle && length === mblen) hasSingle = true;
      }
      if (!hasSingle) {
        const end = start + mblen;
        const cand = f32(unkScore + here);
        if (startsAt[end] === -1 || cand > bestScore[end]!) {
          bestScore[end] = cand;
          startsAt[end] = start;
          bestId[end] = this.unkId;
        }
      }
      start += mblen;
    }
    const out: RawResult = [];
    for (let end = size; end > 0; end = startsAt[end]!) out.push([s.slice(startsAt[end]!, end), bestId[end]!]);
    return out.reverse();
  }

  /** bpe_model.cc's Encode. */
  private encodeBpe(s: string): RawResult {
    interface Sym { prev: number; next: number; freeze: boolean; start: number; len: number }
    const symbols: Sym[] = [];
    for (let i = 0; i < s.length; ) {
      const u = this.matcher.match(s, i);
      const len = u > 0 ? u : Math.min(oneCharLen(s.charCodeAt(i)), s.length - i);
      const k = symbols.length;
      symbols.push({ prev: k - 1, next: i + len < s.length ? k + 1 : -1, freeze: u > 0, start: i, len });
      i += len;
    }
    if (symbols.length === 0) return [];
    // The agenda: a binary max-heap on (score, then smaller left).
    interface Pair { left: number; right: number; score: number; size: number }
    const heap: Pair[] = [];
    const above = (a: Pair, b: Pair) => a.score > b.score || (a.score === b.score && a.left < b.left);
    const push = (p: Pair) => {
      heap.push(p);
      for (let k = heap.length - 1; k > 0; ) {
        const parent = (k - 1) >> 1;
        if (!above(heap[k]!, heap[parent]!)) break;
        [heap[k], heap[parent]] = [heap[parent]!, heap[k]!];
        k = parent;
      }
    };
    const pop = (): Pair => {
      const top = heap[0]!;
      const last = heap.pop()!;
      if (heap.length > 0) {
        heap[0] = last;
        for (let k = 0; ; ) {
          const l = 2 * k + 1;
          const r = l + 1;
          let m = k;
          if (l < heap.length && above(heap[l]!, heap[m]!)) m = l;
          if (r < heap.length && above(heap[r]!, heap[m]!)) m = r;
          if (m === k) break;
          [heap[k], heap[m]] = [heap[m]!, heap[k]!];
          k = m;
        }
      }
      return top;
    };
    const revMerge = new Map<string, [string, string]>();
    const text = (k: number) => s.substr(symbols[k]!.start, symbols[k]!.len);
    const maybeAdd = (left: number, right: number) => {
      if (left === -1 || right === -1 || symbols[left]!.freeze || symbols[right]!.freeze) return;
      const size = symbols[left]!.len + symbols[right]!.len;
      const id = this.trie.get(s, symbols[left]!.start, size);
      if (id < 0) return;
      const piece = s.substr(symbols[left]!.start, size);
      push({ left, right, score: this.proto.pieces[id]!.score, size: piece.length });
      if (this.isUnused(id)) revMerge.set(piece, [text(left), text(right)]);
    };
    for (let k = 1; k < symbols.length; k++) maybeAdd(k - 1, k);
    while (heap.length > 0) {
      const top = pop();
      const L = symbols[top.left]!;
      const R = symbols[top.right]!;
      if (L.len === 0 || R.len === 0 || L.len + R.len !== top.size) continue;
      L.len += R.len;
      L.next = R.next;
      if (R.next >= 0) symbols[R.next]!.prev = top.left;
      R.len = 0;
      maybeAdd(L.prev, top.left);
      maybeAdd(top.left, L.next);
    }
    const out: RawResult = [];
    const resegment = (w: string) => {
      const id = this.idOfBytes(w);
      const split = this.isUnused(id) ? revMerge.get(w) : undefined;
      if (!split) {
        out.push([w, id]);
        return;
      }
      resegment(split[0]);
      resegment(split[1]);
    };
    for (let k = 0; k !== -1; k = symbols[k]!.next) resegment(text(k));
    return out;
  }

  /** char_model.cc's Encode. */
  private encodeChar(s: string): RawResult {
    const out: RawResult = [];
    for (let i = 0; i < s.length; ) {
      const u = this.matcher.match(s, i);
      const len = u > 0 ? u : Math.min(oneCharLen(s.charCodeAt(i)), s.length - i);
      const w = s.substr(i, len);
      out.push([w, this.idOfBytes(w)]);
      i += len;
    }
    return out;
  }

  /** word_model.cc's Encode: SplitIntoWords, each word looked up whole. */
  private encodeWord(s: string): RawResult {
    const words: string[] = [];
    const suffix = this.proto.trainerSpec.treatWhitespaceAsSuffix;
    const wsOnly = this.proto.trainerSpec.allowWhitespaceOnlyPieces;
    let inWs = false;
    for (let i = 0; i < s.length; ) {
      const len = Math.min(oneCharLen(s.charCodeAt(i)), s.length - i);
      const ch = s.substr(i, len);
      const isWs = ch === SPACE_SYMBOL;
      if (suffix) {
        // Spaces close a word (kept at its end).
        if (i === 0) words.push("");
        if (isWs) inWs = true;
        else if (inWs) {
          if (wsOnly) words.push("");
          inWs = false;
        }
        words[words.length - 1] += ch;
        if (i + len < s.length && isWs && !wsOnly) words.push("");
      } else {
        // Spaces open a word (a run of them is one word with allow_whitespace_only_pieces).
        if (i === 0 || (isWs && (!inWs || !wsOnly))) {
          words.push("");
          inWs = true;
        }
        if (inWs && !isWs) inWs = false;
        words[words.length - 1] += ch;
      }
      i += len;
    }
    return words.map((w) => [w, this.idOfBytes(w)]);
  }

  /** Encode: the pieces and ids of `text` (EncodeAsPieces / EncodeAsIds). */
  encode(text: string): EncodedPiece[] {
    const normalized = this.normalizer.normalize(toByteString(text));
    if (normalized.length === 0) return [];
    const mt = this.proto.trainerSpec.modelType;
    const raw =
      mt === ModelType.UNIGRAM ? this.encodeUnigram(normalized) : mt === ModelType.BPE ? this.encodeBpe(normalized) : mt === ModelType.CHAR ? this.encodeChar(normalized) : this.encodeWord(normalized);
    // PopulateSentencePieceText: byte fallback, or consecutive unknowns merged into one piece.
    const out: { bytes: string; id: number }[] = [];
    const byteFallback = this.proto.trainerSpec.byteFallback;
    let prevUnk = false;
    for (const [w, id] of raw) {
      const unk = this.isUnknown(id);
      if (unk && byteFallback) {
        for (let k = 0; k < w.length; k++) {
          const piece = byteToPiece(w.charCodeAt(k));
          out.push({ bytes: piece, id: this.idOfBytes(piece) });
        }
      } else if (unk && prevUnk && out.length > 0) out[out.length - 1]!.bytes += w;
      else out.push({ bytes: w, id });
      prevUnk = unk;
    }
    return out.map((p) => ({ piece: fromByteString(p.bytes), id: p.id }));
  }

  encodeAsPieces(text: string): string[] {
    return this.encode(text).map((p) => p.piece);
  }

  encodeAsIds(text: string): number[] {
    return this.encode(text).map((p) => p.id);
  }

  /** DecodePieces: pieces back to text (control pieces vanish, <unk> is the unk surface, <0xNN> runs are bytes). */
  decodePieces(pieces: readonly string[]): string {
    const ids = pieces.map((p) => this.pieceToId(p));
    return this.decode(pieces.map(toByteString), ids);
  }

  /** DecodeIds: ids to pieces, then DecodePieces. */
  decodeIds(ids: readonly number[]): string {
    return this.decodePieces(ids.map((id) => this.idToPiece(id)));
  }

  private decode(pieces: string[], ids: number[]): string {
    const ts = this.proto.trainerSpec;
    const unkSurface = toByteString(ts.unkSurface);
    const ns = this.proto.normalizerSpec;
    // One piece's text, and whether it consumed a leading "▁" at the beginning of the text (the dummy prefix).
    const one = (piece: string, id: number, bos: boolean): [string, boolean] => {
      if (this.isControl(id)) return ["", false];
      if (this.isUnknown(id)) return [this.proto.pieceBytes[id] === piece ? unkSurface : piece, false];
      let consumed = false;
      if (bos && (ns.addDummyPrefix || ns.removeExtraWhitespaces) && piece.startsWith(SPACE_SYMBOL)) {
        piece = piece.slice(SPACE_SYMBOL.length);
        // Without remove_extra_whitespaces only the one dummy "▁" is dropped; with it, every leading one.
        consumed = !ns.removeExtraWhitespaces;
      }
      return [piece.replaceAll(SPACE_SYMBOL, " "), consumed];
    };
    let text = "";
    let bytes = "";
    const flush = () => {
      // Byte pieces: each valid UTF-8 character, and U+FFFD for each byte that starts none.
      for (let i = 0; i < bytes.length; ) {
        const n = validCharLen(bytes, i);
        if (n === 0) ((text += REPLACEMENT_CHAR), i++);
        else ((text += bytes.substr(i, n)), (i += n));
      }
      bytes = "";
    };
    let bos = true;
    let bosSeen = false;
    pieces.forEach((p, k) => {
      const id = ids[k]!;
      if (this.isByte(id)) bytes += String.fromCharCode(pieceToByte(fromByteString(p)));
      else {
        flush();
        if (bosSeen || text.length > 0) bos = false;
        const [t, seen] = one(p, id, bos);
        text += t;
        bosSeen = seen;
      }
    });
    flush();
    if (this.denormalizer) text = this.denormalizer.normalize(text);
    return fromByteString(text);
  }
}

/** `<0xNN>` → NN, or -1. */
export function pieceToByte(piece: string): number {
  const m = /^<0x([0-9A-F]{2})>$/.exec(piece);
  return m ? parseInt(m[1]!, 16) : -1;
}
const byteToPiece = (b: number): string => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;

const loaded = new Map<string, SentencePieceProcessor>();
/** `SentencePieceProcessor.load(file)`, once per path per process. */
export function loadSentencePiece(file: string): SentencePieceProcessor {
  let sp = loaded.get(file);
  if (!sp) loaded.set(file, (sp = SentencePieceProcessor.load(file)));
  return sp;
}

/**
 * The corpus shard format (`*.axs`): tokenized, span-annotated examples that a loader reads in slices, seeks
 * into by record number, and checks as it goes. Written by `alignx pack`, checked by `alignx verify`, read by
 * the loader. All integers little-endian.
 *
 *   [0, 64)          header: magic "ALXSHARD", version, token width (2 = u16 ids, 4 = u32), record count,
 *                    block count, meta length and CRC-32, index offset/length/CRC-32, header CRC-32 (see HEADER)
 *   [64, 64+M)       meta: one msgpack map {tokenizer_hash, vocab_size, languages, fields, created_by}
 *   blocks           each 8-aligned, about `blockBytes` long (default 1 MiB):
 *                      u32 count, u32 0, then count × (u32 start, u32 length) relative to the block,
 *                      then the records. A block is checked as a whole against its CRC-32 in the index.
 *   index            per block 32 bytes: u64 offset, u32 length, u32 count, u64 first record, u32 CRC-32, u32 0
 *
 * A record is one msgpackr record (a shared structure with the fields of RECORD_FIELDS, so no field names are
 * repeated per record): `ids` is a msgpack bin holding the token ids as raw LE u16/u32 bytes, placed by the
 * writer so that they start 4-aligned within the block: the reader returns them as a Uint16Array/Uint32Array
 * VIEW of the block buffer, without copying. `spans` is a bin of one byte per token (AlignX's src_tgt_index:
 * 1 source sentence, 2 target sentence, 0 anything else) or nil; `src_lang` / `tgt_lang` index the meta's
 * language table (-1: none); `task` is TASKS' index; `prompt_len` counts the tokens before the response.
 *
 * Reading record N touches the header, the index and N's block only. Every inconsistency (magic, version,
 * CRCs, nonzero padding after the meta, offsets outside their block or file, a record longer or shorter than its
 * declared length, a field of the wrong type, a token id outside the vocabulary) is a ShardError naming the file,
 * the byte offset and, where there is one, the record number. Every byte of a shard is covered by a CRC or by
 * such a check, so a damaged shard never reads back as different records.
 *
 * A shard holds at least one record: the writer refuses to finish an empty one and the reader rejects a
 * 0-record shard (a pack never writes one; an empty file is far likelier a pack that went wrong). The writer
 * refuses any record the reader would reject (an id outside the vocabulary, a span value above 2, ...), so a
 * bad record can never be written, let alone silently narrowed to a 16-bit id.
 */
import { Packr, Unpackr } from "msgpackr";

export const SHARD_MAGIC = "ALXSHARD";
export const SHARD_VERSION = 1;
export const SHARD_EXT = ".axs";
export const HEADER_BYTES = 64;
const INDEX_ENTRY = 32;
export const DEFAULT_BLOCK_BYTES = 1 << 20;

/** What an example is for. The index is what a record stores. */
export const TASKS = ["pretrain", "translation", "general"] as const;
export type Task = (typeof TASKS)[number];

/** The record structure, in this order (ids first: its bin payload is what the writer aligns). */
export const RECORD_FIELDS = ["ids", "spans", "src_lang", "tgt_lang", "task", "prompt_len"] as const;

/** Header field offsets. */
const H = { magic: 0, version: 8, width: 12, records: 16, blocks: 24, metaLen: 28, indexOff: 32, indexLen: 40, indexCrc: 44, metaCrc: 48, crc: 60 } as const;

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error("shard.ts: big-endian hosts are not supported (token ids are stored as little-endian views)");

export interface ShardMeta {
  /** HfTokenizer.hash of the tokenizer that produced the ids. */
  tokenizerHash: string;
  vocabSize: number;
  /** Language id → canonical code. */
  languages: string[];
  createdBy: string;
}

/** A record as the reader returns it; `ids` and `spans` are views of the block buffer. */
export interface ShardRecord {
  ids: Uint16Array | Uint32Array;
  spans: Uint8Array | null;
  srcLang: number;
  tgtLang: number;
  task: Task;
  promptLen: number;
}

/** A record to write; `ids` may be any array of integers. */
export interface RecordInput {
  ids: ArrayLike<number>;
  spans: Uint8Array | null;
  srcLang: number;
  tgtLang: number;
  task: Task;
  promptLen: number;
}

/** Damaged or foreign shard data: the message starts with the file, then the byte offset and record. */
export class ShardError extends Error {
  override name = "ShardError";
  exitCode = 1;
  constructor(
    readonly reason: string,
    readonly file: string,
    readonly byte?: number,
    readonly record?: number,
  ) {
    const at = [byte !== undefined ? `byte ${byte}` : "", record !== undefined ? `record ${record}` : ""].filter(Boolean).join(", ");
    super(`${file}${at ? ` (${at})` : ""}: ${reason}`);
  }
}

/** The token width that holds every id of a vocabulary. */
export function tokenWidth(vocabSize: number): 2 | 4 {
  return vocabSize <= 0x10000 ? 2 : 4;
}

const crc32 = (b: Uint8Array): number => Bun.hash.crc32(b) >>> 0;
const align = (n: number, a: number): number => Math.ceil(n / a) * a;
const recordPackr = () => new Packr({ structures: [[...RECORD_FIELDS]], useRecords: true, maxSharedStructures: 1, shouldShareStructure: () => false } as ConstructorParameters<typeof Packr>[0]);
const recordUnpackr = () => new Unpackr({ structures: [[...RECORD_FIELDS]], useRecords: true } as ConstructorParameters<typeof Unpackr>[0]);
const plain = new Packr({ useRecords: false });
const plainUn = new Unpackr({ useRecords: false });

/** Bytes of a msgpack bin header for a payload of n bytes. */
const binHeader = (n: number): number => (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5);

/**
 * Builds one shard in memory (it is bounded: the packer starts a new shard past its size limit).
 * add() records in order, then finish() for the file's bytes.
 */
export class ShardWriter {
  readonly width: 2 | 4;
  private readonly packr = recordPackr();
  private readonly meta: Uint8Array;
  private readonly blocks: { bytes: Uint8Array; count: number; first: number }[] = [];
  private open: Uint8Array[] = [];
  private openBytes = 0;
  private blocksBytes = 0;
  private records = 0;

  constructor(
    private readonly info: ShardMeta,
    private readonly blockBytes = DEFAULT_BLOCK_BYTES,
  ) {
    if (!validVocabSize(info.vocabSize)) throw new Error(`ShardWriter: vocabSize ${info.vocabSize} is not an integer in [1, 2^32]`);
    this.width = tokenWidth(info.vocabSize);
    this.meta = plain.pack({
      tokenizer_hash: info.tokenizerHash,
      vocab_size: info.vocabSize,
      languages: info.languages,
      fields: [...RECORD_FIELDS],
      created_by: info.createdBy,
    });
    this.meta = Uint8Array.prototype.slice.call(this.meta);
  }

  get recordCount(): number {
    return this.records;
  }

  /** At most the file's size if finished now (the open block's alignment padding is counted at its largest). */
  get byteLength(): number {
    return align(HEADER_BYTES + this.meta.length, 8) + this.blocksBytes + this.openBlockLength() + (this.blocks.length + 1) * INDEX_ENTRY;
  }

  /** Append a record; throws (an Error: the caller's bug, not damaged data) on one the reader would reject. */
  add(r: RecordInput): void {
    const problem =
      r.spans !== null && !(r.spans instanceof Uint8Array)
        ? "spans must be a Uint8Array or null"
        : recordProblem(r.ids, r.spans, r.srcLang, r.tgtLang, TASKS.indexOf(r.task), r.promptLen, this.info.vocabSize, this.info.languages.length);
    if (problem) throw new Error(`ShardWriter.add (record ${this.records}): ${problem}`);
    const ids = this.width === 2 ? Uint16Array.from(r.ids) : Uint32Array.from(r.ids);
    const packed = this.packr.pack({
      ids: new Uint8Array(ids.buffer),
      spans: r.spans,
      src_lang: r.srcLang,
      tgt_lang: r.tgtLang,
      task: TASKS.indexOf(r.task),
      prompt_len: r.promptLen,
    });
    // Copy: msgpackr reuses its output buffer. Layout check: record marker, then the ids bin.
    const rec = Uint8Array.prototype.slice.call(packed) as Uint8Array;
    if (idsByteLength(rec) !== ids.byteLength) throw new Error("ShardWriter: unexpected msgpackr record layout (ids is not the first field's bin)");
    if (this.open.length > 0 && this.openBlockLength(rec.length + 3) > this.blockBytes) this.closeBlock();
    // Positions (ids payload 4-aligned within the block) are fixed when the block closes; up to 3 bytes of
    // padding go before each record.
    this.open.push(rec);
    this.openBytes += rec.length + 3;
    this.records++;
  }

  /** The open block's length if closed now, plus `extra` bytes. */
  private openBlockLength(extra = 0): number {
    const count = this.open.length + (extra ? 1 : 0);
    return count === 0 ? 0 : align(8 + 8 * count + this.openBytes + extra, 8);
  }

  private closeBlock(): void {
    const count = this.open.length;
    if (count === 0) return;
    let pos = 8 + 8 * count;
    const starts: number[] = [];
    for (let i = 0; i < count; i++) {
      const rec = this.open[i]!;
      const off = 1 + binHeader(idsByteLength(rec));
      const start = align(pos + off, 4) - off;
      starts.push(start);
      pos = start + rec.length;
    }
    const bytes = new Uint8Array(align(pos, 8));
    const dv = new DataView(bytes.buffer);
    dv.setUint32(0, count, true);
    for (let i = 0; i < count; i++) {
      dv.setUint32(8 + 8 * i, starts[i]!, true);
      dv.setUint32(12 + 8 * i, this.open[i]!.length, true);
      bytes.set(this.open[i]!, starts[i]!);
    }
    this.blocks.push({ bytes, count, first: this.records - count });
    this.blocksBytes += bytes.length;
    this.open = [];
    this.openBytes = 0;
  }

  /** The whole file. The writer is spent afterwards. Throws when no record was added (see the module comment). */
  finish(): Uint8Array {
    if (this.records === 0) throw new Error("ShardWriter.finish: a shard needs at least one record");
    this.closeBlock();
    const metaEnd = HEADER_BYTES + this.meta.length;
    const firstBlock = align(metaEnd, 8);
    const indexOff = firstBlock + this.blocksBytes;
    const indexLen = this.blocks.length * INDEX_ENTRY;
    const out = new Uint8Array(indexOff + indexLen);
    const dv = new DataView(out.buffer);
    out.set(this.meta, HEADER_BYTES);
    let at = firstBlock;
    this.blocks.forEach((b, i) => {
      out.set(b.bytes, at);
      const e = indexOff + i * INDEX_ENTRY;
      dv.setBigUint64(e, BigInt(at), true);
      dv.setUint32(e + 8, b.bytes.length, true);
      dv.setUint32(e + 12, b.count, true);
      dv.setBigUint64(e + 16, BigInt(b.first), true);
      dv.setUint32(e + 24, crc32(b.bytes), true);
      at += b.bytes.length;
    });
    new TextEncoder().encodeInto(SHARD_MAGIC, out.subarray(0, 8));
    dv.setUint32(H.version, SHARD_VERSION, true);
    dv.setUint32(H.width, this.width, true);
    dv.setBigUint64(H.records, BigInt(this.records), true);
    dv.setUint32(H.blocks, this.blocks.length, true);
    dv.setUint32(H.metaLen, this.meta.length, true);
    dv.setBigUint64(H.indexOff, BigInt(indexOff), true);
    dv.setUint32(H.indexLen, indexLen, true);
    dv.setUint32(H.indexCrc, crc32(out.subarray(indexOff, indexOff + indexLen)), true);
    dv.setUint32(H.metaCrc, crc32(this.meta), true);
    dv.setUint32(H.crc, crc32(out.subarray(0, H.crc)), true);
    return out;
  }
}

/** The ids bin's payload length of a packed record (the byte after the record marker is the bin header). */
function idsByteLength(rec: Uint8Array): number {
  const t = rec[1];
  if (t === 0xc4) return rec[2]!;
  if (t === 0xc5) return (rec[2]! << 8) | rec[3]!;
  if (t === 0xc6) return ((rec[2]! << 24) >>> 0) + (rec[3]! << 16) + (rec[4]! << 8) + rec[5]!;
  throw new Error("ShardWriter: unexpected msgpackr record layout (ids is not a bin)");
}

interface BlockEntry {
  offset: number;
  length: number;
  count: number;
  first: number;
  crc: number;
}

/** One block, read and checked: records by index within the block. */
export class ShardBlock {
  private readonly dv: DataView;
  private readonly unpackr = recordUnpackr();
  constructor(
    private readonly shard: ShardReader,
    readonly index: number,
    /** First record number of the block. */
    readonly first: number,
    readonly count: number,
    private readonly bytes: Uint8Array,
    /** File offset of the block, for messages. */
    private readonly offset: number,
  ) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Record `first + i`. */
  record(i: number): ShardRecord {
    if (!Number.isInteger(i) || i < 0 || i >= this.count) throw new RangeError(`${this.shard.path}: record ${i} of block ${this.index} out of range (${this.count} records)`);
    const n = this.first + i;
    const file = this.shard.path;
    const table = 8 + 8 * i;
    const start = this.dv.getUint32(table, true);
    const length = this.dv.getUint32(table + 4, true);
    const at = this.offset + start;
    if (start < 8 + 8 * this.count || start + length > this.bytes.length || length === 0)
      throw new ShardError(`record range [${start}, ${start + length}) lies outside its block's data (block ${this.index}, ${this.bytes.length} bytes)`, file, this.offset + table, n);
    let o: Record<string, unknown>;
    try {
      o = this.unpackr.unpack(this.bytes.subarray(start, start + length)) as Record<string, unknown>;
    } catch (e) {
      // msgpackr marks a read past the end `incomplete`; data left over is "Data read, but end of buffer not reached".
      const { message, incomplete } = e as Error & { incomplete?: boolean };
      const why = incomplete
        ? `the record is longer than its declared ${length} bytes`
        : /end of buffer not reached/.test(message)
          ? `the record ends before its declared ${length} bytes`
          : `not a msgpack record: ${message}`;
      throw new ShardError(why, file, at, n);
    }
    return checkRecord(o, this.shard, at, n);
  }
}

function checkRecord(o: Record<string, unknown>, s: ShardReader, at: number, n: number): ShardRecord {
  const bad = (why: string) => new ShardError(why, s.path, at, n);
  if (o === null || typeof o !== "object" || !(o.ids instanceof Uint8Array)) throw bad("not a record of this format (no ids bytes)");
  const raw = o.ids;
  if (raw.byteLength === 0 || raw.byteLength % s.width !== 0) throw bad(`ids holds ${raw.byteLength} bytes, not a whole number of ${s.width}-byte ids`);
  if (raw.byteOffset % 4 !== 0) throw bad("ids are not 4-aligned in the block (not written by this format's writer)");
  const ids = s.width === 2 ? new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2) : new Uint32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const spans = o.spans ?? null;
  if (spans !== null && !(spans instanceof Uint8Array)) throw bad(`spans must be ${ids.length} bytes (one per token) or nil`);
  const problem = recordProblem(ids, spans, o.src_lang, o.tgt_lang, o.task, o.prompt_len, s.meta.vocabSize, s.meta.languages.length);
  if (problem) throw bad(problem);
  return { ids, spans, srcLang: o.src_lang as number, tgtLang: o.tgt_lang as number, task: TASKS[o.task as number]!, promptLen: o.prompt_len as number };
}

const isInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);
const validVocabSize = (v: unknown): v is number => isInt(v) && v >= 1 && v <= 2 ** 32;

/**
 * What makes a record's values invalid, or null: the rules the writer enforces (refusing the record) and the
 * reader checks (a ShardError). `task` is TASKS' index.
 */
function recordProblem(ids: ArrayLike<number>, spans: Uint8Array | null, srcLang: unknown, tgtLang: unknown, task: unknown, promptLen: unknown, vocabSize: number, languages: number): string | null {
  const n = ids.length;
  if (n === 0) return "a record needs at least one token";
  for (let t = 0; t < n; t++) {
    const v = ids[t]!;
    if (!(v >= 0 && v < vocabSize && Number.isInteger(v))) return `token ${t} has id ${v}, outside the vocabulary (${vocabSize})`;
  }
  if (spans !== null) {
    if (spans.length !== n) return `spans has ${spans.length} entries for ${n} tokens (one per token)`;
    for (let t = 0; t < n; t++) if (spans[t]! > 2) return `spans[${t}] = ${spans[t]}, not 0, 1 or 2`;
  }
  for (const [k, v] of [["src_lang", srcLang], ["tgt_lang", tgtLang]] as const)
    if (!isInt(v) || v < -1 || v >= languages) return `${k} = ${String(v)} is not -1 or a language id below ${languages}`;
  if (!isInt(task) || TASKS[task] === undefined) return `task = ${String(task)} is not one of 0..${TASKS.length - 1} (${TASKS.join(", ")})`;
  if (!isInt(promptLen) || promptLen < 0 || promptLen > n) return `prompt_len = ${String(promptLen)} is not in [0, ${n}]`;
  return null;
}

/** Random access to one shard: open() reads and checks the header, meta and index; blocks are read on demand. */
export class ShardReader {
  private constructor(
    readonly path: string,
    readonly size: number,
    readonly width: 2 | 4,
    readonly recordCount: number,
    readonly meta: ShardMeta,
    private readonly index: BlockEntry[],
  ) {}

  get blockCount(): number {
    return this.index.length;
  }

  /** Open and check a shard. `expect` refuses a shard of another tokenizer (or language table). */
  static async open(path: string, expect: { tokenizerHash?: string; languages?: readonly string[] } = {}): Promise<ShardReader> {
    const f = Bun.file(path);
    let size: number;
    try {
      const st = await f.stat();
      if (st.isDirectory()) throw new ShardError("is a directory, not a shard file", path);
      size = st.size;
    } catch (e) {
      if (e instanceof ShardError) throw e;
      throw new ShardError(`cannot be read: ${(e as Error).message}`, path);
    }
    const err = (why: string, byte?: number) => new ShardError(why, path, byte);
    if (size === 0) throw err("is empty (0 bytes): not a shard", 0);
    if (size < HEADER_BYTES) throw err(`is truncated: ${size} bytes, shorter than the ${HEADER_BYTES}-byte header`, size);
    const head = await readSlice(path, 0, HEADER_BYTES);
    const dv = new DataView(head.buffer, head.byteOffset, HEADER_BYTES);
    const magic = new TextDecoder().decode(head.subarray(0, 8));
    if (magic !== SHARD_MAGIC) throw err(`not an alignx shard: magic ${JSON.stringify(magic)}, expected ${JSON.stringify(SHARD_MAGIC)}`, 0);
    const version = dv.getUint32(H.version, true);
    if (version !== SHARD_VERSION) throw err(`format version ${version}, this alignx reads version ${SHARD_VERSION}`, H.version);
    if (crc32(head.subarray(0, H.crc)) !== dv.getUint32(H.crc, true)) throw err("header checksum mismatch: the header is damaged", 0);
    const width = dv.getUint32(H.width, true);
    if (width !== 2 && width !== 4) throw err(`token width ${width}, expected 2 or 4`, H.width);
    const records = Number(dv.getBigUint64(H.records, true));
    const blocks = dv.getUint32(H.blocks, true);
    const metaLen = dv.getUint32(H.metaLen, true);
    const indexOff = Number(dv.getBigUint64(H.indexOff, true));
    const indexLen = dv.getUint32(H.indexLen, true);
    if (records === 0) throw err("holds no records (a shard has at least one)", H.records);
    if (indexLen !== blocks * INDEX_ENTRY) throw err(`index length ${indexLen} does not hold ${blocks} blocks`, H.indexLen);
    const end = indexOff + indexLen;
    if (end > size) throw err(`is truncated: ${size} bytes, but its index ends at byte ${end}`, size);
    if (end < size) throw err(`has ${size - end} bytes after its index (ends at byte ${end})`, end);
    if (HEADER_BYTES + metaLen > indexOff) throw err(`meta (${metaLen} bytes) overlaps the blocks`, H.metaLen);
    const metaEnd = HEADER_BYTES + metaLen;
    const metaAndPad = await readSlice(path, HEADER_BYTES, Math.min(align(metaEnd, 8), indexOff));
    const metaBytes = metaAndPad.subarray(0, metaLen);
    if (crc32(metaBytes) !== dv.getUint32(H.metaCrc, true)) throw err("meta checksum mismatch: the meta is damaged", HEADER_BYTES);
    const pad = metaAndPad.subarray(metaLen).findIndex((b) => b !== 0);
    if (pad >= 0) throw err("nonzero padding after the meta: the file is damaged", metaEnd + pad);
    let m: Record<string, unknown>;
    try {
      m = plainUn.unpack(metaBytes) as Record<string, unknown>;
    } catch (e) {
      throw err(`meta is not msgpack: ${(e as Error).message}`, HEADER_BYTES);
    }
    const fields = m?.fields;
    if (!Array.isArray(fields) || fields.join(",") !== RECORD_FIELDS.join(","))
      throw err(`meta: record fields ${JSON.stringify(fields)} differ from this format's ${JSON.stringify(RECORD_FIELDS)}`, HEADER_BYTES);
    if (typeof m.tokenizer_hash !== "string" || !validVocabSize(m.vocab_size) || !Array.isArray(m.languages) || !m.languages.every((l) => typeof l === "string"))
      throw err("meta: tokenizer_hash, vocab_size or languages missing or of the wrong type", HEADER_BYTES);
    if (tokenWidth(m.vocab_size) > width) throw err(`a vocabulary of ${m.vocab_size} does not fit ${width}-byte ids`, H.width);
    const meta: ShardMeta = { tokenizerHash: m.tokenizer_hash, vocabSize: m.vocab_size, languages: m.languages as string[], createdBy: String(m.created_by ?? "") };
    if (expect.tokenizerHash !== undefined && expect.tokenizerHash !== meta.tokenizerHash)
      throw err(`packed with another tokenizer (hash ${meta.tokenizerHash.slice(0, 12)}…, expected ${expect.tokenizerHash.slice(0, 12)}…): pack the corpus again with this tokenizer`);
    if (expect.languages !== undefined && expect.languages.join(",") !== meta.languages.join(","))
      throw err(`language table [${meta.languages.join(", ")}] differs from the manifest's [${expect.languages.join(", ")}]`, HEADER_BYTES);
    const ix = await readSlice(path, indexOff, end);
    if (crc32(ix) !== dv.getUint32(H.indexCrc, true)) throw err("index checksum mismatch: the block index is damaged", indexOff);
    const idv = new DataView(ix.buffer, ix.byteOffset, ix.byteLength);
    const index: BlockEntry[] = [];
    let next = 0, pos = align(HEADER_BYTES + metaLen, 8);
    for (let b = 0; b < blocks; b++) {
      const e = b * INDEX_ENTRY;
      const entry: BlockEntry = {
        offset: Number(idv.getBigUint64(e, true)),
        length: idv.getUint32(e + 8, true),
        count: idv.getUint32(e + 12, true),
        first: Number(idv.getBigUint64(e + 16, true)),
        crc: idv.getUint32(e + 24, true),
      };
      if (entry.offset !== pos || entry.first !== next || entry.count === 0 || entry.length < 8 + 8 * entry.count || entry.offset + entry.length > indexOff)
        throw err(`block ${b}'s index entry (offset ${entry.offset}, ${entry.length} bytes, records ${entry.first}..${entry.first + entry.count - 1}) does not follow block ${b - 1}`, indexOff + e);
      index.push(entry);
      pos += entry.length;
      next += entry.count;
    }
    if (next !== records) throw err(`the header declares ${records} records, the blocks hold ${next}`, H.records);
    if (pos !== indexOff) throw err(`the blocks end at byte ${pos}, the index starts at ${indexOff}`, H.indexOff);
    return new ShardReader(path, size, width, records, meta, index);
  }

  /** The block holding record `n`: its index. */
  blockOf(n: number): number {
    if (!Number.isInteger(n) || n < 0 || n >= this.recordCount) throw new RangeError(`${this.path}: record ${n} out of range (${this.recordCount} records)`);
    let lo = 0, hi = this.index.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.index[mid]!.first <= n) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** First record number and count of block `b`. */
  blockRange(b: number): { first: number; count: number } {
    const e = this.index[b]!;
    return { first: e.first, count: e.count };
  }

  /** Read block `b` (one slice of the file) and check its CRC and record table. */
  async readBlock(b: number): Promise<ShardBlock> {
    const e = this.index[b];
    if (!e) throw new RangeError(`${this.path}: block ${b} out of range (${this.index.length} blocks)`);
    const bytes = await readSlice(this.path, e.offset, e.offset + e.length);
    if (bytes.length !== e.length) throw new ShardError(`is truncated: block ${b} should be ${e.length} bytes, read ${bytes.length}`, this.path, e.offset + bytes.length, e.first);
    if (crc32(bytes) !== e.crc) throw new ShardError(`block ${b} checksum mismatch (records ${e.first}..${e.first + e.count - 1}): the data is damaged`, this.path, e.offset, e.first);
    const count = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
    if (count !== e.count) throw new ShardError(`block ${b} holds ${count} records, its index entry says ${e.count}`, this.path, e.offset, e.first);
    return new ShardBlock(this, b, e.first, e.count, bytes, e.offset);
  }

  /** Record `n` (reads its block). */
  async record(n: number): Promise<ShardRecord> {
    const b = this.blockOf(n);
    const block = await this.readBlock(b);
    return block.record(n - block.first);
  }

  /** Every record from `from` on, block by block. */
  async *records(from = 0): AsyncGenerator<ShardRecord> {
    if (from >= this.recordCount) return;
    for (let b = this.blockOf(from); b < this.index.length; b++) {
      const block = await this.readBlock(b);
      for (let i = Math.max(0, from - block.first); i < block.count; i++) yield block.record(i);
    }
  }
}

/** Bytes [start, end) of a file, in a buffer of their own (so views into it are aligned to its start). */
async function readSlice(path: string, start: number, end: number): Promise<Uint8Array> {
  try {
    return new Uint8Array(await Bun.file(path).slice(start, end).arrayBuffer());
  } catch (e) {
    throw new ShardError(`cannot be read: ${(e as Error).message}`, path, start);
  }
}

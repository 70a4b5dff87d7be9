/**
 * The safetensors format, read and written by hand (https://github.com/huggingface/safetensors):
 *
 *   bytes 0..8      N, the header length, unsigned 64-bit little-endian
 *   bytes 8..8+N    a UTF-8 JSON object: { NAME: {dtype, shape, data_offsets: [begin, end]}, ...,
 *                   "__metadata__"?: {string: string} }, starting with "{", maybe padded with spaces
 *   bytes 8+N..     the data region; a tensor's bytes are data region [begin, end), row-major, little-endian
 *
 * Reading is lazy: `openSafetensors` reads the 8-byte length and the header through a file handle and
 * checks every entry, and `readTensor` reads one tensor's bytes at its offset, so loading a checkpoint
 * never holds more than the tensor at hand besides what the caller keeps. No descriptor stays open between
 * calls (a sharded 70B checkpoint has dozens of files); each read reopens the file and checks that it is
 * still the one whose header was read (device, inode, size, mtime), so a checkpoint replaced while open
 * fails clearly instead of yielding bytes from the wrong offsets. Every check fails with a
 * CheckpointError naming the file, the byte offset and the tensor, before anything is allocated from an
 * unchecked size: header length ≤ 100 MB and ≤ file size - 8; the header is UTF-8 JSON, an object, with no
 * key given twice at any depth (a duplicate tensor name is named as such); each entry has a known dtype, a
 * shape of integers ≥ 0, data_offsets within the data region with end - begin = elements × dtype size; and,
 * as the Rust crate requires, the tensors sorted by offsets tile the data region exactly: no overlap, no
 * gap, no byte after the last tensor (header order is free; a zero-size tensor sits at a boundary).
 *
 * Writing (`writeSafetensors`) produces what the Python library writes: tensors laid out by dtype alignment
 * (larger element sizes first, the Rust crate's dtype order) and by name within a dtype, the header in the
 * same order with "__metadata__" first, compact JSON padded with spaces to a multiple of 8, no gaps; the
 * file is written atomically (temp file + rename). Data may be given lazily (a function per tensor), so a
 * checkpoint can be written one tensor at a time.
 */
import type { Stats } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import type { Gpu } from "../gpu/index.ts";
import { Tensor } from "../tensor/index.ts";
import { writeAll, writeFileAtomic } from "./atomic.ts";
import { CheckpointError } from "./errors.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./half.ts";

/** Element size and the Rust crate's enum order (the writer lays tensors out by descending order). */
export const ST_DTYPES = {
  BOOL: { bytes: 1, order: 0 },
  U8: { bytes: 1, order: 4 },
  I8: { bytes: 1, order: 5 },
  F8_E5M2: { bytes: 1, order: 6 },
  F8_E4M3: { bytes: 1, order: 7 },
  F8_E8M0: { bytes: 1, order: 8 },
  I16: { bytes: 2, order: 9 },
  U16: { bytes: 2, order: 10 },
  F16: { bytes: 2, order: 11 },
  BF16: { bytes: 2, order: 12 },
  I32: { bytes: 4, order: 13 },
  U32: { bytes: 4, order: 14 },
  F32: { bytes: 4, order: 15 },
  F64: { bytes: 8, order: 17 },
  I64: { bytes: 8, order: 18 },
  U64: { bytes: 8, order: 19 },
} as const;

export type StDType = keyof typeof ST_DTYPES;

export function isStDType(s: unknown): s is StDType {
  return typeof s === "string" && Object.hasOwn(ST_DTYPES, s);
}

/** The safetensors dtypes `loadTensor` turns into runtime tensors (floats → f32, integers → i32). */
export const LOADABLE_DTYPES: readonly StDType[] = ["F32", "F16", "BF16", "I32", "I64"];

/** The Python library's limit on the header length. */
export const MAX_HEADER_BYTES = 100_000_000;

/** One header entry, checked. */
export interface TensorEntry {
  readonly name: string;
  readonly dtype: StDType;
  readonly shape: readonly number[];
  readonly numel: number;
  readonly byteLength: number;
  /** `data_offsets` as in the header: relative to the data region. */
  readonly dataOffsets: readonly [number, number];
  /** Absolute byte offset of the data in the file (8 + N + begin). */
  readonly offset: number;
}

/**
 * Host data as read from a file, in the dtype's own typed array. F16 and BF16 come as their bits
 * (Uint16Array; see half.ts to convert), F8 types, U8 and BOOL as bytes.
 */
export type HostData =
  | Float32Array
  | Float64Array
  | Uint16Array
  | Int16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array
  | Int8Array
  | Uint8Array;

export interface HostTensor {
  name: string;
  dtype: StDType;
  shape: number[];
  data: HostData;
}

// ---- reading ------------------------------------------------------------------------------------------

/**
 * Open a .safetensors file: read and check its header only. No file descriptor stays open, so forgetting
 * `close()` leaks nothing; closing only makes later reads fail clearly.
 */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  return withFile(path, null, async (fh, st) => {
    const size = st.size;
    if (size < 8) throw new CheckpointError(`file is ${size} bytes, too short for the 8-byte header length`, path, { offset: 0 });
    const lenBytes = await readExact(fh, path, 0, 8);
    const n64 = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
    if (n64 > BigInt(MAX_HEADER_BYTES))
      throw new CheckpointError(`header length ${n64} exceeds the limit of ${MAX_HEADER_BYTES} bytes (not a safetensors file?)`, path, { offset: 0 });
    const n = Number(n64);
    if (n > size - 8)
      throw new CheckpointError(`header length ${n} runs past the end of the file: the header would end at byte ${8 + n}, the file has ${size} bytes`, path, {
        offset: 0,
      });
    const header = await readExact(fh, path, 8, n);
    const parsed = parseSafetensorsHeader(header, size, path);
    return new SafetensorsFile(path, identityOf(st), size, n, parsed.metadata, parsed.entries);
  });
}

/** What identifies the file a SafetensorsFile was opened from (a replaced or rewritten file differs). */
interface FileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

function identityOf(st: Stats): FileIdentity {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
}

/**
 * Open `path` for one operation and always close it (Bun treats a FileHandle left to the garbage
 * collector as an error, so none outlives a call). With `expect`, the file must still be the one opened.
 */
async function withFile<T>(path: string, expect: FileIdentity | null, fn: (fh: FileHandle, st: Stats) => Promise<T>, tensor?: string): Promise<T> {
  let fh: FileHandle;
  try {
    fh = await open(path, "r");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CheckpointError(code === "ENOENT" ? "no such file" : `cannot open: ${(e as Error).message}`, path, tensor === undefined ? {} : { tensor });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new CheckpointError(st.isDirectory() ? "is a directory, not a safetensors file" : "not a regular file", path, tensor === undefined ? {} : { tensor });
    if (expect) {
      const now = identityOf(st);
      if (now.dev !== expect.dev || now.ino !== expect.ino || now.size !== expect.size || now.mtimeMs !== expect.mtimeMs)
        throw new CheckpointError(
          `file changed since it was opened (${now.ino !== expect.ino || now.dev !== expect.dev ? "replaced" : now.size !== expect.size ? `size ${expect.size} → ${now.size}` : "modified"}); open it again`,
          path,
          tensor === undefined ? {} : { tensor },
        );
    }
    return await fn(fh, st);
  } finally {
    await fh.close();
  }
}

/** Read every tensor of a file (small files, tests). */
export async function readSafetensors(path: string): Promise<{ metadata: Record<string, string> | null; tensors: HostTensor[] }> {
  const f = await openSafetensors(path);
  try {
    const tensors: HostTensor[] = [];
    for (const name of f.names()) tensors.push(await f.readTensor(name));
    return { metadata: f.metadata ? { ...f.metadata } : null, tensors };
  } finally {
    await f.close();
  }
}

export class SafetensorsFile implements AsyncDisposable {
  /** Absolute offset of the data region. */
  readonly dataStart: number;

  constructor(
    readonly path: string,
    private identity: FileIdentity,
    readonly fileSize: number,
    /** N: the header's length in bytes. */
    readonly headerLength: number,
    readonly metadata: Readonly<Record<string, string>> | null,
    readonly entries: ReadonlyMap<string, TensorEntry>,
  ) {
    this.dataStart = 8 + headerLength;
  }

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  entry(name: string): TensorEntry {
    const e = this.entries.get(name);
    if (!e) {
      const some = this.names().slice(0, 5).join(", ");
      throw new CheckpointError(`no such tensor (the file has ${this.entries.size}${this.entries.size ? `: ${some}${this.entries.size > 5 ? ", ..." : ""}` : ""})`, this.path, {
        tensor: name,
      });
    }
    return e;
  }

  /** The tensor's raw bytes, in a fresh buffer of exactly its size. */
  async readBytes(name: string): Promise<Uint8Array<ArrayBuffer>> {
    const e = this.entry(name);
    if (this._closed) throw new CheckpointError("file was closed", this.path, { tensor: name });
    if (e.byteLength === 0) return new Uint8Array(0);
    return withFile(this.path, this.identity, (fh) => readExact(fh, this.path, e.offset, e.byteLength, name), name);
  }

  /** The tensor in its dtype's typed array (see HostData). */
  async readTensor(name: string): Promise<HostTensor> {
    const e = this.entry(name);
    const bytes = await this.readBytes(name);
    return { name, dtype: e.dtype, shape: [...e.shape], data: viewAs(e.dtype, bytes.buffer) };
  }

  /**
   * A floating-point tensor (F32, F16, BF16, F64) as f32 values. F16/BF16 are read into the upper half of
   * the f32 result and widened in place, so the peak is 4 bytes per element, not 6.
   */
  async readF32(name: string): Promise<Float32Array> {
    const e = this.entry(name);
    if (e.dtype !== "F16" && e.dtype !== "BF16") return toF32(await this.readTensor(name), this.path);
    if (this._closed) throw new CheckpointError("file was closed", this.path, { tensor: name });
    const out = new Float32Array(e.numel);
    if (e.numel === 0) return out;
    const upper = new Uint8Array(out.buffer, 2 * e.numel, 2 * e.numel);
    await withFile(this.path, this.identity, (fh) => readExact(fh, this.path, e.offset, e.byteLength, name, upper), name);
    const bits = new Uint16Array(out.buffer, 2 * e.numel, e.numel);
    return e.dtype === "BF16" ? bf16ToF32(bits, out) : f16ToF32(bits, out);
  }

  /** Upload a tensor to the GPU: F32/F16/BF16 as f32, I32/I64 as i32 (I64 checked to fit). */
  async loadTensor(gpu: Gpu, name: string, opts: { requiresGrad?: boolean } = {}): Promise<Tensor> {
    const e = this.entry(name);
    const rt = e.dtype === "F16" || e.dtype === "BF16" ? { dtype: "f32" as const, data: await this.readF32(name) } : toRuntime(await this.readTensor(name), this.path);
    return Tensor.fromArray(gpu, rt.data, e.shape, { dtype: rt.dtype, requiresGrad: opts.requiresGrad ?? false });
  }

  private _closed = false;

  get closed(): boolean {
    return this._closed;
  }

  /** Mark closed (no file descriptor is held between reads; this only makes later reads fail clearly). */
  async close(): Promise<void> {
    this._closed = true;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Check a header (the N bytes after the length) of a file of `fileSize` bytes. Exported for in-memory use
 * and tests; `openSafetensors` is the usual entry point.
 */
export function parseSafetensorsHeader(
  header: Uint8Array,
  fileSize: number,
  path = "<memory>",
): { metadata: Record<string, string> | null; entries: Map<string, TensorEntry> } {
  const n = header.byteLength;
  const dataStart = 8 + n;
  const dataLen = fileSize - dataStart;
  const fail = (msg: string, where: { offset?: number; tensor?: string } = {}) => new CheckpointError(msg, path, where);
  if (n === 0 || header[0] !== 0x7b) throw fail(`header does not start with "{" (found ${n === 0 ? "an empty header" : `byte 0x${header[0]!.toString(16).padStart(2, "0")}`})`, { offset: 8 });
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(header);
  } catch {
    throw fail("header is not valid UTF-8", { offset: 8 + firstInvalidUtf8(header) });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw fail(`header (bytes 8..${8 + n}) is not valid JSON: ${(e as Error).message}`, { offset: 8 });
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw fail(`header is JSON but not an object (${Array.isArray(doc) ? "an array" : String(doc)})`, { offset: 8 });
  const dup = firstDuplicateKey(text);
  if (dup) {
    const offset = 8 + new TextEncoder().encode(text.slice(0, dup.index)).byteLength;
    if (dup.path.length === 0)
      throw fail(dup.key === "__metadata__" ? `"__metadata__" appears twice in the header` : `duplicate tensor name: ${JSON.stringify(dup.key)} appears twice in the header`, {
        offset,
        ...(dup.key === "__metadata__" ? {} : { tensor: dup.key }),
      });
    const owner = dup.path[0]!;
    throw fail(`duplicate key ${JSON.stringify(dup.key)} in ${owner === "__metadata__" ? `"__metadata__"` : "the entry"}${dup.path.length > 1 ? ` (at ${dup.path.slice(1).join(".")})` : ""}`, {
      offset,
      ...(owner === "__metadata__" ? {} : { tensor: owner }),
    });
  }

  // The byte offset of an entry's key in the file, for error messages only.
  const at = (name: string): number => {
    const i = text.indexOf(JSON.stringify(name));
    return 8 + (i < 0 ? 0 : new TextEncoder().encode(text.slice(0, i)).byteLength);
  };

  let metadata: Record<string, string> | null = null;
  const entries = new Map<string, TensorEntry>();
  for (const [name, value] of Object.entries(doc as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (value === null || typeof value !== "object" || Array.isArray(value)) throw fail(`"__metadata__" must be an object of strings`, { offset: at(name) });
      metadata = {};
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== "string") throw fail(`"__metadata__" value for ${JSON.stringify(k)} is ${JSON.stringify(v)}, not a string`, { offset: at(name) });
        metadata[k] = v;
      }
      continue;
    }
    const bad = (msg: string, offset = at(name)) => fail(msg, { offset, tensor: name });
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw bad(`entry is ${JSON.stringify(value)}, not an object {dtype, shape, data_offsets}`);
    const { dtype, shape, data_offsets: offs } = value as Record<string, unknown>;
    if (!isStDType(dtype))
      throw bad(`unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(ST_DTYPES).join(", ")})`);
    if (!Array.isArray(shape)) throw bad(`shape is ${JSON.stringify(shape)}, not an array`);
    let numel = 1;
    for (const d of shape) {
      if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) throw bad(`shape ${JSON.stringify(shape)}: dimension ${JSON.stringify(d)} is not an integer >= 0`);
      numel *= d;
    }
    // The product of safe integers is exact until it passes 2^53; a shape that large cannot be in any file.
    if (!Number.isSafeInteger(numel * ST_DTYPES[dtype].bytes)) throw bad(`shape ${JSON.stringify(shape)} claims ${numel} elements, more than any file can hold`);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => typeof o === "number" && Number.isSafeInteger(o) && o >= 0))
      throw bad(`data_offsets is ${JSON.stringify(offs)}, not [begin, end] with integers >= 0`);
    const [begin, end] = offs as [number, number];
    if (begin > end) throw bad(`data_offsets [${begin}, ${end}]: begin is after end`, dataStart + begin);
    if (end > dataLen)
      throw bad(
        `data_offsets [${begin}, ${end}] (file bytes ${dataStart + begin}..${dataStart + end}) run past the end of the data region (${dataLen} bytes; the file has ${fileSize})`,
        dataStart + Math.min(begin, dataLen),
      );
    const byteLength = numel * ST_DTYPES[dtype].bytes;
    if (end - begin !== byteLength)
      throw bad(`data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but ${dtype} ${JSON.stringify(shape)} needs ${numel} × ${ST_DTYPES[dtype].bytes} = ${byteLength}`, dataStart + begin);
    entries.set(name, { name, dtype, shape: Object.freeze([...shape] as number[]), numel, byteLength, dataOffsets: Object.freeze([begin, end] as const), offset: dataStart + begin });
  }

  // The Rust crate's rule (Metadata::validate, then the MetadataIncompleteBuffer check): sorted by
  // (begin, end), in any header order, each tensor begins where the previous one ends, the first at 0, and
  // the last ends where the file does. So no overlap, no gap, no trailing byte; a zero-size tensor sits at a
  // boundary between tensors (or at 0, or at the end).
  const ranges = [...entries.values()].sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let pos = 0;
  let prev: TensorEntry | undefined;
  for (const cur of ranges) {
    const [begin, end] = cur.dataOffsets;
    if (begin < pos)
      throw fail(
        `data_offsets [${begin}, ${end}] overlap those of ${JSON.stringify(prev!.name)} [${prev!.dataOffsets.join(", ")}]`,
        { offset: cur.offset, tensor: cur.name },
      );
    if (begin > pos)
      throw fail(
        `data_offsets [${begin}, ${end}] leave a gap of ${begin - pos} bytes (data bytes ${pos}..${begin}) after ${prev ? `${JSON.stringify(prev.name)} [${prev.dataOffsets.join(", ")}]` : "the start of the data region"}; tensors must tile the data region without gaps`,
        { offset: dataStart + pos, tensor: cur.name },
      );
    pos = end;
    if (end > begin || !prev) prev = cur;
  }
  if (pos !== dataLen)
    throw fail(
      `${dataLen - pos} bytes after the last tensor's data (the tensors end at data byte ${pos}, file byte ${dataStart + pos}; the file has ${fileSize}): trailing bytes or a missing tensor`,
      { offset: dataStart + pos },
    );
  return { metadata, entries };
}

/**
 * Every object key of a JSON text that JSON.parse accepted, checked for duplicates at every depth (JSON.parse
 * keeps the last silently; the Rust crate's serde refuses duplicate fields). Returns the first duplicate: its
 * decoded key, the path of the object holding it (empty at the top level) and the index of its second
 * occurrence in `text`, or null.
 */
export function firstDuplicateKey(text: string): { key: string; path: string[]; index: number } | null {
  const stack: { keys: Set<string> | null; key: string | null }[] = [];
  let i = 0;
  const n = text.length;
  const skipString = (from: number): number => {
    let j = from + 1;
    while (j < n) {
      const c = text.charCodeAt(j);
      if (c === 0x22) return j + 1;
      j += c === 0x5c ? 2 : 1;
    }
    return n;
  };
  let pendingKey: string | null = null; // the key whose value comes next
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      stack.push({ keys: c === 0x7b ? new Set() : null, key: pendingKey });
      pendingKey = null;
      i++;
    } else if (c === 0x7d || c === 0x5d || c === 0x2c) {
      if (c !== 0x2c) stack.pop();
      pendingKey = null;
      i++;
    } else if (c === 0x22) {
      const end = skipString(i);
      const top = stack[stack.length - 1];
      // A string is a key when it is inside an object and followed by ':'.
      let k = end;
      while (k < n && (text.charCodeAt(k) === 0x20 || text.charCodeAt(k) === 0x0a || text.charCodeAt(k) === 0x0d || text.charCodeAt(k) === 0x09)) k++;
      if (top?.keys && text.charCodeAt(k) === 0x3a) {
        const key = JSON.parse(text.slice(i, end)) as string;
        if (top.keys.has(key)) return { key, path: stack.slice(1).map((s) => s.key ?? "[]"), index: i };
        top.keys.add(key);
        pendingKey = key;
        i = k + 1;
        continue;
      }
      pendingKey = null;
      i = end;
    } else i++;
  }
  return null;
}

/** Offset (within `b`) of the first byte that breaks UTF-8 (for the error message). */
function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    const len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (len === 0) return i;
    if (i + len > b.length) return i;
    for (let k = 1; k < len; k++) if ((b[i + k]! & 0xc0) !== 0x80) return i + k;
    if (len === 3) {
      const cp = ((c & 0x0f) << 12) | ((b[i + 1]! & 0x3f) << 6);
      if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)) return i; // overlong or surrogate
    }
    if (len === 4) {
      const cp = ((c & 0x07) << 18) | ((b[i + 1]! & 0x3f) << 12);
      if (cp < 0x10000 || cp > 0x10ffff) return i;
    }
    i += len;
  }
  return i;
}

/** Read exactly `len` bytes at `pos` into `into` or a fresh buffer (in chunks: one read is capped at 2 GiB). */
async function readExact(fh: FileHandle, path: string, pos: number, len: number, tensor?: string, into?: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  const out = into ?? new Uint8Array(len);
  let done = 0;
  while (done < len) {
    const want = Math.min(len - done, 1 << 30);
    const { bytesRead } = await fh.read(out, done, want, pos + done);
    if (bytesRead === 0)
      throw new CheckpointError(`file ends at byte ${pos + done} while ${len} bytes from byte ${pos} were expected (truncated after it was opened?)`, path, {
        offset: pos + done,
        ...(tensor === undefined ? {} : { tensor }),
      });
    done += bytesRead;
  }
  return out;
}

/** A typed array of `dtype` over a whole (aligned) buffer. */
function viewAs(dtype: StDType, buf: ArrayBuffer): HostData {
  switch (dtype) {
    case "F32":
      return new Float32Array(buf);
    case "F64":
      return new Float64Array(buf);
    case "F16":
    case "BF16":
    case "U16":
      return new Uint16Array(buf);
    case "I16":
      return new Int16Array(buf);
    case "I32":
      return new Int32Array(buf);
    case "U32":
      return new Uint32Array(buf);
    case "I64":
      return new BigInt64Array(buf);
    case "U64":
      return new BigUint64Array(buf);
    case "I8":
      return new Int8Array(buf);
    case "U8":
    case "BOOL":
    case "F8_E4M3":
    case "F8_E5M2":
    case "F8_E8M0":
      return new Uint8Array(buf);
  }
}

/** A floating-point host tensor as f32 (F64 rounds). */
export function toF32(t: HostTensor, path = "<memory>"): Float32Array {
  switch (t.dtype) {
    case "F32":
      return t.data as Float32Array;
    case "F16":
      return f16ToF32(t.data as Uint16Array);
    case "BF16":
      return bf16ToF32(t.data as Uint16Array);
    case "F64":
      return Float32Array.from(t.data as Float64Array);
    default:
      throw new CheckpointError(`dtype ${t.dtype} is not a floating-point type (expected F32, F16, BF16 or F64)`, path, { tensor: t.name });
  }
}

/** Convert a host tensor to what the runtime holds: F32/F16/BF16 → f32, I32/I64 → i32 (I64 range-checked). */
export function toRuntime(t: HostTensor, path = "<memory>"): { dtype: "f32"; data: Float32Array } | { dtype: "i32"; data: Int32Array } {
  switch (t.dtype) {
    case "F32":
    case "F16":
    case "BF16":
      return { dtype: "f32", data: toF32(t, path) };
    case "I32":
      return { dtype: "i32", data: t.data as Int32Array };
    case "I64":
      return { dtype: "i32", data: narrowI64(t.data as BigInt64Array, t.name, path) };
    default:
      throw new CheckpointError(`dtype ${t.dtype} cannot be loaded as a tensor (supported: F32, F16, BF16 as f32; I32, I64 as i32)`, path, { tensor: t.name });
  }
}

/** I64 → i32, failing on the first value outside the i32 range (naming the element). */
function narrowI64(src: BigInt64Array, name: string, path: string): Int32Array {
  const halves = new Int32Array(src.buffer, src.byteOffset, src.length * 2); // little-endian: [lo, hi] pairs
  const out = new Int32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const lo = halves[2 * i]!;
    if (halves[2 * i + 1] !== lo >> 31)
      throw new CheckpointError(`I64 element ${i} is ${src[i]}, outside the i32 range the runtime holds`, path, { tensor: name });
    out[i] = lo;
  }
  return out;
}

// ---- writing ------------------------------------------------------------------------------------------

/** Data for one tensor: its dtype's typed array, raw bytes (Uint8Array) for any dtype, or for F16/BF16 a
 *  Float32Array to round (or Uint16Array bits); I64 also takes an Int32Array (widened). */
export type WriteData = ArrayBufferView;

export interface TensorToWrite {
  name: string;
  dtype: StDType;
  shape: readonly number[];
  /** The data, or a function producing it when the writer reaches this tensor (one tensor in memory at a time). */
  data: WriteData | (() => WriteData | Promise<WriteData>);
}

export interface WriteResult {
  path: string;
  fileSize: number;
  headerLength: number;
  entries: TensorEntry[];
}

/**
 * Write a .safetensors file atomically. Everything that can be checked before writing is checked first
 * (names, dtypes, shapes, the sizes of data given directly); lazily given data is checked when produced,
 * and a mismatch then removes the temp file. Metadata values must be strings (HF loaders want
 * `{format: "pt"}`).
 */
export async function writeSafetensors(path: string, tensors: readonly TensorToWrite[], metadata?: Record<string, string> | null): Promise<WriteResult> {
  const fail = (msg: string, tensor?: string) => new CheckpointError(msg, path, tensor === undefined ? {} : { tensor });
  const seen = new Set<string>();
  const planned: { t: TensorToWrite; numel: number; bytes: number }[] = [];
  for (const t of tensors) {
    if (typeof t.name !== "string" || t.name === "") throw fail("tensor names must be non-empty strings");
    if (t.name === "__metadata__") throw fail(`"__metadata__" is reserved and cannot name a tensor`);
    if (seen.has(t.name)) throw fail("tensor name given twice", t.name);
    seen.add(t.name);
    if (!isStDType(t.dtype)) throw fail(`unknown dtype ${JSON.stringify(t.dtype)} (known: ${Object.keys(ST_DTYPES).join(", ")})`, t.name);
    let numel = 1;
    for (const d of t.shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw fail(`shape ${JSON.stringify(t.shape)}: every dimension must be an integer >= 0`, t.name);
      numel *= d;
    }
    const bytes = numel * ST_DTYPES[t.dtype].bytes;
    if (!Number.isSafeInteger(bytes)) throw fail(`shape ${JSON.stringify(t.shape)} is too large`, t.name);
    if (typeof t.data !== "function") encode(t, t.data, bytes, path); // check now, before any file exists
    planned.push({ t, numel, bytes });
  }
  if (metadata) for (const [k, v] of Object.entries(metadata)) if (typeof v !== "string") throw fail(`metadata value for ${JSON.stringify(k)} is not a string`);

  planned.sort((a, b) => ST_DTYPES[b.t.dtype].order - ST_DTYPES[a.t.dtype].order || compareCodePoints(a.t.name, b.t.name));
  const parts: string[] = [];
  if (metadata) {
    const keys = Object.keys(metadata).sort(compareCodePoints);
    parts.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(",")}}`);
  }
  let pos = 0;
  const offsets: number[] = [];
  for (const p of planned) {
    offsets.push(pos);
    parts.push(`${JSON.stringify(p.t.name)}:{"dtype":"${p.t.dtype}","shape":[${p.t.shape.join(",")}],"data_offsets":[${pos},${pos + p.bytes}]}`);
    pos += p.bytes;
  }
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const n = json.byteLength + ((8 - (json.byteLength % 8)) % 8);
  if (n > MAX_HEADER_BYTES) throw fail(`header would be ${n} bytes, over the ${MAX_HEADER_BYTES}-byte limit readers enforce`);
  const head = new Uint8Array(8 + n).fill(0x20);
  new DataView(head.buffer).setBigUint64(0, BigInt(n), true);
  head.set(json, 8);

  await writeFileAtomic(path, async (fh) => {
    await writeAll(fh, head, 0);
    for (let i = 0; i < planned.length; i++) {
      const { t, bytes } = planned[i]!;
      const data = typeof t.data === "function" ? await t.data() : t.data;
      await writeAll(fh, encode(t, data, bytes, path), 8 + n + offsets[i]!);
    }
  });
  const entries = planned.map((p, i): TensorEntry => {
    const begin = offsets[i]!;
    return { name: p.t.name, dtype: p.t.dtype, shape: [...p.t.shape], numel: p.numel, byteLength: p.bytes, dataOffsets: [begin, begin + p.bytes], offset: 8 + n + begin };
  });
  return { path, fileSize: 8 + n + pos, headerLength: n, entries };
}

/** A tensor's data as the bytes to write (converting f32 → F16/BF16 and i32 → I64), checking its size. */
function encode(t: TensorToWrite, data: WriteData, bytes: number, path: string): Uint8Array {
  const fail = (msg: string) => new CheckpointError(msg, path, { tensor: t.name });
  const kind = data?.constructor?.name ?? typeof data;
  let out: ArrayBufferView;
  if (data instanceof Uint8Array) {
    out = data;
    if (t.dtype === "BOOL") for (const b of data) if (b > 1) throw fail(`BOOL data must be bytes 0 or 1, found ${b}`);
  } else if (t.dtype === "F16" && data instanceof Float32Array) out = f32ToF16(data);
  else if (t.dtype === "BF16" && data instanceof Float32Array) out = f32ToBf16(data);
  else if (t.dtype === "I64" && data instanceof Int32Array) out = BigInt64Array.from(data, (x) => BigInt(x));
  else if (ArrayBuffer.isView(data) && !(data instanceof DataView) && NATIVE[t.dtype].includes(kind)) out = data;
  else throw fail(`cannot write a ${kind} as ${t.dtype} (give ${[...NATIVE[t.dtype], ...(CONVERTED[t.dtype] ?? [])].join(" or ")}, or raw bytes as a Uint8Array)`);
  if (out.byteLength !== bytes)
    throw fail(`data has ${out.byteLength} bytes, but ${t.dtype} ${JSON.stringify(t.shape)} needs ${bytes} (${kind} of length ${(data as unknown as { length: number }).length})`);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** The typed arrays whose bytes are a dtype's encoding as they are. */
const NATIVE: Record<StDType, string[]> = {
  BOOL: ["Uint8Array"],
  U8: ["Uint8Array"],
  I8: ["Int8Array"],
  F8_E5M2: ["Uint8Array"],
  F8_E4M3: ["Uint8Array"],
  F8_E8M0: ["Uint8Array"],
  I16: ["Int16Array"],
  U16: ["Uint16Array"],
  F16: ["Uint16Array", "Float16Array"],
  BF16: ["Uint16Array"],
  I32: ["Int32Array"],
  U32: ["Uint32Array"],
  F32: ["Float32Array"],
  F64: ["Float64Array"],
  I64: ["BigInt64Array"],
  U64: ["BigUint64Array"],
};
const CONVERTED: Partial<Record<StDType, string[]>> = { F16: ["Float32Array (rounded)"], BF16: ["Float32Array (rounded)"], I64: ["Int32Array (widened)"] };

/** Compare by Unicode code point (= by UTF-8 bytes, as the Rust crate sorts names). */
function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

// ---- runtime tensors out ------------------------------------------------------------------------------

/**
 * Save runtime tensors: f32 tensors as `dtype` (F32, or BF16/F16 rounded to nearest even), i32 as I32,
 * u32 as U32. Each tensor is read back from the GPU only when the writer reaches it. Metadata defaults
 * to `{format: "pt"}`, which Hugging Face loaders expect.
 */
export async function saveTensors(
  path: string,
  tensors: Record<string, Tensor> | Iterable<readonly [string, Tensor]>,
  opts: { dtype?: "F32" | "BF16" | "F16"; metadata?: Record<string, string> | null } = {},
): Promise<WriteResult> {
  return writeSafetensors(path, tensorsToWrite(tensors, opts.dtype ?? "F32"), opts.metadata === undefined ? { format: "pt" } : opts.metadata);
}

/** The write plan for runtime tensors (lazy GPU readback), for `writeSafetensors` and checkpoint shards. */
export function tensorsToWrite(tensors: Record<string, Tensor> | Iterable<readonly [string, Tensor]>, floatDtype: "F32" | "BF16" | "F16"): TensorToWrite[] {
  const list = Symbol.iterator in tensors ? [...(tensors as Iterable<readonly [string, Tensor]>)] : Object.entries(tensors as Record<string, Tensor>);
  return list.map(([name, t]) => {
    const dtype: StDType = t.dtype === "f32" ? floatDtype : t.dtype === "i32" ? "I32" : t.dtype === "u32" ? "U32" : "F16";
    return { name, dtype, shape: t.shape, data: () => t.data() };
  });
}

// safetensors reading and writing: the PyTorch-written fixture read value for value and rewritten byte for
// byte, round trips of every dtype, a table of corrupt files (each failing with its message, file, byte
// offset and tensor, never a crash), lazy reading of a 3 GB sparse file, and upload to / save from the GPU.
import { afterAll, describe, expect, test } from "bun:test";
import { expectError } from "./helpers.ts";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CheckpointError } from "../../src/io/errors.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../../src/io/half.ts";
import {
  MAX_HEADER_BYTES,
  openSafetensors,
  readSafetensors,
  saveTensors,
  ST_DTYPES,
  toF32,
  writeSafetensors,
  type StDType,
  type TensorToWrite,
} from "../../src/io/safetensors.ts";
import { Tensor } from "../../src/tensor/index.ts";
import { getGpu, rng } from "../helpers.ts";

const FIXTURE = join(import.meta.dir, "../fixtures/io/tiny.safetensors");
const EXPECTED = JSON.parse(readFileSync(join(import.meta.dir, "../fixtures/io/tiny.expected.json"), "utf8")) as {
  metadata: Record<string, string>;
  tensors: Record<string, { dtype: StDType; shape: number[]; hex: string; values: (number | string)[] }>;
};

const TMP = mkdtempSync(join(tmpdir(), "alignx-io-st-"));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
let n = 0;
const tmp = (name = "t.safetensors") => join(TMP, `${++n}-${name}`);

const hexOf = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
const bytesOf = (d: ArrayBufferView) => new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
const num = (v: number | string) => (v === "nan" ? Number.NaN : v === "inf" ? Infinity : v === "-inf" ? -Infinity : (v as number));


describe("the PyTorch-written fixture", () => {
  test("every tensor reads back with its dtype, shape, bytes and values; metadata too", async () => {
    const f = await openSafetensors(FIXTURE);
    try {
      expect(f.metadata).toEqual(EXPECTED.metadata);
      expect(f.names().sort()).toEqual(Object.keys(EXPECTED.tensors).sort());
      expect((8 + f.headerLength) % 8).toBe(0);
      for (const [name, want] of Object.entries(EXPECTED.tensors)) {
        const t = await f.readTensor(name);
        expect(t.dtype).toBe(want.dtype);
        expect(t.shape).toEqual(want.shape);
        expect(hexOf(await f.readBytes(name))).toBe(want.hex);
        const got: number[] =
          t.dtype === "F32" || t.dtype === "F16" || t.dtype === "BF16" || t.dtype === "F64"
            ? [...toF32(t)]
            : t.data instanceof BigInt64Array
              ? [...t.data].map(Number)
              : [...(t.data as Int32Array)];
        const ref = want.values.map(num);
        if (t.dtype === "F64") expect(got).toEqual(ref.map(Math.fround)); // toF32 rounds F64
        else expect(got).toEqual(ref);
      }
      // The native typed arrays.
      expect((await f.readTensor("f64.values")).data).toEqual(new Float64Array([Math.PI, -1e300, 5e-324]));
      expect((await f.readTensor("i64.big")).data).toEqual(new BigInt64Array([2n ** 40n, -1n]));
      expect((await f.readTensor("i8.values")).data).toEqual(new Int8Array([-128, -1, 0, 127]));
      expect((await f.readTensor("bool.mask")).data).toEqual(new Uint8Array([1, 0, 0, 1]));
    } finally {
      await f.close();
    }
  });

  test("writing the same tensors reproduces the file byte for byte (layout, order, padding)", async () => {
    const { metadata, tensors } = await readSafetensors(FIXTURE);
    const out = tmp();
    const res = await writeSafetensors(
      out,
      tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: t.data })),
      metadata,
    );
    expect(Buffer.compare(readFileSync(out), readFileSync(FIXTURE))).toBe(0);
    expect(res.fileSize).toBe(readFileSync(FIXTURE).byteLength);
  });

  test("entry() of a missing name and reading after close fail naming the tensor", async () => {
    const f = await openSafetensors(FIXTURE);
    expect(() => f.entry("nope")).toThrow(/tiny\.safetensors \(tensor "nope"\): no such tensor \(the file has 16: /);
    await f.close();
    expect(f.closed).toBe(true);
    const e = await expectError(f.readTensor("f32.matrix"));
    expect(e.message).toMatch(/file was closed/);
  });
});

describe("round trips", () => {
  /** Random bytes for a dtype, with the interesting patterns of floats included, valid for BOOL. */
  function sample(dtype: StDType, count: number, seed: number): Uint8Array {
    const r = rng(seed);
    const b = new Uint8Array(count * ST_DTYPES[dtype].bytes);
    for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256);
    if (dtype === "BOOL") for (let i = 0; i < b.length; i++) b[i]! &= 1;
    if (dtype === "F16" || dtype === "BF16") {
      const u = new Uint16Array(b.buffer);
      const special = dtype === "F16" ? [0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e01, 0x0001, 0x03ff, 0x7bff] : [0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc1, 0x0001, 0x7f7f];
      special.forEach((s, i) => i < u.length && (u[i] = s));
    }
    return b;
  }

  for (const dtype of Object.keys(ST_DTYPES) as StDType[]) {
    test(`${dtype}: save → load is bit-exact (raw bytes and native arrays)`, async () => {
      const shapes = [[3, 7], [5], [], [2, 0, 3], [2, 3, 4]];
      const tensors: TensorToWrite[] = shapes.map((shape, i) => {
        const count = shape.reduce((a, d) => a * d, 1);
        return { name: `${dtype.toLowerCase()}.t${i}`, dtype, shape, data: sample(dtype, count, i + 17) };
      });
      const path = tmp();
      await writeSafetensors(path, tensors, { format: "pt" });
      const { tensors: back, metadata } = await readSafetensors(path);
      expect(metadata).toEqual({ format: "pt" });
      for (const t of tensors) {
        const b = back.find((x) => x.name === t.name)!;
        expect(b.dtype).toBe(dtype);
        expect(b.shape).toEqual([...t.shape]);
        expect(hexOf(bytesOf(b.data))).toBe(hexOf(t.data as Uint8Array));
      }
      // And once more from the native typed arrays just read.
      const path2 = tmp();
      await writeSafetensors(path2, back.map((b) => ({ ...b })), { format: "pt" });
      expect(Buffer.compare(readFileSync(path2), readFileSync(path))).toBe(0);
    });
  }

  test("F16/BF16 from Float32Array round to nearest even; I64 from Int32Array widens; Float16Array writes F16", async () => {
    const f = new Float32Array([1, 1 / 3, -2.5e-8, 70000, Number.NaN, -0, 1.00048828125]);
    const path = tmp();
    await writeSafetensors(path, [
      { name: "h", dtype: "F16", shape: [7], data: f },
      { name: "b", dtype: "BF16", shape: [7], data: f },
      { name: "i", dtype: "I64", shape: [3], data: new Int32Array([-5, 0, 2 ** 31 - 1]) },
      { name: "h2", dtype: "F16", shape: [2], data: new Float16Array([0.5, -65504]) },
    ]);
    const st = await openSafetensors(path);
    expect((await st.readTensor("h")).data).toEqual(f32ToF16(f));
    expect((await st.readTensor("b")).data).toEqual(f32ToBf16(f));
    expect(f16ToF32((await st.readTensor("h")).data as Uint16Array)[3]).toBe(Infinity);
    expect(bf16ToF32((await st.readTensor("b")).data as Uint16Array)[1]).toBe(0.333984375);
    expect((await st.readTensor("i")).data).toEqual(new BigInt64Array([-5n, 0n, 2n ** 31n - 1n]));
    expect([...(await st.readF32("h2"))]).toEqual([0.5, -65504]);
    await st.close();
  });

  test("readF32 widens F16/BF16 in place: every 16-bit pattern decodes as the out-of-place conversion does", async () => {
    const all = Uint16Array.from({ length: 65537 }, (_, i) => (i * 40503) & 0xffff); // odd length, every pattern
    const path = tmp();
    await writeSafetensors(path, [
      { name: "h", dtype: "F16", shape: [65537], data: all },
      { name: "b", dtype: "BF16", shape: [1, 65537], data: all },
      { name: "e", dtype: "BF16", shape: [0], data: new Uint16Array(0) },
    ]);
    const f = await openSafetensors(path);
    const same = (a: Float32Array, b: Float32Array) => hexOf(bytesOf(a)) === hexOf(bytesOf(b));
    expect(same(await f.readF32("h"), f16ToF32(all))).toBe(true);
    expect(same(await f.readF32("b"), bf16ToF32(all))).toBe(true);
    expect(await f.readF32("e")).toEqual(new Float32Array(0));
  });

  test("layout: 8-byte aligned header padded with spaces, dtype-aligned data without gaps, sorted by dtype then name", async () => {
    const path = tmp();
    const res = await writeSafetensors(path, [
      { name: "z", dtype: "U8", shape: [3], data: new Uint8Array(3) },
      { name: "b", dtype: "F32", shape: [1], data: new Float32Array(1) },
      { name: "a", dtype: "F32", shape: [2], data: new Float32Array(2) },
      { name: "m", dtype: "F16", shape: [3], data: new Uint16Array(3) },
      { name: "é", dtype: "I64", shape: [1], data: new BigInt64Array(1) },
      { name: "e", dtype: "I64", shape: [1], data: new BigInt64Array(1) },
    ]);
    expect(res.entries.map((e) => e.name)).toEqual(["e", "é", "a", "b", "m", "z"]);
    const file = readFileSync(path);
    const hl = Number(file.readBigUInt64LE(0));
    expect((8 + hl) % 8).toBe(0);
    const header = file.subarray(8, 8 + hl).toString("utf8");
    expect(header).toMatch(/^\{"e":\{"dtype":"I64","shape":\[1\],"data_offsets":\[0,8\]\},"é":/);
    expect(header.trimEnd().endsWith("}")).toBe(true);
    expect(/^ *$/.test(header.slice(header.trimEnd().length))).toBe(true);
    let pos = 0;
    for (const e of res.entries) {
      expect(e.dataOffsets[0]).toBe(pos);
      expect(e.dataOffsets[0] % ST_DTYPES[e.dtype].bytes).toBe(0);
      pos = e.dataOffsets[1];
    }
    expect(file.byteLength).toBe(8 + hl + pos);
  });

  test("an empty file (no tensors, no metadata) round-trips", async () => {
    const path = tmp();
    await writeSafetensors(path, []);
    expect(readFileSync(path, "latin1")).toBe(`\x08${"\0".repeat(7)}{}      `);
    expect((await readSafetensors(path)).tensors).toEqual([]);
  });
});

describe("writer checks", () => {
  const ok = (over: Partial<TensorToWrite> = {}): TensorToWrite => ({ name: "w", dtype: "F32", shape: [2], data: new Float32Array(2), ...over });
  const cases: [string, TensorToWrite[], Record<string, string> | undefined, RegExp][] = [
    ["duplicate name", [ok(), ok()], undefined, /\(tensor "w"\): tensor name given twice/],
    ["empty name", [ok({ name: "" })], undefined, /names must be non-empty/],
    ["reserved name", [ok({ name: "__metadata__" })], undefined, /"__metadata__" is reserved/],
    ["unknown dtype", [ok({ dtype: "F128" as StDType })], undefined, /unknown dtype "F128"/],
    ["negative dimension", [ok({ shape: [-2] })], undefined, /every dimension must be an integer >= 0/],
    ["fractional dimension", [ok({ shape: [1.5] })], undefined, /every dimension must be an integer >= 0/],
    ["too few bytes", [ok({ shape: [3] })], undefined, /data has 8 bytes, but F32 \[3\] needs 12 \(Float32Array of length 2\)/],
    ["wrong array type", [ok({ data: new Float64Array(2) })], undefined, /cannot write a Float64Array as F32 \(give Float32Array, or raw bytes/],
    ["wrong array for BF16", [ok({ dtype: "BF16", data: new Int32Array(2) })], undefined, /give Uint16Array or Float32Array \(rounded\)/],
    ["BOOL not 0/1", [ok({ dtype: "BOOL", data: new Uint8Array([0, 2]) })], undefined, /BOOL data must be bytes 0 or 1, found 2/],
    ["metadata value not a string", [ok()], { n: 3 as unknown as string }, /metadata value for "n" is not a string/],
  ];
  for (const [what, tensors, md, re] of cases)
    test(`${what}: fails before creating any file`, async () => {
      const path = tmp();
      const e = await expectError(writeSafetensors(path, tensors, md));
      expect(e.message).toMatch(re);
      expect(e.message.startsWith(path)).toBe(true);
      expect(readdirSync(TMP).filter((f) => f.includes(path.split("/").pop()!))).toEqual([]);
    });

  test("lazy data of the wrong size fails mid-write: no file and no temp file remain, an old file is kept", async () => {
    const path = tmp();
    writeFileSync(path, "old content");
    const e = await expectError(
      writeSafetensors(path, [
        { name: "a", dtype: "F32", shape: [4], data: () => new Float32Array(4) },
        { name: "b", dtype: "F32", shape: [4], data: async () => new Float32Array(3) },
      ]),
    );
    expect(e.message).toMatch(/\(tensor "b"\): data has 12 bytes, but F32 \[4\] needs 16/);
    expect(readFileSync(path, "utf8")).toBe("old content");
    expect(readdirSync(TMP).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  test("lazy data is produced one tensor at a time, in file order", async () => {
    const order: string[] = [];
    const path = tmp();
    const mk = (name: string, dtype: StDType) => ({
      name,
      dtype,
      shape: [2],
      data: () => {
        order.push(name);
        return dtype === "F32" ? new Float32Array([1, 2]) : new Uint16Array([1, 2]);
      },
    });
    await writeSafetensors(path, [mk("b", "F16"), mk("c", "F32"), mk("a", "F32")]);
    expect(order).toEqual(["a", "c", "b"]);
    expect([...(await (await openSafetensors(path)).readF32("a"))]).toEqual([1, 2]);
  });
});

// ---- corrupt files --------------------------------------------------------------------------------------

/** A file: 8-byte length (default: the header's), the header text, then `data` bytes. */
function raw(header: string | Uint8Array, data = 0, len?: bigint): Uint8Array {
  const h = typeof header === "string" ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + h.byteLength + data);
  new DataView(out.buffer).setBigUint64(0, len ?? BigInt(h.byteLength), true);
  out.set(h, 8);
  return out;
}
const entry = (dtype: unknown, shape: unknown, offs: unknown) => ({ dtype, shape, data_offsets: offs });
const hdr = (o: Record<string, unknown>) => JSON.stringify(o);

interface Corrupt {
  what: string;
  bytes: Uint8Array;
  message: RegExp;
  /** The byte offset the error must name; a function of the file for computed offsets. */
  offset: number | ((b: Uint8Array) => number);
  tensor?: string;
}

/** Byte offset of the first occurrence of `s` in the file. */
const find = (s: string) => (b: Uint8Array) => Buffer.from(b).indexOf(s);

const CORRUPT: Corrupt[] = [
  { what: "empty file", bytes: new Uint8Array(0), message: /file is 0 bytes, too short for the 8-byte header length/, offset: 0 },
  { what: "truncated length", bytes: new Uint8Array([8, 0, 0]), message: /file is 3 bytes, too short/, offset: 0 },
  { what: "truncated header", bytes: raw('{"a":{"dtype":"F32"', 0, 100n), message: /header length 100 runs past the end of the file: the header would end at byte 108, the file has 27 bytes/, offset: 0 },
  { what: "header length beyond file (length only)", bytes: raw("", 0, 16n), message: /header length 16 runs past the end of the file/, offset: 0 },
  { what: "header length over 100 MB", bytes: raw("{}", 0, BigInt(MAX_HEADER_BYTES + 1)), message: /header length 100000001 exceeds the limit of 100000000 bytes/, offset: 0 },
  { what: "header length 2^64 - 1", bytes: raw("{}", 0, 2n ** 64n - 1n), message: /header length 18446744073709551615 exceeds the limit/, offset: 0 },
  { what: "empty header", bytes: raw(""), message: /header does not start with "\{" \(found an empty header\)/, offset: 8 },
  { what: "header not starting with {", bytes: raw(' {"a":1}'), message: /header does not start with "\{" \(found byte 0x20\)/, offset: 8 },
  { what: "header is a JSON array", bytes: raw("[1]"), message: /header does not start with "\{"/, offset: 8 },
  {
    what: "header not UTF-8",
    bytes: raw(new Uint8Array([...new TextEncoder().encode('{"na'), 0xff, ...new TextEncoder().encode('me":1}')])),
    message: /header is not valid UTF-8/,
    offset: 12,
  },
  { what: "truncated UTF-8 sequence", bytes: raw(new Uint8Array([0x7b, 0x22, 0xe2, 0x82, 0x22])), message: /header is not valid UTF-8/, offset: 12 },
  { what: "bad JSON", bytes: raw('{"a": {"dtype": "F32",}}'), message: /header \(bytes 8\.\.32\) is not valid JSON: JSON Parse error/, offset: 8 },
  { what: "trailing garbage after JSON", bytes: raw("{}  x"), message: /is not valid JSON/, offset: 8 },
  { what: "metadata not an object", bytes: raw(hdr({ __metadata__: "pt" })), message: /"__metadata__" must be an object of strings/, offset: 9 },
  { what: "metadata value not a string", bytes: raw(hdr({ __metadata__: { format: 1 } })), message: /"__metadata__" value for "format" is 1, not a string/, offset: 9 },
  { what: "entry not an object", bytes: raw(hdr({ w: [1, 2] })), message: /entry is \[1,2\], not an object/, offset: 9, tensor: "w" },
  { what: "unknown dtype", bytes: raw(hdr({ ok: entry("F32", [1], [0, 4]), w: entry("F128", [1], [4, 8])}), 8), message: /unknown dtype "F128" \(known: BOOL, U8, .*F8_E4M3.*U64\)/, offset: find('"w"'), tensor: "w" },
  { what: "missing dtype", bytes: raw(hdr({ w: { shape: [1], data_offsets: [0, 4] } }), 4), message: /unknown dtype undefined/, offset: 9, tensor: "w" },
  { what: "lower-case dtype", bytes: raw(hdr({ w: entry("f32", [1], [0, 4]) }), 4), message: /unknown dtype "f32"/, offset: 9, tensor: "w" },
  { what: "shape not an array", bytes: raw(hdr({ w: entry("F32", 4, [0, 16]) }), 16), message: /shape is 4, not an array/, offset: 9, tensor: "w" },
  { what: "negative dimension", bytes: raw(hdr({ w: entry("F32", [2, -2], [0, 16]) }), 16), message: /shape \[2,-2\]: dimension -2 is not an integer >= 0/, offset: 9, tensor: "w" },
  { what: "non-integer dimension", bytes: raw(hdr({ w: entry("F32", [2.5], [0, 10]) }), 16), message: /dimension 2.5 is not an integer >= 0/, offset: 9, tensor: "w" },
  { what: "string dimension", bytes: raw(hdr({ w: entry("F32", ["4"], [0, 16]) }), 16), message: /dimension "4" is not an integer >= 0/, offset: 9, tensor: "w" },
  { what: "dimension beyond 2^53", bytes: raw(hdr({ w: entry("F32", [1e300], [0, 16]) }), 16), message: /dimension 1e\+300 is not an integer >= 0/, offset: 9, tensor: "w" },
  {
    what: "huge claimed shape (1e24 elements)",
    bytes: raw(hdr({ w: entry("F32", [1e8, 1e8, 1e8], [0, 16]) }), 16),
    message: /shape \[100000000,100000000,100000000\] claims 1e\+24 elements, more than any file can hold/,
    offset: 9,
    tensor: "w",
  },
  {
    what: "1e15 elements claimed over 16 bytes",
    bytes: raw(hdr({ w: entry("F32", [1e15], [0, 16]) }), 16),
    message: /data_offsets \[0, 16\] hold 16 bytes, but F32 \[1000000000000000\] needs 1000000000000000 × 4 = 4000000000000000/,
    offset: find("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"),
    tensor: "w",
  },
  {
    what: "1e15 elements with matching offsets beyond the file",
    bytes: raw(hdr({ w: entry("F32", [1e15], [0, 4e15]) }), 16),
    message: /data_offsets \[0, 4000000000000000\] \(file bytes \d+\.\.\d+\) run past the end of the data region \(16 bytes; the file has \d+\)/,
    offset: (b) => b.byteLength - 16,
    tensor: "w",
  },
  { what: "data_offsets of one number", bytes: raw(hdr({ w: entry("F32", [1], [4]) }), 4), message: /data_offsets is \[4\], not \[begin, end\]/, offset: 9, tensor: "w" },
  { what: "negative data_offsets", bytes: raw(hdr({ w: entry("F32", [1], [-4, 0]) }), 4), message: /data_offsets is \[-4,0\], not \[begin, end\] with integers >= 0/, offset: 9, tensor: "w" },
  { what: "fractional data_offsets", bytes: raw(hdr({ w: entry("F32", [1], [0, 4.5]) }), 8), message: /data_offsets is \[0,4.5\]/, offset: 9, tensor: "w" },
  { what: "begin after end", bytes: raw(hdr({ w: entry("F32", [0], [8, 4]) }), 8), message: /data_offsets \[8, 4\]: begin is after end/, offset: (b) => b.byteLength, tensor: "w" },
  {
    what: "offsets out of bounds",
    bytes: raw(hdr({ a: entry("F32", [2], [0, 8]), w: entry("F32", [4], [8, 24]) }), 12),
    message: /data_offsets \[8, 24\] \(file bytes \d+\.\.\d+\) run past the end of the data region \(12 bytes; the file has \d+\)/,
    offset: (b) => b.byteLength - 4,
    tensor: "w",
  },
  {
    what: "file one element short (truncated data)",
    bytes: raw(hdr({ a: entry("F32", [2], [0, 8]), w: entry("F32", [4], [8, 24]) }), 20),
    message: /data_offsets \[8, 24\] \(file bytes \d+\.\.\d+\) run past the end of the data region \(20 bytes; the file has \d+\)/,
    offset: (b) => b.byteLength - 12,
    tensor: "w",
  },
  {
    what: "overlapping tensors",
    bytes: raw(hdr({ a: entry("F32", [4], [0, 16]), b: entry("F32", [4], [8, 24]) }), 24),
    message: /data_offsets \[8, 24\] overlap those of "a" \[0, 16\]/,
    offset: (b) => b.byteLength - 16,
    tensor: "b",
  },
  {
    what: "one tensor inside another",
    bytes: raw(hdr({ big: entry("U8", [16], [0, 16]), small: entry("U8", [4], [4, 8]) }), 16),
    message: /\(byte \d+, tensor "small"\): data_offsets \[4, 8\] overlap those of "big" \[0, 16\]/,
    offset: (b) => b.byteLength - 12,
    tensor: "small",
  },
  {
    what: "a gap between tensors",
    bytes: raw(hdr({ a: entry("U8", [2], [0, 2]), b: entry("U8", [2], [6, 8]) }), 8),
    message: /\(byte \d+, tensor "b"\): data_offsets \[6, 8\] leave a gap of 4 bytes \(data bytes 2\.\.6\) after "a" \[0, 2\]; tensors must tile the data region/,
    offset: (b) => b.byteLength - 6,
    tensor: "b",
  },
  {
    what: "a gap before the first tensor",
    bytes: raw(hdr({ a: entry("U8", [2], [2, 4]) }), 4),
    message: /data_offsets \[2, 4\] leave a gap of 2 bytes \(data bytes 0\.\.2\) after the start of the data region/,
    offset: (b) => b.byteLength - 4,
    tensor: "a",
  },
  {
    what: "trailing bytes after the last tensor",
    bytes: raw(hdr({ a: entry("U8", [2], [0, 2]), b: entry("U8", [2], [2, 4]) }), 7),
    message: /3 bytes after the last tensor's data \(the tensors end at data byte 4, file byte \d+; the file has \d+\): trailing bytes or a missing tensor/,
    offset: (b) => b.byteLength - 3,
  },
  { what: "data but no tensors", bytes: raw("{}", 5), message: /5 bytes after the last tensor's data \(the tensors end at data byte 0/, offset: 10 },
  {
    what: "a zero-size tensor inside another",
    bytes: raw(hdr({ a: entry("U8", [4], [0, 4]), e: entry("F32", [0], [2, 2]) }), 4),
    message: /data_offsets \[2, 2\] overlap those of "a" \[0, 4\]/,
    offset: (b) => b.byteLength - 2,
    tensor: "e",
  },
  {
    what: "a duplicate tensor name (JSON.parse would keep the last)",
    bytes: raw('{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"w":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}', 4),
    message: /duplicate tensor name: "w" appears twice in the header/,
    offset: find('"w":{"dtype":"U8","shape":[2],"data_offsets":[2'),
    tensor: "w",
  },
  {
    what: "a duplicate tensor name spelt with an escape",
    bytes: raw('{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"\\u0077":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}', 2),
    message: /duplicate tensor name: "w" appears twice/,
    offset: find('"\\u0077"'),
    tensor: "w",
  },
  {
    what: "a duplicate key inside an entry",
    bytes: raw('{"w":{"dtype":"U8","dtype":"F32","shape":[2],"data_offsets":[0,2]}}', 2),
    message: /duplicate key "dtype" in the entry/,
    offset: find('"dtype":"F32"'),
    tensor: "w",
  },
  { what: "__metadata__ twice", bytes: raw('{"__metadata__":{},"__metadata__":{"format":"pt"}}'), message: /"__metadata__" appears twice in the header/, offset: 27 },
  {
    what: "size mismatch",
    bytes: raw(hdr({ w: entry("F32", [2, 2], [0, 12]) }), 16),
    message: /data_offsets \[0, 12\] hold 12 bytes, but F32 \[2,2\] needs 4 × 4 = 16/,
    offset: (b) => b.byteLength - 16,
    tensor: "w",
  },
  {
    what: "size mismatch of an 8-byte dtype",
    bytes: raw(hdr({ w: entry("I64", [3], [0, 16]) }), 24),
    message: /hold 16 bytes, but I64 \[3\] needs 3 × 8 = 24/,
    offset: (b) => b.byteLength - 24,
    tensor: "w",
  },
];

describe("corrupt files", () => {
  for (const c of CORRUPT)
    test(`${c.what}: clear error with file, byte offset${c.tensor ? " and tensor" : ""}`, async () => {
      const path = tmp("corrupt.safetensors");
      writeFileSync(path, c.bytes);
      const e = await expectError(openSafetensors(path));
      expect(e.message).toMatch(c.message);
      expect(e.file).toBe(path);
      expect(e.message.startsWith(`${path} (byte `)).toBe(true);
      const offset = typeof c.offset === "function" ? c.offset(c.bytes) : c.offset;
      expect(offset).toBeGreaterThanOrEqual(0);
      expect(e.offset).toBe(offset);
      expect(e.message).toContain(`byte ${offset}`);
      expect(e.tensor).toBe(c.tensor);
      if (c.tensor) expect(e.message).toContain(`tensor ${JSON.stringify(c.tensor)}`);
    });

  test("as the Rust crate: tensors tile the data region in any header order; zero-size tensors sit at boundaries", async () => {
    const path = tmp();
    // Header order b, e, a, z; offsets order a, e (at the a|b boundary), b, z (at the end).
    const h = hdr({ b: entry("U8", [2], [2, 4]), e: entry("F32", [0, 3], [2, 2]), a: entry("U8", [2], [0, 2]), z: entry("I64", [0], [4, 4]) });
    const bytes = raw(h, 4);
    bytes.set([1, 2, 3, 4], bytes.length - 4);
    writeFileSync(path, bytes);
    const f = await openSafetensors(path);
    expect(f.names()).toEqual(["b", "e", "a", "z"]);
    expect((await f.readTensor("e")).data).toEqual(new Float32Array(0));
    expect([...(await f.readTensor("b")).data]).toEqual([3, 4]);
    await f.close();
    // An empty header over an empty data region is a valid (empty) file.
    writeFileSync(path, raw("{}"));
    expect((await openSafetensors(path)).names()).toEqual([]);
  });

  test("a missing file, a directory", async () => {
    expect((await expectError(openSafetensors(join(TMP, "absent.safetensors")))).message).toMatch(/absent\.safetensors: no such file/);
    expect((await expectError(openSafetensors(TMP))).message).toMatch(/: is a directory, not a safetensors file/);
  });

  test("a file truncated or replaced after it was opened fails naming the tensor", async () => {
    const path = tmp();
    const w = [{ name: "w", dtype: "F32" as const, shape: [64], data: new Float32Array(64) }];
    await writeSafetensors(path, w);
    const f = await openSafetensors(path);
    expect((await f.readTensor("w")).data).toEqual(new Float32Array(64));
    await truncate(path, f.dataStart + 100);
    expect((await expectError(f.readTensor("w"))).message).toMatch(/\(tensor "w"\): file changed since it was opened \(size \d+ → \d+\); open it again/);
    await writeSafetensors(path, w); // atomic: a new inode at the same path
    expect((await expectError(f.readTensor("w"))).message).toMatch(/\(tensor "w"\): file changed since it was opened \(replaced\)/);
    rmSync(path);
    expect((await expectError(f.readTensor("w"))).message).toMatch(/\(tensor "w"\): no such file/);
  });
});

test("reading is lazy: one small tensor of a 3 GB (sparse) file costs neither time nor memory", async () => {
  const big = 3_000_000_000;
  const header = hdr({ big: entry("U8", [big], [0, big]), small: entry("F32", [4], [big, big + 16]) });
  const h = raw(header + " ".repeat((8 - (header.length % 8)) % 8));
  const path = tmp("sparse.safetensors");
  const fh = await open(path, "w");
  await fh.write(h, 0, h.byteLength, 0);
  const vals = new Float32Array([1.5, -2, 3.25, 4]);
  await fh.write(bytesOf(vals), 0, 16, h.byteLength + big); // the gap stays a hole
  await fh.close();

  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  const f = await openSafetensors(path);
  expect(f.fileSize).toBe(h.byteLength + big + 16);
  expect(f.entry("big").byteLength).toBe(big);
  expect([...(await f.readF32("small"))]).toEqual([1.5, -2, 3.25, 4]);
  await f.close();
  expect(performance.now() - t0).toBeLessThan(2000);
  expect(process.memoryUsage().rss - rss0).toBeLessThan(200 * 2 ** 20);
});

// ---- GPU ------------------------------------------------------------------------------------------------

describe("runtime tensors", () => {
  test("F32, F16, BF16 load as f32 tensors; I32 and I64 as i32; values exact", async () => {
    const gpu = await getGpu();
    const f = await openSafetensors(FIXTURE);
    try {
      for (const name of ["f32.matrix", "f32.special", "f32.scalar", "f16.values", "f16.special", "bf16.values", "bf16.special"]) {
        const t = await f.loadTensor(gpu, name);
        expect(t.dtype).toBe("f32");
        expect([...t.shape]).toEqual(EXPECTED.tensors[name]!.shape);
        expect([...(await t.toArray())]).toEqual(EXPECTED.tensors[name]!.values.map(num));
        t.release();
      }
      for (const name of ["i32.ids", "i64.ids"]) {
        const t = await f.loadTensor(gpu, name);
        expect(t.dtype).toBe("i32");
        expect([...t.shape]).toEqual(EXPECTED.tensors[name]!.shape);
        expect([...(await t.data())]).toEqual(EXPECTED.tensors[name]!.values as number[]);
        t.release();
      }
      const p = await f.loadTensor(gpu, "f32.matrix", { requiresGrad: true });
      expect(p.requiresGrad).toBe(true);
      p.release();
    } finally {
      await f.close();
    }
  });

  test("I64 outside the i32 range and dtypes the runtime lacks fail naming the tensor (nothing uploaded)", async () => {
    const gpu = await getGpu();
    const live = gpu.memory().liveBuffers;
    const f = await openSafetensors(FIXTURE);
    try {
      const e = await expectError(f.loadTensor(gpu, "i64.big"));
      expect(e.message).toMatch(/tiny\.safetensors \(tensor "i64\.big"\): I64 element 0 is 1099511627776, outside the i32 range/);
      for (const name of ["u8.bytes", "bool.mask", "f64.values", "i8.values"])
        expect((await expectError(f.loadTensor(gpu, name))).message).toMatch(/cannot be loaded as a tensor \(supported: F32, F16, BF16 as f32; I32, I64 as i32\)/);
      expect(gpu.memory().liveBuffers).toBe(live);
    } finally {
      await f.close();
    }
  });

  test("saveTensors: f32 as F32 (exact) and BF16 (rounded to nearest even), i32 as I32; reload matches", async () => {
    const gpu = await getGpu();
    const r = rng(99);
    const vals = Float32Array.from({ length: 37 }, () => (r() - 0.5) * 100);
    const a = Tensor.fromArray(gpu, vals, [37]);
    const ids = Tensor.fromArray(gpu, new Int32Array([3, -1, 2 ** 31 - 1]), [3], { dtype: "i32" });
    for (const dtype of ["F32", "BF16", "F16"] as const) {
      const path = tmp();
      await saveTensors(path, { "w.weight": a, ids }, { dtype });
      const f = await openSafetensors(path);
      expect(f.metadata).toEqual({ format: "pt" });
      expect(f.entry("w.weight").dtype).toBe(dtype);
      expect(f.entry("ids").dtype).toBe("I32");
      const w = (await f.readTensor("w.weight")).data;
      expect(w).toEqual(dtype === "F32" ? vals : dtype === "BF16" ? f32ToBf16(vals) : f32ToF16(vals));
      const back = await f.loadTensor(gpu, "w.weight");
      expect(await back.toArray()).toEqual(dtype === "F32" ? vals : dtype === "BF16" ? bf16ToF32(f32ToBf16(vals)) : f16ToF32(f32ToF16(vals)));
      back.release();
      expect((await f.readTensor("ids")).data).toEqual(new Int32Array([3, -1, 2 ** 31 - 1]));
      await f.close();
    }
    a.release();
    ids.release();
  });

  test("saveTensors: an f16 runtime tensor is saved as F16 with its exact bits", async () => {
    const gpu = await getGpu();
    const vals = Float32Array.from([1, -2.5, 65504, 6.103515625e-5, 0.1, -0]);
    const h = Tensor.fromArray(gpu, vals, [6], { dtype: "f16" });
    const path = tmp();
    await saveTensors(path, { h });
    const f = await openSafetensors(path);
    expect(f.entry("h").dtype).toBe("F16");
    expect(new Uint16Array((await f.readTensor("h")).data.buffer)).toEqual(f32ToF16(vals));
    await f.close();
    h.release();
  });
});

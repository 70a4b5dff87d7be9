// The corpus shard format (src/data/shard.ts): round trips through ShardWriter and ShardReader, every kind of
// bad input (each a ShardError naming the file and the byte / record), the writer's refusals, and a seeded fuzz
// test of mutated shards.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { HEADER_BYTES, SHARD_VERSION, ShardBlock, ShardError, ShardReader, ShardWriter, TASKS, type RecordInput, type ShardMeta, type ShardRecord } from "../../src/data/shard.ts";
import { H, INDEX_ENTRY, below, idsAt, layout, meta, modified, randomRecords, recordAt, reseal, rng, shardBytes, tempDir, writeShard } from "./shard_fixtures.ts";
import { mutateBytes } from "../fuzz_helpers.ts";

const dir = tempDir();
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every record of a shard, each block read and every record checked. */
async function readAll(path: string, expect?: Parameters<typeof ShardReader.open>[1]): Promise<ShardRecord[]> {
  const r = await ShardReader.open(path, expect);
  const out: ShardRecord[] = [];
  for await (const rec of r.records()) out.push(rec);
  return out;
}

/** The ShardError that `p` rejects with (the test fails on success or on any other error). */
async function shardError(p: Promise<unknown>): Promise<ShardError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ShardError);
    return e as ShardError;
  }
  throw new Error("expected a ShardError, but it succeeded");
}

let files = 0;
/** Write `bytes` to a fresh file and read it completely: the ShardError it gives, and the file's path. */
async function failure(bytes: Uint8Array, expect?: Parameters<typeof ShardReader.open>[1]): Promise<{ e: ShardError; path: string }> {
  const path = join(dir, `bad-${files++}.axs`);
  await Bun.write(path, bytes);
  return { e: await shardError(readAll(path, expect)), path };
}

/** The message names the file first, then the byte and record where given. */
function expectAt(e: ShardError, path: string, byte: number | undefined, record: number | undefined, reason: string | RegExp): void {
  expect(e.file).toBe(path);
  expect(e.byte).toBe(byte);
  expect(e.record).toBe(record);
  const at = [byte !== undefined ? `byte ${byte}` : "", record !== undefined ? `record ${record}` : ""].filter(Boolean).join(", ");
  expect(e.message.startsWith(`${path}${at ? ` (${at})` : ""}: `)).toBe(true);
  if (typeof reason === "string") expect(e.reason).toBe(reason);
  else expect(e.reason).toMatch(reason);
}

function expectSame(got: ShardRecord, want: RecordInput): void {
  expect(Array.from(got.ids)).toEqual(Array.from(want.ids));
  expect(got.spans === null ? null : Array.from(got.spans)).toEqual(want.spans === null ? null : Array.from(want.spans));
  expect([got.srcLang, got.tgtLang, got.task, got.promptLen]).toEqual([want.srcLang, want.tgtLang, want.task, want.promptLen]);
}

/** A shard of `records` whose meta is followed by padding (a created_by of the right length), so that it can be damaged too. */
function paddedShard(records: RecordInput[], m: ShardMeta, blockBytes: number): Uint8Array {
  for (let s = ""; ; s += "!") {
    const bytes = shardBytes(records, { ...m, createdBy: `test${s}` }, blockBytes);
    if ((HEADER_BYTES + layout(bytes).metaLen) % 8 !== 0) return bytes;
  }
}

/** The buffer a block's records are views of. */
const blockBuffer = (b: ShardBlock): ArrayBufferLike => (b as unknown as { bytes: Uint8Array }).bytes.buffer;

describe("round trip", () => {
  for (const vocab of [300, 70000]) {
    const width = vocab === 300 ? 2 : 4;
    test(`vocabulary ${vocab}: ${width}-byte ids, many blocks`, async () => {
      const rand = rng(vocab);
      const m = meta(vocab);
      const records = randomRecords(rand, 400, vocab, m.languages.length);
      expect(records.some((r) => r.ids.length === 1) && records.some((r) => r.ids.length >= 300)).toBe(true);
      const w = new ShardWriter(m, 2048);
      for (const r of records) w.add(r);
      expect(w.recordCount).toBe(400);
      const estimate = w.byteLength;
      const bytes = w.finish();
      expect(bytes.length).toBeLessThanOrEqual(estimate);
      // Determinism: the same records give the same bytes.
      expect(Buffer.from(shardBytes(records, m, 2048)).equals(Buffer.from(bytes))).toBe(true);
      const path = join(dir, `round-${vocab}.axs`);
      await Bun.write(path, bytes);

      const r = await ShardReader.open(path, { tokenizerHash: m.tokenizerHash, languages: m.languages });
      expect([r.width, r.recordCount, r.size]).toEqual([width, 400, bytes.length]);
      expect(r.meta).toEqual(m);
      expect(r.blockCount).toBeGreaterThan(20);
      // The layout the module comment describes: 8-aligned blocks right after the meta, the index last.
      const l = layout(bytes);
      expect(l.blocks[0]!.offset).toBe(Math.ceil((HEADER_BYTES + l.metaLen) / 8) * 8);
      for (const b of l.blocks) expect(b.offset % 8).toBe(0);
      expect(l.indexOff + l.indexLen).toBe(bytes.length);

      const all: ShardRecord[] = [];
      for await (const rec of r.records()) all.push(rec);
      expect(all.length).toBe(400);
      all.forEach((rec, i) => expectSame(rec, records[i]!));
      let tail = 0;
      for await (const rec of r.records(357)) expectSame(rec, records[357 + tail++]!);
      expect(tail).toBe(43);

      for (let k = 0; k < 60; k++) {
        const n = below(rand, 400);
        expectSame(await r.record(n), records[n]!);
        const { first, count } = r.blockRange(r.blockOf(n));
        expect(n >= first && n < first + count).toBe(true);
      }
      expect(() => r.blockOf(400)).toThrow(RangeError);
      expect(() => r.blockOf(-1)).toThrow(RangeError);

      // ids (and spans) are views of the block's buffer, ids 4-aligned, of the shard's width.
      for (const b of [0, 1, r.blockCount - 1]) {
        const block = await r.readBlock(b);
        for (let i = 0; i < block.count; i++) {
          const rec = block.record(i);
          expect(rec.ids).toBeInstanceOf(width === 2 ? Uint16Array : Uint32Array);
          expect(rec.ids.buffer).toBe(blockBuffer(block));
          expect(rec.ids.byteOffset % 4).toBe(0);
          if (rec.spans) expect(rec.spans.buffer).toBe(blockBuffer(block));
        }
        expect(() => block.record(block.count)).toThrow(RangeError);
      }
    });
  }

  test("a record as large as a block, and blocks of one record", async () => {
    const m = meta(70000);
    const records = randomRecords(rng(5), 12, 70000, 4);
    records[3] = { ...records[3]!, ids: Array.from({ length: 5000 }, (_, i) => i * 13), spans: null, promptLen: 0 };
    const path = join(dir, "big.axs");
    await writeShard(path, records, m, 64);
    const r = await ShardReader.open(path);
    expect(r.blockCount).toBe(12);
    (await readAll(path)).forEach((rec, i) => expectSame(rec, records[i]!));
  });
});

describe("the writer refuses what the reader would reject", () => {
  const m = meta(300, ["eng", "deu"]);
  const ok: RecordInput = { ids: [1, 2, 3], spans: new Uint8Array([0, 1, 2]), srcLang: 0, tgtLang: 1, task: "translation", promptLen: 1 };
  const cases: [string, Partial<RecordInput>, RegExp][] = [
    ["no tokens", { ids: [], spans: null, promptLen: 0 }, /at least one token/],
    ["an id at the vocabulary size", { ids: [1, 300, 3] }, /token 1 has id 300, outside the vocabulary \(300\)/],
    ["an id that a u16 would wrap to a valid one", { ids: [65536 + 5, 1, 2] }, /token 0 has id 65541/],
    ["a negative id", { ids: [1, -1, 2] }, /token 1 has id -1/],
    ["a fractional id", { ids: [1, 2.5, 2] }, /token 1 has id 2.5/],
    ["spans of another length", { spans: new Uint8Array(2) }, /spans has 2 entries for 3 tokens/],
    ["a span value of 3", { spans: new Uint8Array([0, 3, 1]) }, /spans\[1\] = 3, not 0, 1 or 2/],
    ["spans as a plain array", { spans: [0, 1, 2] as unknown as Uint8Array }, /spans must be a Uint8Array or null/],
    ["a language past the table", { srcLang: 2 }, /src_lang = 2 is not -1 or a language id below 2/],
    ["a language below -1", { tgtLang: -2 }, /tgt_lang = -2/],
    ["an unknown task", { task: "chat" as RecordInput["task"] }, /task = -1 is not one of/],
    ["prompt_len past the tokens", { promptLen: 4 }, /prompt_len = 4 is not in \[0, 3\]/],
  ];
  for (const [what, change, message] of cases)
    test(what, () => {
      const w = new ShardWriter(m);
      w.add(ok);
      expect(() => w.add({ ...ok, ...change })).toThrow(message);
      expect(() => w.add({ ...ok, ...change })).toThrow(/ShardWriter.add \(record 1\)/);
      expect(w.recordCount).toBe(1);
    });
  test("a vocabulary size that is not a positive integer", () => {
    for (const v of [0, -5, 1.5, NaN]) expect(() => new ShardWriter(meta(v))).toThrow(/vocabSize/);
  });
});

describe("bad input: a ShardError naming the file, byte and record", () => {
  const m = meta(300);
  const records = randomRecords(rng(7), 40, 300, m.languages.length);
  let good: Uint8Array;
  let l: ReturnType<typeof layout>;
  beforeAll(() => {
    good = paddedShard(records, m, 512);
    l = layout(good);
    expect(l.blocks.length).toBeGreaterThan(4);
  });

  test("truncated inside the header, the meta, a block and the index", async () => {
    let { e, path } = await failure(good.subarray(0, 40));
    expectAt(e, path, 40, undefined, "is truncated: 40 bytes, shorter than the 64-byte header");
    for (const cut of [HEADER_BYTES + 5, l.blocks[2]!.offset + 9, l.indexOff + INDEX_ENTRY + 3, good.length - 1]) {
      ({ e, path } = await failure(good.subarray(0, cut)));
      expectAt(e, path, cut, undefined, `is truncated: ${cut} bytes, but its index ends at byte ${good.length}`);
    }
  });

  test("an empty (0-byte) file", async () => {
    const { e, path } = await failure(new Uint8Array(0));
    expectAt(e, path, 0, undefined, "is empty (0 bytes): not a shard");
  });

  test("flipped bytes in the header, its CRC, the meta, the meta's padding, a block, the index", async () => {
    for (const at of [H.records, H.indexOff + 1, H.crc + 2]) {
      const { e, path } = await failure(modified(good, (b) => (b[at]! ^= 0x10)));
      expectAt(e, path, 0, undefined, "header checksum mismatch: the header is damaged");
    }
    let { e, path } = await failure(modified(good, (b) => (b[HEADER_BYTES + 7]! ^= 1)));
    expectAt(e, path, HEADER_BYTES, undefined, "meta checksum mismatch: the meta is damaged");
    const metaEnd = HEADER_BYTES + l.metaLen;
    ({ e, path } = await failure(modified(good, (b) => (b[metaEnd]! ^= 4))));
    expectAt(e, path, metaEnd, undefined, "nonzero padding after the meta: the file is damaged");

    const b2 = l.blocks[2]!;
    const bad = modified(good, (b) => (b[b2.offset + b2.length - 20]! ^= 0x80));
    ({ e, path } = await failure(bad));
    expectAt(e, path, b2.offset, b2.first, `block 2 checksum mismatch (records ${b2.first}..${b2.first + b2.count - 1}): the data is damaged`);
    // Random access reads only the record's own block: the others still read.
    const r = await ShardReader.open(path);
    expectSame(await r.record(0), records[0]!);
    await shardError(r.record(b2.first + b2.count - 1));

    ({ e, path } = await failure(modified(good, (b) => (b[l.indexOff + INDEX_ENTRY + 24]! ^= 1))));
    expectAt(e, path, l.indexOff, undefined, "index checksum mismatch: the block index is damaged");
  });

  test("wrong magic", async () => {
    const { e, path } = await failure(modified(good, (b) => b.set(new TextEncoder().encode("PK\x03\x04"), 0)));
    expectAt(e, path, 0, undefined, 'not an alignx shard: magic "PK\\u0003\\u0004HARD", expected "ALXSHARD"');
  });

  test("another version (header CRC fixed up, so the version check is what fires)", async () => {
    const { e, path } = await failure(reseal(modified(good, (_, dv) => dv.setUint32(H.version, SHARD_VERSION + 1, true))));
    expectAt(e, path, H.version, undefined, `format version ${SHARD_VERSION + 1}, this alignx reads version ${SHARD_VERSION}`);
  });

  test("a record longer, and one shorter, than its declared length", async () => {
    const n = l.blocks[1]!.first; // the first record of block 1: another record follows it in the block
    const { tableAt, at, length } = recordAt(good, n);
    let { e, path } = await failure(reseal(modified(good, (_, dv) => dv.setUint32(tableAt + 4, length - 1, true))));
    expectAt(e, path, at, n, `the record is longer than its declared ${length - 1} bytes`);
    ({ e, path } = await failure(reseal(modified(good, (_, dv) => dv.setUint32(tableAt + 4, length + 1, true)))));
    expectAt(e, path, at, n, `the record ends before its declared ${length + 1} bytes`);
    const b = l.blocks[1]!;
    ({ e, path } = await failure(reseal(modified(good, (_, dv) => dv.setUint32(tableAt, b.length - 2, true)))));
    expectAt(e, path, tableAt, n, `record range [${b.length - 2}, ${b.length - 2 + length}) lies outside its block's data (block 1, ${b.length} bytes)`);
  });

  test("a token id at the vocabulary size (2- and 4-byte ids)", async () => {
    const n = 5;
    let { e, path } = await failure(reseal(modified(good, (_, dv) => dv.setUint16(idsAt(good, n) + 2 * (records[n]!.ids.length - 1), 300, true))));
    expectAt(e, path, recordAt(good, n).at, n, `token ${records[n]!.ids.length - 1} has id 300, outside the vocabulary (300)`);
    const wide = shardBytes(randomRecords(rng(8), 10, 70000, 4), meta(70000), 512);
    ({ e, path } = await failure(reseal(modified(wide, (_, dv) => dv.setUint32(idsAt(wide, 3), 70000, true)))));
    expectAt(e, path, recordAt(wide, 3).at, 3, "token 0 has id 70000, outside the vocabulary (70000)");
  });

  test("a span value above 2", async () => {
    const n = records.findIndex((r) => r.spans !== null && r.ids.length > 2 && r.ids.length < 100);
    const spansBin = idsAt(good, n) + 2 * records[n]!.ids.length;
    expect(good[spansBin]).toBe(0xc4); // bin8: its payload starts 2 bytes on
    const { e, path } = await failure(reseal(modified(good, (b) => (b[spansBin + 2 + 1] = 3))));
    expectAt(e, path, recordAt(good, n).at, n, "spans[1] = 3, not 0, 1 or 2");
  });

  test("index, header and block table disagreeing (CRCs fixed up)", async () => {
    const e1 = l.indexOff + INDEX_ENTRY; // block 1's entry
    let { e, path } = await failure(reseal(modified(good, (_, dv) => dv.setBigUint64(e1 + 16, BigInt(l.blocks[1]!.first + 1), true))));
    expectAt(e, path, e1, undefined, /^block 1's index entry .* does not follow block 0$/);
    ({ e, path } = await failure(reseal(modified(good, (_, dv) => dv.setBigUint64(H.records, 41n, true)))));
    expectAt(e, path, H.records, undefined, "the header declares 41 records, the blocks hold 40");
    const b1 = l.blocks[1]!;
    ({ e, path } = await failure(reseal(modified(good, (_, dv) => dv.setUint32(b1.offset, b1.count - 1, true)))));
    expectAt(e, path, b1.offset, b1.first, `block 1 holds ${b1.count - 1} records, its index entry says ${b1.count}`);
    ({ e, path } = await failure(reseal(modified(good, (_, dv) => dv.setUint32(H.width, 3, true)))));
    expectAt(e, path, H.width, undefined, "token width 3, expected 2 or 4");
  });

  test("trailing bytes after the index", async () => {
    const longer = new Uint8Array(good.length + 3);
    longer.set(good);
    const { e, path } = await failure(longer);
    expectAt(e, path, good.length, undefined, `has 3 bytes after its index (ends at byte ${good.length})`);
  });

  test("0 records: the writer refuses to finish, the reader rejects a crafted one", async () => {
    expect(() => new ShardWriter(m).finish()).toThrow(/at least one record/);
    const first = l.blocks[0]!.offset;
    const empty = modified(good.subarray(0, first), (_, dv) => {
      dv.setBigUint64(H.records, 0n, true);
      dv.setUint32(H.blocks, 0, true);
      dv.setBigUint64(H.indexOff, BigInt(first), true);
      dv.setUint32(H.indexLen, 0, true);
    });
    const { e, path } = await failure(reseal(empty));
    expectAt(e, path, H.records, undefined, "holds no records (a shard has at least one)");
  });

  test("another tokenizer, another language table", async () => {
    const path = join(dir, "good.axs");
    await Bun.write(path, good);
    let e = await shardError(ShardReader.open(path, { tokenizerHash: "b".repeat(64) }));
    expectAt(e, path, undefined, undefined, "packed with another tokenizer (hash aaaaaaaaaaaa…, expected bbbbbbbbbbbb…): pack the corpus again with this tokenizer");
    e = await shardError(ShardReader.open(path, { languages: ["eng", "deu"] }));
    expectAt(e, path, HEADER_BYTES, undefined, "language table [eng, deu, fra, zho] differs from the manifest's [eng, deu]");
    expect((await readAll(path, { tokenizerHash: m.tokenizerHash, languages: m.languages })).length).toBe(40);
  });

  test("a directory, a missing file", async () => {
    const sub = join(dir, "adir.axs");
    mkdirSync(sub, { recursive: true });
    let e = await shardError(ShardReader.open(sub));
    expectAt(e, sub, undefined, undefined, "is a directory, not a shard file");
    const missing = join(dir, "missing.axs");
    e = await shardError(ShardReader.open(missing));
    expectAt(e, missing, undefined, undefined, /^cannot be read: /);
  });
});

test("fuzz: 2000 mutated shards read back intact or fail with a ShardError", async () => {
  const m = meta(300, ["eng", "deu"]);
  const records = randomRecords(rng(11), 14, 300, 2);
  const good = paddedShard(records, m, 256);
  expect(layout(good).blocks.length).toBeGreaterThan(3);
  const rand = rng(2024);
  const path = join(dir, "fuzz.axs");
  const problems: string[] = [];
  let rejected = 0;
  const t0 = performance.now();
  for (let k = 0; k < 2000; k++) {
    const { bytes, what } = mutateBytes(rand, good);
    await Bun.write(path, bytes);
    try {
      const got = await readAll(path);
      // Read back: only when the mutation undid itself, and then every record is the original.
      if (!Buffer.from(bytes).equals(Buffer.from(good))) problems.push(`${what}: read back without an error`);
      else got.forEach((rec, i) => expectSame(rec, records[i]!));
    } catch (e) {
      if (e instanceof ShardError) rejected++;
      else problems.push(`${what}: ${(e as Error)?.name}: ${(e as Error)?.message}`);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  expect(problems).toEqual([]);
  expect(rejected).toBeGreaterThan(1900);
  expect(seconds).toBeLessThan(20);
}, 30_000);


// Every task index is used by randomRecords, so the round trips cover them all.
test("TASKS are what the records store", () => expect(TASKS).toEqual(["pretrain", "translation", "general"]));

// Shared by the shard and verify tests: a seeded generator, random records, shards written to a temporary
// directory, and the byte surgery that damages a shard on purpose: where its parts lie (layout, recordAt), and
// reseal(), which recomputes every CRC so that a deliberate change reaches the checks behind them.
import { tempDir as freshDir } from "../helpers.ts";
import { HEADER_BYTES, ShardWriter, TASKS, type RecordInput, type ShardMeta } from "../../src/data/shard.ts";

/** The project's seeded generator (mulberry32), uniform in [0, 1). */
export { mulberry32 as rng } from "../../src/tensor/rng.ts";

/** A random integer in [0, n). */
import { below } from "../fuzz_helpers.ts";
export { below };

export const tempDir = (): string => freshDir("alignx-shard-test-");

export function meta(vocabSize: number, languages = ["eng", "deu", "fra", "zho"], tokenizerHash = "a".repeat(64)): ShardMeta {
  return { tokenizerHash, vocabSize, languages, createdBy: "alignx test" };
}

/**
 * `n` random records: lengths 1, a few hundred (past a bin8's 255 bytes) and in between; ids below `vocab`;
 * spans or null; languages -1..languages-1; every task in turn; prompt_len within the length.
 */
export function randomRecords(rand: () => number, n: number, vocab: number, languages: number): RecordInput[] {
  return Array.from({ length: n }, (_, i) => {
    const len = i % 7 === 0 ? 1 : i % 11 === 0 ? 300 + below(rand, 200) : 1 + below(rand, 60);
    const ids = Array.from({ length: len }, () => below(rand, vocab));
    if (i % 13 === 0) ids[0] = vocab - 1; // the largest id
    const spans = rand() < 0.6 ? Uint8Array.from({ length: len }, () => below(rand, 3)) : null;
    return { ids, spans, srcLang: below(rand, languages + 1) - 1, tgtLang: below(rand, languages + 1) - 1, task: TASKS[i % TASKS.length]!, promptLen: below(rand, len + 1) };
  });
}

export function shardBytes(records: RecordInput[], m: ShardMeta, blockBytes?: number): Uint8Array {
  const w = new ShardWriter(m, blockBytes);
  for (const r of records) w.add(r);
  return w.finish();
}

export async function writeShard(path: string, records: RecordInput[], m: ShardMeta, blockBytes?: number): Promise<Uint8Array> {
  const bytes = shardBytes(records, m, blockBytes);
  await Bun.write(path, bytes);
  return bytes;
}

/** Header field offsets (the format's, restated: the tests check the writer against them). */
export const H = { version: 8, width: 12, records: 16, blocks: 24, metaLen: 28, indexOff: 32, indexLen: 40, indexCrc: 44, metaCrc: 48, crc: 60 } as const;
export const INDEX_ENTRY = 32;

export interface Layout {
  metaLen: number;
  indexOff: number;
  indexLen: number;
  blocks: { offset: number; length: number; count: number; first: number }[];
}

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** Where a well-formed shard's meta, blocks and index lie, read from its header and index. */
export function layout(bytes: Uint8Array): Layout {
  const dv = view(bytes);
  const indexOff = Number(dv.getBigUint64(H.indexOff, true));
  const blocks = Array.from({ length: dv.getUint32(H.blocks, true) }, (_, b) => {
    const e = indexOff + b * INDEX_ENTRY;
    return { offset: Number(dv.getBigUint64(e, true)), length: dv.getUint32(e + 8, true), count: dv.getUint32(e + 12, true), first: Number(dv.getBigUint64(e + 16, true)) };
  });
  return { metaLen: dv.getUint32(H.metaLen, true), indexOff, indexLen: dv.getUint32(H.indexLen, true), blocks };
}

/** Record n: its block, the file offset of its (start, length) table entry, its file offset and length. */
export function recordAt(bytes: Uint8Array, n: number): { block: number; tableAt: number; at: number; length: number } {
  const blocks = layout(bytes).blocks;
  const block = blocks.findIndex((b) => n >= b.first && n < b.first + b.count);
  const b = blocks[block]!;
  const tableAt = b.offset + 8 + 8 * (n - b.first);
  const dv = view(bytes);
  return { block, tableAt, at: b.offset + dv.getUint32(tableAt, true), length: dv.getUint32(tableAt + 4, true) };
}

/** File offset of record n's first token id (after the record marker and the ids bin header). */
export function idsAt(bytes: Uint8Array, n: number): number {
  const { at } = recordAt(bytes, n);
  const binHeader = { 0xc4: 2, 0xc5: 3, 0xc6: 5 }[bytes[at + 1]!];
  if (!binHeader) throw new Error(`record ${n} does not start with an ids bin`);
  return at + 1 + binHeader;
}

export const crc32 = (b: Uint8Array): number => Bun.hash.crc32(b) >>> 0;

/**
 * Recompute every CRC of a (deliberately modified) shard in place: each block's in the index (blocks inside
 * the file), the index's, the meta's, and last the header's. Returns `bytes`.
 */
export function reseal(bytes: Uint8Array): Uint8Array {
  const dv = view(bytes);
  const { metaLen, indexOff, indexLen, blocks } = layout(bytes);
  blocks.forEach((b, i) => {
    if (b.offset + b.length <= bytes.length) dv.setUint32(indexOff + i * INDEX_ENTRY + 24, crc32(bytes.subarray(b.offset, b.offset + b.length)), true);
  });
  dv.setUint32(H.indexCrc, crc32(bytes.subarray(indexOff, indexOff + indexLen)), true);
  dv.setUint32(H.metaCrc, crc32(bytes.subarray(HEADER_BYTES, HEADER_BYTES + metaLen)), true);
  dv.setUint32(H.crc, crc32(bytes.subarray(0, H.crc)), true);
  return bytes;
}

/** A copy of `bytes` with `f` applied to it. */
export function modified(bytes: Uint8Array, f: (b: Uint8Array, dv: DataView) => void): Uint8Array {
  const copy = bytes.slice();
  f(copy, view(copy));
  return copy;
}

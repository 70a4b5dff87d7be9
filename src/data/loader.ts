/**
 * The training data loader: batches of padded token rows from `alignx pack` shards, read in slices (one block at
 * a time, never the whole corpus), shuffled, grouped by length, prefetched in the background, and resumable
 * exactly from a small JSON state.
 *
 *   data            a manifest.json, a directory holding one, or shard paths / fast-glob patterns. With a
 *                   manifest every shard is opened against the manifest's tokenizer hash and language table
 *                   and must hold the manifest's record count; without one, all shards must agree with the
 *                   first. `expectTokenizerHash` (the model's tokenizer) refuses a corpus of another tokenizer.
 *   epoch e         the shards in a seeded order (seed and e mixed), each read in block order, records through
 *                   a shuffle buffer (`shuffleBuffer`, default 4096: filled first, then each incoming record
 *                   replaces a seeded-random element, which goes out; at the end of the epoch the buffer drains
 *                   in random order). Epochs do not overlap: every record is seen exactly once per epoch.
 *   batches         groups of `groupBatches` × `batchSize` records of the shuffled stream are sorted by length
 *                   (longest first, stable), cut into batches, and the group's batches go out in a seeded-random
 *                   order (HF's LengthGroupedSampler megabatches); `groupByLength: false`: consecutive records.
 *                   The epoch's last group is partial; its one partial batch is kept unless `dropLast`, so an
 *                   epoch is exactly ceil(N / batchSize) batches (floor with dropLast).
 *   rows            right-padded to the batch's longest row rounded up to `padToMultipleOf` (default 8), after
 *                   `maxLength` truncation (keeps the first tokens). Labels are the ids (the model shifts them),
 *                   IGNORE_INDEX (-100) on padding and, with `trainOnInputs: false`, on the first promptLen
 *                   tokens; attention mask 1/0; srcTgtIndex = the record's spans (0 where none and on padding).
 *
 * Determinism: one producer runs the pipeline above strictly in order; prefetching (`prefetch` batches, and the
 * next block read while the current one is decoded) changes only timing, never the batches. The random streams
 * are small seeded generators whose whole state is one u32 (src/tensor/rng.ts Mulberry32, with the state
 * exposed so it can be saved): shard order (seed, epoch), the shuffle buffer and the group order.
 *
 * Prefetch vs state: the producer is ahead of the consumer, so its live position is NOT the resume point. It
 * records a snapshot of its state with every batch it makes; state() returns the snapshot that came with the
 * last batch handed out (or the opening state before the first), so state() describes the position right after
 * the last batch the trainer received, whatever was prefetched. LoaderState (plain JSON):
 *
 *   { format: "alignx-loader-state", version: 1,
 *     shards: [{ file, records }],          the corpus (file names in loader order + record counts): must match
 *     options: { seed, batchSize, shuffle, shuffleBuffer, groupByLength, groupBatches, padToMultipleOf,
 *                maxLength, dropLast, trainOnInputs, padId },   what shapes batches: must match
 *     epoch, step,                           current epoch; batches handed out so far (all epochs)
 *     shardCursor, recordCursor,             position in the epoch's shard order; next record of that shard
 *     rng: { buffer, group },                the generators' u32 states (the shard order is a function of epoch)
 *     buffer: [[shard, record], ...],        the shuffle buffer, in slot order
 *     pending: [[[shard, record], ...], ...] the current group's batches not yet handed out, in output order }
 *
 * (A group is only collected when no batch of the previous one is pending, so right after a batch there is never a
 * half-collected group: `pending` is the whole of the group state.) Loader.open(opts, state) checks the corpus
 * and options, re-reads the referenced records (block by block) and continues exactly as an uninterrupted run.
 *
 * Data parallelism is out of scope here; the producer makes one global batch stream (with `step`), so a later
 * rank/world option can take every world-th batch (or split each batch) without touching the pipeline.
 */
import fg from "fast-glob";
import { existsSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { MANIFEST_FILE, readManifest } from "./manifest.ts";
import { Mulberry32, mixSeed } from "../tensor/rng.ts";
import { IGNORE_INDEX } from "./prompt.ts";
import { ShardError, ShardReader, type ShardBlock, type ShardRecord } from "./shard.ts";

export const LOADER_STATE_FORMAT = "alignx-loader-state";
export const LOADER_STATE_VERSION = 1;

export const LOADER_DEFAULTS = {
  seed: 0,
  shuffle: true,
  shuffleBuffer: 4096,
  groupByLength: true,
  groupBatches: 16,
  padToMultipleOf: 8,
  maxLength: null as number | null,
  dropLast: false,
  trainOnInputs: true,
  padId: 0,
  prefetch: 4,
} as const;

export interface LoaderOptions {
  /** A manifest.json, a directory holding manifest.json, or shard paths / fast-glob patterns. */
  data: string | readonly string[];
  batchSize: number;
  /** Seed of the shard order, the shuffle buffer and the group order. Default 0. */
  seed?: number;
  /** false: shards in the given order, no shuffle buffer, a group's batches in sorted order. Default true. */
  shuffle?: boolean;
  /** Records in the shuffle buffer (0: none). Default 4096. */
  shuffleBuffer?: number;
  /** Sort groups of `groupBatches` × batchSize records by length before cutting batches. Default true. */
  groupByLength?: boolean;
  /** Batches per length group. Default 16. */
  groupBatches?: number;
  /** Pad the row length up to a multiple of this. Default 8. */
  padToMultipleOf?: number;
  /** Keep at most this many tokens of a record (its first). Default: no limit. */
  maxLength?: number | null;
  /** Drop an epoch's partial batch. Default false. */
  dropLast?: boolean;
  /** false: labels are IGNORE_INDEX on each record's first promptLen tokens. Default true (the reference). */
  trainOnInputs?: boolean;
  /** Id on padding positions (masked out everywhere). Default 0. */
  padId?: number;
  /** Batches kept ready ahead of the consumer. Default 4. */
  prefetch?: number;
  /** Stop after this many epochs (counted from 0, whatever the state). Default: never. */
  epochs?: number;
  /** The model's tokenizer hash: a corpus packed with another tokenizer is refused. */
  expectTokenizerHash?: string;
}

/** The options that shape batches, resolved; saved in the state, and a restore with other values is refused. */
export interface LoaderShape {
  seed: number;
  batchSize: number;
  shuffle: boolean;
  shuffleBuffer: number;
  groupByLength: boolean;
  groupBatches: number;
  padToMultipleOf: number;
  maxLength: number | null;
  dropLast: boolean;
  trainOnInputs: boolean;
  padId: number;
}

const SHAPE_KEYS = ["seed", "batchSize", "shuffle", "shuffleBuffer", "groupByLength", "groupBatches", "padToMultipleOf", "maxLength", "dropLast", "trainOnInputs", "padId"] as const satisfies readonly (keyof LoaderShape)[];

export interface LoaderBatch {
  /** Row-major [batch × length]; padId on padding. */
  inputIds: Int32Array;
  /** The ids (unshifted); IGNORE_INDEX on padding and, with trainOnInputs false, on the prompt. */
  labels: Int32Array;
  /** 1 on tokens, 0 on padding. */
  attentionMask: Int32Array;
  /** AlignX src_tgt_index: 1 source sentence, 2 target sentence, 0 elsewhere and on padding. */
  srcTgtIndex: Int32Array;
  /** Per row [batch]: language ids (the corpus's table), -1 when none. */
  srcLang: Int32Array;
  tgtLang: Int32Array;
  batch: number;
  length: number;
  /** Non-padding tokens. */
  tokens: number;
  epoch: number;
  /** Index of this batch in the loader's whole stream (0-based, across epochs and restores). */
  step: number;
}

/** A record reference: (shard index in the loader's shard list, record number in the shard). */
export type RecordRef = [shard: number, record: number];

export interface LoaderState {
  format: typeof LOADER_STATE_FORMAT;
  version: number;
  shards: { file: string; records: number }[];
  options: LoaderShape;
  epoch: number;
  step: number;
  shardCursor: number;
  recordCursor: number;
  rng: { buffer: number; group: number };
  buffer: RecordRef[];
  pending: RecordRef[][];
}

export interface LoaderShard {
  path: string;
  /** The name the state records: the manifest's entry, or the file's base name. */
  file: string;
  records: number;
}

/** Counters for tests and diagnostics. */
export interface LoaderDebug {
  /** Records the loader holds now: shuffle buffer + group being collected + pending batches + ready batches' rows. */
  held: number;
  peakHeld: number;
  /** shuffleBuffer + groupBatches × batchSize (batchSize without grouping) + prefetch × batchSize. */
  bound: number;
  /** Blocks in memory now (the one being decoded and the one read ahead), and the most at once. */
  blocksHeld: number;
  peakBlocksHeld: number;
  blocksRead: number;
  /** Batches made and not yet handed out. */
  ready: number;
}

/** A bad option, state, or use of the loader (corpus damage is a ShardError). */
export class LoaderError extends Error {
  override name = "LoaderError";
  exitCode = 1;
}

const STREAM_ORDER = 1, STREAM_BUFFER = 2, STREAM_GROUP = 3;

function shuffleInPlace<T>(a: T[], rng: Mulberry32): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
}

// ---- shard resolution ----------------------------------------------------------------------------------------

interface Corpus {
  readers: ShardReader[];
  shards: LoaderShard[];
  tokenizerHash: string;
  vocabSize: number;
  languages: string[];
  manifest: string | null;
}

const short = (h: string) => `${h.slice(0, 12)}…`;

async function openCorpus(data: string | readonly string[], expectHash: string | undefined): Promise<Corpus> {
  const items = typeof data === "string" ? [data] : [...data];
  if (items.length === 0) throw new LoaderError("data: no manifest or shard given");
  const manifestOf = (p: string): string | null => {
    if (!existsSync(p)) return null;
    if (statSync(p).isDirectory()) {
      const m = join(p, MANIFEST_FILE);
      if (!existsSync(m)) throw new LoaderError(`${p}: is a directory without ${MANIFEST_FILE}; name its shards instead (e.g. ${join(p, "*.axs")})`);
      return m;
    }
    return p.endsWith(".json") ? p : null;
  };
  if (items.length === 1) {
    const m = manifestOf(items[0]!);
    if (m) return openManifest(m, expectHash);
  }
  const paths: string[] = [];
  const seen = new Set<string>();
  for (const item of items) {
    let found: string[];
    if (existsSync(item)) {
      if (manifestOf(item)) throw new LoaderError(`${item}: a manifest can only be given alone, not among shards`);
      found = [item];
    } else if (fg.isDynamicPattern(item)) {
      found = (await fg(item, { onlyFiles: true, absolute: true, unique: true })).sort();
      if (found.length === 0) throw new LoaderError(`${item}: the pattern matches no file`);
    } else {
      throw new ShardError("no such file", item);
    }
    for (const p of found) {
      const key = resolve(p); // a shard named twice (overlapping patterns) is read once
      if (!seen.has(key)) paths.push(p);
      seen.add(key);
    }
  }
  const readers: ShardReader[] = [];
  for (const p of paths) {
    const r = await ShardReader.open(p, expectHash !== undefined ? { tokenizerHash: expectHash } : {});
    const first = readers[0];
    if (first) {
      if (r.meta.tokenizerHash !== first.meta.tokenizerHash)
        throw new ShardError(`packed with another tokenizer (hash ${short(r.meta.tokenizerHash)}) than ${first.path} (hash ${short(first.meta.tokenizerHash)}): one corpus, one tokenizer`, p);
      if (r.meta.languages.join(",") !== first.meta.languages.join(","))
        throw new ShardError(`language table [${r.meta.languages.join(", ")}] differs from ${first.path}'s [${first.meta.languages.join(", ")}]`, p);
    }
    readers.push(r);
  }
  const f = readers[0]!;
  return {
    readers,
    shards: readers.map((r) => ({ path: r.path, file: basename(r.path), records: r.recordCount })),
    tokenizerHash: f.meta.tokenizerHash,
    vocabSize: f.meta.vocabSize,
    languages: [...f.meta.languages],
    manifest: null,
  };
}

async function openManifest(path: string, expectHash: string | undefined): Promise<Corpus> {
  const m = await readManifest(path);
  if (expectHash !== undefined && m.tokenizer.hash !== expectHash)
    throw new ShardError(`packed with another tokenizer (hash ${short(m.tokenizer.hash)}, expected ${short(expectHash)}): pack the corpus again with this tokenizer`, path);
  const readers: ShardReader[] = [];
  for (const e of m.shards) {
    const p = join(dirname(path), e.file);
    const r = await ShardReader.open(p, { tokenizerHash: m.tokenizer.hash, languages: m.languages });
    if (r.recordCount !== e.records) throw new ShardError(`the manifest says ${e.records} records, the shard holds ${r.recordCount}`, p);
    readers.push(r);
  }
  return {
    readers,
    shards: m.shards.map((e, i) => ({ path: readers[i]!.path, file: e.file, records: e.records })),
    tokenizerHash: m.tokenizer.hash,
    vocabSize: m.tokenizer.vocab_size,
    languages: [...m.languages],
    manifest: path,
  };
}

// ---- the producer --------------------------------------------------------------------------------------------

/** A record as the loader keeps it: copied out of its block (so blocks are freed) and truncated. */
interface Item {
  shard: number;
  rec: number;
  ids: Uint16Array | Uint32Array;
  spans: Uint8Array | null;
  srcLang: number;
  tgtLang: number;
  promptLen: number;
}

/** The producer's position right after one batch (refs flattened as shard, record pairs). */
interface Snapshot {
  epoch: number;
  step: number;
  shardCursor: number;
  recordCursor: number;
  bufferRng: number;
  groupRng: number;
  buffer: Int32Array;
  pending: Int32Array[];
}

interface Produced {
  batch: LoaderBatch;
  snap: Snapshot;
}

const flatRefs = (items: readonly Item[]): Int32Array => {
  const out = new Int32Array(items.length * 2);
  items.forEach((it, i) => {
    out[2 * i] = it.shard;
    out[2 * i + 1] = it.rec;
  });
  return out;
};

class Producer {
  epoch = 0;
  step = 0;
  private order: number[] = [];
  shardCursor = 0;
  recordCursor = 0;
  readonly bufferRng: Mulberry32;
  readonly groupRng: Mulberry32;
  buffer: Item[] = [];
  private group: Item[] = [];
  pending: Item[][] = [];
  private readonly groupSize: number;
  private block: { shard: number; block: ShardBlock } | null = null;
  private ahead: { shard: number; block: number; read: Promise<ShardBlock> } | null = null;
  readyRows = 0;
  peakHeld = 0;
  blocksRead = 0;
  peakBlocksHeld = 0;

  constructor(
    private readonly readers: readonly ShardReader[],
    private readonly shape: LoaderShape,
    private readonly epochs: number,
  ) {
    this.bufferRng = new Mulberry32(mixSeed(shape.seed, STREAM_BUFFER));
    this.groupRng = new Mulberry32(mixSeed(shape.seed, STREAM_GROUP));
    this.groupSize = shape.groupByLength ? shape.groupBatches * shape.batchSize : shape.batchSize;
    this.startEpoch(0);
  }

  get held(): number {
    let n = this.buffer.length + this.group.length + this.readyRows;
    for (const b of this.pending) n += b.length;
    return n;
  }

  get blocksHeld(): number {
    return (this.block ? 1 : 0) + (this.ahead ? 1 : 0);
  }

  track(): void {
    this.peakHeld = Math.max(this.peakHeld, this.held);
    this.peakBlocksHeld = Math.max(this.peakBlocksHeld, this.blocksHeld);
  }

  /** The shard order of epoch e. */
  shardOrder(e: number): number[] {
    const order = this.readers.map((_, i) => i);
    if (this.shape.shuffle) shuffleInPlace(order, new Mulberry32(mixSeed(this.shape.seed, STREAM_ORDER, e)));
    return order;
  }

  private startEpoch(e: number): void {
    this.epoch = e;
    this.order = this.shardOrder(e);
    this.shardCursor = 0;
    this.recordCursor = 0;
    this.block = null;
    this.ahead = null;
  }

  private item(shard: number, rec: number, r: ShardRecord): Item {
    const max = this.shape.maxLength;
    const len = max !== null ? Math.min(r.ids.length, max) : r.ids.length;
    return { shard, rec, ids: r.ids.slice(0, len), spans: r.spans ? r.spans.slice(0, len) : null, srcLang: r.srcLang, tgtLang: r.tgtLang, promptLen: Math.min(r.promptLen, len) };
  }

  private readBlock(shard: number, b: number): Promise<ShardBlock> {
    this.blocksRead++;
    return this.readers[shard]!.readBlock(b);
  }

  private fetchBlock(shard: number, b: number): Promise<ShardBlock> {
    const a = this.ahead;
    this.ahead = null;
    if (a && a.shard === shard && a.block === b) return a.read;
    return this.readBlock(shard, b);
  }

  /** Start reading the block after (shard, b) in this epoch's stream, if any. */
  private readAhead(shard: number, b: number): void {
    let s = shard, nb = b + 1, p = this.shardCursor;
    while (nb >= this.readers[s]!.blockCount) {
      if (++p >= this.order.length) return;
      s = this.order[p]!;
      nb = 0;
    }
    const read = this.readBlock(s, nb);
    read.catch(() => {}); // surfaces when (if) it is awaited
    this.ahead = { shard: s, block: nb, read };
  }

  /** The next record of the epoch's stream in shard order, or null at its end. */
  private async pullSource(): Promise<Item | null> {
    while (this.shardCursor < this.order.length) {
      const s = this.order[this.shardCursor]!;
      const reader = this.readers[s]!;
      const n = this.recordCursor;
      if (n >= reader.recordCount) {
        this.shardCursor++;
        this.recordCursor = 0;
        continue;
      }
      let cur = this.block;
      if (!cur || cur.shard !== s || n < cur.block.first || n >= cur.block.first + cur.block.count) {
        const b = reader.blockOf(n);
        this.block = null;
        cur = { shard: s, block: await this.fetchBlock(s, b) };
        this.block = cur;
        this.readAhead(s, b);
        this.track();
      }
      const it = this.item(s, n, cur.block.record(n - cur.block.first));
      this.recordCursor = n + 1;
      if (this.recordCursor >= cur.block.first + cur.block.count) this.block = null; // done with it
      return it;
    }
    return null;
  }

  /** The next record through the shuffle buffer, or null when the epoch's records are all out. */
  private async pullShuffled(): Promise<Item | null> {
    const size = this.shape.shuffle ? this.shape.shuffleBuffer : 0;
    if (size <= 0) return this.pullSource();
    for (;;) {
      const r = await this.pullSource();
      if (r === null) break;
      if (this.buffer.length < size) {
        this.buffer.push(r); // filling
        this.track();
        continue;
      }
      const i = this.bufferRng.int(size);
      const out = this.buffer[i]!;
      this.buffer[i] = r;
      return out;
    }
    // The epoch's records are all read: drain in random order.
    if (this.buffer.length === 0) return null;
    const i = this.bufferRng.int(this.buffer.length);
    const out = this.buffer[i]!;
    this.buffer[i] = this.buffer[this.buffer.length - 1]!;
    this.buffer.pop();
    return out;
  }

  /** Sort the collected group, cut it into batches, queue them in a seeded-random order. */
  private cut(final: boolean): void {
    const items = this.group;
    this.group = [];
    if (this.shape.groupByLength) items.sort((a, b) => b.ids.length - a.ids.length); // stable
    const B = this.shape.batchSize;
    const batches: Item[][] = [];
    for (let i = 0; i < items.length; i += B) batches.push(items.slice(i, i + B));
    if (final && this.shape.dropLast && batches.length > 0 && batches[batches.length - 1]!.length < B) batches.pop();
    if (this.shape.shuffle && batches.length > 1) shuffleInPlace(batches, this.groupRng);
    this.pending.push(...batches);
  }

  /** The next batch and the state right after it, or null after the last epoch. */
  async produce(): Promise<Produced | null> {
    while (this.pending.length === 0) {
      if (this.epoch >= this.epochs) return null;
      const r = await this.pullShuffled();
      if (r !== null) {
        this.group.push(r);
        this.track();
        if (this.group.length >= this.groupSize) this.cut(false);
      } else if (this.group.length > 0) this.cut(true);
      else this.startEpoch(this.epoch + 1);
    }
    const items = this.pending.shift()!;
    const batch = collate(items, this.shape, this.epoch, this.step++);
    return { batch, snap: this.snapshot() };
  }

  snapshot(): Snapshot {
    return {
      epoch: this.epoch,
      step: this.step,
      shardCursor: this.shardCursor,
      recordCursor: this.recordCursor,
      bufferRng: this.bufferRng.state,
      groupRng: this.groupRng.state,
      buffer: flatRefs(this.buffer),
      pending: this.pending.map(flatRefs),
    };
  }

  /** Continue from a checked state: cursors, generators, and the referenced records read again. */
  async restore(st: LoaderState): Promise<void> {
    this.startEpoch(st.epoch);
    this.step = st.step;
    this.shardCursor = st.shardCursor;
    this.recordCursor = st.recordCursor;
    this.bufferRng.state = st.rng.buffer >>> 0;
    this.groupRng.state = st.rng.group >>> 0;
    // Read each needed block once, in file order, keeping only the referenced records.
    const want = new Map<number, Set<number>>();
    for (const [s, n] of [...st.buffer, ...st.pending.flat()]) {
      let set = want.get(s);
      if (!set) want.set(s, (set = new Set()));
      set.add(n);
    }
    const got = new Map<string, Item>();
    for (const [s, set] of [...want].sort((a, b) => a[0] - b[0])) {
      const reader = this.readers[s]!;
      const recs = [...set].sort((a, b) => a - b);
      let block: ShardBlock | null = null;
      for (const n of recs) {
        if (!block || n >= block.first + block.count) block = await this.readBlock(s, reader.blockOf(n));
        got.set(`${s}:${n}`, this.item(s, n, block.record(n - block.first)));
      }
    }
    const take = ([s, n]: RecordRef) => got.get(`${s}:${n}`)!;
    this.buffer = st.buffer.map(take);
    this.pending = st.pending.map((b) => b.map(take));
    this.track();
  }
}

function collate(items: readonly Item[], shape: LoaderShape, epoch: number, step: number): LoaderBatch {
  let max = 0;
  for (const it of items) max = Math.max(max, it.ids.length);
  const length = Math.ceil(max / shape.padToMultipleOf) * shape.padToMultipleOf;
  const batch = items.length;
  const inputIds = new Int32Array(batch * length).fill(shape.padId);
  const labels = new Int32Array(batch * length).fill(IGNORE_INDEX);
  const attentionMask = new Int32Array(batch * length);
  const srcTgtIndex = new Int32Array(batch * length);
  const srcLang = new Int32Array(batch);
  const tgtLang = new Int32Array(batch);
  let tokens = 0;
  items.forEach((it, b) => {
    const o = b * length, n = it.ids.length;
    inputIds.set(it.ids, o);
    labels.set(it.ids, o);
    if (!shape.trainOnInputs) labels.fill(IGNORE_INDEX, o, o + it.promptLen);
    attentionMask.fill(1, o, o + n);
    if (it.spans) srcTgtIndex.set(it.spans, o);
    srcLang[b] = it.srcLang;
    tgtLang[b] = it.tgtLang;
    tokens += n;
  });
  return { inputIds, labels, attentionMask, srcTgtIndex, srcLang, tgtLang, batch, length, tokens, epoch, step };
}

// ---- options and state checks --------------------------------------------------------------------------------

function resolveShape(o: LoaderOptions): LoaderShape {
  const d = LOADER_DEFAULTS;
  const s: LoaderShape = {
    seed: o.seed ?? d.seed,
    batchSize: o.batchSize,
    shuffle: o.shuffle ?? d.shuffle,
    shuffleBuffer: o.shuffleBuffer ?? d.shuffleBuffer,
    groupByLength: o.groupByLength ?? d.groupByLength,
    groupBatches: o.groupBatches ?? d.groupBatches,
    padToMultipleOf: o.padToMultipleOf ?? d.padToMultipleOf,
    maxLength: o.maxLength ?? d.maxLength,
    dropLast: o.dropLast ?? d.dropLast,
    trainOnInputs: o.trainOnInputs ?? d.trainOnInputs,
    padId: o.padId ?? d.padId,
  };
  const int = (k: string, v: number, min: number) => {
    if (!Number.isSafeInteger(v) || v < min) throw new LoaderError(`${k} must be an integer ≥ ${min}, got ${v}`);
  };
  int("batchSize", s.batchSize, 1);
  int("shuffleBuffer", s.shuffleBuffer, 0);
  int("groupBatches", s.groupBatches, 1);
  int("padToMultipleOf", s.padToMultipleOf, 1);
  int("padId", s.padId, 0);
  if (!Number.isSafeInteger(s.seed)) throw new LoaderError(`seed must be an integer, got ${s.seed}`);
  if (s.maxLength !== null) int("maxLength", s.maxLength, 1);
  return s;
}

const fmt = (v: unknown) => JSON.stringify(v);

function checkState(st: LoaderState, shards: readonly LoaderShard[], shape: LoaderShape): void {
  const bad = (why: string) => new LoaderError(`loader state: ${why}`);
  if (st === null || typeof st !== "object") throw bad("not an object");
  if (st.format !== LOADER_STATE_FORMAT) throw bad(`format ${fmt(st.format)}, expected "${LOADER_STATE_FORMAT}"`);
  if (st.version !== LOADER_STATE_VERSION) throw bad(`version ${fmt(st.version)}, this alignx reads version ${LOADER_STATE_VERSION}`);
  // The corpus.
  if (!Array.isArray(st.shards)) throw bad("shards is not a list");
  const listed = (a: readonly { file: string; records: number }[]) => a.map((s) => `${s.file} (${s.records})`).join(", ");
  if (st.shards.length !== shards.length)
    throw bad(`saved for ${st.shards.length} shards [${listed(st.shards)}], the data has ${shards.length} [${listed(shards)}]`);
  st.shards.forEach((s, i) => {
    const h = shards[i]!;
    if (s?.file !== h.file || s?.records !== h.records)
      throw bad(`shard ${i} was ${s?.file} (${s?.records} records), the data has ${h.file} (${h.records} records): a different corpus`);
  });
  // The options that shape batches.
  if (!st.options || typeof st.options !== "object") throw bad("options missing");
  const diff = SHAPE_KEYS.filter((k) => st.options[k] !== shape[k]);
  if (diff.length > 0) throw bad(`saved with other options: ${diff.map((k) => `${k} ${fmt(st.options[k])} (now ${fmt(shape[k])})`).join(", ")}`);
  // Position and contents.
  const nat = (k: string, v: unknown) => {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw bad(`${k} = ${fmt(v)} is not a non-negative integer`);
  };
  nat("epoch", st.epoch);
  nat("step", st.step);
  nat("shardCursor", st.shardCursor);
  nat("recordCursor", st.recordCursor);
  if (st.shardCursor > shards.length) throw bad(`shardCursor ${st.shardCursor} is past the ${shards.length} shards`);
  if (!st.rng || typeof st.rng !== "object") throw bad("rng missing");
  nat("rng.buffer", st.rng.buffer);
  nat("rng.group", st.rng.group);
  const refs = (k: string, a: unknown): void => {
    if (!Array.isArray(a)) throw bad(`${k} is not a list`);
    for (const r of a) {
      if (!Array.isArray(r) || r.length !== 2) throw bad(`${k}: ${fmt(r)} is not a [shard, record] pair`);
      const [s, n] = r as [unknown, unknown];
      if (typeof s !== "number" || !Number.isInteger(s) || s < 0 || s >= shards.length) throw bad(`${k}: shard ${fmt(s)} out of range (${shards.length} shards)`);
      if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n >= shards[s]!.records) throw bad(`${k}: record ${fmt(n)} out of range for ${shards[s]!.file} (${shards[s]!.records} records)`);
    }
  };
  refs("buffer", st.buffer);
  if (st.buffer.length > (shape.shuffle ? shape.shuffleBuffer : 0)) throw bad(`buffer holds ${st.buffer.length} records, more than shuffleBuffer ${shape.shuffleBuffer}`);
  if (!Array.isArray(st.pending)) throw bad("pending is not a list");
  st.pending.forEach((b, i) => {
    refs(`pending[${i}]`, b);
    if (b.length === 0 || b.length > shape.batchSize) throw bad(`pending[${i}] holds ${b.length} records (batch size ${shape.batchSize})`);
  });
}

// ---- the loader ----------------------------------------------------------------------------------------------

export class Loader implements AsyncIterable<LoaderBatch> {
  private ready: Produced[] = [];
  private waiters: { resolve: (p: Produced | null) => void; reject: (e: unknown) => void }[] = [];
  private running: Promise<void> | null = null;
  private error: unknown = null;
  private finished = false;
  private closed = false;
  private last: Snapshot;

  private constructor(
    private readonly corpus: Corpus,
    /** The options that shape batches, resolved. */
    readonly shape: LoaderShape,
    private readonly producer: Producer,
    private readonly prefetch: number,
  ) {
    this.last = producer.snapshot();
  }

  /** Open the corpus (checked as described at the top); with `state`, continue exactly where it was saved. */
  static async open(opts: LoaderOptions, state?: LoaderState): Promise<Loader> {
    const shape = resolveShape(opts);
    const prefetch = opts.prefetch ?? LOADER_DEFAULTS.prefetch;
    if (!Number.isSafeInteger(prefetch) || prefetch < 0) throw new LoaderError(`prefetch must be an integer ≥ 0, got ${prefetch}`);
    const epochs = opts.epochs ?? Infinity;
    if (epochs !== Infinity && (!Number.isSafeInteger(epochs) || epochs < 1)) throw new LoaderError(`epochs must be a positive integer, got ${epochs}`);
    const corpus = await openCorpus(opts.data, opts.expectTokenizerHash);
    const total = corpus.shards.reduce((a, s) => a + s.records, 0);
    const where = corpus.manifest ?? corpus.shards.map((s) => s.path).join(", ");
    if (total === 0) throw new LoaderError(`${where}: the corpus holds no records`);
    if (shape.dropLast && total < shape.batchSize) throw new LoaderError(`${where}: ${total} records, fewer than one batch of ${shape.batchSize}, and dropLast is set`);
    const producer = new Producer(corpus.readers, shape, epochs);
    if (state !== undefined) {
      checkState(state, corpus.shards, shape);
      await producer.restore(state);
    }
    const loader = new Loader(corpus, shape, producer, prefetch);
    loader.pump(); // start filling at once: the first batch is ready when the trainer asks
    return loader;
  }

  get shards(): readonly LoaderShard[] {
    return this.corpus.shards;
  }
  get tokenizerHash(): string {
    return this.corpus.tokenizerHash;
  }
  get vocabSize(): number {
    return this.corpus.vocabSize;
  }
  /** Language id → code (srcLang / tgtLang index it). */
  get languages(): readonly string[] {
    return this.corpus.languages;
  }
  /** The manifest read, or null for shards named directly. */
  get manifest(): string | null {
    return this.corpus.manifest;
  }
  /** Records per epoch. */
  get records(): number {
    return this.corpus.shards.reduce((a, s) => a + s.records, 0);
  }
  /** Batches per epoch: ceil(records / batchSize), floor with dropLast. */
  get batchesPerEpoch(): number {
    const n = this.records / this.shape.batchSize;
    return this.shape.dropLast ? Math.floor(n) : Math.ceil(n);
  }

  /** The next batch. Rejects with the pipeline's error (e.g. a ShardError for a damaged block), or after the last epoch. */
  async next(): Promise<LoaderBatch> {
    const b = await this.take();
    if (b === null) throw new LoaderError("the loader has delivered all its epochs");
    return b;
  }

  /** Batches until the last epoch (forever without `epochs`). Breaking out leaves the loader open. */
  async *[Symbol.asyncIterator](): AsyncGenerator<LoaderBatch> {
    for (;;) {
      const b = await this.take();
      if (b === null) return;
      yield b;
    }
  }

  /** The position right after the last batch handed out (not after what was prefetched): plain JSON. */
  state(): LoaderState {
    const s = this.last;
    const pairs = (a: Int32Array): RecordRef[] => {
      const out: RecordRef[] = [];
      for (let i = 0; i < a.length; i += 2) out.push([a[i]!, a[i + 1]!]);
      return out;
    };
    return {
      format: LOADER_STATE_FORMAT,
      version: LOADER_STATE_VERSION,
      shards: this.corpus.shards.map((x) => ({ file: x.file, records: x.records })),
      options: { ...this.shape },
      epoch: s.epoch,
      step: s.step,
      shardCursor: s.shardCursor,
      recordCursor: s.recordCursor,
      rng: { buffer: s.bufferRng, group: s.groupRng },
      buffer: pairs(s.buffer),
      pending: s.pending.map(pairs),
    };
  }

  /** Stop the producer and drop what it holds; pending next() calls reject. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new LoaderError("the loader is closed");
    for (const w of this.waiters.splice(0)) w.reject(err);
    this.ready = [];
    if (this.running) await this.running;
    this.producer.buffer = [];
    this.producer.pending = [];
    this.producer.readyRows = 0;
  }

  get debug(): LoaderDebug {
    const p = this.producer, s = this.shape;
    return {
      held: p.held,
      peakHeld: p.peakHeld,
      bound: (s.shuffle ? s.shuffleBuffer : 0) + (s.groupByLength ? s.groupBatches : 1) * s.batchSize + this.prefetch * s.batchSize,
      blocksHeld: p.blocksHeld,
      peakBlocksHeld: p.peakBlocksHeld,
      blocksRead: p.blocksRead,
      ready: this.ready.length,
    };
  }

  private take(): Promise<LoaderBatch | null> {
    if (this.closed) return Promise.reject(new LoaderError("the loader is closed"));
    return new Promise<Produced | null>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.deliver();
      this.pump();
    }).then((p) => (p === null ? null : p.batch));
  }

  /** Hand ready batches to waiters in order; then the error or the end, once nothing is ready. */
  private deliver(): void {
    while (this.waiters.length > 0 && this.ready.length > 0) {
      const p = this.ready.shift()!;
      this.producer.readyRows -= p.batch.batch;
      this.last = p.snap;
      this.waiters.shift()!.resolve(p);
    }
    if (this.ready.length === 0 && (this.error !== null || this.finished)) {
      for (const w of this.waiters.splice(0)) {
        if (this.error !== null) w.reject(this.error);
        else w.resolve(null);
      }
    }
  }

  /** Run the producer until `prefetch` batches are ready beyond what waiters want. */
  private pump(): void {
    if (this.running || this.closed || this.error !== null || this.finished) return;
    const want = () => !this.closed && this.error === null && !this.finished && (this.ready.length < this.prefetch || this.waiters.length > 0);
    if (!want()) return;
    this.running = (async () => {
      try {
        while (want()) {
          const p = await this.producer.produce();
          if (this.closed) break;
          if (p === null) this.finished = true;
          else {
            this.ready.push(p);
            this.producer.readyRows += p.batch.batch;
          }
          this.deliver();
          this.producer.track();
        }
      } catch (e) {
        this.error = e;
        this.deliver();
      } finally {
        this.running = null;
      }
    })();
  }
}

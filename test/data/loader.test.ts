// The training data loader (src/data/loader.ts) on synthetic shards: coverage per epoch, determinism, length
// grouping, exact batch contents, exact resume from a JSON state, corpus checks, damaged data, bounded memory.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Loader, LoaderError, type LoaderBatch, type LoaderOptions } from "../../src/data/loader.ts";
import { MANIFEST_FILE, type Manifest } from "../../src/data/manifest.ts";
import { IGNORE_INDEX } from "../../src/data/prompt.ts";
import { ShardError, ShardReader, ShardWriter, TASKS, type RecordInput } from "../../src/data/shard.ts";
import { mulberry32 } from "../../src/tensor/rng.ts";

const LANGS = ["eng", "deu", "fra", "zho"];
const HASH = "a".repeat(64);

interface TestCorpus {
  dir: string;
  manifest: string;
  paths: string[];
  /** Records per shard, in file order. */
  shards: RecordInput[][];
  all: RecordInput[];
}

/**
 * `shards` shard files of random records (ids below `vocab`, lengths 1..100, spans on about half, languages -1..3)
 * in `dir`, and a manifest.json. Every record's ids are distinct from every other's, so a row identifies its record.
 */
function makeCorpus(
  dir: string,
  o: { shards: number; records: number | number[]; seed: number; blockBytes?: number; vocab?: number; tokenizerHash?: string; maxLen?: number },
): TestCorpus {
  const r = mulberry32(o.seed);
  const vocab = o.vocab ?? 50000;
  const maxLen = o.maxLen ?? 100;
  const seen = new Set<string>();
  const shards: RecordInput[][] = [];
  const paths: string[] = [];
  const entries: Manifest["shards"] = [];
  for (let s = 0; s < o.shards; s++) {
    const n = typeof o.records === "number" ? o.records : o.records[s]!;
    const w = new ShardWriter({ tokenizerHash: o.tokenizerHash ?? HASH, vocabSize: vocab, languages: LANGS, createdBy: "test" }, o.blockBytes ?? 1024);
    const recs: RecordInput[] = [];
    while (recs.length < n) {
      const len = 1 + Math.floor(r() * maxLen);
      const ids = Array.from({ length: len }, () => Math.floor(r() * vocab));
      const key = ids.join(",");
      if (seen.has(key)) continue;
      seen.add(key);
      const spans = r() < 0.5 ? Uint8Array.from({ length: len }, () => Math.floor(r() * 3)) : null;
      const rec: RecordInput = {
        ids,
        spans,
        srcLang: Math.floor(r() * 5) - 1,
        tgtLang: Math.floor(r() * 5) - 1,
        task: TASKS[Math.floor(r() * TASKS.length)]!,
        promptLen: Math.floor(r() * (len + 1)),
      };
      w.add(rec);
      recs.push(rec);
    }
    const bytes = w.finish();
    const file = `shard-${String(s).padStart(5, "0")}.axs`;
    writeFileSync(join(dir, file), bytes);
    paths.push(join(dir, file));
    shards.push(recs);
    entries.push({ file, records: n, tokens: recs.reduce((a, x) => a + x.ids.length, 0), bytes: bytes.length });
  }
  const all = shards.flat();
  const manifest: Manifest = {
    format: "alignx-shards",
    version: 1,
    created_by: "test",
    task: "stage1",
    tokenizer: { hash: o.tokenizerHash ?? HASH, source: "synthetic", vocab_size: vocab, token_bytes: vocab <= 0x10000 ? 2 : 4 },
    languages: LANGS,
    shards: entries,
    counts: { records: all.length, tokens: all.reduce((a, x) => a + x.ids.length, 0), by_task: {}, by_language: {}, by_direction: {} },
    dropped: {},
    inputs: [],
    options: {},
    seed: o.seed,
  };
  writeFileSync(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2));
  return { dir, manifest: join(dir, MANIFEST_FILE), paths, shards, all };
}

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), "alignx-loader-"));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const keyOf = (ids: ArrayLike<number>): string => Array.from(ids).join(",");

/** The ids of each row (its unmasked prefix). */
function rowIds(b: LoaderBatch): Int32Array[] {
  const out: Int32Array[] = [];
  for (let i = 0; i < b.batch; i++) {
    const o = i * b.length;
    let n = 0;
    while (n < b.length && b.attentionMask[o + n] === 1) n++;
    out.push(b.inputIds.subarray(o, o + n));
  }
  return out;
}

/** All of a batch as bytes, for byte-for-byte comparison. */
function batchBytes(b: LoaderBatch): Buffer {
  const head = Int32Array.from([b.batch, b.length, b.tokens, b.epoch, b.step]);
  return Buffer.concat([head, b.inputIds, b.labels, b.attentionMask, b.srcTgtIndex, b.srcLang, b.tgtLang].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
}

async function take(loader: Loader, n: number): Promise<LoaderBatch[]> {
  const out: LoaderBatch[] = [];
  for (let i = 0; i < n; i++) out.push(await loader.next());
  return out;
}

/** Wait (polling) until `cond` holds; false after `ms`. */
async function waitFor(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await Bun.sleep(1);
  }
  return true;
}

function multiset(keys: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const k of keys) m.set(k, (m.get(k) ?? 0) + 1);
  return m;
}

describe("loader", () => {
  const dir = tmp();
  // Shard 2 holds one record; lengths 1..100; small blocks (a few records each).
  const corpus = makeCorpus(dir, { shards: 4, records: [137, 61, 1, 203], seed: 11, blockBytes: 700 });
  const N = corpus.all.length; // 402
  const allKeys = corpus.all.map((x) => keyOf(x.ids));

  test("every record exactly once per epoch; epochs are reshuffled; batches per epoch", async () => {
    for (const groupByLength of [true, false]) {
      const loader = await Loader.open({ data: corpus.manifest, batchSize: 5, shuffleBuffer: 32, groupBatches: 4, groupByLength, seed: 3 });
      expect(loader.records).toBe(N);
      expect(loader.batchesPerEpoch).toBe(Math.ceil(N / 5));
      const orders: string[][] = [];
      for (let e = 0; e < 3; e++) {
        const batches = await take(loader, loader.batchesPerEpoch);
        expect(batches.map((b) => b.epoch)).toEqual(batches.map(() => e));
        expect(batches.map((b) => b.step)).toEqual(batches.map((_, i) => e * loader.batchesPerEpoch + i));
        expect(batches.filter((b) => b.batch !== 5).map((b) => b.batch)).toEqual([N % 5]);
        const keys = batches.flatMap((b) => rowIds(b).map(keyOf));
        expect(multiset(keys)).toEqual(multiset(allKeys));
        orders.push(keys);
      }
      expect((await loader.next()).epoch).toBe(3); // the next epoch starts cleanly
      expect(orders[1]).not.toEqual(orders[0]);
      expect(orders[2]).not.toEqual(orders[1]);
      await loader.close();
    }
  });

  test("dropLast drops the partial batch; epochs ends the stream", async () => {
    const loader = await Loader.open({ data: corpus.manifest, batchSize: 7, shuffleBuffer: 50, groupBatches: 3, dropLast: true, epochs: 2, seed: 5 });
    expect(loader.batchesPerEpoch).toBe(Math.floor(N / 7));
    const batches: LoaderBatch[] = [];
    for await (const b of loader) batches.push(b);
    expect(batches.length).toBe(2 * Math.floor(N / 7));
    for (let e = 0; e < 2; e++) {
      const ep = batches.filter((b) => b.epoch === e);
      expect(ep.every((b) => b.batch === 7)).toBe(true);
      const keys = ep.flatMap((b) => rowIds(b).map(keyOf));
      expect(new Set(keys).size).toBe(keys.length);
      expect(keys.length).toBe(Math.floor(N / 7) * 7);
      const all = new Set(allKeys);
      expect(keys.every((k) => all.has(k))).toBe(true);
    }
    await expect(loader.next()).rejects.toThrow(/delivered all its epochs/);
    await loader.close();
  });

  test("the shuffle buffer mixes records, while filling and while draining", async () => {
    const where = new Map<string, [number, number]>();
    corpus.shards.forEach((recs, s) => recs.forEach((x, n) => where.set(keyOf(x.ids), [s, n])));
    for (const shuffleBuffer of [32, N + 10]) {
      const loader = await Loader.open({ data: corpus.manifest, batchSize: 1, groupByLength: false, shuffleBuffer, epochs: 1, seed: 4 });
      const seq: [number, number][] = [];
      for await (const b of loader) seq.push(where.get(keyOf(rowIds(b)[0]!))!);
      expect(seq.length).toBe(N);
      // Neighbours in the output that were neighbours in the file (either way): about 2/shuffleBuffer of them.
      const near = seq.slice(1).filter(([s, n], i) => s === seq[i]![0] && Math.abs(n - seq[i]![1]) === 1).length;
      expect(near).toBeLessThan(N / 10);
    }
  });

  test("shuffle: false reads the shards in order, record by record", async () => {
    const loader = await Loader.open({ data: corpus.paths, batchSize: 6, shuffle: false, groupByLength: false, epochs: 1 });
    const keys: string[] = [];
    for await (const b of loader) keys.push(...rowIds(b).map(keyOf));
    expect(keys).toEqual(allKeys);
  });

  test("same seed, same batches (whatever the prefetch); another seed, another order", async () => {
    const run = async (seed: number, prefetch: number) => {
      const loader = await Loader.open({ data: corpus.manifest, batchSize: 4, shuffleBuffer: 40, groupBatches: 5, seed, prefetch });
      const out: Buffer[] = [];
      for (let i = 0; i < 150; i++) {
        out.push(batchBytes(await loader.next()));
        if (i % 17 === 0) await Bun.sleep(1); // let the producer run ahead at times
      }
      await loader.close();
      return out;
    };
    const a = await run(42, 4), b = await run(42, 0), c = await run(42, 16), d = await run(43, 4);
    expect(b.length).toBe(a.length);
    expect(a.every((x, i) => x.equals(b[i]!) && x.equals(c[i]!))).toBe(true);
    expect(d.filter((x, i) => x.equals(a[i]!)).length).toBeLessThan(5);
  });

  test("manifest path, its directory and a glob of the shards give the same batches", async () => {
    const run = async (data: LoaderOptions["data"]) => {
      const loader = await Loader.open({ data, batchSize: 8, shuffleBuffer: 64, seed: 9 });
      const out = (await take(loader, 60)).map(batchBytes);
      const state = loader.state();
      await loader.close();
      return { out, state };
    };
    const m = await run(corpus.manifest), d = await run(dir), g = await run([join(dir, "shard-0000[0-1].axs"), join(dir, "shard-*.axs")]);
    expect(m.out.every((x, i) => x.equals(d.out[i]!) && x.equals(g.out[i]!))).toBe(true);
    expect(g.state).toEqual(m.state);
  });

  test("grouping by length: much less padding than unsorted batches", async () => {
    const padding = async (groupByLength: boolean) => {
      const loader = await Loader.open({ data: corpus.manifest, batchSize: 8, groupBatches: 16, shuffleBuffer: 64, groupByLength, seed: 1, epochs: 1 });
      let pad = 0, total = 0;
      for await (const b of loader) {
        pad += b.batch * b.length - b.tokens;
        total += b.batch * b.length;
        let max = 0;
        for (const r of rowIds(b)) max = Math.max(max, r.length);
        expect(b.length).toBe(Math.ceil(max / 8) * 8);
      }
      return pad / total;
    };
    const grouped = await padding(true), plain = await padding(false);
    expect(plain).toBeGreaterThan(0.3);
    expect(grouped).toBeLessThan(0.15);
    expect(grouped).toBeLessThan(plain / 3);
  });

  test("inputIds, labels, attentionMask, srcTgtIndex and languages exactly as the records say", async () => {
    for (const [trainOnInputs, maxLength, padId, mult] of [[true, null, 0, 8], [false, 60, 7, 8], [false, null, 3, 1]] as const) {
      const byKey = new Map<string, RecordInput>();
      for (const rec of corpus.all) byKey.set(keyOf(Array.from(rec.ids).slice(0, maxLength ?? undefined)), rec);
      const loader = await Loader.open({ data: corpus.manifest, batchSize: 6, shuffleBuffer: 20, trainOnInputs, maxLength, padId, padToMultipleOf: mult, epochs: 1, seed: 2 });
      let rows = 0, truncated = 0, masked = 0;
      for await (const b of loader) {
        const recs = rowIds(b).map((ids) => byKey.get(keyOf(ids))!);
        expect(recs.every((x) => x !== undefined)).toBe(true);
        const lens = recs.map((x) => Math.min(x.ids.length, maxLength ?? Infinity));
        const L = Math.ceil(Math.max(...lens) / mult) * mult;
        expect(b.length).toBe(L);
        expect(b.tokens).toBe(lens.reduce((a, n) => a + n, 0));
        const ids = new Int32Array(b.batch * L).fill(padId), labels = new Int32Array(b.batch * L).fill(IGNORE_INDEX);
        const mask = new Int32Array(b.batch * L), sti = new Int32Array(b.batch * L);
        recs.forEach((x, i) => {
          const n = lens[i]!;
          if (n < x.ids.length) truncated++;
          for (let t = 0; t < n; t++) {
            ids[i * L + t] = x.ids[t]!;
            const inPrompt = !trainOnInputs && t < x.promptLen;
            if (inPrompt) masked++;
            labels[i * L + t] = inPrompt ? IGNORE_INDEX : x.ids[t]!;
            mask[i * L + t] = 1;
            sti[i * L + t] = x.spans ? x.spans[t]! : 0;
          }
        });
        expect(Array.from(b.inputIds)).toEqual(Array.from(ids));
        expect(Array.from(b.labels)).toEqual(Array.from(labels));
        expect(Array.from(b.attentionMask)).toEqual(Array.from(mask));
        expect(Array.from(b.srcTgtIndex)).toEqual(Array.from(sti));
        expect(Array.from(b.srcLang)).toEqual(recs.map((x) => x.srcLang));
        expect(Array.from(b.tgtLang)).toEqual(recs.map((x) => x.tgtLang));
        rows += b.batch;
      }
      expect(rows).toBe(N);
      if (maxLength !== null) expect(truncated).toBeGreaterThan(50);
      if (!trainOnInputs) expect(masked).toBeGreaterThan(1000);
    }
  });

  test("exact resume: 1000 batches, interrupted at batch k and restored from JSON, are byte for byte the same", async () => {
    const rdir = tmp();
    makeCorpus(rdir, { shards: 3, records: [150, 90, 170], seed: 77, blockBytes: 400 });
    const variants: Omit<LoaderOptions, "data">[] = [
      { batchSize: 4, shuffleBuffer: 16, groupBatches: 3, seed: 1234, prefetch: 4 },
      { batchSize: 3, shuffleBuffer: 9, groupByLength: false, dropLast: true, trainOnInputs: false, maxLength: 40, seed: 5, prefetch: 0 },
    ];
    const r = mulberry32(99);
    let midGroup = 0;
    for (const [vi, v] of variants.entries()) {
      const opts: LoaderOptions = { ...v, data: join(rdir, MANIFEST_FILE) };
      const loader = await Loader.open(opts);
      const ref = (await take(loader, 1000)).map(batchBytes);
      const perEpoch = loader.batchesPerEpoch;
      expect(loader.state().epoch).toBeGreaterThanOrEqual(2); // several epochs crossed
      await loader.close();
      // A random k and its neighbours (so some k fall inside a length group, with batches pending), an epoch's end.
      const k0 = 1 + Math.floor(r() * 990);
      const ks = vi === 0 ? [0, k0, k0 + 1, k0 + 2, perEpoch, 2 * perEpoch - 1, 999] : [k0, perEpoch + 1];
      for (const k of ks) {
        const first = await Loader.open(opts);
        const head = (await take(first, k)).map(batchBytes);
        // The producer runs ahead (prefetch full): the state must not follow it.
        expect(await waitFor(() => first.debug.ready === (v.prefetch ?? 4))).toBe(true);
        const json = JSON.stringify(first.state());
        if (JSON.parse(json).pending.length >= 2) midGroup++;
        expect(json.length).toBeLessThan(4000); // references, not records
        await first.close();
        const second = await Loader.open(opts, JSON.parse(json));
        const tail = (await take(second, 1000 - k)).map(batchBytes);
        await second.close();
        const got = [...head, ...tail];
        const differ = got.findIndex((x, i) => !x.equals(ref[i]!));
        expect({ variant: vi, k, differ }).toEqual({ variant: vi, k, differ: -1 });
      }
    }
    expect(midGroup).toBeGreaterThan(0); // some states had a length group's batches pending
  });

  test("restoring with other options or another corpus is refused, naming what differs", async () => {
    const opts: LoaderOptions = { data: corpus.manifest, batchSize: 4, shuffleBuffer: 16, seed: 8 };
    const loader = await Loader.open(opts);
    await take(loader, 30);
    const state = JSON.parse(JSON.stringify(loader.state()));
    await loader.close();
    await expect(Loader.open({ ...opts, batchSize: 5 }, state)).rejects.toThrow(/batchSize 4 \(now 5\)/);
    await expect(Loader.open({ ...opts, seed: 9, groupBatches: 2 }, state)).rejects.toThrow(/seed 8 \(now 9\), groupBatches 16 \(now 2\)/);
    await expect(Loader.open({ ...opts, trainOnInputs: false }, state)).rejects.toThrow(LoaderError);
    await expect(Loader.open({ ...opts, data: corpus.paths.slice(0, 3) }, state)).rejects.toThrow(/saved for 4 shards .* the data has 3/);
    const swapped = { ...opts, data: [corpus.paths[1]!, corpus.paths[0]!, corpus.paths[2]!, corpus.paths[3]!] };
    await expect(Loader.open(swapped, state)).rejects.toThrow(/shard 0 was shard-00000.axs \(137 records\), the data has shard-00001.axs \(61 records\)/);
    await expect(Loader.open(opts, { ...state, buffer: [[0, 137]] })).rejects.toThrow(/record 137 out of range for shard-00000.axs/);
    await expect(Loader.open(opts, { ...state, format: "x" })).rejects.toThrow(/format "x"/);
    // Options that do not shape batches may change.
    const ok = await Loader.open({ ...opts, prefetch: 1, epochs: 5 }, state);
    expect((await ok.next()).step).toBe(30);
    await ok.close();
  });

  test("a shard whose record count disagrees with the manifest is refused, naming it", async () => {
    const d = tmp();
    const c = makeCorpus(d, { shards: 2, records: [30, 40], seed: 4 });
    const m = JSON.parse(readFileSync(c.manifest, "utf8")) as Manifest;
    m.shards[1]!.records = 41;
    m.counts.records = 71;
    writeFileSync(c.manifest, JSON.stringify(m));
    const err = await Loader.open({ data: c.manifest, batchSize: 4 }).catch((e) => e);
    expect(err).toBeInstanceOf(ShardError);
    expect(err.file).toBe(c.paths[1]);
    expect(err.message).toContain("the manifest says 41 records, the shard holds 40");
  });

  test("a corpus of another tokenizer is refused, naming the file", async () => {
    const d = tmp();
    const c = makeCorpus(d, { shards: 2, records: 20, seed: 6, tokenizerHash: "b".repeat(64) });
    const viaManifest = await Loader.open({ data: d, batchSize: 4, expectTokenizerHash: HASH }).catch((e) => e);
    expect(viaManifest).toBeInstanceOf(ShardError);
    expect(viaManifest.file).toBe(c.manifest);
    expect(viaManifest.message).toContain("another tokenizer");
    const viaGlob = await Loader.open({ data: join(d, "*.axs"), batchSize: 4, expectTokenizerHash: HASH }).catch((e) => e);
    expect(viaGlob).toBeInstanceOf(ShardError);
    expect(viaGlob.file).toBe(c.paths[0]);
    expect(viaGlob.message).toContain("another tokenizer");
    // The right hash opens; shards of two tokenizers mixed are refused, naming the first that differs.
    await (await Loader.open({ data: d, batchSize: 4, expectTokenizerHash: "b".repeat(64) })).close();
    const mixed = await Loader.open({ data: [corpus.paths[0]!, c.paths[1]!], batchSize: 4 }).catch((e) => e);
    expect(mixed).toBeInstanceOf(ShardError);
    expect(mixed.file).toBe(c.paths[1]);
    expect(mixed.message).toContain(`than ${corpus.paths[0]}`);
  });

  test("a glob that matches nothing, a missing file, a directory without a manifest", async () => {
    const d = tmp();
    await expect(Loader.open({ data: [corpus.paths[0]!, join(d, "*.axs")], batchSize: 4 })).rejects.toThrow(`${join(d, "*.axs")}: the pattern matches no file`);
    await expect(Loader.open({ data: join(d, "nope.axs"), batchSize: 4 })).rejects.toThrow(`${join(d, "nope.axs")}: no such file`);
    await expect(Loader.open({ data: d, batchSize: 4 })).rejects.toThrow(/is a directory without manifest.json/);
    await expect(Loader.open({ data: corpus.manifest, batchSize: 0 })).rejects.toThrow(/batchSize must be an integer/);
  });

  test("a damaged block: the ShardError surfaces from next(), naming the file", async () => {
    const d = tmp();
    const c = makeCorpus(d, { shards: 2, records: [60, 60], seed: 13, blockBytes: 500 });
    const bytes = readFileSync(c.paths[1]!);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = bytes[at]! ^ 0x40;
    writeFileSync(c.paths[1]!, bytes);
    await (await ShardReader.open(c.paths[1]!)).readBlock(0); // header, meta, index and the first block are intact
    const loader = await Loader.open({ data: c.manifest, batchSize: 4, shuffle: false, groupByLength: false });
    let good = 0;
    const err = await (async () => {
      for (;;) {
        await loader.next();
        good++;
      }
    })().catch((e) => e);
    expect(err).toBeInstanceOf(ShardError);
    expect(err.file).toBe(c.paths[1]);
    expect(err.message).toMatch(/checksum mismatch/);
    expect(good).toBeGreaterThanOrEqual(15); // the first shard's 60 records came through first
    await expect(loader.next()).rejects.toBe(err);
    await loader.close();
  });

  test("memory stays bounded: shuffle buffer + group + prefetch records, at most two blocks", async () => {
    const opts: LoaderOptions = { data: corpus.manifest, batchSize: 4, shuffleBuffer: 32, groupBatches: 4, prefetch: 3, seed: 21 };
    const loader = await Loader.open(opts);
    expect(loader.debug.bound).toBe(32 + 16 + 12);
    let blocks = 0;
    for (const p of corpus.paths) blocks += (await ShardReader.open(p)).blockCount;
    for (let i = 0; i < 2 * loader.batchesPerEpoch; i++) {
      await loader.next();
      if (i % 5 === 0) expect(await waitFor(() => loader.debug.ready === 3)).toBe(true); // prefetched in the background
      expect(loader.debug.held).toBeLessThanOrEqual(loader.debug.bound);
    }
    const dbg = loader.debug;
    expect(dbg.peakHeld).toBeLessThanOrEqual(dbg.bound);
    expect(dbg.peakHeld).toBeGreaterThanOrEqual(32 + 12); // the counter does count
    expect(dbg.peakBlocksHeld).toBeLessThanOrEqual(2);
    expect(dbg.blocksRead).toBeGreaterThanOrEqual(2 * blocks - 1); // read block by block, once per epoch
    expect(dbg.blocksRead).toBeLessThanOrEqual(3 * blocks);
    await loader.close();
    expect(loader.debug.held).toBe(0);
    // A restored loader holds no more.
    const again = await Loader.open(opts);
    await take(again, 50);
    const st = again.state();
    await again.close();
    const restored = await Loader.open({ ...opts, prefetch: 0 }, st); // prefetch 0: nothing produced before next()
    expect(restored.debug.held).toBe(st.buffer.length + st.pending.flat().length);
    expect(restored.state()).toEqual(st); // before any batch, state() is the state it was opened with
    await take(restored, 100);
    expect(restored.debug.peakHeld).toBeLessThanOrEqual(restored.debug.bound);
    await restored.close();
  });
});

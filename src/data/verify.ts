/**
 * `alignx verify`: reads a packed corpus completely and checks it, so that a damaged or inconsistent corpus is
 * found before a training run reaches it. The target is a pack output directory, its manifest.json, or shard
 * files (a path or a glob).
 *
 * Every shard is read in full: ShardReader.open checks the header, meta and index CRCs; every block's CRC; every
 * record decoded and checked (ShardBlock.record); the record count. With a manifest, also: each listed shard
 * exists and no unlisted `*.axs` sits beside it, its tokenizer, vocabulary and language table are the
 * manifest's, its size / records / tokens are its manifest entry's, and the counts recomputed from the records
 * (countRecord: by task, by target language, by translation direction) are the manifest's `counts`.
 * Without a manifest, every shard must share the first one's tokenizer.
 *
 * The first problem found ends the check: it is the report's `error`, a ShardError naming the file and, where
 * there is one, the byte offset and record number.
 */
import fg from "fast-glob";
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { MANIFEST_FILE, countRecord, emptyCounts, readManifest, type Count, type Counts, type Manifest, type ShardEntry } from "./manifest.ts";
import { SHARD_EXT, ShardError, ShardReader } from "./shard.ts";

export interface ShardSummary {
  /** The shard's path, as opened. */
  file: string;
  records: number;
  tokens: number;
  bytes: number;
}

export interface VerifyReport {
  ok: boolean;
  /** The manifest checked against, or null when the target named shards. */
  manifest: string | null;
  /** The shards checked completely, in order (up to the failing one). */
  shards: ShardSummary[];
  records: number;
  tokens: number;
  byTask: Record<string, Count>;
  byLanguage: Record<string, Count>;
  byDirection: Record<string, Count>;
  /** The first problem found. */
  error?: ShardError;
}

export interface VerifyOptions {
  /** Called as blocks are checked: bytes of shard files done, of all. */
  onProgress?: (done: number, total: number) => void;
}

/** What a target names: a manifest (and its directory's shards), or shard files. */
type Target = { manifest: string } | { shards: string[] };

/**
 * Check a corpus completely. Rejects with a ShardError (exitCode 2) only when the target names nothing to check;
 * every problem with the data is the report's `error` (ok: false).
 */
export async function verifyCorpus(target: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const t = await resolveTarget(target);
  const counts = emptyCounts();
  const shards: ShardSummary[] = [];
  let error: ShardError | undefined;
  try {
    if ("manifest" in t) await checkPack(t.manifest, counts, shards, opts);
    else await checkShards(t.shards, counts, shards, opts);
  } catch (e) {
    if (!(e instanceof ShardError)) throw e;
    error = e;
  }
  const { records, tokens, by_task: byTask, by_language: byLanguage, by_direction: byDirection } = counts;
  return { ok: !error, manifest: "manifest" in t ? t.manifest : null, shards, records, tokens, byTask, byLanguage, byDirection, error };
}

function usageError(why: string, target: string): ShardError {
  const e = new ShardError(why, target);
  e.exitCode = 2;
  return e;
}

async function resolveTarget(target: string): Promise<Target> {
  if (existsSync(target)) {
    if (statSync(target).isDirectory()) {
      const manifest = join(target, MANIFEST_FILE);
      if (!existsSync(manifest)) throw usageError(`is a directory without a ${MANIFEST_FILE} (not a pack output directory); name its shards to check them alone, e.g. '${join(target, `*${SHARD_EXT}`)}'`, target);
      return { manifest };
    }
    return basename(target) === MANIFEST_FILE || target.endsWith(".json") ? { manifest: target } : { shards: [target] };
  }
  if (!fg.isDynamicPattern(target)) throw usageError("no such file or directory", target);
  const shards = (await fg(target, { onlyFiles: true })).sort();
  if (shards.length === 0) throw usageError("matches no files", target);
  return { shards };
}

/** A manifest and its directory: listing, then each shard against its entry, then the counts. */
async function checkPack(manifestPath: string, counts: Counts, out: ShardSummary[], opts: VerifyOptions): Promise<void> {
  const m = await readManifest(manifestPath);
  const dir = dirname(manifestPath);
  checkListing(m, dir, manifestPath);
  const paths = m.shards.map((e) => join(dir, e.file));
  const progress = progressOf(paths, opts);
  const expect = { tokenizerHash: m.tokenizer.hash, languages: m.languages };
  for (const [i, entry] of m.shards.entries()) {
    const reader = await ShardReader.open(paths[i]!, expect);
    checkEntry(reader, entry, m, manifestPath);
    const s = await readShard(reader, counts, progress);
    if (s.tokens !== entry.tokens) throw new ShardError(`holds ${s.tokens} tokens, ${manifestPath} says ${entry.tokens}`, reader.path);
    out.push(s);
  }
  compareCounts(m.counts, counts, manifestPath);
}

/** Every listed shard exists; every `*.axs` in the directory is listed. */
function checkListing(m: Manifest, dir: string, manifestPath: string): void {
  const listed = new Set(m.shards.map((e) => e.file));
  for (const file of listed) if (!existsSync(join(dir, file))) throw new ShardError(`is listed in ${manifestPath} but missing`, join(dir, file));
  for (const file of readdirSync(dir).sort())
    if (file.endsWith(SHARD_EXT) && !listed.has(file)) throw new ShardError(`is not listed in ${manifestPath} (a stray shard, or the manifest is stale)`, join(dir, file));
}

/** A shard's header and meta against its manifest entry and the manifest's tokenizer. */
function checkEntry(r: ShardReader, e: ShardEntry, m: Manifest, manifestPath: string): void {
  const differ = (has: string, listed: string | number) => new ShardError(`${has}, ${manifestPath} says ${listed}`, r.path);
  if (r.meta.vocabSize !== m.tokenizer.vocab_size) throw differ(`has a vocabulary of ${r.meta.vocabSize}`, m.tokenizer.vocab_size);
  if (r.width !== m.tokenizer.token_bytes) throw differ(`stores ${r.width}-byte token ids`, m.tokenizer.token_bytes);
  if (r.size !== e.bytes) throw differ(`is ${r.size} bytes`, e.bytes);
  if (r.recordCount !== e.records) throw differ(`holds ${r.recordCount} records`, e.records);
}

/** Shard files without a manifest: each one completely, all of the first one's tokenizer. */
async function checkShards(paths: string[], counts: Counts, out: ShardSummary[], opts: VerifyOptions): Promise<void> {
  const progress = progressOf(paths, opts);
  let tokenizerHash: string | undefined;
  for (const path of paths) {
    const reader = await ShardReader.open(path, { tokenizerHash });
    tokenizerHash ??= reader.meta.tokenizerHash;
    out.push(await readShard(reader, counts, progress));
  }
}

/** Read every block and record of a shard (each checked by the reader), counting them into `counts`. */
async function readShard(r: ShardReader, counts: Counts, progress: (path: string, done: number) => void): Promise<ShardSummary> {
  let records = 0;
  let tokens = 0;
  for (let b = 0; b < r.blockCount; b++) {
    const block = await r.readBlock(b);
    for (let i = 0; i < block.count; i++) {
      const rec = block.record(i);
      records++;
      tokens += rec.ids.length;
      countRecord(counts, r.meta.languages, { task: rec.task, srcLang: rec.srcLang, tgtLang: rec.tgtLang, tokens: rec.ids.length });
    }
    const { first, count } = r.blockRange(b);
    progress(r.path, b + 1 === r.blockCount ? r.size : Math.round((r.size * (first + count)) / r.recordCount));
  }
  // The reader's index already ties the blocks' counts to the header's; this guards the loop above.
  if (records !== r.recordCount) throw new ShardError(`the header declares ${r.recordCount} records, ${records} were read`, r.path);
  return { file: r.path, records, tokens, bytes: r.size };
}

/** A progress callback per shard: `done` bytes of that shard, reported as bytes of all shards. */
function progressOf(paths: string[], opts: VerifyOptions): (path: string, done: number) => void {
  if (!opts.onProgress) return () => {};
  const sizes = paths.map((p) => (existsSync(p) ? statSync(p).size : 0));
  const total = sizes.reduce((a, b) => a + b, 0);
  const before = new Map(paths.map((p, i) => [p, sizes.slice(0, i).reduce((a, b) => a + b, 0)]));
  return (path, done) => opts.onProgress!((before.get(path) ?? 0) + done, total);
}

/** The manifest's counts against those recomputed from the records (a key missing on one side counts as 0). */
function compareCounts(listed: Counts, found: Counts, manifestPath: string): void {
  for (const k of ["records", "tokens"] as const)
    if (listed[k] !== found[k]) throw new ShardError(`counts.${k} is ${listed[k]}, the shards hold ${found[k]}`, manifestPath);
  for (const k of ["by_task", "by_language", "by_direction"] as const) {
    const zero: Count = { records: 0, tokens: 0 };
    for (const key of new Set([...Object.keys(listed[k]), ...Object.keys(found[k])])) {
      const a = listed[k][key] ?? zero;
      const b = found[k][key] ?? zero;
      if (a.records !== b.records || a.tokens !== b.tokens)
        throw new ShardError(`counts.${k}.${key} is ${a.records} records / ${a.tokens} tokens, the shards hold ${b.records} / ${b.tokens}`, manifestPath);
    }
  }
}

/**
 * Hugging Face checkpoint directories: one `model.safetensors`, or shards listed by
 * `model.safetensors.index.json` ({metadata: {total_size}, weight_map: {tensor name: shard file}}).
 *
 * `openCheckpoint(dir)` reads the index (if any) and every shard's header (never the data), and builds
 * tensor name → (shard, entry). Everything that is wrong is reported together in one CheckpointError:
 * missing shard files, names the index maps to a shard that lacks them, names found in more than one
 * shard, names in a shard that the index does not list, shard paths that are directories. A tensor name given
 * twice in the index is refused (JSON.parse would keep the last). Like `transformers`, a directory holding
 * both a `model.safetensors` and an index uses `model.safetensors`.
 *
 * `writeCheckpoint(dir, tensors)` writes the same layout atomically (saveDirAtomic): shards of at most
 * `maxShardBytes` (5 GB by default, as `save_pretrained`; a larger tensor gets a shard of its own), named
 * model-0000i-of-0000n.safetensors with an index whose weight_map is sorted, or a single model.safetensors
 * when everything fits one shard, plus any extra files (config.json, tokenizer files).
 */
import { readFile, readdir, stat } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import type { Gpu } from "../gpu/index.ts";
import type { Tensor } from "../tensor/index.ts";
import { saveDirAtomic, writeBytesAtomic } from "./atomic.ts";
import { CheckpointError, listLines } from "./errors.ts";
import {
  firstDuplicateKey,
  openSafetensors,
  ST_DTYPES,
  tensorsToWrite,
  writeSafetensors,
  type HostTensor,
  type SafetensorsFile,
  type StDType,
  type TensorEntry,
  type TensorToWrite,
} from "./safetensors.ts";

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

/** Where one tensor of a checkpoint lives. */
export interface CheckpointTensor {
  readonly file: SafetensorsFile;
  readonly entry: TensorEntry;
}

export interface CheckpointIndex {
  readonly path: string;
  /** metadata.total_size as written (informative: writers disagree on what it counts). */
  readonly totalSize: number | null;
  readonly metadata: Readonly<Record<string, unknown>>;
}

export class Checkpoint implements AsyncDisposable {
  constructor(
    /** The directory (or, for a lone file, the file) the checkpoint was opened from. */
    readonly path: string,
    readonly files: readonly SafetensorsFile[],
    readonly index: CheckpointIndex | null,
    private readonly map: ReadonlyMap<string, CheckpointTensor>,
  ) {}

  /** Tensor names, sorted. */
  names(): string[] {
    return [...this.map.keys()].sort();
  }

  has(name: string): boolean {
    return this.map.has(name);
  }

  get size(): number {
    return this.map.size;
  }

  get(name: string): CheckpointTensor {
    const t = this.map.get(name);
    if (!t) throw new CheckpointError(`no such tensor in this checkpoint (it has ${this.map.size})`, this.path, { tensor: name });
    return t;
  }

  entry(name: string): TensorEntry {
    return this.get(name).entry;
  }

  /** Name, shape and dtype of every tensor (what `checkParameters` takes). */
  params(): { name: string; shape: readonly number[]; dtype: StDType }[] {
    return this.names().map((name) => {
      const e = this.map.get(name)!.entry;
      return { name, shape: e.shape, dtype: e.dtype };
    });
  }

  /** Bytes of tensor data in all shards. */
  get totalBytes(): number {
    let n = 0;
    for (const t of this.map.values()) n += t.entry.byteLength;
    return n;
  }

  readTensor(name: string): Promise<HostTensor> {
    return this.get(name).file.readTensor(name);
  }

  readF32(name: string): Promise<Float32Array> {
    return this.get(name).file.readF32(name);
  }

  loadTensor(gpu: Gpu, name: string, opts: { requiresGrad?: boolean } = {}): Promise<Tensor> {
    return this.get(name).file.loadTensor(gpu, name, opts);
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Open a checkpoint: a directory (model.safetensors, else model.safetensors.index.json), an index file,
 * or a single .safetensors file. Reads headers only.
 */
export async function openCheckpoint(path: string): Promise<Checkpoint> {
  const st = await stat(path).catch(() => null);
  if (!st) throw new CheckpointError(`no such file or directory${await interruptedHint(path)}`, path);
  if (st.isFile()) {
    if (path.endsWith(".index.json")) return openIndexed(dirname(path), path);
    return openSingle(path, path);
  }
  const single = join(path, SINGLE_FILE);
  const singleKind = await kindOf(single);
  if (singleKind === "file") return openSingle(path, single);
  const index = join(path, INDEX_FILE);
  const indexKind = await kindOf(index);
  if (indexKind === "file") return openIndexed(path, index);
  for (const [p, kind] of [[single, singleKind], [index, indexKind]] as const)
    if (kind !== "missing") throw new CheckpointError(`is a ${kind}, not a file`, p);
  const names = await readdir(path).catch(() => [] as string[]);
  const pickle = names.filter((n) => /^pytorch_model.*\.bin(\.index\.json)?$/.test(n));
  throw new CheckpointError(
    `no ${SINGLE_FILE} or ${INDEX_FILE} here` +
      (pickle.length ? ` (only PyTorch pickle weights: ${pickle.slice(0, 3).join(", ")}; convert them to safetensors first)` : ""),
    path,
  );
}

/** What is at `p` (symlinks followed): a file, a directory, something else, or nothing. */
async function kindOf(p: string): Promise<"file" | "directory" | "special file" | "missing"> {
  const st = await stat(p).catch(() => null);
  return !st ? "missing" : st.isFile() ? "file" : st.isDirectory() ? "directory" : "special file";
}

/**
 * A checkpoint directory is required (what `LlamaModel.fromPretrained` and `--model` take): a missing path or
 * a file (a .safetensors, a config.json) fails naming it, before anything is read.
 */
export async function requireCheckpointDir(path: string): Promise<void> {
  const kind = await kindOf(path);
  if (kind === "directory") return;
  if (kind === "missing") throw new CheckpointError(`no such file or directory${await interruptedHint(path)}`, path);
  throw new CheckpointError(
    `is a ${kind}, not a checkpoint directory (a directory holding config.json and ${SINGLE_FILE} or ${INDEX_FILE} with its shards)` +
      (kind === "file" ? `; give its directory, ${dirname(path)}` : ""),
    path,
  );
}

/** " (DIR.old-123 is left from an interrupted save: ...)" when that explains a missing directory. */
async function interruptedHint(path: string): Promise<string> {
  const full = resolve(path);
  const names = await readdir(dirname(full)).catch(() => [] as string[]);
  const old = names.find((n) => n.startsWith(`${basename(full)}.old-`));
  return old ? ` (${join(dirname(full), old)} is left from an interrupted save: recoverInterruptedSave() or a rename restores it)` : "";
}

async function openSingle(path: string, file: string): Promise<Checkpoint> {
  const f = await openSafetensors(file);
  const map = new Map<string, CheckpointTensor>();
  for (const [name, entry] of f.entries) map.set(name, { file: f, entry });
  return new Checkpoint(path, [f], null, map);
}

async function openIndexed(dir: string, indexPath: string): Promise<Checkpoint> {
  const fail = (msg: string, field?: string) => new CheckpointError(msg, indexPath, field === undefined ? {} : { field });
  let doc: unknown;
  let text: string;
  try {
    text = await readFile(indexPath, "utf8");
  } catch (e) {
    throw fail(`cannot read: ${(e as Error).message}`);
  }
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw fail(`not valid JSON: ${(e as Error).message}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw fail("not a JSON object");
  // JSON.parse keeps the last of two equal keys: a tensor mapped twice (perhaps to two shards) is refused.
  const dup = firstDuplicateKey(text);
  if (dup) throw fail(`${JSON.stringify(dup.key)} appears twice${dup.path.length ? ` in ${dup.path.join(".")}` : " at the top level"}`, dup.path[0] ?? dup.key);
  const { weight_map: wm, metadata: md = {} } = doc as Record<string, unknown>;
  if (md === null || typeof md !== "object" || Array.isArray(md)) throw fail("must be an object", "metadata");
  const total = (md as Record<string, unknown>).total_size;
  if (total !== undefined && (typeof total !== "number" || !(total >= 0))) throw fail(`total_size is ${JSON.stringify(total)}, not a number >= 0`, "metadata");
  if (wm === null || typeof wm !== "object" || Array.isArray(wm)) throw fail("missing or not an object {tensor name: shard file}", "weight_map");
  const weightMap = Object.entries(wm as Record<string, unknown>);
  if (weightMap.length === 0) throw fail("is empty", "weight_map");
  const shardOf = new Map<string, string>();
  for (const [name, shard] of weightMap) {
    if (typeof shard !== "string" || !/^[^/\\\0]+\.safetensors$/.test(shard))
      throw fail(`${JSON.stringify(name)} maps to ${JSON.stringify(shard)}, not a .safetensors file name in this directory`, "weight_map");
    shardOf.set(name, shard);
  }

  const shardNames = [...new Set(shardOf.values())].sort();
  const missing: string[] = [];
  const notFiles: string[] = [];
  for (const s of shardNames) {
    const kind = await kindOf(join(dir, s));
    if (kind === "missing") missing.push(s);
    else if (kind !== "file") notFiles.push(`${join(dir, s)} is a ${kind}, not a file`);
  }
  if (missing.length || notFiles.length) {
    const count = (s: string) => [...shardOf.values()].filter((x) => x === s).length;
    const parts: string[] = [];
    if (missing.length)
      parts.push(`${missing.length} shard file(s) named by ${basename(indexPath)} are missing:\n${listLines(missing.map((s) => `${join(dir, s)} (holds ${count(s)} tensors)`))}`);
    if (notFiles.length) parts.push(`${notFiles.length} shard path(s) named by ${basename(indexPath)} are not files:\n${listLines(notFiles)}`);
    throw new CheckpointError(parts.join("\n"), dir);
  }

  const files: SafetensorsFile[] = [];
  try {
    for (const s of shardNames) files.push(await openSafetensors(join(dir, s)));
    const byShard = new Map(shardNames.map((s, i) => [s, files[i]!]));
    const holders = new Map<string, SafetensorsFile[]>();
    for (const f of files) for (const name of f.entries.keys()) holders.set(name, [...(holders.get(name) ?? []), f]);

    const problems: string[] = [];
    for (const [name, fs] of holders)
      if (fs.length > 1) problems.push(`${JSON.stringify(name)} is in ${fs.length} shards: ${fs.map((f) => basename(f.path)).join(", ")}`);
    const map = new Map<string, CheckpointTensor>();
    for (const [name, shard] of shardOf) {
      const f = byShard.get(shard)!;
      const entry = f.entries.get(name);
      if (!entry) {
        const elsewhere = holders.get(name);
        problems.push(`${JSON.stringify(name)} is mapped to ${shard}, which lacks it${elsewhere ? ` (it is in ${elsewhere.map((x) => basename(x.path)).join(", ")})` : ""}`);
      } else map.set(name, { file: f, entry });
    }
    for (const [name, fs] of holders)
      if (!shardOf.has(name)) problems.push(`${JSON.stringify(name)} is in ${fs.map((f) => basename(f.path)).join(", ")} but not in the index's weight_map`);
    if (problems.length)
      throw new CheckpointError(`${basename(indexPath)} and its shards disagree (${problems.length} problem(s)):\n${listLines(problems)}`, dir);
    return new Checkpoint(dir, files, { path: indexPath, totalSize: typeof total === "number" ? total : null, metadata: md as Record<string, unknown> }, map);
  } catch (e) {
    await Promise.all(files.map((f) => f.close().catch(() => {})));
    throw e;
  }
}

// ---- writing ------------------------------------------------------------------------------------------

export interface WriteCheckpointOptions {
  /** Largest shard in bytes of tensor data (default 5e9, as transformers' "5GB"). */
  maxShardBytes?: number;
  /** Safetensors metadata of every shard (default {format: "pt"}, which transformers expects). */
  metadata?: Record<string, string> | null;
  /** Extra files to put in the directory, by name: config.json, tokenizer.json, ... */
  files?: Record<string, string | Uint8Array>;
}

export interface WrittenCheckpoint {
  dir: string;
  /** Shard file names in order. */
  shards: string[];
  /** Sum of tensor bytes (the index's total_size). */
  totalSize: number;
}

/** Write a checkpoint directory atomically (see the module comment). Tensor data may be lazy. */
export function writeCheckpoint(dir: string, tensors: readonly TensorToWrite[], opts: WriteCheckpointOptions = {}): Promise<WrittenCheckpoint> {
  return writeCheckpointInto(dir, tensors, opts, (fill) => saveDirAtomic(dir, fill));
}

/**
 * The weights (shards and index) and extra files of a checkpoint, written into the directory `build` hands
 * to its callback: `writeCheckpoint` passes an atomic directory build; a caller that adds its own files to the
 * same directory (the trainer's checkpoints: optimizer and trainer state beside the weights) passes the
 * directory it is already building, `(fill) => fill(tmpDir)`.
 */
export async function writeCheckpointInto(
  dir: string,
  tensors: readonly TensorToWrite[],
  opts: WriteCheckpointOptions,
  build: (fill: (tmp: string) => Promise<WrittenCheckpoint>) => Promise<WrittenCheckpoint>,
): Promise<WrittenCheckpoint> {
  const max = opts.maxShardBytes ?? 5e9;
  if (!(max > 0)) throw new CheckpointError(`maxShardBytes must be > 0, got ${max}`, dir);
  const metadata = opts.metadata === undefined ? { format: "pt" } : opts.metadata;
  for (const name of Object.keys(opts.files ?? {}))
    if (!/^[^/\\\0]+$/.test(name) || name === "." || name === "..") throw new CheckpointError(`extra file name ${JSON.stringify(name)} must be a plain file name`, dir);

  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new CheckpointError("tensor name given twice", dir, { tensor: t.name });
    seen.add(t.name);
  }
  // transformers' split: fill shards in order; a tensor that does not fit starts a new one.
  const shards: TensorToWrite[][] = [];
  let cur: TensorToWrite[] = [];
  let curBytes = 0;
  let totalSize = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, d) => a * d, 1) * (ST_DTYPES[t.dtype]?.bytes ?? 0);
    totalSize += bytes;
    if (cur.length && curBytes + bytes > max) {
      shards.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(t);
    curBytes += bytes;
  }
  if (cur.length || shards.length === 0) shards.push(cur);
  const n = shards.length;
  const names = n === 1 ? [SINGLE_FILE] : shards.map((_, i) => `model-${String(i + 1).padStart(5, "0")}-of-${String(n).padStart(5, "0")}.safetensors`);

  return build(async (tmp) => {
    const weightMap: Record<string, string> = {};
    for (let i = 0; i < n; i++) {
      await writeSafetensors(join(tmp, names[i]!), shards[i]!, metadata);
      for (const t of shards[i]!) weightMap[t.name] = names[i]!;
    }
    if (n > 1) {
      const sorted: Record<string, string> = {};
      for (const k of Object.keys(weightMap).sort()) sorted[k] = weightMap[k]!;
      await writeBytesAtomic(join(tmp, INDEX_FILE), `${JSON.stringify({ metadata: { total_size: totalSize }, weight_map: sorted }, null, 2)}\n`);
    }
    for (const [name, content] of Object.entries(opts.files ?? {})) await writeBytesAtomic(join(tmp, name), content);
    return { dir: resolve(dir), shards: names, totalSize };
  });
}

/** `writeCheckpoint` for runtime tensors: f32 saved as `dtype` (default BF16, what HF LLaMA checkpoints hold). */
export function saveCheckpoint(
  dir: string,
  tensors: Record<string, Tensor> | Iterable<readonly [string, Tensor]>,
  opts: WriteCheckpointOptions & { dtype?: "F32" | "BF16" | "F16" } = {},
): Promise<WrittenCheckpoint> {
  return writeCheckpoint(dir, tensorsToWrite(tensors, opts.dtype ?? "BF16"), opts);
}

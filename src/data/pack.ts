/**
 * `alignx pack`: corpus files → tokenized, span-annotated shards + manifest.json in one output directory.
 *
 *   1. check the options and the output directory (refused when it exists, unless `overwrite`) before any work;
 *   2. read every input (formats/: FLORES, Moses/Tatoeba, TSV, JSONL, Alpaca, SQuAD, text, udhr) into jobs:
 *        pretrain  documents (a parallel row gives one document per language) → [BOS] ids [EOS], concatenated
 *                  and cut into `seqLen`-id sequences;
 *        stage1    translation instructions, both directions of each pair over `langs` (`pairs`:
 *                  english-centric or all), with the span index (examples.ts);
 *        stage2    translation instructions and general instructions, mixed by `mix` (no upsampling: the kind
 *                  that runs out first sets the total);
 *   3. shuffle the jobs with `seed`, tokenize them in chunks on `workers` threads (pack_worker.ts), and write
 *      the results in chunk order: the same inputs, options and seed give byte-identical shards whatever the
 *      worker count (0 = tokenize in this thread);
 *   4. shards of at most `shardBytes` (default 64 MiB), then manifest.json; the whole directory is built as
 *      DIR.tmp-PID and renamed into place only when complete (io/atomic.ts saveDirAtomic), so an interrupted
 *      pack leaves no half shard and is simply run again.
 * Bad options are CorpusErrors with exitCode 2; bad data CorpusErrors / ShardErrors with exitCode 1.
 */
import { availableParallelism } from "node:os";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { saveDirAtomic } from "../io/atomic.ts";
import { prepareOutput } from "../io/output.ts";
import { mulberry32 } from "../tensor/rng.ts";
import { CorpusError, type CorpusItem, type Format, type ReadOptions } from "./corpus.ts";
import { alpacaPrompt } from "./prompt.ts";
import { expandInput, openInputs } from "./formats/index.ts";
import { ALIGNX_LANGS, normalizeLang } from "./languages.ts";
import { countRecord, emptyCounts, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, type Manifest, type ShardEntry } from "./manifest.ts";
import { SequencePacker } from "./examples.ts";
import { jobBytes, runChunk, type ChunkRequest, type ChunkResult, type Job } from "./pack_jobs.ts";
import { DEFAULT_BLOCK_BYTES, SHARD_EXT, ShardWriter, tokenWidth, type Task } from "./shard.ts";
import { loadTokenizer, type HfTokenizer } from "./tokenizer.ts";

export const PACK_TASKS = ["pretrain", "stage1", "stage2"] as const;
export type PackTask = (typeof PACK_TASKS)[number];
export const PAIR_MODES = ["english-centric", "all"] as const;

export interface PackOptions extends Omit<ReadOptions, "onBadRecord"> {
  tokenizer: string;
  out: string;
  inputs: string[];
  task: PackTask;
  format?: Format;
  /** Languages kept (canonical or alias codes). Default: the ten AlignX languages found in the inputs. */
  langs?: string[];
  pairs?: (typeof PAIR_MODES)[number];
  /** Most tokens per example (stage1/2). Default 512, the reference's cutoff. */
  cutoff?: number;
  /** Tokens per pretraining sequence. Default 512. */
  seqLen?: number;
  /** stage2: relative weights of translation and general instructions. Default 1:1. */
  mix?: { translation: number; general: number };
  seed?: number;
  /** Tokenizing threads; 0 = this thread. Default: one per core. */
  workers?: number;
  shardBytes?: number;
  blockBytes?: number;
  overwrite?: boolean;
  createdBy?: string;
  onProgress?: (p: PackProgress) => void;
  /** Called once the options and the output location have passed their checks, before any input is read. */
  onStart?: () => void;
  /** Lines worth telling the user (dropped counts, skipped records, missing languages). */
  log?: (line: string) => void;
}

export interface PackProgress {
  phase: "read" | "tokenize";
  /** Jobs tokenized so far, of `total`. */
  done: number;
  total: number;
  /** UTF-8 bytes of text tokenized so far. */
  bytes: number;
  tokens: number;
  records: number;
}

export const PACK_DEFAULTS = { cutoff: 512, seqLen: 512, seed: 0, shardBytes: 64 << 20, pairs: "english-centric", chunk: 256 } as const;

const usage = (msg: string, where = "pack") => new CorpusError(`${where}: ${msg}`, where, 2);

function checkInt(name: string, v: number | undefined, min: number, max = 2 ** 31 - 1): void {
  if (v === undefined) return;
  if (!Number.isInteger(v) || v < min || v > max) throw usage(`--${name} must be an integer in [${min}, ${max}], got ${v}`);
}

/** Option checks that need no file: every one is a usage error (exit 2), raised before any work. */
export function checkPackOptions(o: PackOptions): void {
  if (!PACK_TASKS.includes(o.task)) throw usage(`--task must be one of ${PACK_TASKS.join(", ")}, got ${JSON.stringify(o.task)}`);
  if (!o.tokenizer) throw usage("--tokenizer is required (a tokenizer.json or a model directory)");
  if (!o.out) throw usage("--out is required (the output directory)");
  if (o.inputs.length === 0) throw usage("no INPUTS given (paths, globs, or the word udhr)");
  if (o.pairs !== undefined && !PAIR_MODES.includes(o.pairs)) throw usage(`--pairs must be ${PAIR_MODES.join(" or ")}, got ${JSON.stringify(o.pairs)}`);
  checkInt("cutoff", o.cutoff, 8);
  checkInt("seq-len", o.seqLen, 2);
  checkInt("seed", o.seed, 0, 2 ** 32 - 1);
  checkInt("workers", o.workers, 0, 256);
  checkInt("shard-bytes", o.shardBytes, 1 << 16, 2 ** 31 - 1);
  if (o.mix) {
    const { translation: t, general: g } = o.mix;
    if (![t, g].every((x) => Number.isFinite(x) && x >= 0) || t + g <= 0) throw usage(`--mix weights must be non-negative numbers, not both 0 (got translation=${t}, general=${g})`);
    if (o.task !== "stage2") throw usage("--mix applies to --task stage2 only");
  }
  if (o.pairs !== undefined && o.task === "pretrain") throw usage("--pairs applies to --task stage1 and stage2");
  if (o.seqLen !== undefined && o.task !== "pretrain") throw usage("--seq-len applies to --task pretrain (stage1/2 use --cutoff)");
}

/**
 * The output directory, before any work: the output-path rules of io/output.ts (not an input, not inside an
 * input directory, holding no input; a directory, a link to one, or a new path; not read-only; a writable
 * location with free space), then pack's own: an existing one is refused unless `overwrite`, and never replaced
 * when it is not a pack output.
 */
async function checkOutput(o: PackOptions): Promise<void> {
  const inputs = [{ path: o.tokenizer, label: "--tokenizer" }];
  for (const pattern of o.inputs) {
    let paths: string[] = [];
    try {
      paths = expandInput(pattern);
    } catch {
      // a pattern matching nothing: openInputs says so, in its turn
    }
    for (const p of paths) inputs.push({ path: p, label: "input" }); // the word udhr names no file: skipped as missing
  }
  const t = await prepareOutput(o.out, { kind: "dir", label: "pack: --out", inputs });
  if (!t.existing) return;
  if (!o.overwrite) throw usage(`${o.out} exists; pass --overwrite to replace it`);
  const names = await readdir(t.target);
  if (names.length > 0 && !names.includes(MANIFEST_FILE)) throw usage(`${o.out} is not empty and holds no ${MANIFEST_FILE} (not an alignx pack output); refusing to replace it even with --overwrite`);
}

/** Fisher–Yates with a seeded generator. */
function shuffle<T>(xs: T[], seed: number): T[] {
  const rand = mulberry32(seed);
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

interface Corpus {
  parallel: { texts: Record<string, string>; source: string }[];
  instructions: Extract<CorpusItem, { kind: "instruction" }>[];
  documents: Extract<CorpusItem, { kind: "document" }>[];
  inputs: { path: string; format: string; items: number }[];
  badRecords: number;
}

async function readCorpus(o: PackOptions, log: (l: string) => void): Promise<Corpus> {
  const c: Corpus = { parallel: [], instructions: [], documents: [], inputs: [], badRecords: 0 };
  let shown = 0;
  const onBadRecord = (m: string) => {
    c.badRecords++;
    if (shown++ < 10) log(`skipped bad record: ${m}`);
  };
  const sources = await openInputs(o.inputs, { format: o.format, lang: o.lang, textUnit: o.textUnit, skipBadRecords: o.skipBadRecords, onBadRecord });
  for (const s of sources) {
    let items = 0;
    for await (const it of s.read()) {
      items++;
      if (it.kind === "parallel") c.parallel.push({ texts: it.texts, source: it.source });
      else if (it.kind === "instruction") c.instructions.push(it);
      else c.documents.push(it);
    }
    c.inputs.push({ path: s.path, format: s.format, items });
  }
  if (c.badRecords > 10) log(`... ${c.badRecords - 10} more bad records skipped`);
  return c;
}

/** The languages to keep, canonical, in the user's order (default: the AlignX ten present in the corpus). */
function chooseLangs(o: PackOptions, c: Corpus, log: (l: string) => void): string[] {
  const present = new Set<string>();
  for (const r of c.parallel) for (const l of Object.keys(r.texts)) present.add(l);
  for (const x of [...c.instructions, ...c.documents]) if (x.lang) present.add(x.lang);
  const asked = o.langs ? o.langs.map((l) => normalizeLang(l, "--langs", 2)) : ALIGNX_LANGS.filter((l) => present.has(l));
  const missing = asked.filter((l) => !present.has(l));
  if (missing.length) log(`no input text in ${missing.join(", ")} (asked for by --langs)`);
  return [...new Set(asked)];
}

function translationJobs(c: Corpus, langs: string[], pairs: string): Job[] {
  const chosen: [string, string][] = [];
  for (const a of langs) for (const b of langs) if (a !== b && (pairs === "all" || a === "eng" || b === "eng")) chosen.push([a, b]);
  const jobs: Job[] = [];
  for (const r of c.parallel) {
    for (const [a, b] of chosen) {
      const s = r.texts[a], t = r.texts[b];
      if (s !== undefined && t !== undefined) jobs.push({ kind: "translation", srcLang: a, tgtLang: b, src: s, tgt: t });
    }
  }
  return jobs;
}

function instructionJobs(c: Corpus): Job[] {
  return c.instructions.map((i) => ({ kind: "instruction", instruction: i.instruction, input: i.input, output: i.output, lang: i.lang }));
}

function documentJobs(c: Corpus, langs: Set<string>): Job[] {
  const jobs: Job[] = [];
  for (const r of c.parallel) for (const [l, t] of Object.entries(r.texts)) if (langs.has(l)) jobs.push({ kind: "document", text: t, lang: l });
  for (const d of c.documents) if (d.lang === null || langs.size === 0 || langs.has(d.lang)) jobs.push({ kind: "document", text: d.text, lang: d.lang });
  for (const i of c.instructions) jobs.push({ kind: "document", text: alpacaPrompt(i) + i.output, lang: i.lang });
  return jobs;
}

/** Jobs for the task, shuffled with the seed. */
function planJobs(o: PackOptions, c: Corpus, langs: string[], log: (l: string) => void): { jobs: Job[]; mixed?: Record<string, number> } {
  const seed = o.seed ?? PACK_DEFAULTS.seed;
  const pairs = o.pairs ?? PACK_DEFAULTS.pairs;
  if (o.task !== "pretrain") {
    if (pairs === "english-centric" && !langs.includes("eng") && c.parallel.length > 0) throw usage("--pairs english-centric needs eng among the languages (add it to --langs, or use --pairs all)");
    if (o.task === "stage1" && (c.instructions.length || c.documents.length))
      throw usage(`--task stage1 takes parallel text only; ${c.inputs.filter((i) => i.format === "alpaca" || i.format === "squad" || i.format === "text").map((i) => i.path).join(", ") || "some inputs"} hold instructions or documents (use --task stage2 or pretrain)`);
  }
  if (o.task === "pretrain") return { jobs: shuffle(documentJobs(c, new Set(langs)), seed) };
  const tr = shuffle(translationJobs(c, langs, pairs), seed);
  if (o.task === "stage1") {
    if (tr.length === 0) throw usage(`no translation pairs in ${langs.join(", ")} (${pairs}) in the inputs`);
    return { jobs: tr };
  }
  const gen = shuffle(instructionJobs(c), seed + 1);
  const mix = o.mix ?? { translation: 1, general: 1 };
  const w = mix.translation + mix.general;
  const limits = [mix.translation > 0 ? tr.length / (mix.translation / w) : Infinity, mix.general > 0 ? gen.length / (mix.general / w) : Infinity];
  const total = Math.min(...limits);
  if (!Number.isFinite(total) || total === 0) throw usage(`--task stage2 with --mix translation=${mix.translation},general=${mix.general}: the inputs hold ${tr.length} translation pairs and ${gen.length} instructions`);
  const nt = Math.min(tr.length, Math.round((total * mix.translation) / w)), ng = Math.min(gen.length, Math.round((total * mix.general) / w));
  if (nt < tr.length || ng < gen.length) log(`mix: ${nt} of ${tr.length} translation examples, ${ng} of ${gen.length} general instructions`);
  return { jobs: shuffle([...tr.slice(0, nt), ...gen.slice(0, ng)], seed + 2), mixed: { translation: nt, general: ng } };
}

/**
 * The worker's module. The compiled binary embeds src/data/pack_worker.ts as an entrypoint of its own (the
 * build script names it); src/ is the entrypoints' common root, so it sits at data/ beside the binary's entry.
 */
const WORKER_URL = Bun.isStandaloneExecutable ? "./data/pack_worker.ts" : new URL("./pack_worker.ts", import.meta.url).href;

/** Runs chunks on worker threads (or here), results in submission order. */
class ChunkRunner {
  private workers: Worker[] = [];
  private idle: Worker[] = [];
  private waiting: { req: ChunkRequest; resolve: (r: ChunkResult) => void; reject: (e: Error) => void }[] = [];
  private busy = new Map<Worker, { resolve: (r: ChunkResult) => void; reject: (e: Error) => void }>();

  private constructor(private readonly tok: HfTokenizer) {}

  static async start(tok: HfTokenizer, tokenizerPath: string, n: number): Promise<ChunkRunner> {
    const r = new ChunkRunner(tok);
    const ready: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const w = new Worker(WORKER_URL);
      r.workers.push(w);
      ready.push(
        new Promise<void>((resolve, reject) => {
          w.onmessage = (ev: MessageEvent) => {
            const d = ev.data as { ready?: boolean; hash?: string; error?: string };
            if (d.error) return reject(new Error(`pack worker: ${d.error}`));
            if (d.hash !== tok.hash) return reject(new Error(`pack worker loaded a different tokenizer (hash ${d.hash}) from ${tokenizerPath}`));
            w.onmessage = (e: MessageEvent) => r.done(w, e.data);
            r.idle.push(w);
            resolve();
          };
          w.onerror = (e: ErrorEvent) => reject(new Error(`pack worker failed: ${e.message}`));
        }),
      );
      w.postMessage({ init: tokenizerPath });
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      r.close();
      throw e;
    }
    for (const w of r.workers) w.onerror = (e: ErrorEvent) => r.fail(w, new Error(`pack worker failed: ${e.message}`));
    return r;
  }

  run(req: ChunkRequest): Promise<ChunkResult> {
    if (this.workers.length === 0) return Promise.resolve().then(() => runChunk(this.tok, req));
    return new Promise((resolve, reject) => {
      this.waiting.push({ req, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.idle.length && this.waiting.length) {
      const w = this.idle.shift()!;
      const job = this.waiting.shift()!;
      this.busy.set(w, job);
      w.postMessage(job.req);
    }
  }

  private done(w: Worker, data: ChunkResult & { error?: string }): void {
    const job = this.busy.get(w);
    this.busy.delete(w);
    this.idle.push(w);
    if (data.error) job?.reject(new Error(data.error));
    else job?.resolve(data);
    this.pump();
  }

  private fail(w: Worker, e: Error): void {
    this.busy.get(w)?.reject(e);
    this.busy.delete(w);
    for (const j of this.waiting.splice(0)) j.reject(e);
  }

  close(): void {
    for (const w of this.workers) w.terminate();
    this.workers = [];
  }
}

/** Pack a corpus; returns the manifest written. See the module comment. */
export async function pack(o: PackOptions): Promise<Manifest> {
  checkPackOptions(o);
  const log = o.log ?? (() => {});
  await checkOutput(o);
  o.onStart?.();
  const tok = await loadTokenizer(o.tokenizer);
  if (o.task !== "pretrain" && tok.eosId === null) throw new CorpusError(`${o.tokenizer}: the tokenizer has no EOS token, which the instruction examples end with`, o.tokenizer);
  const corpus = await readCorpus(o, log);
  const langs = chooseLangs(o, corpus, log);
  const { jobs, mixed } = planJobs(o, corpus, langs, log);
  // The language table: the kept languages first (user's order), then any other instruction/document language.
  const table = [...langs];
  for (const j of jobs) if (j.kind !== "translation" && j.lang && !table.includes(j.lang)) table.push(j.lang);
  const langId = (l: string | null) => (l === null ? -1 : table.indexOf(l));

  const cutoff = o.cutoff ?? PACK_DEFAULTS.cutoff, seqLen = o.seqLen ?? PACK_DEFAULTS.seqLen;
  const shardBytes = o.shardBytes ?? PACK_DEFAULTS.shardBytes, blockBytes = Math.min(o.blockBytes ?? DEFAULT_BLOCK_BYTES, shardBytes >> 2);
  const nWorkers = o.workers ?? availableParallelism();
  const meta = { tokenizerHash: tok.hash, vocabSize: tok.vocabSize, languages: table, createdBy: o.createdBy ?? "alignx" };
  const counts = emptyCounts();
  const dropped: Record<string, number> = { target_cut: 0, no_supervision: 0, empty: 0, bad_records: corpus.badRecords };

  return saveDirAtomic(o.out, async (dir) => {
    const shards: ShardEntry[] = [];
    let writer: ShardWriter | null = null;
    let shardTokens = 0;
    const closeShard = async () => {
      if (!writer || writer.recordCount === 0) return;
      const file = `shard-${String(shards.length).padStart(5, "0")}${SHARD_EXT}`;
      const bytes = writer.finish();
      await Bun.write(join(dir, file), bytes);
      shards.push({ file, records: writer.recordCount, tokens: shardTokens, bytes: bytes.length });
      writer = null;
      shardTokens = 0;
    };
    const add = async (ids: ArrayLike<number>, spans: Uint8Array | null, task: Task, src: number, tgt: number, promptLen: number) => {
      if (writer && writer.byteLength + ids.length * tokenWidth(tok.vocabSize) + (spans ? ids.length : 0) + 64 > shardBytes) await closeShard();
      writer ??= new ShardWriter(meta, blockBytes);
      writer.add({ ids, spans, srcLang: src, tgtLang: tgt, task, promptLen });
      shardTokens += ids.length;
      countRecord(counts, table, { task, srcLang: src, tgtLang: tgt, tokens: ids.length });
    };
    // The packer emits sequences synchronously (several per document when it is long); they are written one
    // at a time, in order, after each chunk: concurrent add() calls would race on the shard writer.
    const sequences: [number[], number][] = [];
    const seq = new SequencePacker(seqLen, (ids, lang) => sequences.push([ids, lang]));
    const writeSequences = async () => {
      for (const [ids, lang] of sequences.splice(0)) await add(ids, null, "pretrain", -1, lang, 0);
    };

    const runner = await ChunkRunner.start(tok, o.tokenizer, nWorkers);
    const progress: PackProgress = { phase: "tokenize", done: 0, total: jobs.length, bytes: 0, tokens: 0, records: 0 };
    try {
      const chunk = PACK_DEFAULTS.chunk;
      const inFlight: Promise<ChunkResult>[] = [];
      let next = 0;
      const submit = () => {
        const start = next * chunk;
        if (start >= jobs.length) return;
        inFlight.push(runner.run({ id: next, jobs: jobs.slice(start, start + chunk), cutoff }));
        next++;
      };
      for (let i = 0; i < Math.max(2, 2 * nWorkers); i++) submit();
      while (inFlight.length) {
        const r = await inFlight.shift()!;
        submit();
        const base = r.id * chunk;
        let at = 0;
        for (let i = 0; i < r.lengths.length; i++) {
          const job = jobs[base + i]!;
          progress.bytes += jobBytes(job);
          if (r.dropped[i]) {
            dropped[r.dropped[i]!] = (dropped[r.dropped[i]!] ?? 0) + 1;
            continue;
          }
          const n = r.lengths[i]!;
          const ids = r.ids.subarray(at, at + n);
          const spans = r.hasSpans[i] ? r.spans.subarray(at, at + n) : null;
          at += n;
          progress.tokens += n;
          if (job.kind === "document") seq.push(ids, langId(job.lang));
          else if (job.kind === "translation") await add(ids, spans, "translation", langId(job.srcLang), langId(job.tgtLang), r.promptLens[i]!);
          else await add(ids, null, "general", -1, langId(job.lang), r.promptLens[i]!);
        }
        await writeSequences();
        progress.done = Math.min(jobs.length, base + r.lengths.length);
        progress.records = counts.records;
        o.onProgress?.({ ...progress });
      }
      seq.flush();
      await writeSequences();
    } finally {
      runner.close();
    }
    await closeShard();
    if (counts.records === 0) throw new CorpusError(`${o.out}: nothing to write: every example was dropped (${Object.entries(dropped).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(", ") || "no input items"})`, o.out);
    for (const [k, n] of Object.entries(dropped)) if (n > 0) log(`dropped ${n} example${n === 1 ? "" : "s"}: ${DROP_REASONS[k] ?? k}`);
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      created_by: meta.createdBy,
      task: o.task,
      tokenizer: { hash: tok.hash, source: o.tokenizer, vocab_size: tok.vocabSize, token_bytes: tokenWidth(tok.vocabSize) },
      languages: table,
      shards,
      counts,
      dropped,
      inputs: corpus.inputs,
      options: {
        langs,
        ...(o.task === "pretrain" ? { seq_len: seqLen } : { cutoff, pairs: o.pairs ?? PACK_DEFAULTS.pairs }),
        ...(mixed ? { mix: o.mix ?? { translation: 1, general: 1 }, mixed } : {}),
        shard_bytes: shardBytes,
        block_bytes: blockBytes,
        ...(o.format ? { format: o.format } : {}),
        ...(o.textUnit ? { text_unit: o.textUnit } : {}),
        ...(o.lang ? { lang: o.lang } : {}),
      },
      seed: o.seed ?? PACK_DEFAULTS.seed,
    };
    await Bun.write(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");
    return manifest;
  });
}

const DROP_REASONS: Record<string, string> = {
  target_cut: `fewer than 3 target tokens left within --cutoff`,
  no_supervision: "nothing supervised left within --cutoff",
  empty: "an empty source, target or response",
  bad_records: "bad input records (--skip-bad-records)",
};

/**
 * `alignx pack --tokenizer T --out DIR [--task stage1|stage2|pretrain] [options] INPUTS...`: corpus files to
 * shards (src/data/pack.ts says how). Prints progress (a bar on a terminal, a line every 10 s otherwise), then
 * what was written: records and tokens per language and per task, what was dropped and why, the shards.
 * Exit 0; bad options exit 2 before any work; bad data exit 1 naming the file and line; nothing is left
 * half-written (the output directory appears only when complete).
 */
import { availableParallelism } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { FORMATS, type Format } from "../data/corpus.ts";
import { MANIFEST_FILE } from "../data/manifest.ts";
import { PACK_TASKS, PAIR_MODES, pack as packCorpus, type PackOptions, type PackTask } from "../data/pack.ts";
import { Progress } from "./progress.ts";
import { listOption, numOption, requiredOption, SEED, UsageError } from "./usage.ts";
import { corpusSummary } from "./verify.ts";

export interface PackCliOptions {
  tokenizer?: unknown;
  out?: unknown;
  task?: unknown;
  format?: unknown;
  langs?: unknown;
  pairs?: unknown;
  cutoff?: unknown;
  seqLen?: unknown;
  mix?: unknown;
  seed?: unknown;
  workers?: unknown;
  shardSize?: unknown;
  overwrite?: boolean;
  skipBadRecords?: boolean;
  lang?: unknown;
  textUnit?: unknown;
  inputs: string[];
  /** Progress output (tests pass tty: false). */
  tty?: boolean;
  log?: (line: string) => void;
}

/** "64M", "512K", "1G" or a byte count. */
export function parseBytes(cmd: string, flag: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?$/i.exec(String(v).trim());
  if (!m) throw new UsageError(`${cmd}: --${flag} must be a size such as 64M, 512K or 1G, got ${JSON.stringify(v)}`);
  const mult = { "": 1, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[(m[2] ?? "").toUpperCase().replace(/I?B$/, "") || ""] ?? 1;
  return Math.round(Number(m[1]) * mult);
}

/** "translation=1,general=3" → weights. */
function parseMix(v: unknown): PackOptions["mix"] {
  if (v === undefined) return undefined;
  const mix = { translation: 0, general: 0 };
  for (const part of listOption("pack", "mix", v)!) {
    const [k, w] = part.split("=");
    if ((k !== "translation" && k !== "general") || w === undefined) throw new UsageError(`pack: --mix takes translation=W,general=W, got ${JSON.stringify(part)}`);
    mix[k] = numOption("pack", "mix", w, { min: 0 })!;
  }
  return mix;
}

function oneOf<T extends string>(flag: string, v: unknown, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!allowed.includes(String(v) as T)) throw new UsageError(`pack: --${flag} must be one of ${allowed.join(", ")}, got ${JSON.stringify(v)}`);
  return String(v) as T;
}

export async function pack(o: PackCliOptions): Promise<number> {
  const log = o.log ?? ((l: string) => console.log(l));
  const workers = numOption("pack", "workers", o.workers, { integer: true, min: 0, max: 256 });
  const opts: PackOptions = {
    tokenizer: requiredOption("pack", "tokenizer", o.tokenizer),
    out: requiredOption("pack", "out", o.out),
    inputs: o.inputs.map(String),
    task: oneOf<PackTask>("task", o.task, PACK_TASKS) ?? "stage1",
    format: oneOf<Format>("format", o.format, FORMATS),
    langs: listOption("pack", "langs", o.langs),
    pairs: oneOf("pairs", o.pairs, PAIR_MODES),
    cutoff: numOption("pack", "cutoff", o.cutoff, { integer: true, min: 8 }),
    seqLen: numOption("pack", "seq-len", o.seqLen, { integer: true, min: 2 }),
    mix: parseMix(o.mix),
    seed: numOption("pack", "seed", o.seed, SEED),
    workers,
    shardBytes: parseBytes("pack", "shard-size", o.shardSize),
    overwrite: o.overwrite === true,
    skipBadRecords: o.skipBadRecords === true,
    lang: o.lang === undefined ? undefined : String(o.lang),
    textUnit: oneOf("text-unit", o.textUnit, ["line", "paragraph"] as const),
    createdBy: `alignx ${pkg.version}`,
  };
  if (opts.inputs.length === 0) throw new UsageError("pack: no INPUTS given (paths, globs, or the word udhr; see alignx pack --help)");
  const bar = new Progress({ label: "pack", unit: "examples", tty: o.tty });
  let mb = 0;
  opts.log = (l) => bar.log(`pack: ${l}`);
  opts.onProgress = (p) => {
    mb = p.bytes / 1e6;
    bar.update(p.done, p.total, `${(mb / Math.max(bar.elapsed, 1e-3)).toFixed(2)} MB/s  ${p.tokens.toLocaleString("en-US")} tokens`);
  };
  // Said once the options and the output location are accepted (a refusal prints only the error).
  opts.onStart = () => log(`pack: task ${opts.task}, ${workers ?? availableParallelism()} worker${(workers ?? availableParallelism()) === 1 ? "" : "s"}, tokenizer ${opts.tokenizer}`);
  const m = await packCorpus(opts);
  const total = m.counts.records + Object.values(m.dropped).reduce((a, b) => a + b, 0) - (m.dropped.bad_records ?? 0);
  bar.done(total, total, `${(mb / Math.max(bar.elapsed, 1e-3)).toFixed(2)} MB/s`);
  const c = m.counts, mib = m.shards.reduce((a, s) => a + s.bytes, 0) / 2 ** 20;
  log(`${c.records.toLocaleString("en-US")} records, ${c.tokens.toLocaleString("en-US")} tokens in ${m.shards.length} shard${m.shards.length === 1 ? "" : "s"} (${mib.toFixed(1)} MiB); languages ${m.languages.join(" ")}`);
  log(corpusSummary({ shards: m.shards, records: c.records, tokens: c.tokens, byLanguage: c.by_language, byTask: c.by_task, byDirection: c.by_direction }));
  log(`wrote ${join(opts.out, MANIFEST_FILE)}`);
  return 0;
}

/**
 * The data pipeline: how fast `alignx pack` turns text into shards, and whether the loader keeps a trainer fed
 * with flat memory. Self-contained (it runs from the compiled binary on a GPU server with no data): a seeded
 * synthetic parallel corpus in two scripts (Latin words and their Cyrillic transliteration, so tokenization
 * costs what a real language pair costs), and a byte-level BPE tokenizer (vocabulary 4000) trained on it with
 * the project's trainer.
 *
 *   pack      stage-1 examples (both directions, spans) at 1 worker and at one per core:
 *             MB/s of source text, examples/s and tokens/s, wall time including reading and writing;
 *   loader    one epoch of batches (batch 16, shuffle buffer `buffer` records, length grouping, prefetch 4) over
 *             a corpus of more than 20 × buffer records: tokens/s, and the RSS (after a full GC) at the first
 *             tenth of the epoch against its peak at the later tenths (flat memory: the growth should be ~0);
 *   vs train  loader tokens/s ÷ the training step's tokens/s of the largest training config measured in the
 *             same run (the issue asks for ≥ 10×).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { saveTrainedBpe, trainBpe } from "../../src/data/bpe_train.ts";
import { Loader } from "../../src/data/loader.ts";
import { pack } from "../../src/data/pack.ts";
import { mulberry32 } from "../../src/tensor/rng.ts";

export interface DataResult {
  corpus: { pairs: number; mb: number };
  pack: { workers: number; seconds: number; mb_per_s: number; examples_per_s: number; tokens_per_s: number; records: number; tokens: number }[];
  loader: { records: number; buffer: number; batches: number; seconds: number; tokens_per_s: number; rss_after_tenth_mib: number; rss_peak_mib: number; rss_growth_mib: number };
  /** loader tokens/s ÷ the largest training config's tokens/s (when the train suite ran). */
  vs_train?: { config: string; train_tokens_per_s: number; ratio: number };
}

const LATIN = "abcdefghijklmnoprstuvz";
const CYRILLIC = "абцдефгхийклмнопрстувз";

/** `n` parallel sentence pairs (eng text, rus "translation"), seeded. */
function corpus(n: number, seed: number): [string, string][] {
  const r = mulberry32(seed);
  const lex: string[] = [];
  for (let i = 0; i < 3000; i++) {
    const len = 2 + Math.floor(r() * 8);
    let w = "";
    for (let j = 0; j < len; j++) w += LATIN[Math.floor(r() * r() * LATIN.length)];
    lex.push(w);
  }
  const out: [string, string][] = [];
  for (let i = 0; i < n; i++) {
    const words = Array.from({ length: 6 + Math.floor(r() * 30) }, () => lex[Math.floor(r() * r() * lex.length)]!);
    const en = words.join(" ") + ".";
    out.push([en, [...en].map((c) => CYRILLIC[LATIN.indexOf(c)] ?? c).join("")]);
  }
  return out;
}

export async function dataSuite(o: { quick: boolean; train?: { config: string; tokens_per_s: number } }): Promise<DataResult> {
  const dir = mkdtempSync(join(tmpdir(), "alignx-bench-data-"));
  try {
    const buffer = o.quick ? 256 : 1024;
    const pairs = corpus(o.quick ? 3000 : 12000, 7); // both directions: 2 × pairs examples > 20 × buffer
    const tsv = pairs.map(([a, b]) => `${a}\t${b}`).join("\n") + "\n";
    writeFileSync(join(dir, "eng-rus.tsv"), tsv);
    const mb = Buffer.byteLength(tsv) / 1e6;
    const trained = trainBpe(pairs.slice(0, 2000).flat(), { vocabSize: 4000 });
    const tokDir = join(dir, "tokenizer");
    await saveTrainedBpe(tokDir, trained);

    const cores = availableParallelism();
    const result: DataResult = { corpus: { pairs: pairs.length, mb }, pack: [], loader: undefined as unknown as DataResult["loader"] };
    let shards = "";
    for (const workers of [...new Set([1, cores])]) {
      const out = join(dir, `packed-${workers}`);
      const t0 = performance.now();
      const m = await pack({ tokenizer: tokDir, out, inputs: [join(dir, "eng-rus.tsv")], task: "stage1", langs: ["eng", "rus"], workers, shardBytes: 4 << 20 });
      const s = (performance.now() - t0) / 1e3;
      result.pack.push({ workers, seconds: s, mb_per_s: mb / s, examples_per_s: m.counts.records / s, tokens_per_s: m.counts.tokens / s, records: m.counts.records, tokens: m.counts.tokens });
      shards = out;
    }

    const loader = await Loader.open({ data: shards, batchSize: 16, shuffleBuffer: buffer, seed: 1, epochs: 1, padId: 0 });
    // RSS after a full collection, at each tenth of the epoch: what the loader retains, not garbage not yet
    // collected. The collections are not timed.
    const rss = () => {
      Bun.gc(true);
      return process.memoryUsage().rss / 2 ** 20;
    };
    const total = loader.batchesPerEpoch, tenth = Math.ceil(total / 10);
    let batches = 0, tokens = 0, afterTenth = 0, peak = 0, gcMs = 0;
    const t0 = performance.now();
    for await (const b of loader) {
      batches++;
      tokens += b.tokens;
      if (batches % tenth === 0 || batches === total) {
        const g = performance.now();
        const r = rss();
        if (batches === tenth) afterTenth = r;
        else peak = Math.max(peak, r);
        gcMs += performance.now() - g;
      }
    }
    const s = (performance.now() - t0 - gcMs) / 1e3;
    await loader.close();
    result.loader = { records: loader.records, buffer, batches, seconds: s, tokens_per_s: tokens / s, rss_after_tenth_mib: afterTenth, rss_peak_mib: peak, rss_growth_mib: peak - afterTenth };
    if (o.train) result.vs_train = { config: o.train.config, train_tokens_per_s: o.train.tokens_per_s, ratio: result.loader.tokens_per_s / o.train.tokens_per_s };
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function printData(d: DataResult): void {
  console.log(`\ndata     synthetic eng-rus corpus: ${d.corpus.pairs} pairs, ${d.corpus.mb.toFixed(2)} MB of text`);
  for (const p of d.pack)
    console.log(`pack     stage1, ${p.workers} worker${p.workers === 1 ? " " : "s"}: ${p.mb_per_s.toFixed(2)} MB/s, ${p.examples_per_s.toFixed(0)} examples/s, ${p.tokens_per_s.toFixed(0)} tokens/s (${p.records} records, ${p.seconds.toFixed(1)} s)`);
  const l = d.loader;
  console.log(`loader   ${l.tokens_per_s.toFixed(0)} tokens/s over ${l.records} records (${(l.records / l.buffer).toFixed(0)}x the ${l.buffer}-record shuffle buffer), RSS ${l.rss_after_tenth_mib.toFixed(1)} MiB after a tenth, peak ${l.rss_peak_mib.toFixed(1)} MiB after (growth ${l.rss_growth_mib.toFixed(1)} MiB)`);
  if (d.vs_train) console.log(`loader   ${d.vs_train.ratio.toFixed(0)}x the tokens/s that train ${d.vs_train.config} consumes (${d.vs_train.train_tokens_per_s.toFixed(0)} tokens/s)`);
}

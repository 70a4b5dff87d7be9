// `alignx pack` as a library (src/data/pack.ts): determinism across worker counts, the stage-1 records (language
// ids, directions, spans, prompt length), the stage-2 mix, pretraining sequences, drops and bad records, output
// safety, an interrupted pack, and every output checked by verifyCorpus and opened by the Loader; then the real
// data in ../shared/data when it is there. Small fixture tokenizers and tiny corpora in temp dirs.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { translationInstruction } from "../../src/data/examples.ts";
import { Loader } from "../../src/data/loader.ts";
import { MANIFEST_FILE, type Manifest } from "../../src/data/manifest.ts";
import { openInputs } from "../../src/data/formats/index.ts";
import { pack, type PackOptions } from "../../src/data/pack.ts";
import { alpacaPrompt, specialPrefix } from "../../src/data/prompt.ts";
import { ShardReader, type Task } from "../../src/data/shard.ts";
import { loadTokenizer, type HfTokenizer } from "../../src/data/tokenizer.ts";
import { verifyCorpus } from "../../src/data/verify.ts";
import { mulberry32 } from "../../src/tensor/rng.ts";
import { FIXTURES, scratchDirs } from "./helpers.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const SHARED = join(import.meta.dir, "..", "..", "..", "shared", "data");
const LLAMA2 = join(FIXTURES, "llama2");
const BYTELEVEL = join(FIXTURES, "bytelevel");
const llama2 = await loadTokenizer(LLAMA2);
const bytelevel = await loadTokenizer(BYTELEVEL);

const { scratch } = scratchDirs("alignx-pack-");


// ---- synthetic parallel text: every sentence unique (its number), umlauts and accents included -------------

const DEU = { adj: ["kleine", "große", "alte", "grüne", "schöne", "müde", "fröhliche"], noun: ["Hund", "Bär", "Fuchs", "Vogel", "Löwe", "Igel"] };
const ENG = { adj: ["small", "big", "old", "green", "pretty", "tired", "cheerful"], noun: ["dog", "bear", "fox", "bird", "lion", "hedgehog"] };
const FRA = { adj: ["petit", "grand", "vieux", "vert", "joli", "fatigué", "joyeux"], noun: ["chien", "ours", "renard", "oiseau", "lion", "hérisson"] };
const sentence = (lang: "deu" | "eng" | "fra", i: number): string => {
  const a = i % 7, n = Math.floor(i / 7) % 6;
  if (lang === "deu") return `Der ${DEU.adj[a]} ${DEU.noun[n]} Nummer ${i} wohnt in Köln.`;
  if (lang === "eng") return `The ${ENG.adj[a]} ${ENG.noun[n]} number ${i} lives in Cologne.`;
  return `Le ${FRA.noun[n]} ${FRA.adj[a]} numéro ${i} habite à Cologne.`;
};

/** `n` deu-eng pairs as a two-column TSV (languages from the name). */
function tsvPairs(n: number, from = 0): string {
  return Array.from({ length: n }, (_, k) => `${sentence("deu", from + k)}\t${sentence("eng", from + k)}\n`).join("");
}

/** A FLORES-style directory of `n` rows in eng, deu, fra. */
function floresDir(w: (name: string, c: string) => string, n: number): string {
  const paths = (["eng", "deu", "fra"] as const).map((l) => w(`flores/${l}.dev`, Array.from({ length: n }, (_, i) => sentence(l, i)).join("\n") + "\n"));
  return dirname(paths[0]!);
}

const alpacaItems = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ instruction: `Name an animal, number ${i}.`, input: i % 2 ? "" : `Context ${i}: the zoo.`, output: `The ${ENG.noun[i % 6]} is animal ${i}.` }));

// ---- reading a pack output back ------------------------------------------------------------------------------

interface Rec {
  ids: number[];
  spans: number[] | null;
  src: string | null;
  tgt: string | null;
  task: Task;
  promptLen: number;
}

const readManifestJson = (out: string): Manifest => JSON.parse(readFileSync(join(out, MANIFEST_FILE), "utf8"));

/** Every record of a pack output, in shard and record order, language ids as codes (null for -1). */
async function readRecords(out: string): Promise<Rec[]> {
  const m = readManifestJson(out);
  const recs: Rec[] = [];
  for (const s of m.shards) {
    const r = await ShardReader.open(join(out, s.file), { tokenizerHash: m.tokenizer.hash, languages: m.languages });
    for await (const x of r.records()) {
      const code = (id: number) => (id < 0 ? null : m.languages[id]!);
      if (x.srcLang >= m.languages.length || x.tgtLang >= m.languages.length) throw new Error(`language id out of the table: ${x.srcLang}, ${x.tgtLang}`);
      recs.push({ ids: [...x.ids], spans: x.spans ? [...x.spans] : null, src: code(x.srcLang), tgt: code(x.tgtLang), task: x.task, promptLen: x.promptLen });
    }
  }
  return recs;
}

/** pack(), then verifyCorpus on its output: ok, and the same counts as the manifest (item 8 of the issue). */
async function packOk(o: PackOptions): Promise<Manifest> {
  const m = await pack(o);
  const r = await verifyCorpus(o.out);
  expect(r.error?.message).toBeUndefined();
  expect(r.ok).toBe(true);
  expect(r.records).toBe(m.counts.records);
  expect(r.tokens).toBe(m.counts.tokens);
  expect(r.byTask).toEqual(m.counts.by_task);
  expect(r.byLanguage).toEqual(m.counts.by_language);
  expect(r.byDirection).toEqual(m.counts.by_direction);
  expect(readManifestJson(o.out)).toEqual(JSON.parse(JSON.stringify(m)));
  return m;
}

/** The error a pack fails with (the test fails when it does not). */
async function packError(o: PackOptions): Promise<Error & { exitCode?: number }> {
  try {
    await pack(o);
  } catch (e) {
    return e as Error & { exitCode?: number };
  }
  throw new Error(`expected pack to fail (out ${o.out})`);
}

/** Names in `dir` that an interrupted or failed atomic save leaves (`X.tmp-PID`, `X.old-PID`). */
const leftovers = (dir: string) => readdirSync(dir).filter((n) => /\.(tmp|old)-\d+$/.test(n));

/** All files of a directory, name → bytes. */
function snapshot(dir: string): Map<string, Buffer> {
  return new Map(readdirSync(dir).sort().map((n) => [n, readFileSync(join(dir, n))]));
}

const decodeWhere = (tok: HfTokenizer, r: Rec, v: number) => tok.decode(r.ids.filter((_, i) => r.spans![i] === v));

// ---- 1. determinism ------------------------------------------------------------------------------------------

describe("pack: determinism", () => {
  test("workers 0, 1 and 2 give byte-identical shards and manifest; another seed reorders the same records", async () => {
    const { dir, w } = scratch();
    const tsv = w("deu-eng.tsv", tsvPairs(1000)); // 2000 jobs: eight chunks of 256, which two workers finish out of order
    const base = { tokenizer: LLAMA2, inputs: [tsv], task: "stage1", shardBytes: 1 << 16, seed: 7 } satisfies Partial<PackOptions>;
    const outs: string[] = [];
    for (const workers of [0, 1, 2]) {
      const out = join(dir, `w${workers}`);
      await packOk({ ...base, out, workers });
      outs.push(out);
    }
    const ref = snapshot(outs[0]!);
    const m = readManifestJson(outs[0]!);
    expect(m.counts.records).toBe(2000);
    expect(m.shards.length).toBeGreaterThan(1); // shard boundaries are part of what must agree
    expect([...ref.keys()]).toEqual([MANIFEST_FILE, ...m.shards.map((s) => s.file)].sort());
    for (const out of outs.slice(1)) {
      const s = snapshot(out);
      expect([...s.keys()]).toEqual([...ref.keys()]);
      for (const [name, bytes] of ref) expect(Buffer.compare(s.get(name)!, bytes)).toBe(0);
    }

    const other = join(dir, "seed8");
    const m8 = await packOk({ ...base, out: other, seed: 8, workers: 2 });
    expect(m8.counts).toEqual(m.counts);
    expect(m8.dropped).toEqual(m.dropped);
    expect(m8.seed).toBe(8);
    const cat = (d: string) => Buffer.concat(readManifestJson(d).shards.map((s) => readFileSync(join(d, s.file))));
    expect(Buffer.compare(cat(other), cat(outs[0]!))).not.toBe(0);
    // Only the order changed: the same records as a multiset.
    const key = (r: Rec) => `${r.src}>${r.tgt}:${r.promptLen}:${r.ids.join(",")}|${r.spans!.join("")}`;
    const [a, b] = [await readRecords(outs[0]!), await readRecords(other)];
    expect(a.map(key).sort()).toEqual(b.map(key).sort());
    expect(a.map(key)).not.toEqual(b.map(key));
  }, 60_000);

  test("pretrain: workers 0 and 2 give identical bytes", async () => {
    const { dir, w } = scratch();
    const txt = w("docs.txt", Array.from({ length: 600 }, (_, i) => sentence("eng", i)).join("\n"));
    const base = { tokenizer: LLAMA2, inputs: [txt], task: "pretrain", seqLen: 32, lang: "eng", shardBytes: 1 << 16 } satisfies Partial<PackOptions>;
    await packOk({ ...base, out: join(dir, "a"), workers: 0 });
    await packOk({ ...base, out: join(dir, "b"), workers: 2 });
    const [a, b] = [snapshot(join(dir, "a")), snapshot(join(dir, "b"))];
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [name, bytes] of a) expect(Buffer.compare(b.get(name)!, bytes)).toBe(0);
  }, 30_000);
});

// ---- 2. stage1 -----------------------------------------------------------------------------------------------

describe("pack: stage1", () => {
  test("records: language ids, both directions, spans decode to the sentences, prompt_len = first target position", async () => {
    const { dir, w } = scratch();
    const n = 40;
    const tsv = w("deu-eng.tsv", tsvPairs(n));
    const out = join(dir, "out");
    const m = await packOk({ tokenizer: BYTELEVEL, out, inputs: [tsv], task: "stage1", workers: 0 });
    expect(m.task).toBe("stage1");
    expect(m.languages).toEqual(["deu", "eng"]); // default: the AlignX languages present, in table order
    expect(m.tokenizer.hash).toBe(bytelevel.hash);
    expect(m.counts.by_direction["deu-eng"]!.records).toBe(n);
    expect(m.counts.by_direction["eng-deu"]!.records).toBe(n);
    expect(m.counts.by_task).toEqual({ translation: { records: 2 * n, tokens: m.counts.tokens } });

    const recs = await readRecords(out);
    expect(recs.length).toBe(2 * n);
    const seen = new Set<string>();
    for (const r of recs) {
      expect(r.task).toBe("translation");
      expect(r.spans).not.toBeNull();
      expect([r.src, r.tgt].sort()).toEqual(["deu", "eng"]);
      const src = decodeWhere(bytelevel, r, 1), tgt = decodeWhere(bytelevel, r, 2);
      const i = Number(/(?:Nummer|number) (\d+)/.exec(src)![1]);
      expect(src).toBe(sentence(r.src as "deu", i));
      expect(tgt).toBe(sentence(r.tgt as "eng", i));
      // The prompt names the same direction as the language ids.
      expect(bytelevel.decode(r.ids, { skipSpecialTokens: true })).toBe(alpacaPrompt({ instruction: translationInstruction(r.src!, r.tgt!), input: src }) + tgt);
      expect(r.promptLen).toBe(r.spans!.indexOf(2));
      expect(r.ids[0]).toBe(bytelevel.bosId!);
      expect(r.ids.at(-1)).toBe(bytelevel.eosId!);
      expect(r.spans![0]).toBe(0);
      expect(r.spans!.at(-1)).toBe(0);
      seen.add(`${r.src}-${r.tgt}-${i}`);
    }
    for (let i = 0; i < n; i++) {
      expect(seen.has(`deu-eng-${i}`)).toBe(true);
      expect(seen.has(`eng-deu-${i}`)).toBe(true);
    }
  }, 30_000);

  test("english-centric vs all pairs, and --langs, on a 3-language FLORES-style directory", async () => {
    const { dir, w } = scratch();
    const n = 12;
    const flores = floresDir(w, n);
    const dirs = (m: Manifest) => Object.fromEntries(Object.entries(m.counts.by_direction).map(([k, c]) => [k, c.records]));

    const ec = await packOk({ tokenizer: LLAMA2, out: join(dir, "ec"), inputs: [flores], task: "stage1", workers: 0 });
    expect(ec.languages).toEqual(["deu", "eng", "fra"]);
    expect(ec.counts.records).toBe(4 * n);
    expect(dirs(ec)).toEqual({ "deu-eng": n, "eng-deu": n, "eng-fra": n, "fra-eng": n });
    expect(ec.options.pairs).toBe("english-centric");

    const all = await packOk({ tokenizer: LLAMA2, out: join(dir, "all"), inputs: [flores], task: "stage1", pairs: "all", workers: 0 });
    expect(all.counts.records).toBe(6 * n);
    expect(dirs(all)).toEqual({ "deu-eng": n, "eng-deu": n, "eng-fra": n, "fra-eng": n, "deu-fra": n, "fra-deu": n });

    // --langs keeps those languages, in the user's order (the language table).
    const two = await packOk({ tokenizer: LLAMA2, out: join(dir, "two"), inputs: [flores], task: "stage1", langs: ["fr", "eng"], workers: 0 });
    expect(two.languages).toEqual(["fra", "eng"]);
    expect(dirs(two)).toEqual({ "fra-eng": n, "eng-fra": n });
    for (const r of await readRecords(join(dir, "two"))) {
      expect(["fra", "eng"]).toContain(r.src!);
      expect(["fra", "eng"]).toContain(r.tgt!);
      expect(r.src).not.toBe(r.tgt);
    }

    const noEng = await packError({ tokenizer: LLAMA2, out: join(dir, "noeng"), inputs: [flores], task: "stage1", langs: ["deu", "fra"], workers: 0 });
    expect(noEng.exitCode).toBe(2);
    expect(noEng.message).toContain("english-centric");
    expect(existsSync(join(dir, "noeng"))).toBe(false);

    const deuFra = await packOk({ tokenizer: LLAMA2, out: join(dir, "deufra"), inputs: [flores], task: "stage1", langs: ["deu", "fra"], pairs: "all", workers: 0 });
    expect(dirs(deuFra)).toEqual({ "deu-fra": n, "fra-deu": n });
  }, 30_000);

  test("the UDHR input udhr:eng,deu,fra: every pair present in a paragraph, both directions (english-centric, all)", async () => {
    const { dir } = scratch();
    // What the reader yields (formats.test.ts checks the reader): the expected directions per paragraph.
    const [source] = await openInputs(["udhr:eng,deu,fra"]);
    const rows: Record<string, string>[] = [];
    for await (const it of source!.read()) if (it.kind === "parallel") rows.push(it.texts);
    expect(rows.length).toBeGreaterThan(20);
    const expected = (all: boolean) => {
      const c: Record<string, number> = {};
      for (const r of rows)
        for (const a of Object.keys(r)) for (const b of Object.keys(r)) if (a !== b && (all || a === "eng" || b === "eng")) c[`${a}-${b}`] = (c[`${a}-${b}`] ?? 0) + 1;
      return c;
    };
    const dirs = (m: Manifest) => Object.fromEntries(Object.entries(m.counts.by_direction).map(([k, c]) => [k, c.records]));
    // A cutoff that cuts nothing: every example is kept.
    const ec = await packOk({ tokenizer: LLAMA2, out: join(dir, "ec"), inputs: ["udhr:eng,deu,fra"], task: "stage1", workers: 0, cutoff: 1 << 16 });
    expect(ec.dropped.target_cut).toBe(0);
    expect(dirs(ec)).toEqual(expected(false));
    expect(Object.keys(dirs(ec)).sort()).toEqual(["deu-eng", "eng-deu", "eng-fra", "fra-eng"]);
    const all = await packOk({ tokenizer: LLAMA2, out: join(dir, "all"), inputs: ["udhr:eng,deu,fra"], task: "stage1", pairs: "all", workers: 0, cutoff: 1 << 16 });
    expect(dirs(all)).toEqual(expected(true));
    expect(Object.keys(dirs(all)).length).toBe(6);
    expect(all.inputs).toEqual([{ path: "udhr:eng,deu,fra", format: "udhr", items: rows.length }]);
  }, 30_000);

  test("an instruction file is a usage error for stage1 (exit 2), before any output", async () => {
    const { dir, w } = scratch();
    const tsv = w("deu-eng.tsv", tsvPairs(5));
    const alp = w("alpaca.json", JSON.stringify(alpacaItems(3)));
    const e = await packError({ tokenizer: LLAMA2, out: join(dir, "out"), inputs: [tsv, alp], task: "stage1", workers: 0 });
    expect(e.exitCode).toBe(2);
    expect(e.message).toContain("alpaca.json");
    expect(e.message).toContain("stage1");
    expect(existsSync(join(dir, "out"))).toBe(false);
    expect(leftovers(dir)).toEqual([]);
  });
});

// ---- 3. stage2 mix -------------------------------------------------------------------------------------------

describe("pack: stage2 mix", () => {
  test("1:1 and translation=3,general=1 over 40 translation examples and 10 instructions", async () => {
    const { dir, w } = scratch();
    const tsv = w("deu-eng.tsv", tsvPairs(20)); // 20 pairs, both directions: 40 translation examples
    const items = alpacaItems(10);
    const alp = w("alpaca.json", JSON.stringify(items));
    const base = { tokenizer: BYTELEVEL, inputs: [tsv, alp], task: "stage2", workers: 0 } satisfies Partial<PackOptions>;

    const even = await packOk({ ...base, out: join(dir, "even") });
    expect(even.counts.by_task.translation!.records).toBe(10);
    expect(even.counts.by_task.general!.records).toBe(10);
    expect(even.options.mixed).toEqual({ translation: 10, general: 10 });
    expect(even.options.mix).toEqual({ translation: 1, general: 1 });

    const three = await packOk({ ...base, out: join(dir, "three"), mix: { translation: 3, general: 1 } });
    expect(three.counts.by_task.translation!.records).toBe(30);
    expect(three.counts.by_task.general!.records).toBe(10);
    expect(three.options.mixed).toEqual({ translation: 30, general: 10 });
    expect(three.options.mix).toEqual({ translation: 3, general: 1 });

    // The general records are the instructions (each once), unknown language, no spans; the translations have spans.
    const recs = await readRecords(join(dir, "three"));
    const general = recs.filter((r) => r.task === "general");
    const texts = general.map((r) => bytelevel.decode(r.ids, { skipSpecialTokens: true })).sort();
    expect(texts).toEqual(items.map((x) => alpacaPrompt(x) + x.output).sort());
    for (const r of general) {
      expect(r.spans).toBeNull();
      expect(r.src).toBeNull();
      expect(r.tgt).toBeNull();
      expect(bytelevel.decode(r.ids.slice(r.promptLen), { skipSpecialTokens: true })).toMatch(/^The \w+ is animal \d+\.$/);
    }
    expect(three.counts.by_language.und!.records).toBe(10);
    for (const r of recs.filter((x) => x.task === "translation")) expect(decodeWhere(bytelevel, r, 2).length).toBeGreaterThan(0);

    // Only translations: the general weight 0 takes none.
    const tOnly = await packOk({ ...base, out: join(dir, "tonly"), mix: { translation: 1, general: 0 } });
    expect(tOnly.options.mixed).toEqual({ translation: 40, general: 0 });
    expect(tOnly.counts.by_task.general).toBeUndefined();
  }, 30_000);
});

// ---- 4. pretrain ---------------------------------------------------------------------------------------------

describe("pack: pretrain", () => {
  test("fixed-length sequences whose ids are exactly the documents' [BOS] ids [EOS] (multiple shards)", async () => {
    const { dir, w } = scratch();
    const docs = Array.from({ length: 400 }, (_, i) => `${sentence("eng", i)} It has ${i % 5} friends and likes ${ENG.noun[(i * 3) % 6]}s.`);
    const txt = w("docs.txt", docs.join("\n") + "\n");
    const tsv = w("deu-eng.tsv", tsvPairs(30));
    const seqLen = 8; // several sequences per document: they are written in order, across shard boundaries
    const out = join(dir, "out");
    const m = await packOk({ tokenizer: LLAMA2, out, inputs: [txt, tsv], task: "pretrain", seqLen, lang: "eng", shardBytes: 1 << 16, workers: 2 });
    expect(m.shards.length).toBeGreaterThan(1);
    expect(m.options.seq_len).toBe(seqLen);
    const recs = await readRecords(out);
    // Every document: the text lines, and each side of each parallel row.
    const texts = [...docs, ...Array.from({ length: 30 }, (_, i) => [sentence("deu", i), sentence("eng", i)]).flat()];
    const expected = new Map<number, number>();
    const bump = (map: Map<number, number>, id: number) => map.set(id, (map.get(id) ?? 0) + 1);
    for (const t of texts) for (const id of [...specialPrefix(llama2), ...llama2.encode(t, { addSpecialTokens: false }), llama2.eosId!]) bump(expected, id);
    const got = new Map<number, number>();
    for (const r of recs) for (const id of r.ids) bump(got, id);
    expect(new Map([...got].sort((a, b) => a[0] - b[0]))).toEqual(new Map([...expected].sort((a, b) => a[0] - b[0])));
    const total = [...expected.values()].reduce((a, b) => a + b, 0);
    expect(m.counts.tokens).toBe(total);
    expect(recs.length).toBe(Math.ceil(total / seqLen));
    expect(recs.filter((r) => r.ids.length !== seqLen).length).toBeLessThanOrEqual(1);
    for (const r of recs.slice(0, -1)) expect(r.ids.length).toBe(seqLen);
    expect(recs.at(-1)!.ids.length).toBe(total % seqLen || seqLen);
    for (const r of recs) {
      expect(r.task).toBe("pretrain");
      expect(r.spans).toBeNull();
      expect(r.src).toBeNull();
      expect(["eng", "deu"]).toContain(r.tgt!);
    }
  }, 30_000);
});

// ---- 5. drops and bad records --------------------------------------------------------------------------------

describe("pack: drops and bad records", () => {
  test("a small cutoff drops the examples whose prompt leaves < 3 target tokens, and counts them", async () => {
    const { dir, w } = scratch();
    const long = (i: number) => `${sentence("deu", i)} ${"Über die Brücke gehen viele Leute. ".repeat(20).trim()}`;
    const lines: string[] = [];
    const nLong = 7;
    for (let i = 0; i < 20; i++) lines.push(`${i < nLong ? long(i) : sentence("deu", i)}\t${sentence("eng", i)}`);
    const tsv = w("deu-eng.tsv", lines.join("\n") + "\n");
    const cutoff = 400; // a short example is < 300 tokens of this tokenizer, a long German source alone ~800
    const out = join(dir, "out");
    const m = await packOk({ tokenizer: BYTELEVEL, out, inputs: [tsv], task: "stage1", cutoff, workers: 0 });
    // deu→eng with a long source: the prompt alone passes the cutoff, dropped. eng→deu: the long target is cut, kept.
    expect(m.dropped.target_cut).toBe(nLong);
    expect(m.counts.by_direction["deu-eng"]!.records).toBe(20 - nLong);
    expect(m.counts.by_direction["eng-deu"]!.records).toBe(20);
    expect(m.counts.records).toBe(40 - nLong);
    expect(m.options.cutoff).toBe(cutoff);
    let cut = 0;
    for (const r of await readRecords(out)) {
      expect(r.ids.length).toBeLessThanOrEqual(cutoff);
      expect(r.spans!.filter((s) => s === 2).length).toBeGreaterThanOrEqual(3);
      if (r.ids.length === cutoff && r.ids.at(-1) !== bytelevel.eosId) {
        cut++; // truncated: the target runs to the end
        expect(r.spans!.at(-1)).toBe(2);
        expect(r.src).toBe("eng");
      }
    }
    expect(cut).toBe(nLong);

    // The boundary: a cutoff that leaves the deu→eng example 2 target tokens drops it; one more token keeps it
    // with exactly 3 (the eng→deu example, a short prompt and a long target, is kept either way).
    const src = "Der kleine Fuchs wohnt seit vielen Jahren in der großen Stadt am Fluss.", tgt = "Yes, the little fox has lived there for years.";
    const probe = w("probe/deu-eng.tsv", `${src}\t${tgt}\n`);
    const promptTokens = specialPrefix(bytelevel).length + bytelevel.encode(alpacaPrompt({ instruction: translationInstruction("deu", "eng"), input: src }), { addSpecialTokens: false }).length;
    const two = await packOk({ tokenizer: BYTELEVEL, out: join(dir, "two"), inputs: [probe], task: "stage1", cutoff: promptTokens + 2, workers: 0 });
    expect(two.dropped.target_cut).toBe(1);
    expect(Object.keys(two.counts.by_direction)).toEqual(["eng-deu"]);
    const three = await packOk({ tokenizer: BYTELEVEL, out: join(dir, "three"), inputs: [probe], task: "stage1", cutoff: promptTokens + 3, workers: 0 });
    expect(three.dropped.target_cut).toBe(0);
    const kept = (await readRecords(join(dir, "three"))).find((r) => r.src === "deu")!;
    expect(kept.ids.length).toBe(promptTokens + 3);
    expect(kept.promptLen).toBe(promptTokens);
    expect(kept.spans!.slice(promptTokens)).toEqual([2, 2, 2]);
  }, 30_000);

  test("when every example is dropped the pack fails and leaves nothing behind", async () => {
    const { dir, w } = scratch();
    const tsv = w("deu-eng.tsv", tsvPairs(6));
    const e = await packError({ tokenizer: BYTELEVEL, out: join(dir, "out"), inputs: [tsv], task: "stage1", cutoff: 8, workers: 1 });
    expect(e.message).toContain("every example was dropped");
    expect(e.message).toContain("target_cut 12");
    expect(existsSync(join(dir, "out"))).toBe(false);
    expect(leftovers(dir)).toEqual([]);
  }, 30_000);

  test("--skip-bad-records counts broken JSONL lines and packs the rest; without it the pack names FILE:LINE and leaves nothing", async () => {
    const { dir, w } = scratch();
    const good = (i: number) => JSON.stringify({ translation: { de: sentence("deu", i), en: sentence("eng", i) } });
    const lines = [good(0), good(1), "{not json", good(2), '{"foo": 1}', good(3), "[1, 2]", good(4)];
    const jl = w("pairs.jsonl", lines.join("\n") + "\n");
    const skipped = await packOk({ tokenizer: LLAMA2, out: join(dir, "skip"), inputs: [jl], task: "stage1", skipBadRecords: true, workers: 0 });
    expect(skipped.dropped.bad_records).toBe(3);
    expect(skipped.counts.records).toBe(10);
    expect(skipped.inputs).toEqual([{ path: jl, format: "jsonl", items: 5 }]);

    const e = await packError({ tokenizer: LLAMA2, out: join(dir, "strict"), inputs: [jl], task: "stage1", workers: 0 });
    expect(e.exitCode).toBe(1);
    expect(e.message).toContain(`${jl}:3`);
    expect(existsSync(join(dir, "strict"))).toBe(false);
    expect(leftovers(dir)).toEqual([]);
  }, 30_000);
});

// ---- 6. output safety ----------------------------------------------------------------------------------------

describe("pack: output safety", () => {
  test("an existing output is refused without overwrite; overwrite replaces a pack output only", async () => {
    const { dir, w } = scratch();
    const tsv = w("deu-eng.tsv", tsvPairs(100));
    const out = join(dir, "out");
    const base = { tokenizer: LLAMA2, inputs: [tsv], task: "stage1", workers: 0, out } satisfies Partial<PackOptions>;
    const m1 = await packOk({ ...base, seed: 1, shardBytes: 1 << 16 });
    expect(m1.shards.length).toBeGreaterThan(1);
    const before = snapshot(out);

    const e = await packError({ ...base, seed: 2 });
    expect(e.exitCode).toBe(2);
    expect(e.message).toContain("--overwrite");
    expect(snapshot(out)).toEqual(before);

    // overwrite replaces it with the new pack (one shard: none of the old ones may stay), nothing left beside it.
    const m2 = await packOk({ ...base, seed: 2, overwrite: true });
    expect(m2.seed).toBe(2);
    expect(m2.shards.length).toBe(1);
    const after = snapshot(out);
    expect(after).not.toEqual(before);
    expect(readManifestJson(out).seed).toBe(2);
    expect(leftovers(dir)).toEqual([]);
    const fresh = join(dir, "fresh");
    await packOk({ ...base, seed: 2, out: fresh });
    expect(snapshot(fresh)).toEqual(after);

    // A non-empty directory that is not a pack output: refused even with overwrite, nothing deleted.
    const other = join(dir, "mine");
    w("mine/notes.txt", "keep me");
    w("mine/sub/data.bin", "x");
    const e2 = await packError({ ...base, out: other, overwrite: true });
    expect(e2.exitCode).toBe(2);
    expect(e2.message).toContain("manifest.json");
    expect(readFileSync(join(other, "notes.txt"), "utf8")).toBe("keep me");
    expect(readdirSync(other).sort()).toEqual(["notes.txt", "sub"]);

    // A file: refused, with or without overwrite, unchanged.
    const file = w("afile", "a file");
    for (const overwrite of [false, true]) {
      const e3 = await packError({ ...base, out: file, overwrite });
      expect(e3.exitCode).toBe(2);
      expect(e3.message).toContain("not a directory");
      expect(statSync(file).isFile()).toBe(true);
      expect(readFileSync(file, "utf8")).toBe("a file");
    }
    expect(leftovers(dir)).toEqual([]);
  }, 30_000);
});

// ---- 7. interrupted pack -------------------------------------------------------------------------------------

describe("pack: interrupted", () => {
  test("SIGKILL mid-pack leaves no output directory (only OUT.tmp-PID); the rerun removes it and completes", async () => {
    const { dir, w } = scratch();
    const tsv = w("deu-eng.tsv", tsvPairs(3000)); // 6000 examples: several seconds
    const parent = join(dir, "runs");
    mkdirSync(parent);
    const out = join(parent, "out");
    const cmd = [process.execPath, join(ROOT, "src/cli/main.ts"), "pack", "--tokenizer", BYTELEVEL, "--out", out, "--workers", "1", "--shard-size", "64K", tsv];
    const proc = Bun.spawn({ cmd, cwd: ROOT, stdin: "ignore", stdout: "ignore", stderr: "pipe", timeout: 60_000, killSignal: "SIGKILL" });
    const tmp = `${out}.tmp-${proc.pid}`;
    // Kill once the temp directory holds a shard: the pack is under way (about a second in).
    const t0 = Date.now();
    let sawShard = false;
    while (Date.now() - t0 < 20_000 && proc.exitCode === null) {
      if (existsSync(tmp) && readdirSync(tmp).some((n) => n.endsWith(".axs"))) {
        sawShard = true;
        break;
      }
      await Bun.sleep(20);
    }
    expect(proc.exitCode).toBeNull(); // still running: the corpus was big enough
    proc.kill("SIGKILL");
    await proc.exited;
    expect(proc.signalCode).toBe("SIGKILL");
    expect(sawShard).toBe(true);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(parent)).toEqual([`out.tmp-${proc.pid}`]);
    expect(existsSync(join(tmp, MANIFEST_FILE))).toBe(false);

    const again = Bun.spawn({ cmd, cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 60_000, killSignal: "SIGKILL" });
    const [stdout, stderr, code] = await Promise.all([new Response(again.stdout).text(), new Response(again.stderr).text(), again.exited]);
    expect(stderr).not.toContain("alignx:");
    expect(code).toBe(0);
    expect(stdout).toContain("6,000 records");
    expect(readdirSync(parent)).toEqual(["out"]);
    const r = await verifyCorpus(out);
    expect(r.error?.message).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(r.records).toBe(6000);
  }, 60_000);
});

// ---- 9. the loader on a pack output --------------------------------------------------------------------------

describe("pack: the loader reads its output", () => {
  test("Loader streams every record with the tokenizer's hash, and refuses another tokenizer naming the file", async () => {
    const { dir, w } = scratch();
    const tsv = w("deu-eng.tsv", tsvPairs(25));
    const out = join(dir, "out");
    const m = await packOk({ tokenizer: BYTELEVEL, out, inputs: [tsv], task: "stage1", workers: 0 });
    const loader = await Loader.open({ data: out, batchSize: 4, expectTokenizerHash: bytelevel.hash, epochs: 1 });
    try {
      expect(loader.languages).toEqual(m.languages);
      expect(loader.records).toBe(50);
      let batches = 0, rows = 0, tokens = 0, src = 0, tgt = 0;
      for await (const b of loader) {
        batches++;
        rows += b.batch;
        tokens += b.tokens;
        for (const v of b.srcTgtIndex) (v === 1 ? src++ : v === 2 ? tgt++ : 0);
        for (const l of [...b.srcLang, ...b.tgtLang]) expect([0, 1]).toContain(l);
      }
      expect(batches).toBe(Math.ceil(50 / 4));
      expect(rows).toBe(50);
      expect(tokens).toBe(m.counts.tokens);
      const recs = await readRecords(out);
      expect(src).toBe(recs.reduce((a, r) => a + r.spans!.filter((s) => s === 1).length, 0));
      expect(tgt).toBe(recs.reduce((a, r) => a + r.spans!.filter((s) => s === 2).length, 0));
    } finally {
      await loader.close();
    }
    let err: Error | null = null;
    try {
      const l = await Loader.open({ data: out, batchSize: 4, expectTokenizerHash: llama2.hash });
      await l.close();
    } catch (e) {
      err = e as Error;
    }
    expect(err).not.toBeNull();
    expect(err!.message).toContain(join(out, MANIFEST_FILE));
    expect(err!.message).toContain("another tokenizer");
  }, 30_000);
});

// ---- 10. real data -------------------------------------------------------------------------------------------

const HAVE_SHARED = ["flores101/dev/eng.dev", "tatoeba/eng-zho.eng", "xquad/xquad.de.json", "alpaca/alpaca_5000.json"].every((p) => existsSync(join(SHARED, p)));
if (!HAVE_SHARED) console.warn(`skipping the real-data pack tests: ${SHARED} (FLORES-101, Tatoeba, XQuAD, Alpaca) not found (../shared/data is not in this clone)`);

describe("pack: real data (../shared/data)", () => {
  test.skipIf(!HAVE_SHARED)("stage1: FLORES dev eng,deu,zho + a Tatoeba eng-zho file pair; stage2: FLORES eng,fra + XQuAD de + Alpaca", async () => {
    const { dir, w } = scratch();
    // A Tatoeba file pair (its first 250 lines, to stay fast), Moses layout.
    const head = (p: string, n: number) => readFileSync(join(SHARED, p), "utf8").split("\n").slice(0, n).join("\n") + "\n";
    w("tatoeba/eng-zho.eng", head("tatoeba/eng-zho.eng", 250));
    w("tatoeba/eng-zho.zho", head("tatoeba/eng-zho.zho", 250));
    const s1 = await packOk({ tokenizer: BYTELEVEL, out: join(dir, "s1"), inputs: [join(SHARED, "flores101/dev"), join(dir, "tatoeba/eng-zho.eng")], task: "stage1", langs: ["eng", "deu", "zho"], workers: 2 });
    expect(s1.languages).toEqual(["eng", "deu", "zho"]);
    expect(s1.inputs.map((i) => [i.format, i.items])).toEqual([["flores", 997], ["moses", 250]]);
    const drops = Object.values(s1.dropped).reduce((a, b) => a + b, 0);
    expect(s1.counts.records + drops).toBe(3988 + 500);
    expect(drops).toBeLessThan(50);
    const d = s1.counts.by_direction;
    expect(Object.keys(d).sort()).toEqual(["deu-eng", "eng-deu", "eng-zho", "zho-eng"]);
    expect(d["deu-eng"]!.records).toBeLessThanOrEqual(997);
    expect(d["eng-zho"]!.records).toBeLessThanOrEqual(997 + 250);
    expect(d["eng-zho"]!.records).toBeGreaterThan(997);

    const alpaca = JSON.parse(readFileSync(join(SHARED, "alpaca/alpaca_5000.json"), "utf8")).slice(0, 200);
    const alp = w("alpaca200.json", JSON.stringify(alpaca));
    const s2 = await packOk({ tokenizer: BYTELEVEL, out: join(dir, "s2"), inputs: [join(SHARED, "flores101/dev"), join(SHARED, "xquad/xquad.de.json"), alp], task: "stage2", langs: ["eng", "fra"], workers: 2 });
    expect(s2.languages).toEqual(["eng", "fra", "deu"]); // kept languages first, then the instructions'
    expect(s2.inputs.map((i) => i.format)).toEqual(["flores", "squad", "alpaca"]);
    const mixed = s2.options.mixed as { translation: number; general: number };
    // 1994 translation examples, 1190 + 200 instructions: the instructions run out first, 1:1.
    expect(mixed).toEqual({ translation: 1390, general: 1390 });
    const s2drops = Object.entries(s2.dropped).filter(([k]) => k !== "bad_records").reduce((a, [, n]) => a + n, 0);
    expect(s2.counts.records + s2drops).toBe(mixed.translation + mixed.general);
    expect(Object.keys(s2.counts.by_direction).sort()).toEqual(["eng-fra", "fra-eng"]);
    expect(s2.counts.by_task.general!.records).toBeGreaterThan(200);
  }, 60_000);
});

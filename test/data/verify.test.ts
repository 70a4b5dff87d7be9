// `alignx verify` (src/data/verify.ts, src/cli/verify.ts): a good pack directory, then each way a pack can
// disagree with its manifest or be damaged (ok: false, the error naming the file), the target forms, and the
// command's output and exit codes.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, spyOn, test } from "bun:test";
import { cpSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { verify } from "../../src/cli/verify.ts";
import { MANIFEST_FILE, tally, type Count, type Manifest } from "../../src/data/manifest.ts";
import { ShardError, type RecordInput } from "../../src/data/shard.ts";
import { verifyCorpus } from "../../src/data/verify.ts";
import { layout, meta, randomRecords, rng, tempDir, writeShard } from "./shard_fixtures.ts";

const root = tempDir();
afterAll(() => rmSync(root, { recursive: true, force: true }));
const LANGS = ["eng", "deu", "fra"];
const META = meta(300, LANGS);
const SHARDS = ["shard-00000.axs", "shard-00001.axs", "shard-00002.axs"];
const good = join(root, "good");
let manifest: Manifest;

/** The manifest's counts for `records`, tallied here independently of verify's own counting. */
function countsOf(records: RecordInput[]): Manifest["counts"] {
  const code = (id: number) => (id < 0 ? "und" : LANGS[id]!);
  const c: Manifest["counts"] = { records: 0, tokens: 0, by_task: {}, by_language: {}, by_direction: {} };
  for (const r of records) {
    const n = r.ids.length;
    c.records++;
    c.tokens += n;
    tally(c.by_task, r.task, n);
    tally(c.by_language, code(r.tgtLang), n);
    if (r.task === "translation") tally(c.by_direction, `${code(r.srcLang)}-${code(r.tgtLang)}`, n);
  }
  return c;
}

beforeAll(async () => {
  mkdirSync(good);
  const rand = rng(3);
  const all: RecordInput[] = [];
  const shards = [];
  for (const [i, file] of SHARDS.entries()) {
    const records = randomRecords(rand, 30 + 10 * i, 300, LANGS.length);
    const bytes = await writeShard(join(good, file), records, META, 1024);
    all.push(...records);
    shards.push({ file, records: records.length, tokens: records.reduce((a, r) => a + r.ids.length, 0), bytes: bytes.length });
  }
  manifest = {
    format: "alignx-shards",
    version: 1,
    created_by: "alignx test",
    task: "stage1",
    tokenizer: { hash: META.tokenizerHash, source: "tokenizer.json", vocab_size: 300, token_bytes: 2 },
    languages: LANGS,
    shards,
    counts: countsOf(all),
    dropped: {},
    inputs: [],
    options: {},
    seed: 0,
  };
  writeFileSync(join(good, MANIFEST_FILE), JSON.stringify(manifest, null, 2));
});

let copies = 0;
/** A copy of the good pack with its manifest changed by `edit` (and the directory by `files`). */
function badPack(edit: (m: Manifest) => void, files?: (dir: string) => void): string {
  const dir = join(root, `bad-${copies++}`);
  cpSync(good, dir, { recursive: true });
  const m = structuredClone(manifest);
  edit(m);
  writeFileSync(join(dir, MANIFEST_FILE), JSON.stringify(m, null, 2));
  files?.(dir);
  return dir;
}

/** verifyCorpus fails with a ShardError for `file` whose message matches. */
async function expectFailure(target: string, file: string, message: RegExp): Promise<ShardError> {
  const r = await verifyCorpus(target);
  expect(r.ok).toBe(false);
  expect(r.error).toBeInstanceOf(ShardError);
  expect(r.error!.file).toBe(file);
  expect(r.error!.message.startsWith(file)).toBe(true);
  expect(r.error!.reason).toMatch(message);
  return r.error!;
}

describe("verifyCorpus", () => {
  test("a good pack directory: every shard read, the counts recomputed", async () => {
    const seen: [number, number][] = [];
    const r = await verifyCorpus(good, { onProgress: (done, total) => seen.push([done, total]) });
    expect(r.error).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(r.manifest).toBe(join(good, MANIFEST_FILE));
    expect(r.shards).toEqual(manifest.shards.map((s) => ({ ...s, file: join(good, s.file) })));
    const { records, tokens, by_task, by_language, by_direction } = manifest.counts;
    expect({ records: r.records, tokens: r.tokens, by_task: r.byTask, by_language: r.byLanguage, by_direction: r.byDirection }).toEqual({ records, tokens, by_task, by_language, by_direction });
    expect(Object.keys(r.byLanguage)).toContain("und");
    const total = manifest.shards.reduce((a, s) => a + s.bytes, 0);
    expect(seen.at(-1)).toEqual([total, total]);
    expect(seen.every(([d], i) => i === 0 || d >= seen[i - 1]![0])).toBe(true);
  });

  test("the manifest's path, a glob of shards, one shard", async () => {
    expect((await verifyCorpus(join(good, MANIFEST_FILE))).ok).toBe(true);
    const glob = await verifyCorpus(join(good, "*.axs"));
    expect([glob.ok, glob.manifest, glob.shards.length, glob.records]).toEqual([true, null, 3, manifest.counts.records]);
    expect(glob.byLanguage).toEqual(manifest.counts.by_language);
    const one = await verifyCorpus(join(good, SHARDS[1]!));
    expect([one.ok, one.records]).toEqual([true, manifest.shards[1]!.records]);
  });

  test("a shard entry's record count, token count or size", async () => {
    let dir = badPack((m) => {
      m.shards[1]!.records++;
      m.counts.records++;
    });
    await expectFailure(dir, join(dir, SHARDS[1]!), new RegExp(`^holds ${manifest.shards[1]!.records} records, .*manifest.json says ${manifest.shards[1]!.records + 1}$`));
    dir = badPack((m) => {
      m.shards[2]!.tokens--;
      m.counts.tokens--;
    });
    await expectFailure(dir, join(dir, SHARDS[2]!), new RegExp(`^holds ${manifest.shards[2]!.tokens} tokens, .* says ${manifest.shards[2]!.tokens - 1}$`));
    dir = badPack((m) => (m.shards[0]!.bytes += 8));
    await expectFailure(dir, join(dir, SHARDS[0]!), new RegExp(`^is ${manifest.shards[0]!.bytes} bytes, .* says ${manifest.shards[0]!.bytes + 8}$`));
  });

  test("the tokenizer hash, vocabulary, language table", async () => {
    let dir = badPack((m) => (m.tokenizer.hash = "b".repeat(64)));
    await expectFailure(dir, join(dir, SHARDS[0]!), /^packed with another tokenizer/);
    dir = badPack((m) => (m.tokenizer.vocab_size = 301));
    await expectFailure(dir, join(dir, SHARDS[0]!), /^has a vocabulary of 300, .* says 301$/);
    dir = badPack((m) => (m.languages = ["eng", "fra", "deu"]));
    await expectFailure(dir, join(dir, SHARDS[0]!), /^language table \[eng, deu, fra\] differs from the manifest's \[eng, fra, deu\]$/);
  });

  test("a missing shard, a stray shard", async () => {
    let dir = badPack(() => {}, (d) => rmSync(join(d, SHARDS[1]!)));
    await expectFailure(dir, join(dir, SHARDS[1]!), /^is listed in .*manifest.json but missing$/);
    dir = badPack(() => {}, (d) => cpSync(join(d, SHARDS[1]!), join(d, "shard-00009.axs")));
    await expectFailure(dir, join(dir, "shard-00009.axs"), /^is not listed in .*manifest.json/);
  });

  test("counts that disagree with the records", async () => {
    const wrong: [string, (c: Manifest["counts"]) => void][] = [
      ["by_language.deu", (c) => c.by_language.deu!.records++],
      ["by_language.ita", (c) => (c.by_language.ita = { records: 0, tokens: 3 })],
      ["by_task.general", (c) => (c.by_task.general!.tokens += 1)],
      ["by_direction", (c) => delete c.by_direction[Object.keys(c.by_direction)[0]!]],
    ];
    for (const [what, edit] of wrong) {
      const dir = badPack((m) => edit(m.counts));
      await expectFailure(dir, join(dir, MANIFEST_FILE), new RegExp(`^counts\\.${what.replace(".", "\\.")}.* the shards hold`));
    }
    // A key listed with zero counts is no disagreement.
    const dir = badPack((m) => (m.counts.by_language.ita = { records: 0, tokens: 0 }));
    expect((await verifyCorpus(dir)).ok).toBe(true);
  });

  test("a damaged block: the byte and record, and the shards before it", async () => {
    const dir = badPack(() => {});
    const path = join(dir, SHARDS[2]!);
    const bytes = new Uint8Array(await Bun.file(path).arrayBuffer());
    const b = layout(bytes).blocks[1]!;
    bytes[b.offset + 30]! ^= 1;
    await Bun.write(path, bytes);
    const r = await verifyCorpus(dir);
    const e = await expectFailure(dir, path, /^block 1 checksum mismatch/);
    expect([e.byte, e.record]).toEqual([b.offset, b.first]);
    expect(r.shards.map((s) => s.file)).toEqual(SHARDS.slice(0, 2).map((f) => join(dir, f)));
  });

  test("a manifest that is not one, or disagrees with itself", async () => {
    let dir = badPack(() => {}, (d) => writeFileSync(join(d, MANIFEST_FILE), "{ not json"));
    await expectFailure(dir, join(dir, MANIFEST_FILE), /^is not valid JSON/);
    const wrong: [RegExp, (m: Manifest) => void][] = [
      [/^field "counts.records": \d+, but the shards list \d+ records$/, (m) => m.shards[0]!.records++],
      [/^field "counts.tokens": \d+, but the shards list \d+ tokens$/, (m) => m.shards[0]!.tokens++],
      [/^field "counts.by_language": must be an object/, (m) => delete (m.counts as Partial<Manifest["counts"]>).by_language],
      [/^field "counts.by_task.general": must be \{records, tokens\}/, (m) => (m.counts.by_task.general = { records: -1, tokens: 0 })],
      [/^field "shards\[1\].file": shard-00000.axs is listed twice$/, (m) => (m.shards[1]!.file = SHARDS[0]!)],
    ];
    for (const [message, edit] of wrong) {
      dir = badPack(edit);
      await expectFailure(dir, join(dir, MANIFEST_FILE), message);
    }
  });

  test("shards of different tokenizers, without a manifest", async () => {
    const dir = join(root, "mixed");
    mkdirSync(dir);
    const records = randomRecords(rng(9), 5, 300, 3);
    await writeShard(join(dir, "a.axs"), records, META);
    await writeShard(join(dir, "b.axs"), records, meta(300, LANGS, "c".repeat(64)));
    await expectFailure(join(dir, "*.axs"), join(dir, "b.axs"), /^packed with another tokenizer/);
  });

  test("a target naming nothing: a ShardError with exit code 2", async () => {
    const cases: [string, RegExp][] = [
      [join(root, "nothing-*.axs"), /^matches no files$/],
      [join(root, "no-such-dir"), /^no such file or directory$/],
      [root, /^is a directory without a manifest.json/],
    ];
    for (const [target, message] of cases) {
      let e: unknown;
      await verifyCorpus(target).catch((x) => (e = x));
      expect(e).toBeInstanceOf(ShardError);
      expect((e as ShardError).file).toBe(target);
      expect((e as ShardError).reason).toMatch(message);
      expect((e as ShardError).exitCode).toBe(2);
    }
  });
});

describe("alignx verify", () => {
  // console.log / console.error captured per test.
  const out = { log: [] as string[], error: [] as string[] };
  let spies: ReturnType<typeof spyOn>[] = [];
  beforeEach(() => {
    out.log = [];
    out.error = [];
    spies = (["log", "error"] as const).map((k) => spyOn(console, k).mockImplementation((...a: unknown[]) => void out[k].push(a.join(" "))));
  });
  afterEach(() => {
    for (const s of spies) s.mockRestore();
  });

  test("a good pack: 0, a line per shard, counts per language and task", async () => {
    expect(await verify({ target: good })).toBe(0);
    expect(out.error).toEqual([]);
    const text = out.log.join("\n");
    for (const s of manifest.shards) expect(text).toMatch(new RegExp(`${s.file}\\s+${s.records} records\\s+${s.tokens.toLocaleString("en-US")} tokens\\s+${(s.bytes / 1e6).toFixed(2)} MB`));
    expect(text).toMatch(new RegExp(`3 shards\\s+${manifest.counts.records} records`));
    expect(text).toMatch(/^language\s+records\s+tokens$/m);
    expect(text).toMatch(/^task\s+records\s+tokens$/m);
    const by = (c: Count) => `${c.records.toLocaleString("en-US")}\\s+${c.tokens.toLocaleString("en-US")}`;
    for (const [lang, c] of Object.entries(manifest.counts.by_language)) expect(text).toMatch(new RegExp(`^${lang}\\s+${by(c)}$`, "m"));
    for (const [task, c] of Object.entries(manifest.counts.by_task)) expect(text).toMatch(new RegExp(`^${task}\\s+${by(c)}$`, "m"));
    expect(text).toMatch(/^ok: /m);
  });

  test("--json", async () => {
    expect(await verify({ target: good, json: true })).toBe(0);
    const j = JSON.parse(out.log.join("\n"));
    expect([j.ok, j.error, j.records, j.by_language]).toEqual([true, null, manifest.counts.records, manifest.counts.by_language]);
  });

  test("a bad pack: 1, and the error on stderr", async () => {
    const dir = badPack((m) => (m.shards[0]!.bytes += 1));
    expect(await verify({ target: dir })).toBe(1);
    expect(out.log).toEqual([]);
    expect(out.error.length).toBe(1);
    expect(out.error[0]).toStartWith(`alignx: ${join(dir, SHARDS[0]!)}: is `);
  });

  test("usage: no target, a glob matching nothing: 2", async () => {
    expect(await verify({ target: "" })).toBe(2);
    expect(out.error[0]).toMatch(/^alignx: verify: missing DIR/);
    const glob = join(root, "none-*.axs");
    expect(await verify({ target: glob })).toBe(2);
    expect(out.error[1]).toBe(`alignx: ${glob}: matches no files`);
  });
});

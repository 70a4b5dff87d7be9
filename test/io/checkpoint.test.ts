// Checkpoint directories: the PyTorch-written sharded tiny LLaMA (index + 2 shards) opened and checked
// against its config.json; writeCheckpoint's single-file and sharded layouts read back; and every way an
// index and its shards can disagree, reported together.
import { afterAll, describe, expect, test } from "bun:test";
import { expectError } from "./helpers.ts";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Checkpoint, INDEX_FILE, openCheckpoint, SINGLE_FILE, writeCheckpoint } from "../../src/io/checkpoint.ts";
import { CheckpointError } from "../../src/io/errors.ts";
import { checkParameters, hfConfigJson, readHfConfig } from "../../src/io/hf_config.ts";
import { openSafetensors, readSafetensors, writeSafetensors, type TensorToWrite } from "../../src/io/safetensors.ts";
import { rng } from "../helpers.ts";

const TINY = join(import.meta.dir, "../fixtures/io/tiny-llama");
const SHARD1 = "model-00001-of-00002.safetensors";
const SHARD2 = "model-00002-of-00002.safetensors";

const TMP = mkdtempSync(join(tmpdir(), "alignx-io-ckpt-"));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
let n = 0;
/** A fresh copy of the tiny LLaMA fixture to break. */
function copyTiny(): string {
  const d = join(TMP, `tiny-${++n}`);
  cpSync(TINY, d, { recursive: true });
  return d;
}
const readIndex = (d: string) => JSON.parse(readFileSync(join(d, INDEX_FILE), "utf8")) as { metadata: { total_size: number }; weight_map: Record<string, string> };
const writeIndex = (d: string, ix: unknown) => writeFileSync(join(d, INDEX_FILE), JSON.stringify(ix, null, 2));


describe("the PyTorch-written sharded tiny LLaMA", () => {
  test("opens from the directory or the index file, maps every name to its shard, matches config.json", async () => {
    for (const path of [TINY, join(TINY, INDEX_FILE)]) {
      await using ck = await openCheckpoint(path);
      expect(ck.files.map((f) => f.path.split("/").pop())).toEqual([SHARD1, SHARD2]);
      expect(ck.size).toBe(21);
      expect(ck.index?.totalSize).toBe(ck.totalBytes);
      expect(ck.get("model.embed_tokens.weight").file.path.endsWith(SHARD1)).toBe(true);
      expect(ck.get("lm_head.weight").file.path.endsWith(SHARD2)).toBe(true);
      expect(ck.entry("model.layers.0.self_attn.k_proj.weight")).toMatchObject({ dtype: "BF16", shape: [4, 8] });
      const cfg = await readHfConfig(TINY);
      const report = checkParameters(cfg, ck.params(), TINY);
      expect(report.ignored).toEqual([]);
      expect([...(await ck.readF32("model.norm.weight"))]).toEqual([1, 1.125, 1.25, 1.375, 1.5, 1.625, 1.75, 1.875]);
      const emb = await ck.readTensor("model.embed_tokens.weight");
      expect(emb.data.length).toBe(32 * 8);
    }
  });

  test("load lazily and save back over the same directory (resharded, with config.json): bytes and checks survive", async () => {
    const d = copyTiny();
    const cfg = await readHfConfig(d);
    const src = await openCheckpoint(d);
    const before = new Map<string, string>();
    for (const name of src.names()) before.set(name, Buffer.from((await src.readTensor(name)).data.buffer).toString("hex"));
    const plan: TensorToWrite[] = src.names().map((name) => {
      const e = src.entry(name);
      return { name, dtype: e.dtype, shape: e.shape, data: async () => (await src.readTensor(name)).data };
    });
    const res = await writeCheckpoint(d, plan, { maxShardBytes: 1024, files: { "config.json": hfConfigJson(cfg) } });
    expect(res.shards.length).toBeGreaterThan(2);
    // The old files were read while the new ones were written; now they are gone.
    expect((await expectError(src.readTensor("model.norm.weight"))).message).toMatch(/no such file/);
    await using back = await openCheckpoint(d);
    expect(back.names()).toEqual([...before.keys()]);
    for (const [name, hex] of before) expect(Buffer.from((await back.readTensor(name)).data.buffer).toString("hex")).toBe(hex);
    expect(back.index?.totalSize).toBe(back.totalBytes);
    checkParameters(await readHfConfig(d), back.params(), d);
    expect(readdirSync(d).sort()).toEqual(["config.json", INDEX_FILE, ...res.shards].sort());
  });

  test("an unknown name fails naming the checkpoint and the tensor", async () => {
    await using ck = await openCheckpoint(TINY);
    expect(() => ck.get("model.layers.9.mlp.up_proj.weight")).toThrow(/tiny-llama \(tensor "model\.layers\.9\.mlp\.up_proj\.weight"\): no such tensor in this checkpoint \(it has 21\)/);
  });
});

describe("writeCheckpoint", () => {
  function tensors(): TensorToWrite[] {
    const r = rng(5);
    const mk = (name: string, shape: number[]): TensorToWrite => ({
      name,
      dtype: "BF16",
      shape,
      data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => r() - 0.5),
    });
    return [mk("model.embed_tokens.weight", [64, 16]), mk("model.layers.0.mlp.up_proj.weight", [32, 16]), mk("model.norm.weight", [16]), mk("lm_head.weight", [64, 16])];
  }

  test("everything in one shard: a single model.safetensors with {format: pt} and the extra files", async () => {
    const d = join(TMP, `single-${++n}`);
    const res = await writeCheckpoint(d, tensors(), { files: { "config.json": '{"model_type":"llama"}\n' } });
    expect(res.shards).toEqual([SINGLE_FILE]);
    expect(readdirSync(d).sort()).toEqual(["config.json", SINGLE_FILE]);
    expect(readFileSync(join(d, "config.json"), "utf8")).toBe('{"model_type":"llama"}\n');
    await using ck = await openCheckpoint(d);
    expect(ck.index).toBeNull();
    expect(ck.files[0]!.metadata).toEqual({ format: "pt" });
    expect(ck.names()).toEqual(tensors().map((t) => t.name).sort());
    expect(res.totalSize).toBe(ck.totalBytes);
    expect(readdirSync(TMP).filter((f) => f.includes(".tmp-") || f.includes(".old-"))).toEqual([]);
  });

  test("sharded as transformers does: fill in order, a tensor that does not fit starts the next shard", async () => {
    const d = join(TMP, `sharded-${++n}`);
    // sizes: embed 2048 B, up 1024 B, norm 32 B, lm_head 2048 B; limit 2100 B → [embed], [up, norm], [lm_head]
    const res = await writeCheckpoint(d, tensors(), { maxShardBytes: 2100 });
    expect(res.shards).toEqual(["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]);
    const ix = readIndex(d);
    expect(ix.metadata.total_size).toBe(2048 + 1024 + 32 + 2048);
    expect(Object.keys(ix.weight_map)).toEqual(Object.keys(ix.weight_map).sort());
    expect(ix.weight_map["model.layers.0.mlp.up_proj.weight"]).toBe("model-00002-of-00003.safetensors");
    expect(ix.weight_map["model.norm.weight"]).toBe("model-00002-of-00003.safetensors");
    expect(readFileSync(join(d, INDEX_FILE), "utf8").startsWith('{\n  "metadata": {\n    "total_size": 5152\n  },\n  "weight_map": {\n')).toBe(true);
    await using ck = await openCheckpoint(d);
    for (const t of tensors()) {
      const back = await ck.readTensor(t.name);
      const again = await readSafetensors(ck.get(t.name).file.path);
      expect(again.tensors.find((x) => x.name === t.name)!.data).toEqual(back.data);
    }
    // A tensor larger than the limit gets a shard of its own.
    const d2 = join(TMP, `sharded-${++n}`);
    expect((await writeCheckpoint(d2, tensors(), { maxShardBytes: 1000 })).shards.length).toBe(4);
  });

  test("writing over an existing checkpoint replaces it whole; a failure keeps the old one", async () => {
    const d = join(TMP, `replace-${++n}`);
    await writeCheckpoint(d, tensors(), { maxShardBytes: 2100 });
    await writeCheckpoint(d, tensors().slice(0, 2));
    expect(readdirSync(d)).toEqual([SINGLE_FILE]); // the old shards and index are gone
    const bad = tensors();
    bad[1] = { ...bad[1]!, data: () => new Float32Array(3) };
    expect((await expectError(writeCheckpoint(d, bad, { maxShardBytes: 2100 }))).message).toMatch(/tensor "model\.layers\.0\.mlp\.up_proj\.weight"\): data has 6 bytes/);
    expect(readdirSync(d)).toEqual([SINGLE_FILE]);
    await using ck = await openCheckpoint(d);
    expect(ck.size).toBe(2);
    expect(readdirSync(TMP).filter((f) => f.includes(".tmp-") || f.includes(".old-"))).toEqual([]);
  });

  test("duplicate names and bad extra file names fail before anything is written", async () => {
    const d = join(TMP, `dup-${++n}`);
    const t = tensors();
    expect((await expectError(writeCheckpoint(d, [...t, t[0]!]))).message).toMatch(/\(tensor "model\.embed_tokens\.weight"\): tensor name given twice/);
    expect((await expectError(writeCheckpoint(d, t, { files: { "../x": "" } }))).message).toMatch(/extra file name "\.\.\/x" must be a plain file name/);
    expect(existsSync(d)).toBe(false);
  });
});

describe("broken checkpoints: every problem listed in one error", () => {
  test("missing shard files are all named", async () => {
    const d = copyTiny();
    rmSync(join(d, SHARD1));
    rmSync(join(d, SHARD2));
    const e = await expectError(openCheckpoint(d));
    expect(e.message).toMatch(/2 shard file\(s\) named by model\.safetensors\.index\.json are missing:/);
    expect(e.message).toContain(`${join(d, SHARD1)} (holds 10 tensors)`);
    expect(e.message).toContain(`${join(d, SHARD2)} (holds 11 tensors)`);
  });

  test("a name mapped to a shard that lacks it (and where it really is)", async () => {
    const d = copyTiny();
    const ix = readIndex(d);
    ix.weight_map["model.norm.weight"] = SHARD1;
    writeIndex(d, ix);
    const e = await expectError(openCheckpoint(d));
    expect(e.file).toBe(d);
    expect(e.message).toContain(`"model.norm.weight" is mapped to ${SHARD1}, which lacks it (it is in ${SHARD2})`);
  });

  test("a name in two shards, a name the index does not list, a name no shard has: all three at once", async () => {
    const d = copyTiny();
    // Rewrite shard 2 with an extra copy of a shard-1 tensor and an unlisted tensor.
    const s2 = await readSafetensors(join(d, SHARD2));
    const s1 = await openSafetensors(join(d, SHARD1));
    const dup = await s1.readTensor("model.embed_tokens.weight");
    await writeSafetensors(join(d, SHARD2), [...s2.tensors, dup, { name: "extra.bias", dtype: "F32", shape: [2], data: new Float32Array(2) }], s2.metadata);
    const ix = readIndex(d);
    ix.weight_map["ghost.weight"] = SHARD2;
    writeIndex(d, ix);
    const e = await expectError(openCheckpoint(d));
    expect(e.message).toMatch(/and its shards disagree \(3 problem\(s\)\):/);
    expect(e.message).toContain(`"model.embed_tokens.weight" is in 2 shards: ${SHARD1}, ${SHARD2}`);
    expect(e.message).toContain(`"ghost.weight" is mapped to ${SHARD2}, which lacks it`);
    expect(e.message).toContain(`"extra.bias" is in ${SHARD2} but not in the index's weight_map`);
  });

  const indexCases: [string, unknown, RegExp][] = [
    ["not JSON", "{weight_map", /model\.safetensors\.index\.json: not valid JSON/],
    ["not an object", [1], /model\.safetensors\.index\.json: not a JSON object/],
    ["no weight_map", { metadata: {} }, /\(field "weight_map"\): missing or not an object/],
    ["empty weight_map", { weight_map: {} }, /\(field "weight_map"\): is empty/],
    ["bad total_size", { metadata: { total_size: "big" }, weight_map: { a: SHARD1 } }, /\(field "metadata"\): total_size is "big"/],
    ["shard path escaping the directory", { weight_map: { a: "../model-00001-of-00002.safetensors" } }, /"a" maps to "\.\.\/model-00001-of-00002\.safetensors", not a \.safetensors file name in this directory/],
    ["shard that is not .safetensors", { weight_map: { a: "model.bin" } }, /"a" maps to "model\.bin"/],
  ];
  for (const [what, content, re] of indexCases)
    test(`index ${what}`, async () => {
      const d = copyTiny();
      if (typeof content === "string") writeFileSync(join(d, INDEX_FILE), content);
      else writeIndex(d, content);
      expect((await expectError(openCheckpoint(d))).message).toMatch(re);
    });

  test("a shard path that is a directory is named as one (not as missing); so is a model.safetensors or index directory", async () => {
    const d = copyTiny();
    rmSync(join(d, SHARD2));
    mkdirSync(join(d, SHARD2));
    const e = await expectError(openCheckpoint(d));
    expect(e.file).toBe(d);
    expect(e.message).toContain(`1 shard path(s) named by ${INDEX_FILE} are not files:\n  ${join(d, SHARD2)} is a directory, not a file`);
    expect(e.message).not.toMatch(/missing/);

    const single = join(TMP, `single-dir-${++n}`);
    mkdirSync(join(single, SINGLE_FILE), { recursive: true });
    const e2 = await expectError(openCheckpoint(single));
    expect(e2.message).toBe(`${join(single, SINGLE_FILE)}: is a directory, not a file`);
    const ixDir = join(TMP, `index-dir-${++n}`);
    mkdirSync(join(ixDir, INDEX_FILE), { recursive: true });
    expect((await expectError(openCheckpoint(ixDir))).message).toBe(`${join(ixDir, INDEX_FILE)}: is a directory, not a file`);
  });

  test("a tensor mapped twice in the index (JSON.parse would keep the last) is named", async () => {
    const d = copyTiny();
    const text = readFileSync(join(d, INDEX_FILE), "utf8").replace(`"lm_head.weight": "${SHARD2}"`, `"lm_head.weight": "${SHARD2}",\n    "lm_head.weight": "${SHARD1}"`);
    writeFileSync(join(d, INDEX_FILE), text);
    const e = await expectError(openCheckpoint(d));
    expect(e.file).toBe(join(d, INDEX_FILE));
    expect(e.field).toBe("weight_map");
    expect(e.message).toMatch(/"lm_head\.weight" appears twice in weight_map/);
  });

  test("a corrupt shard fails with the shard's own error (file and byte offset)", async () => {
    const d = copyTiny();
    const b = readFileSync(join(d, SHARD2));
    writeFileSync(join(d, SHARD2), b.subarray(0, b.byteLength - 1));
    const e = await expectError(openCheckpoint(d));
    expect(e.file).toBe(join(d, SHARD2));
    expect(e.message).toMatch(/run past the end of the data region/);
  });

  test("no weights here, only pickles, nothing at all, an interrupted save", async () => {
    const empty = join(TMP, `empty-${++n}`);
    mkdirSync(empty);
    expect((await expectError(openCheckpoint(empty))).message).toMatch(/: no model\.safetensors or model\.safetensors\.index\.json here$/);
    writeFileSync(join(empty, "pytorch_model.bin"), "");
    expect((await expectError(openCheckpoint(empty))).message).toMatch(/only PyTorch pickle weights: pytorch_model\.bin; convert them to safetensors first/);
    const gone = join(TMP, `gone-${++n}`);
    expect((await expectError(openCheckpoint(gone))).message).toBe(`${gone}: no such file or directory`);
    mkdirSync(`${gone}.old-4194999`);
    expect((await expectError(openCheckpoint(gone))).message).toMatch(/gone-\d+\.old-4194999 is left from an interrupted save/);
  });

  test("model.safetensors wins over an index in the same directory, as in transformers", async () => {
    const d = copyTiny();
    await writeSafetensors(join(d, SINGLE_FILE), [{ name: "only", dtype: "F32", shape: [1], data: new Float32Array(1) }]);
    await using ck = await openCheckpoint(d);
    expect(ck.names()).toEqual(["only"]);
    expect(ck).toBeInstanceOf(Checkpoint);
  });
});

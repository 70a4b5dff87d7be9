// Seeded fuzz tests of the input parsers (issue 13, "Fuzzing"): safetensors headers and offsets, the sharded
// index (model.safetensors.index.json), config.json and batch.json. Each mutation of a valid input must be
// accepted (and then be what the format promises: tensors that tile the file and read back, a weight map whose
// every name is in its shard, a config whose parameter list matches its closed-form counts, a rectangular
// batch) or refused with the module's error class (CheckpointError, BatchError): never another exception, an
// allocation over 4x the input (every typed array, ArrayBuffer and Array is watched), a write into the input's
// directory, or a slow case. A few thousand mutations per parser, well under a minute in all.
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CheckpointError } from "../../src/io/errors.ts";
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { checkConfigScale, checkParameters, expectedParameters, expectedTensorCount, parameterCount, readHfConfig } from "../../src/io/hf_config.ts";
import { openSafetensors, writeSafetensors } from "../../src/io/safetensors.ts";
import { BatchError, readBatch } from "../../src/nn/batch.ts";
import { below, fuzz, mutateBytes, mutateJson, pick, rng, seed, type FuzzReport } from "../fuzz_helpers.ts";

const TMP = mkdtempSync(join(tmpdir(), "alignx-fuzz-"));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
const FIX = join(import.meta.dir, "../fixtures");

/** Fail with every problem listed; print one summary line. */
function expectClean(name: string, r: FuzzReport, minAccepted: number, minRefused: number): void {
  console.log(
    `  fuzz ${name}: ${r.cases} cases, ${r.accepted} accepted, ${r.refused} refused in ${r.seconds.toFixed(1)} s ` +
      `(slowest ${r.slowest.ms.toFixed(1)} ms, largest allocation ${r.largestRatio.toFixed(2)}x the input)`,
  );
  expect(r.problems).toEqual([]);
  expect(r.accepted).toBeGreaterThanOrEqual(minAccepted);
  expect(r.refused).toBeGreaterThanOrEqual(minRefused);
}

// ---- safetensors --------------------------------------------------------------------------------------------

/** A safetensors file's parts: the header JSON and the data region. */
function split(file: Uint8Array): { header: Record<string, unknown>; data: Uint8Array } {
  const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  return { header: JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + n))), data: file.subarray(8 + n) };
}

/** Header text (padded to 8 with spaces, or not) + data, with the true length or `len`. */
function assemble(text: string, data: Uint8Array, pad: boolean, len?: bigint): Uint8Array {
  let h = new TextEncoder().encode(text);
  if (pad && h.length % 8) h = new TextEncoder().encode(text + " ".repeat(8 - (h.length % 8)));
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, len ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

/** A mutation aimed at the offsets: moved, resized, swapped or shifted ranges, with shapes kept consistent or not. */
function mutateOffsets(rand: () => number, header: Record<string, unknown>, dataLen: number): string {
  const h = structuredClone(header) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const names = Object.keys(h).filter((k) => k !== "__metadata__");
  const e = h[pick(rand, names)]!;
  const [b, en] = e.data_offsets;
  const d = pick(rand, [1, 2, 4, 8, 16, -1, -2, -4, -8]);
  switch (below(rand, 7)) {
    case 0: e.data_offsets = [b + d, en + d]; break; // shifted: gap or overlap
    case 1: e.data_offsets = [b, en + d]; break; // resized: size mismatch, or a tail
    case 2: { // swapped with another tensor
      const o = h[pick(rand, names)]!;
      [e.data_offsets, o.data_offsets] = [o.data_offsets, e.data_offsets];
      break;
    }
    case 3: e.data_offsets = [dataLen, dataLen]; e.shape = [0]; break; // zero-size at the end
    case 4: { const m = below(rand, dataLen + 1); e.data_offsets = [m, m]; e.shape = [0, 3]; break; } // zero-size anywhere
    case 5: for (const k of names) h[k]!.data_offsets = h[k]!.data_offsets.map((x) => x + d) as [number, number]; break; // all shifted
    default: { // an extra tensor appended after the data, or a copy of another one's range
      const o = h[pick(rand, names)]!;
      h[`extra.${below(rand, 9)}`] = rand() < 0.5 ? { ...o } : { dtype: "U8", shape: [Math.abs(d)], data_offsets: [dataLen, dataLen + Math.abs(d)] };
    }
  }
  return JSON.stringify(h);
}

describe("fuzz", () => {
  test("the harness reports what it must: another exception type, an over-allocation, a write, a slow case", async () => {
    const dir = join(TMP, "harness");
    mkdirSync(dir);
    const cases = [
      async () => {
        throw new TypeError("x.split is not a function");
      },
      async () => new Float64Array(1 << 20).length,
      async () => Array.from({ length: 1 << 14 }, () => 0).length,
      async () => writeFileSync(join(dir, "out"), "x"),
      async () => Bun.sleep(250),
      async () => {
        throw new CheckpointError("refused", "f");
      },
      async () => "accepted",
    ];
    const r = await fuzz(cases.length, (k) => ({ what: `case ${k}`, inputBytes: 100, run: cases[k]! }), { errorClass: CheckpointError, dir, caseMs: 150 });
    expect(r.problems.map((p) => p.split("\n")[0]!.replace(/ = \d+ bytes/, ""))).toEqual([
      "#0 case 0: TypeError: x.split is not a function",
      "#1 case 1: allocation over 65936 bytes (input 100): new Float64Array(1048576)",
      "#2 case 2: allocation over 65936 bytes (input 100): new Array(16384)",
      "#3 case 3: the input directory changed (a write)",
      expect.stringMatching(/^#4 case 4: took \d+ ms$/),
    ]);
    expect([r.accepted, r.refused]).toEqual([5, 1]);
    expect(globalThis.Float64Array.name).toBe("Float64Array"); // the constructors are restored
  });

  test("safetensors: 3000 mutated headers, offsets and files are read back whole or refused with a CheckpointError", async () => {
    const dir = join(TMP, "st");
    mkdirSync(dir);
    const bases: Uint8Array[] = [new Uint8Array(readFileSync(join(FIX, "io/tiny.safetensors")))];
    const own = join(TMP, "own.safetensors");
    await writeSafetensors(own, [
      { name: "w", dtype: "F32", shape: [2, 3], data: new Float32Array(6).fill(1.5) },
      { name: "h", dtype: "F16", shape: [4], data: new Float32Array([1, 2, 3, 4]) },
      { name: "b", dtype: "BF16", shape: [2, 2], data: new Float32Array([1, -1, 0.5, 2]) },
      { name: "empty", dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
      { name: "ids", dtype: "I64", shape: [3], data: new Int32Array([1, -2, 3]) },
      { name: "mask", dtype: "BOOL", shape: [3], data: new Uint8Array([1, 0, 1]) },
    ], { format: "pt" });
    bases.push(new Uint8Array(readFileSync(own)));
    await (await openSafetensors(own)).readF32("h"); // builds half.ts's one F16 table (256 KiB, once per process) outside the cap
    const path = join(dir, "fuzz.safetensors");
    const rand = rng(seed(1301));
    const r = await fuzz(
      3000,
      (k) => {
        const base = bases[k % bases.length]!;
        const { header, data } = split(base);
        let bytes: Uint8Array;
        let what: string;
        const kind = below(rand, 10);
        if (kind < 4) {
          const m = mutateJson(rand, header as never, { keys: ["dtype", "shape", "data_offsets", "format"], values: ["F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "F128", "f32"] });
          bytes = assemble(m.text, data, rand() < 0.8);
          what = `header: ${m.what}`;
        } else if (kind < 7) {
          bytes = assemble(mutateOffsets(rand, header, data.length), data, true);
          what = "offsets";
        } else if (kind < 8) {
          // The data region resized under an intact header (truncated, or trailing bytes).
          const d = below(rand, 2) ? data.subarray(0, below(rand, data.length)) : Uint8Array.from([...data, ...new Uint8Array(1 + below(rand, 9))]);
          bytes = assemble(JSON.stringify(header), d, true);
          what = `data ${data.length} -> ${d.length} bytes`;
        } else if (kind < 9) {
          // A wrong header length.
          const h = new TextEncoder().encode(JSON.stringify(header));
          const len = pick(rand, [0n, 1n, BigInt(h.length - 1), BigInt(h.length + 1), BigInt(h.length + data.length), 2n ** 63n, 100_000_001n]);
          bytes = assemble(JSON.stringify(header), data, false, len);
          what = `length ${len}`;
        } else {
          const m = mutateBytes(rand, base);
          bytes = m.bytes;
          what = `bytes: ${m.what}`;
        }
        writeFileSync(path, bytes);
        return {
          what,
          inputBytes: bytes.length,
          run: async () => {
            const f = await openSafetensors(path);
            // Accepted: the tensors tile the data region exactly (the Rust crate's rule), and every one reads back.
            const ranges = [...f.entries.values()].map((e) => e.dataOffsets).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
            let pos = 0;
            for (const [b, e] of ranges) {
              if (b !== pos) throw new Error(`accepted a file whose tensors do not tile it: [${b}, ${e}] after ${pos}`);
              pos = e;
            }
            if (f.dataStart + pos !== f.fileSize) throw new Error(`accepted ${f.fileSize - f.dataStart - pos} trailing bytes`);
            for (const name of f.names()) {
              const t = await f.readTensor(name);
              if (t.data.byteLength !== f.entry(name).byteLength) throw new Error(`${name}: read ${t.data.byteLength} bytes`);
              if (["F32", "F16", "BF16", "F64"].includes(t.dtype)) await f.readF32(name);
            }
          },
        };
      },
      { errorClass: CheckpointError, dir },
    );
    expectClean("safetensors", r, 100, 2000);
  }, 60_000);

  test("sharded index: 2500 mutated model.safetensors.index.json open consistently or fail with a CheckpointError", async () => {
    const dir = join(TMP, "index");
    cpSync(join(FIX, "io/tiny-llama"), dir, { recursive: true });
    mkdirSync(join(dir, "dir.safetensors")); // a shard name that is a directory
    writeFileSync(join(dir, "other.safetensors"), readFileSync(join(FIX, "io/tiny.safetensors")));
    const indexPath = join(dir, "model.safetensors.index.json");
    const good = JSON.parse(readFileSync(indexPath, "utf8"));
    const names = Object.keys(good.weight_map);
    const rand = rng(seed(1302));
    const r = await fuzz(
      2500,
      () => {
        const m = mutateJson(rand, good, {
          keys: ["weight_map", "metadata", "total_size", ...names],
          values: [
            "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "dir.safetensors", "missing.safetensors", "other.safetensors",
            "../tiny-llama/model-00001-of-00002.safetensors", "/etc/passwd", "model.bin", ".safetensors", "a/b.safetensors", ...names,
          ],
        });
        writeFileSync(indexPath, m.text);
        return {
          what: m.what,
          inputBytes: m.text.length + 2704 + 2784, // the index and the shard headers it makes the reader open
          run: async () => {
            const ck = await openCheckpoint(dir);
            try {
              // Accepted: every name maps to a shard that holds it; read each (small) tensor.
              for (const name of ck.names()) {
                const { file, entry } = ck.get(name);
                if (file.entry(name) !== entry) throw new Error(`${name}: entry of another shard`);
                await ck.readTensor(name);
              }
            } finally {
              await ck.close();
            }
          },
        };
      },
      { errorClass: CheckpointError, dir },
    );
    writeFileSync(indexPath, JSON.stringify(good));
    expectClean("index", r, 50, 1500);
  }, 60_000);

  test("config.json: 3000 mutated configs are normalized consistently or fail with a CheckpointError naming the field", async () => {
    const dir = join(TMP, "config");
    mkdirSync(dir);
    const bases = [
      ...["gemma-2b", "llama-7b", "llama2-7b", "llama3-8b-instruct", "llama3.1-8b-instruct", "mistral-7b-v0.3"].map((n) => join(FIX, "io/configs", n, "config.json")),
      join(FIX, "io/tiny-llama/config.json"),
      join(FIX, "parity/gemma/config.json"),
    ].map((p) => JSON.parse(readFileSync(p, "utf8")));
    const keys = [...new Set(bases.flatMap((b) => Object.keys(b))), "head_dim", "sliding_window", "mlp_bias", "attention_bias", "hidden_activation", "rope_type", "factor"];
    // The tiny LLaMA's tensors: what accepted configs are checked against, as fromPretrained does.
    const ck = await openCheckpoint(join(FIX, "io/tiny-llama"));
    const params = ck.params();
    await ck.close();
    const path = join(dir, "config.json");
    const rand = rng(seed(1303));
    let fields = 0;
    const r = await fuzz(
      3000,
      (k) => {
        const m = mutateJson(rand, bases[k % bases.length], { keys, values: ["llama", "mistral", "gemma", "silu", "gelu", "gelu_pytorch_tanh", "bfloat16", "llama3", "linear", "dynamic", "yarn"] });
        writeFileSync(path, m.text);
        return {
          what: m.what,
          inputBytes: m.text.length,
          run: async () => {
            try {
              const cfg = await readHfConfig(path);
              // Accepted: the closed-form counts are the listed parameters' (the list is bounded by the config checks).
              const list = expectedParameters(cfg);
              if (list.length !== expectedTensorCount(cfg)) throw new Error(`expectedTensorCount ${expectedTensorCount(cfg)} != ${list.length}`);
              const total = list.reduce((n, p) => n + p.shape.reduce((a, d) => a * d, 1), 0);
              if (total !== parameterCount(cfg)) throw new Error(`parameterCount ${parameterCount(cfg)} != ${total}`);
              if (k % bases.length === 6) {
                // The tiny LLaMA's own config, mutated: checked against its tensors as fromPretrained does.
                checkConfigScale(cfg, params, path, "tiny-llama");
                checkParameters(cfg, params, "tiny-llama");
              }
            } catch (e) {
              if (e instanceof CheckpointError && e.field !== undefined) fields++;
              throw e;
            }
          },
        };
      },
      { errorClass: CheckpointError, dir },
    );
    expectClean("config.json", r, 300, 1000);
    expect(fields).toBeGreaterThan(r.refused / 2); // most refusals name the field
  }, 60_000);

  test("batch.json: 3000 mutated batches are rectangular and in range, or fail with a BatchError", async () => {
    const dir = join(TMP, "batch");
    mkdirSync(dir);
    const good = JSON.parse(readFileSync(join(FIX, "parity/llama/batch.json"), "utf8"));
    const withLabels = { ...good, labels: good.input_ids.map((row: number[], b: number) => row.map((x, t) => (good.attention_mask[b][t] ? x : -100))) };
    const path = join(dir, "batch.json");
    const rand = rng(seed(1304));
    const r = await fuzz(
      3000,
      (k) => {
        const m = mutateJson(rand, k % 2 ? withLabels : good, { keys: ["input_ids", "labels", "attention_mask", "attention_masks"], values: [79, 80, -100, -101] });
        writeFileSync(path, m.text);
        return {
          what: m.what,
          inputBytes: m.text.length,
          run: async () => {
            const b = await readBatch(path, 80);
            const [B, T] = [b.inputIds.length, b.inputIds[0]!.length];
            for (const f of [b.inputIds, b.labels, b.attentionMask])
              if (f && (f.length !== B || f.some((row) => row.length !== T || row.some((x) => !Number.isInteger(x))))) throw new Error("accepted a ragged batch");
            if (b.inputIds.flat().some((x) => x < 0 || x >= 80)) throw new Error("accepted an id out of range");
          },
        };
      },
      { errorClass: BatchError, dir },
    );
    expectClean("batch.json", r, 300, 1500);
  }, 60_000);
});

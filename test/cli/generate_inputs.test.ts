// `alignx generate` refuses inputs that do not fit together before the device is used, naming the path and
// the cause (issue 13, item 10): --model pointing at a file (a .safetensors, a config.json), a tokenizer with
// more ids than the model's vocabulary (a tokenizer of another model), a shard path that is a directory.
import { afterAll, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generate } from "../../src/cli/generate.ts";
import { TokenizerError } from "../../src/data/tokenizer.ts";
import { CheckpointError } from "../../src/io/index.ts";
import { getGpu } from "../helpers.ts";

const TMP = mkdtempSync(join(tmpdir(), "alignx-gen-inputs-"));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
const LLAMA = join(import.meta.dir, "../fixtures/parity/llama"); // vocab_size 80
const TOKENIZERS = join(import.meta.dir, "../fixtures/tokenizers");

/** What `generate` rejects with (failing the test when it succeeds). */
async function failure(model: string): Promise<Error> {
  const gpu = await getGpu();
  const live = gpu.memory().liveBuffers;
  const e = await generate({ model, prompt: "hello", maxNewTokens: 1, gpu, log: () => {} }).then(
    () => null,
    (x: Error) => x,
  );
  expect(e).not.toBeNull();
  expect(gpu.memory().liveBuffers).toBe(live); // nothing was uploaded
  return e!;
}

test("--model pointing at a file names the file and says a directory is needed", async () => {
  for (const file of ["model.safetensors", "config.json"]) {
    const e = await failure(join(LLAMA, file));
    expect(e).toBeInstanceOf(CheckpointError);
    expect(e.message).toStartWith(`${join(LLAMA, file)}: is a file, not a checkpoint directory`);
    expect(e.message).toEndWith(`give its directory, ${LLAMA}`);
  }
});

test("a tokenizer whose vocabulary exceeds the model's names tokenizer.json, both sizes and config.json", async () => {
  const dir = join(TMP, "big-tokenizer");
  cpSync(LLAMA, dir, { recursive: true });
  cpSync(join(TOKENIZERS, "bytelevel", "tokenizer.json"), join(dir, "tokenizer.json")); // 512 ids
  const e = await failure(dir);
  expect(e).toBeInstanceOf(TokenizerError);
  expect(e.message).toBe(
    `${join(dir, "tokenizer.json")}: has 512 token ids (0..511), more than the model's 80 (${join(dir, "config.json")}'s vocab_size): ` +
      "ids 80 and up have no embedding; is this the tokenizer of another model?",
  );
});

test("a weights file that is a directory is named as one", async () => {
  const dir = join(TMP, "weights-dir");
  cpSync(LLAMA, dir, { recursive: true });
  cpSync(join(TOKENIZERS, "bytelevel", "tokenizer.json"), join(dir, "tokenizer.json"));
  rmSync(join(dir, "model.safetensors"));
  mkdirSync(join(dir, "model.safetensors"));
  // The tokenizer check comes first; give it a model vocabulary it fits.
  const cfg = await Bun.file(join(dir, "config.json")).json();
  await Bun.write(join(dir, "config.json"), JSON.stringify({ ...cfg, vocab_size: 512 }));
  const e = await failure(dir);
  expect(e).toBeInstanceOf(CheckpointError);
  expect(e.message).toBe(`${join(dir, "model.safetensors")}: is a directory, not a file`);
});

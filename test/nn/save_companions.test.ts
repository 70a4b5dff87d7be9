// A model loaded from a HF directory and saved again keeps its tokenizer and generation files, so the copy
// loads (in HF and in `alignx generate`) like the original.
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LlamaModel } from "../../src/nn/llama.ts";
import { getGpu } from "../helpers.ts";

const tmp = mkdtempSync(join(tmpdir(), "alignx-save-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("save keeps companion files", () => {
  test("tokenizer files travel from the source directory; a model built from a config writes none", async () => {
    const gpu = await getGpu();
    const src = join(tmp, "src");
    cpSync(join(import.meta.dir, "../fixtures/parity/llama"), src, { recursive: true });
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) cpSync(join(import.meta.dir, "../fixtures/tokenizers/bytelevel", f), join(src, f));
    const m = await LlamaModel.fromPretrained(gpu, src);
    try {
      const out = join(tmp, "out");
      await m.save(out);
      for (const f of ["tokenizer.json", "tokenizer_config.json"]) expect(readFileSync(join(out, f))).toEqual(readFileSync(join(src, f)));
      expect(existsSync(join(out, "generation_config.json"))).toBe(false);
      // Saving over the source directory itself keeps them too (read before the atomic swap).
      await m.save(src);
      expect(readFileSync(join(src, "tokenizer.json"))).toEqual(readFileSync(join(import.meta.dir, "../fixtures/tokenizers/bytelevel/tokenizer.json")));
      const fresh = LlamaModel.fromConfig(gpu, m.config, { seed: 1 });
      await fresh.save(join(tmp, "fresh"));
      expect(existsSync(join(tmp, "fresh", "tokenizer.json"))).toBe(false);
      fresh.release();
    } finally {
      m.release();
    }
  }, 60_000);
});

// Alpaca prompt template and SFT label masking (src/data/prompt.ts).
import { describe, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers.ts";
import {
  ALPACA_PROMPT_INPUT,
  ALPACA_PROMPT_NO_INPUT,
  IGNORE_INDEX,
  alpacaPrompt,
  buildAlpacaSft,
  buildSftTokens,
  collateSft,
  loadAlpacaJson,
  specialPrefix,
} from "../../src/data/prompt.ts";
import { loadTokenizer } from "../../src/data/tokenizer.ts";
import { FIXTURES } from "./helpers.ts";

// Stanford Alpaca's PROMPT_DICT (train.py), verbatim.
const STANFORD_INPUT =
  "Below is an instruction that describes a task, paired with an input that provides further context. " +
  "Write a response that appropriately completes the request.\n\n" +
  "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
const STANFORD_NO_INPUT =
  "Below is an instruction that describes a task. " +
  "Write a response that appropriately completes the request.\n\n" +
  "### Instruction:\n{instruction}\n\n### Response:\n";

const ALPACA_JSON = join(import.meta.dir, "..", "..", "..", "shared", "data", "alpaca", "alpaca_5000.json");

describe("Alpaca template", () => {
  test("exactly Stanford Alpaca's strings", () => {
    expect(ALPACA_PROMPT_INPUT).toBe(STANFORD_INPUT);
    expect(ALPACA_PROMPT_NO_INPUT).toBe(STANFORD_NO_INPUT);
    expect(alpacaPrompt({ instruction: "Add.", input: "2 + 2" })).toBe(STANFORD_INPUT.replace("{instruction}", "Add.").replace("{input}", "2 + 2"));
    expect(alpacaPrompt({ instruction: "Say hi." })).toBe(STANFORD_NO_INPUT.replace("{instruction}", "Say hi."));
  });

  test("an empty or missing input selects the no-input variant; placeholders in the text stay", () => {
    expect(alpacaPrompt({ instruction: "x", input: "" })).toBe(alpacaPrompt({ instruction: "x" }));
    expect(alpacaPrompt({ instruction: "x", input: null })).toBe(alpacaPrompt({ instruction: "x" }));
    expect(alpacaPrompt({ instruction: "x", input: " " })).toContain("### Input:\n \n\n");
    expect(alpacaPrompt({ instruction: "use {input} and {instruction}" })).toContain("### Instruction:\nuse {input} and {instruction}\n\n");
  });
});

describe("SFT tokens and labels", () => {
  test("byte-level: prompt masked with -100, response + EOS supervised", async () => {
    const tok = await loadTokenizer(join(FIXTURES, "bytelevel"));
    const ex = { instruction: "Translate to German.", input: "All human beings are born free.", output: "Alle Menschen sind frei geboren." };
    const prompt = alpacaPrompt(ex);
    const r = buildAlpacaSft(tok, ex, { maxLength: 4096 });
    const promptIds = tok.encode(prompt, { addSpecialTokens: false });
    expect(r.inputIds[0]).toBe(tok.bosId!);
    expect(r.promptLength).toBe(1 + promptIds.length);
    expect(r.inputIds.slice(1, r.promptLength)).toEqual(promptIds);
    expect(r.inputIds.at(-1)).toBe(tok.eosId!);
    expect(r.labels.length).toBe(r.inputIds.length);
    expect(r.labels.slice(0, r.promptLength).every((l) => l === IGNORE_INDEX)).toBe(true);
    expect(r.labels.slice(r.promptLength)).toEqual(r.inputIds.slice(r.promptLength));
    expect(r.supervised).toBe(r.inputIds.length - r.promptLength);
    expect(r.truncated).toBe(false);
    expect(tok.decode(r.inputIds)).toBe(`<s>${prompt}${ex.output}</s>`);
    expect(tok.decode(r.labels.filter((l) => l !== IGNORE_INDEX))).toBe(`${ex.output}</s>`);
  });

  test("SentencePiece (LLaMA-2): no spurious space before the response; BOS from the template", async () => {
    const tok = await loadTokenizer(join(FIXTURES, "llama2"));
    expect(specialPrefix(tok)).toEqual([1]);
    const r = buildAlpacaSft(tok, { instruction: "Say hello.", output: "Hello world" }, { maxLength: 512 });
    expect(r.inputIds[0]).toBe(1);
    expect(r.inputIds.at(-1)).toBe(2);
    const response = r.labels.filter((l) => l !== IGNORE_INDEX);
    expect(tok.decode(response.slice(0, -1))).toBe("Hello world");
    expect(tok.decode(r.inputIds, { skipSpecialTokens: true })).toBe(alpacaPrompt({ instruction: "Say hello." }) + "Hello world");
  });

  test("a template that appends EOS itself (T5-style Unigram) gets exactly one EOS", async () => {
    const tok = await loadTokenizer(join(FIXTURES, "unigram"));
    expect(specialPrefix(tok)).toEqual([]);
    const r = buildSftTokens(tok, "Question:\n", "yes", { maxLength: 100 });
    expect(r.inputIds.filter((id) => id === tok.eosId).length).toBe(1);
    expect(r.inputIds.at(-1)).toBe(tok.eosId!);
    const noEos = buildSftTokens(tok, "Question:\n", "yes", { maxLength: 100, addEos: false });
    expect(noEos.inputIds).toEqual(r.inputIds.slice(0, -1));
  });

  test("truncation keeps the first maxLength tokens", async () => {
    const tok = await loadTokenizer(join(FIXTURES, "bytelevel"));
    const ex = { instruction: "Repeat.", output: "word ".repeat(50) };
    const full = buildAlpacaSft(tok, ex, { maxLength: 10_000 });
    const cut = buildAlpacaSft(tok, ex, { maxLength: full.promptLength + 5 });
    expect(cut.truncated).toBe(true);
    expect(cut.inputIds).toEqual(full.inputIds.slice(0, full.promptLength + 5));
    expect(cut.labels).toEqual(full.labels.slice(0, full.promptLength + 5));
    expect(cut.supervised).toBe(5);
    expect(cut.inputIds.at(-1)).not.toBe(tok.eosId);
    const none = buildAlpacaSft(tok, ex, { maxLength: 8 });
    expect(none.inputIds.length).toBe(8);
    expect(none.supervised).toBe(0);
    expect(none.labels.every((l) => l === IGNORE_INDEX)).toBe(true);
    expect(() => buildAlpacaSft(tok, ex, { maxLength: 0 })).toThrow(/maxLength/);
    expect(() => buildSftTokens({ encode: () => [], eosId: null }, "a", "b", { maxLength: 5 })).toThrow(/no EOS/);
  });

  test("collate: right padding with padId, labels -100, attention mask", async () => {
    const tok = await loadTokenizer(join(FIXTURES, "bytelevel"));
    const a = buildSftTokens(tok, "Q:\n", "a", { maxLength: 64 });
    const b = buildSftTokens(tok, "Question number two:\n", "a longer answer", { maxLength: 64 });
    const batch = collateSft([a, b], { padId: tok.padId!, padToMultipleOf: 8 });
    const L = batch.length;
    expect(L % 8).toBe(0);
    expect(L).toBeGreaterThanOrEqual(b.inputIds.length);
    expect(batch.batch).toBe(2);
    expect([...batch.inputIds.subarray(0, a.inputIds.length)]).toEqual(a.inputIds);
    expect([...batch.inputIds.subarray(a.inputIds.length, L)].every((x) => x === tok.padId)).toBe(true);
    expect([...batch.labels.subarray(L, L + b.labels.length)]).toEqual(b.labels);
    expect([...batch.labels.subarray(a.labels.length, L)].every((x) => x === IGNORE_INDEX)).toBe(true);
    expect([...batch.attentionMask.subarray(0, L)].reduce((s, x) => s + x, 0)).toBe(a.inputIds.length);
    expect([...batch.attentionMask.subarray(L)].reduce((s, x) => s + x, 0)).toBe(b.inputIds.length);
  });
});

describe("Alpaca data", () => {
  test("loadAlpacaJson: errors name the file and the example", async () => {
    const dir = tempDir("alignx-alpaca-");
    const f = join(dir, "a.json");
    writeFileSync(f, JSON.stringify([{ instruction: "i", output: "o" }, { instruction: "i", input: "x", output: "o" }]));
    expect(await loadAlpacaJson(f)).toEqual([{ instruction: "i", input: "", output: "o" }, { instruction: "i", input: "x", output: "o" }]);
    writeFileSync(f, JSON.stringify([{ instruction: "i", output: "o" }, { instruction: 3, output: "o" }]));
    await expect(loadAlpacaJson(f)).rejects.toThrow(`${f}: example 1: "instruction" must be a string`);
    writeFileSync(f, "{");
    await expect(loadAlpacaJson(f)).rejects.toThrow(`${f}: is not valid JSON`);
    await expect(loadAlpacaJson(join(dir, "missing.json"))).rejects.toThrow("missing.json: cannot be read");
  });

  const have = existsSync(ALPACA_JSON);
  if (!have) console.warn(`skipping the Alpaca data test: ${ALPACA_JSON} not found (../shared/data is not in this clone)`);
  test.skipIf(!have)("alpaca_5000.json: the prompt's tokens are a prefix of prompt + response for every example", async () => {
    const data = await loadAlpacaJson(ALPACA_JSON);
    expect(data.length).toBe(5000);
    for (const name of ["bytelevel", "llama2"]) {
      const tok = await loadTokenizer(join(FIXTURES, name));
      let notPrefix = 0, supervised = 0;
      for (const ex of data) {
        const r = buildAlpacaSft(tok, ex, { maxLength: 1 << 20 });
        const p = tok.encode(alpacaPrompt(ex), { addSpecialTokens: false });
        if (r.promptLength !== 1 + p.length) notPrefix++;
        supervised += r.supervised;
      }
      expect({ name, notPrefix }).toEqual({ name, notPrefix: 0 });
      expect(supervised).toBeGreaterThan(5000);
    }
  });
});

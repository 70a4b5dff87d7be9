// Seeded fuzz test of tokenizer.json loading (issue 13, "Fuzzing"; the harness is test/fuzz_helpers.ts): each
// mutation of the byte-level BPE, SentencePiece-style BPE (byte fallback) and Unigram fixtures must load (and
// then encode text to ids in its vocabulary and decode them back) or fail with a TokenizerError: never another
// exception (as `x.split is not a function` was), an allocation over 4x the file, a write, or a slow case.
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadTokenizer, TokenizerError } from "../../src/data/tokenizer.ts";
import { fuzz, mutateJson, rng, seed } from "../fuzz_helpers.ts";
import { FIXTURES } from "./helpers.ts";

const TMP = mkdtempSync(join(tmpdir(), "alignx-tok-fuzz-"));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

const TEXTS = ["Everyone has the right to life, liberty and security of person.", "Hello wörld 123 <s> </s>  ä\u00a0日本語 🙂", ""];

test("fuzz tokenizer.json: 2500 mutated tokenizers load and round-trip or fail with a TokenizerError", async () => {
  const dir = join(TMP, "tok");
  mkdirSync(dir);
  const bases = ["bytelevel", "llama2", "unigram"].map((n) => JSON.parse(readFileSync(join(FIXTURES, n, "tokenizer.json"), "utf8")));
  const keys = [
    ...new Set(bases.flatMap((b) => [...Object.keys(b), ...Object.keys(b.model)])),
    "merges", "vocab", "unk_token", "unk_id", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback", "pattern", "Regex", "String", "content", "special", "id",
  ];
  const values = [
    "BPE", "Unigram", "WordPiece", "WordLevel", "ByteLevel", "Metaspace", "Sequence", "Split", "Replace", "NFC", "NFKC", "Lowercase", "Strip", "TemplateProcessing",
    "ByteFallback", "Fuse", "<unk>", "<s>", "</s>", "▁", "Ġ", "##", "isolated", "removed", { Regex: "(" }, { Regex: "\\s+" }, { String: " " }, ["a", "b"], ["Ġ", "t"], "Ġ t",
    { id: 3, content: "<x>", special: true }, { type: "ByteLevel", add_prefix_space: true }, { type: "Split", pattern: { Regex: "a*a*a*b" }, behavior: "Isolated" },
  ];
  const path = join(dir, "tokenizer.json");
  const rand = rng(seed(1305));
  const r = await fuzz(
    2500,
    (k) => {
      const m = mutateJson(rand, bases[k % bases.length], { keys, values });
      writeFileSync(path, m.text);
      return {
        what: m.what,
        inputBytes: m.text.length,
        run: async () => {
          const tok = await loadTokenizer(path);
          // Accepted: the ids are in the vocabulary and decode without an error.
          for (const text of TEXTS) {
            const ids = tok.encode(text);
            for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= tok.vocabSize) throw new Error(`encode(${JSON.stringify(text)}) gave id ${id}, outside [0, ${tok.vocabSize})`);
            tok.decode(ids);
            tok.decode(ids, { skipSpecialTokens: true });
          }
        },
      };
    },
    { errorClass: TokenizerError, dir, caseMs: 1000 },
  );
  console.log(
    `  fuzz tokenizer.json: ${r.cases} cases, ${r.accepted} accepted, ${r.refused} refused in ${r.seconds.toFixed(1)} s ` +
      `(slowest ${r.slowest.ms.toFixed(1)} ms, largest allocation ${r.largestRatio.toFixed(2)}x the input)`,
  );
  expect(r.problems).toEqual([]);
  expect(r.accepted).toBeGreaterThan(300);
  expect(r.refused).toBeGreaterThan(500);
}, 60_000);

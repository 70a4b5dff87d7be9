// Byte-level BPE trainer and encoder (src/data/bpe_train.ts): the committed fixture is what training gives,
// the library reads what the trainer writes and agrees with the trainer's encoder id for id (udhr fixture,
// Rust goldens, and every FLORES line when ../shared/data exists), merges are learned inside scripts written
// without spaces, the incremental counts equal a full recount, and training is fast.
//
// UPDATE_TOKENIZER_FIXTURES=1 rewrites test/fixtures/tokenizers/bytelevel/ (then rerun
// tools/goldens/tokenizer.py for goldens.json).
import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers.ts";
import {
  BYTE_ALPHABET,
  BYTE_TO_CHAR,
  ByteLevelBpe,
  PRETOKENIZE_PATTERN,
  saveTrainedBpe,
  tokenizerJsonText,
  toByteLevel,
  trainBpe,
  type TrainedBpe,
} from "../../src/data/bpe_train.ts";
import { HfTokenizer, loadTokenizer } from "../../src/data/tokenizer.ts";
import { FIXTURES, GOLDENS, UDHR_LINES, floresLines, floresSample, rustEncode, tokenizersPython } from "./helpers.ts";

const FIXTURE_DIR = join(FIXTURES, "bytelevel");
const FIXTURE_OPTIONS = { vocabSize: 512 } as const;

const pieces = (text: string): string[] => [...text.matchAll(new RegExp(PRETOKENIZE_PATTERN, "gu"))].map((m) => m[0]);

/** Decoded text of a vocabulary entry (byte-level characters → UTF-8), "" if it is not whole characters. */
function tokenText(tok: string): string {
  const inv = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));
  const bytes = Uint8Array.from([...tok].map((c) => inv.get(c) ?? 0));
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return "";
  }
}

/** The textbook algorithm: recount every pair before every merge. Same tie rule. */
function naiveMerges(texts: string[], vocabSize: number, specials: string[], minFrequency: number): [string, string][] {
  const re = new RegExp(PRETOKENIZE_PATTERN, "gu");
  const counts = new Map<string, number>();
  for (const t of texts) for (const m of t.matchAll(re)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  const vocab = [...specials, ...BYTE_ALPHABET];
  const id = new Map(vocab.map((t, i) => [t, i]));
  const words = [...counts].map(([w, c]) => ({ syms: [...toByteLevel(w)].map((ch) => id.get(ch)!), c }));
  const merges: [string, string][] = [];
  while (vocab.length < vocabSize) {
    const pc = new Map<string, number>();
    for (const w of words) for (let i = 0; i + 1 < w.syms.length; i++) {
      const k = `${w.syms[i]},${w.syms[i + 1]}`;
      pc.set(k, (pc.get(k) ?? 0) + w.c);
    }
    let best: [number, number] | null = null, bestC = 0;
    for (const [k, c] of pc) {
      const [a, b] = k.split(",").map(Number) as [number, number];
      if (c > bestC || (c === bestC && best !== null && (a < best[0] || (a === best[0] && b < best[1])))) {
        best = [a, b];
        bestC = c;
      }
    }
    if (best === null || bestC < minFrequency) break;
    const [a, b] = best;
    const s = vocab[a] + vocab[b];
    let cId = id.get(s);
    if (cId === undefined) {
      cId = vocab.length;
      vocab.push(s);
      id.set(s, cId);
    }
    merges.push([vocab[a], vocab[b]]);
    for (const w of words) {
      const out: number[] = [];
      for (let i = 0; i < w.syms.length; ) {
        if (i + 1 < w.syms.length && w.syms[i] === a && w.syms[i + 1] === b) {
          out.push(cId);
          i += 2;
        } else out.push(w.syms[i++]);
      }
      w.syms = out;
    }
  }
  return merges;
}

describe("byte-level alphabet and pre-tokenizer", () => {
  test("GPT-2's bytes_to_unicode and vocabulary order", () => {
    expect(new Set(BYTE_TO_CHAR).size).toBe(256);
    expect(BYTE_TO_CHAR[0x20]).toBe("Ġ");
    expect(BYTE_TO_CHAR[0x0a]).toBe("Ċ");
    expect(BYTE_TO_CHAR[0x61]).toBe("a");
    expect(BYTE_TO_CHAR[0xe9]).toBe("é");
    expect(BYTE_ALPHABET.slice(0, 3)).toEqual(["!", '"', "#"]);
    expect(BYTE_ALPHABET[BYTE_ALPHABET.length - 1]).toBe(String.fromCharCode(256 + 67));
    expect(toByteLevel(" hé")).toBe("ĠhÃ©");
  });

  test("letters keep their combining marks; no-space scripts stay whole runs; digits by three", () => {
    expect(pieces("มนุษย์ทั้งหลาย เกิดมา")).toEqual(["มนุษย์ทั้งหลาย", " เกิดมา"]);
    expect(pieces("সমস্ত মানুষ")).toEqual(["সমস্ত", " মানুষ"]);
    expect(pieces("नमस्ते दुनिया")).toEqual(["नमस्ते", " दुनिया"]);
    // One leading non-letter joins the run after it (LLaMA-3's rule), punctuation included.
    expect(pieces("すべての人間は、生まれながらにして")).toEqual(["すべての人間は", "、生まれながらにして"]);
    expect(pieces("人人生而自由，在尊严。")).toEqual(["人人生而自由", "，在尊严", "。"]);
    expect(pieces("1234567 x")).toEqual(["123", "456", "7", " x"]);
    expect(pieces("It's they'RE")).toEqual(["It", "'s", " they", "'RE"]);
    expect(pieces("a  b\n\n c")).toEqual(["a", " ", " b", "\n\n", " c"]);
    // Where JavaScript's own \s and (?i:) would differ from Oniguruma: ſ is not s, U+FEFF is not a space.
    expect(pieces("it'ſx it'sx \ufeffc")).toEqual(["it", "'ſx", " it", "'s", "x", " \ufeff", "c"]);
    expect(pieces("a\u0085\u0085 b")).toEqual(["a", "\u0085\u0085", " b"]);
  });
});

describe("trainBpe", () => {
  const trained = trainBpe(UDHR_LINES, FIXTURE_OPTIONS);

  test("the committed fixture is what training on udhr.txt gives, byte for byte", async () => {
    const text = tokenizerJsonText(trained.tokenizerJson);
    if (process.env.UPDATE_TOKENIZER_FIXTURES === "1") await saveTrainedBpe(FIXTURE_DIR, trained);
    expect(text).toBe(readFileSync(join(FIXTURE_DIR, "tokenizer.json"), "utf8"));
    expect(tokenizerJsonText(trained.tokenizerConfig)).toBe(readFileSync(join(FIXTURE_DIR, "tokenizer_config.json"), "utf8"));
    expect(trained.stats.stoppedBy).toBe("vocabSize");
    expect(trained.vocab.length).toBe(512);
  });

  test("standard tokenizer.json layout", () => {
    const j = trained.tokenizerJson;
    expect(j.model.type).toBe("BPE");
    expect(j.added_tokens.map((t) => [t.id, t.content, t.special])).toEqual([[0, "<s>", true], [1, "</s>", true], [2, "<pad>", true]]);
    expect(j.model.vocab["<s>"]).toBe(0);
    expect(j.model.vocab["!"]).toBe(3);
    expect(Object.keys(j.model.vocab).length).toBe(512);
    expect(j.model.merges.length).toBe(512 - 3 - 256);
    expect(j.pre_tokenizer).toEqual({
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: PRETOKENIZE_PATTERN }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    });
    expect((j.decoder as { type: string }).type).toBe("ByteLevel");
    // Every merge's result is in the vocabulary and every learned token comes from a merge.
    for (const [a, b] of j.model.merges) expect(j.model.vocab[a + b]).toBeDefined();
  });

  test("deterministic, and independent of the order of the texts", () => {
    const again = trainBpe(UDHR_LINES, FIXTURE_OPTIONS);
    expect(tokenizerJsonText(again.tokenizerJson)).toBe(tokenizerJsonText(trained.tokenizerJson));
    const reversed = trainBpe([...UDHR_LINES].reverse(), FIXTURE_OPTIONS);
    expect(reversed.merges).toEqual(trained.merges);
  });

  test("incremental pair counts give the same merges as a full recount per merge", () => {
    for (const [vocabSize, minFrequency] of [[420, 2], [600, 1]] as const) {
      const fast = trainBpe(UDHR_LINES, { vocabSize, minFrequency });
      expect(fast.merges).toEqual(naiveMerges(UDHR_LINES, vocabSize, ["<s>", "</s>", "<pad>"], minFrequency));
    }
    // Overlapping and repeated pairs: "aaaa" → "aa aa", "abab..." chains.
    const tricky = ["aaaa aaa aa a", "abababab abab", "aaaaaaa", "baaab", "ababa"];
    const fast = trainBpe(tricky, { vocabSize: 270, minFrequency: 1, specialTokens: [] });
    expect(fast.merges).toEqual(naiveMerges(tricky, 270, [], 1));
  });

  test("merges are learned inside runs of Thai, Japanese, Chinese and Bengali", () => {
    const texts = [...trained.vocab.slice(259)].map(tokenText);
    const has = (re: RegExp) => texts.some((t) => [...t].filter((c) => re.test(c)).length >= 2);
    expect(has(/\p{Script=Thai}/u)).toBe(true);
    expect(has(/\p{Script=Hiragana}|\p{Script=Han}/u)).toBe(true);
    expect(has(/\p{Script=Bengali}/u)).toBe(true);
  });

  test("options: minFrequency stops early, special tokens are never merged across, bad options throw", () => {
    const small = trainBpe(UDHR_LINES, { vocabSize: 5000, minFrequency: 3 });
    expect(small.stats.stoppedBy).toBe("minFrequency");
    expect(small.vocab.length).toBeLessThan(5000);
    const withSpecial = trainBpe(["<s>abc<s>abc<s>", "abc<s>"], { vocabSize: 300, minFrequency: 1 });
    for (const [a, b] of withSpecial.merges) expect(a + b).not.toContain("<s>");
    expect(() => trainBpe(["x"], { vocabSize: 100 })).toThrow(/vocabSize must be an integer in \[259/);
    expect(() => trainBpe(["x"], { vocabSize: 300, bosToken: "<bos>" })).toThrow(/bosToken "<bos>" is not one of specialTokens/);
    expect(() => trainBpe(["x"], { vocabSize: 300, specialTokens: ["<a>", "<a>"] })).toThrow(/duplicates/);
    const noBos = trainBpe(UDHR_LINES.slice(0, 3), { vocabSize: 300, specialTokens: ["<|endoftext|>"], eosToken: "<|endoftext|>" });
    expect(noBos.tokenizerJson.post_processor).toBeNull();
    expect(noBos.tokenizerConfig.eos_token).toBe("<|endoftext|>");
    expect(noBos.tokenizerConfig.bos_token).toBeNull();
  });
});

describe("ByteLevelBpe (own encoder) against the library", () => {
  const json = JSON.parse(readFileSync(join(FIXTURE_DIR, "tokenizer.json"), "utf8"));
  const mine = new ByteLevelBpe(json);

  test("Rust goldens for the fixture: ids with and without special tokens, decodes", async () => {
    const lib = await loadTokenizer(FIXTURE_DIR);
    const g = GOLDENS.tokenizers.bytelevel;
    GOLDENS.texts.forEach((text, i) => {
      const c = g.cases[i];
      expect({ text, ids: mine.encode(text) }).toEqual({ text, ids: c.ids });
      expect({ text, ids: mine.encode(text, { addSpecialTokens: false }) }).toEqual({ text, ids: c.idsNoSpecial });
      expect(mine.decode(c.ids)).toBe(c.decoded);
      expect(mine.decode(c.ids, { skipSpecialTokens: true })).toBe(c.decodedSkip);
      expect(mine.decode(c.idsNoSpecial.slice(0, c.idsNoSpecial.length >> 1))).toBe(c.decodedHalf);
      expect(lib.encode(text)).toEqual(c.ids);
    });
  });

  test("special tokens in text, empty text, round trips on udhr.txt", async () => {
    const lib = await loadTokenizer(join(FIXTURE_DIR, "tokenizer.json"));
    expect(mine.encode("")).toEqual([0]);
    expect(mine.encode("", { addSpecialTokens: false })).toEqual([]);
    expect(mine.encode("<s>a</s>", { addSpecialTokens: false })).toEqual([0, mine.tokenToId("a")!, 1]);
    expect(mine.decode([])).toBe("");
    expect(() => mine.decode([99999])).toThrow(RangeError);
    for (const line of UDHR_LINES) {
      const ids = mine.encode(line);
      expect(lib.encode(line)).toEqual(ids);
      expect(mine.decode(ids, { skipSpecialTokens: true })).toBe(line);
      expect(lib.decode(ids, { skipSpecialTokens: true })).toBe(line);
    }
  });

  test("reads GPT-2-style files (ByteLevel with use_regex) and merges in the old 'a b' format", () => {
    const gpt2 = structuredClone(json);
    gpt2.pre_tokenizer = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
    gpt2.model.merges = gpt2.model.merges.map((m: [string, string]) => m.join(" "));
    gpt2.post_processor = { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true };
    const a = new ByteLevelBpe(gpt2);
    const b = HfTokenizer.fromJson(gpt2);
    for (const text of [...UDHR_LINES, ...GOLDENS.texts]) expect(a.encode(text)).toEqual(b.encode(text));
  });
});

describe("FLORES-101 (../shared/data)", () => {
  const flores = floresLines();
  const all = flores ? [...flores.values()].flat() : [];

  // Speed is reported, not asserted (timing targets belong in bench/, not in tests).
  test.skipIf(!flores)("vocab 2000 on ~1 MB of ten languages: full vocabulary, time reported", () => {
    const sample = floresSample(flores!, 1_000_000);
    const t0 = performance.now();
    const t = trainBpe(sample, { vocabSize: 2000 });
    const s = (performance.now() - t0) / 1000;
    console.log(`trainBpe: ${sample.length} lines, ${t.stats.uniquePieces} distinct pieces, ${t.stats.merges} merges in ${s.toFixed(2)} s`);
    expect(t.vocab.length).toBe(2000);
  });

  let trained: TrainedBpe | null = null;
  const getTrained = (): TrainedBpe => (trained ??= trainBpe(floresSample(flores!, 1_000_000), { vocabSize: 4000 }));

  test.skipIf(!flores)("library and own encoder give identical ids on every line; both round-trip", () => {
    const t = getTrained();
    const mine = new ByteLevelBpe(t.tokenizerJson);
    const lib = HfTokenizer.fromJson(JSON.parse(tokenizerJsonText(t.tokenizerJson)), { tokenizerConfig: t.tokenizerConfig });
    let tokens = 0, bytes = 0;
    const problems: string[] = [];
    for (const line of all) {
      const ids = mine.encode(line);
      const libIds = lib.encode(line);
      if (libIds.length !== ids.length || libIds.some((x, i) => x !== ids[i])) problems.push(`ids differ: ${line}`);
      if (mine.decode(ids, { skipSpecialTokens: true }) !== line) problems.push(`own decode: ${line}`);
      if (lib.decode(ids, { skipSpecialTokens: true }) !== line) problems.push(`library decode: ${line}`);
      tokens += ids.length - 1;
      bytes += Buffer.byteLength(line);
    }
    expect(problems.slice(0, 5)).toEqual([]);
    console.log(`FLORES: ${all.length} lines, ${(bytes / tokens).toFixed(2)} bytes/token with vocab 4000`);
    // Thai and Bengali compress well only when merges happen inside words (marks included).
    for (const lang of ["tha", "ben", "jpn", "cmn_Hans"]) {
      const lines = flores!.get(lang)!;
      const b = lines.reduce((s, l) => s + Buffer.byteLength(l), 0);
      const n = lines.reduce((s, l) => s + mine.encode(l, { addSpecialTokens: false }).length, 0);
      expect(b / n).toBeGreaterThan(2);
    }
  });

  test.skipIf(!flores || !tokenizersPython())("the Rust tokenizers library gives the same ids on every line", () => {
    const t = getTrained();
    const dir = tempDir("alignx-bpe-");
    const path = join(dir, "tokenizer.json");
    writeFileSync(path, tokenizerJsonText(t.tokenizerJson));
    const rust = rustEncode(tokenizersPython()!, path, all);
    const mine = new ByteLevelBpe(t.tokenizerJson);
    let bad = 0;
    all.forEach((line, i) => {
      if (JSON.stringify(rust[i]) !== JSON.stringify(mine.encode(line))) bad++;
    });
    expect(bad).toBe(0);
  });
});

// Examples as the packer builds them (src/data/examples.ts): the AlignX span index against the reference's own
// prefix-counting rule, truncation and the drop rule, instructions, and pretraining sequences.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { buildInstruction, buildTranslation, documentIds, MIN_TARGET_TOKENS, SequencePacker, translationInstruction } from "../../src/data/examples.ts";
import { alpacaPrompt, specialPrefix } from "../../src/data/prompt.ts";
import { loadTokenizer, type HfTokenizer } from "../../src/data/tokenizer.ts";
import { FIXTURES, floresLines, UDHR_LINES } from "./helpers.ts";

const TOKENIZERS = ["llama2", "bytelevel", "gemma", "unigram"] as const;
const toks = new Map<string, HfTokenizer>();
for (const t of TOKENIZERS) toks.set(t, await loadTokenizer(join(FIXTURES, t)));

/**
 * The reference's spans (ALIGNX.md), by counting the tokens of prompt prefixes with special tokens:
 * [input start, input end), [target start, length - 1). Also whether every prefix's tokens are a prefix of
 * the full text's tokens (no merge crosses a boundary), which is where ours must equal it.
 */
function referenceSpans(tok: HfTokenizer, instruction: string, s: string, t: string) {
  const prompt = alpacaPrompt({ instruction, input: s });
  const at = prompt.indexOf("### Input:\n") + "### Input:\n".length;
  // tokenize(x) with special tokens, for a tokenizer that only puts BOS before a text (the LLaMA family; a
  // T5-style tokenizer's own trailing EOS is replaced by the one EOS every example ends with).
  const enc = (x: string) => [...specialPrefix(tok), ...tok.encode(x, { addSpecialTokens: false })];
  const full = [...enc(prompt + t), tok.eosId!];
  const prefixes = [prompt.slice(0, at), prompt.slice(0, at + s.length), prompt].map(enc);
  const clean = prefixes.every((p) => p.every((id, i) => full[i] === id));
  const [a, b, c] = prefixes.map((p) => p.length) as [number, number, number];
  const spans = new Uint8Array(full.length);
  spans.fill(1, a, b);
  spans.fill(2, c, full.length - 1);
  return { spans, clean };
}

function checkAgainstReference(tok: HfTokenizer, pairs: [string, string][], langs: [string, string]) {
  let clean = 0, crossing = 0;
  for (const [s, t] of pairs) {
    const built = buildTranslation(tok, { srcLang: langs[0], tgtLang: langs[1], src: s, tgt: t }, 1 << 20);
    if (!built.ok) throw new Error(`dropped: ${s} / ${t}`);
    const ref = referenceSpans(tok, translationInstruction(langs[0], langs[1]), s, t);
    expect(built.ids.length).toBe(ref.spans.length);
    if (ref.clean) {
      clean++;
      expect([...built.spans!]).toEqual([...ref.spans]);
      // Where no merge crosses a boundary, the spans decode to exactly the sentences (unless a character is
      // outside a small fixture vocabulary: <unk>).
      const seg = (v: number) => tok.decode(built.ids.filter((_, i) => built.spans![i] === v));
      if (tok.unkId === null || !built.ids.includes(tok.unkId)) {
        expect(seg(1).trim()).toBe(s.trim());
        expect(seg(2).trim()).toBe(t.trim());
      }
    } else {
      crossing++;
      // A crossing token is counted inside the span: ours covers at least the reference's.
      for (let i = 0; i < ref.spans.length; i++) if (ref.spans[i] === 1) expect(built.spans![i]).toBe(1);
    }
  }
  return { clean, crossing };
}

describe("translation examples", () => {
  test("the instruction names both languages as the reference does", () => {
    expect(translationInstruction("deu", "eng")).toBe("Translate the following sentences from German to English.");
    expect(translationInstruction("eng", "zho")).toBe("Translate the following sentences from English to Chinese.");
  });

  for (const name of TOKENIZERS) {
    test(`spans equal the reference's prefix counts where no merge crosses a boundary (${name}, UDHR lines)`, () => {
      const tok = toks.get(name)!;
      const pairs: [string, string][] = [];
      for (let i = 0; i + 1 < Math.min(UDHR_LINES.length, 80); i += 2) pairs.push([UDHR_LINES[i]!, UDHR_LINES[i + 1]!]);
      const { clean } = checkAgainstReference(tok, pairs, ["deu", "eng"]);
      expect(clean).toBeGreaterThan(pairs.length / 2);
    });
  }

  const flores = floresLines();
  test.skipIf(flores === null)("spans equal the reference's on FLORES dev, ten languages into and out of English", () => {
    const tok = toks.get("llama2")!;
    let clean = 0, crossing = 0;
    for (const [l, lines] of flores!) {
      if (l === "eng") continue;
      const eng = flores!.get("eng")!;
      const r1 = checkAgainstReference(tok, lines.slice(0, 12).map((s, i) => [s, eng[i]!]), [l === "cmn_Hans" ? "zho" : l, "eng"]);
      const r2 = checkAgainstReference(tok, lines.slice(12, 24).map((t, i) => [eng[12 + i]!, t]), ["eng", l === "cmn_Hans" ? "zho" : l]);
      clean += r1.clean + r2.clean;
      crossing += r1.crossing + r2.crossing;
    }
    expect(clean).toBeGreaterThan(150);
    console.log(`FLORES spans: ${clean} equal the reference's, ${crossing} with a merge across a boundary`);
  });

  test("truncation: the target runs to the cut; fewer than 3 target tokens left drops the example", () => {
    const tok = toks.get("bytelevel")!;
    const ex = { srcLang: "deu", tgtLang: "eng", src: "Alle Menschen sind frei.", tgt: "All human beings are born free and equal." };
    const full = buildTranslation(tok, ex, 4096);
    if (!full.ok) throw new Error("dropped");
    const n = full.ids.length;
    expect(full.ids[n - 1]).toBe(tok.eosId!);
    expect(full.spans![n - 1]).toBe(0); // EOS excluded
    const tgtStart = full.spans!.indexOf(2);
    expect(full.promptLen).toBe(tgtStart);
    // Cut inside the target: the target runs to the last kept token.
    const cut = tgtStart + 4;
    const t = buildTranslation(tok, ex, cut);
    if (!t.ok) throw new Error("dropped");
    expect(t.ids).toEqual(full.ids.slice(0, cut));
    expect([...t.spans!]).toEqual([...full.spans!.slice(0, cut - 4), 2, 2, 2, 2]);
    // Exactly MIN_TARGET_TOKENS target tokens survive; one fewer drops.
    expect(buildTranslation(tok, ex, tgtStart + MIN_TARGET_TOKENS).ok).toBe(true);
    expect(buildTranslation(tok, ex, tgtStart + MIN_TARGET_TOKENS - 1)).toEqual({ ok: false, reason: "target_cut" });
    expect(buildTranslation(tok, ex, 10)).toEqual({ ok: false, reason: "target_cut" });
    expect(buildTranslation(tok, { ...ex, tgt: "  " }, 512)).toEqual({ ok: false, reason: "empty" });
  });
});

describe("instructions and documents", () => {
  test("a general instruction is the Alpaca SFT example, without spans", () => {
    const tok = toks.get("llama2")!;
    const b = buildInstruction(tok, { instruction: "Give three tips for staying healthy.", input: "", output: "Eat well, sleep, move." }, 512);
    if (!b.ok) throw new Error("dropped");
    expect(b.spans).toBeNull();
    expect(b.task).toBe("general");
    const prompt = alpacaPrompt({ instruction: "Give three tips for staying healthy." });
    expect(tok.decode(b.ids.slice(0, b.promptLen), { skipSpecialTokens: true })).toBe(prompt.trimEnd() + (prompt.endsWith("\n") ? "\n" : ""));
    expect(b.ids.at(-1)).toBe(tok.eosId!);
    expect(buildInstruction(tok, { instruction: "x".repeat(200), input: "", output: "y" }, 16)).toEqual({ ok: false, reason: "no_supervision" });
  });

  test("documents: [BOS] text [EOS]; sequences of seqLen ids across documents, the last one shorter", () => {
    const tok = toks.get("llama2")!;
    const d = documentIds(tok, "All human beings are born free.");
    expect(d[0]).toBe(tok.bosId!);
    expect(d.at(-1)).toBe(tok.eosId!);
    const out: { ids: number[]; lang: number }[] = [];
    const p = new SequencePacker(5, (ids, lang) => out.push({ ids: [...ids], lang }));
    p.push([1, 2, 3], 0);
    p.push([4, 5, 6, 7, 8, 9, 10, 11], 1);
    p.push([12], 2);
    p.flush();
    expect(out).toEqual([
      { ids: [1, 2, 3, 4, 5], lang: 0 },
      { ids: [6, 7, 8, 9, 10], lang: 1 },
      { ids: [11, 12], lang: 1 },
    ]);
  });
});

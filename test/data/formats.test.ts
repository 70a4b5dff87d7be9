// Corpus readers (src/data/formats/) and the language table (src/data/languages.ts): every format on small files,
// every bad-input case, glob expansion and detection, then the real data in ../shared/data when it is there.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers.ts";
import { CorpusError, type CorpusItem, type CorpusSource, type DocumentItem, type InstructionItem, type ParallelRow, type ReadOptions } from "../../src/data/corpus.ts";
import {
  SQUAD_INSTRUCTION,
  alignUdhr,
  decodeEntities,
  detectFormat,
  firstInvalidUtf8,
  jsonErrorOffset,
  langFromFileName,
  langPairFromFileName,
  openInputs,
  parseUdhrHtml,
  pickEncodings,
  splitLines,
  squadInput,
  type OpenOptions,
  type UdhrDoc,
} from "../../src/data/formats/index.ts";
import { udhrLangs } from "../../src/data/formats/udhr.ts";
import { ALIGNX_LANGS, LANGUAGES, languageName, normalizeLang, tryNormalizeLang } from "../../src/data/languages.ts";

const SHARED = join(import.meta.dir, "..", "..", "..", "shared", "data");

/** A fresh temp dir and a writer of files into it. */
function scratch() {
  const dir = tempDir("alignx-formats-");
  const w = (name: string, content: string | Uint8Array) => {
    const p = join(dir, name);
    mkdirSync(join(p, ".."), { recursive: true });
    writeFileSync(p, content);
    return p;
  };
  return { dir, w };
}

async function collect(src: CorpusSource): Promise<CorpusItem[]> {
  const out: CorpusItem[] = [];
  for await (const it of src.read()) out.push(it);
  return out;
}

/** Everything the inputs yield, one list per source. */
async function readAll(inputs: string[], opts: OpenOptions = {}): Promise<CorpusItem[][]> {
  const sources = await openInputs(inputs, opts);
  return Promise.all(sources.map(collect));
}

/** The CorpusError a promise (or function) fails with; fails the test when it does not. */
async function failure(p: Promise<unknown> | (() => unknown)): Promise<CorpusError> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    if (e instanceof CorpusError) return e;
    throw e;
  }
  throw new Error("expected a CorpusError");
}

/** ReadOptions with --skip-bad-records that records the reported messages. */
function skipping(extra: ReadOptions = {}): { opts: ReadOptions; bad: string[] } {
  const bad: string[] = [];
  return { opts: { ...extra, skipBadRecords: true, onBadRecord: (m) => bad.push(m) }, bad };
}

const par = (texts: Record<string, string>, source: string): ParallelRow => ({ kind: "parallel", texts, source });
const ins = (instruction: string, input: string, output: string, lang: string | null, source: string): InstructionItem => ({ kind: "instruction", instruction, input, output, lang, source });
const docu = (text: string, lang: string | null, source: string): DocumentItem => ({ kind: "document", text, lang, source });

// Every file name of FLORES-101 dev (../shared/data/flores101/dev), so the table is checked without the data.
const FLORES101 =
  "afr amh ara asm ast azj bel ben bos bul cat ceb ces ckb cmn_Hans cmn_Hant cym dan deu ell eng est fas fin fra ful gle glg guj hau heb hin hrv hun hye ibo ind isl ita jav jpn kam kan kat kaz kea khm kir kor lao lav lin lit ltz lug luo mal mar mkd mlt mon mri msa mya nld nob npi nso nya oci orm ory pan pol por pus ron rus slk slv sna snd som spa srp srp_Cyrl swe swh tam tel tgk tgl tha tur ukr umb urd uzb vie wol xho yor zul".split(" ");

describe("languages", () => {
  test("aliases map to ISO 639-3 canonical codes", () => {
    const cases: [string, string][] = [
      ["de", "deu"], ["zh", "zho"], ["sw", "swh"], ["ar", "ara"], ["DEU", "deu"], ["eng", "eng"],
      ["cmn_Hans", "zho"], ["cmn_Hant", "zho_Hant"], ["swa", "swh"], ["zho", "zho"], ["azj", "azj"],
      ["zh-Hans", "zho"], ["zh-CN", "zho"], ["zh-TW", "zho_Hant"], ["zh-Hant-HK", "zho_Hant"], ["pt-BR", "por"], ["en-US", "eng"],
      ["deu_1996", "deu"], ["deu_1901", "deu"], ["cmn_hans", "zho"], ["cmn_hant", "zho_Hant"], ["arb", "ara"], ["srp_Cyrl", "srp"],
      [" fr ", "fra"], ["zho_Hant", "zho_Hant"],
    ];
    expect(cases.map(([c]) => [c, normalizeLang(c)])).toEqual(cases);
  });

  test("every FLORES-101 language is in the table, with an English name", () => {
    const canon = FLORES101.map((c) => normalizeLang(c));
    expect(new Set(canon).size).toBe(102); // srp_Cyrl is srp
    expect(canon.map((c) => languageName(c)).every((n) => /^[A-Z]/.test(n))).toBe(true);
    if (existsSync(join(SHARED, "flores101", "dev"))) {
      const onDisk = new Bun.Glob("*.dev").scanSync(join(SHARED, "flores101", "dev"));
      expect([...onDisk].map((f) => f.slice(0, -4)).sort()).toEqual([...FLORES101].sort());
    }
  });

  test("names as translation instructions use them; ALIGNX_LANGS", () => {
    expect(["de", "zho", "sw", "bn", "zho_Hant", "ja", "es"].map(languageName)).toEqual([
      "German", "Chinese", "Swahili", "Bengali", "Traditional Chinese", "Japanese", "Spanish",
    ]);
    expect([...ALIGNX_LANGS]).toEqual(["ben", "deu", "eng", "fra", "jpn", "rus", "spa", "swh", "tha", "zho"]);
    expect(ALIGNX_LANGS.every((l) => normalizeLang(l) === l)).toBe(true);
    expect(LANGUAGES.length).toBeGreaterThanOrEqual(120);
  });

  test("unknown codes: null, or a CorpusError naming where and suggesting close codes", async () => {
    expect(tryNormalizeLang("xx")).toBeNull();
    expect(tryNormalizeLang("deu-eng")).toBeNull(); // a pair, not a BCP-47 tag
    expect(tryNormalizeLang("de_beijing")).toBeNull();
    const e = await failure(() => normalizeLang("germn", "data/x.tsv:3"));
    expect(e.message).toBe("data/x.tsv:3: unknown language code 'germn' (did you mean deu (German)?)");
    expect(e.file).toBe("data/x.tsv");
    expect(e.exitCode).toBe(1);
    expect((await failure(() => normalizeLang("german", "--lang", 2))).message).toBe("--lang: unknown language code 'german' (did you mean deu (German)?)");
    expect((await failure(() => normalizeLang("zzz", "--lang", 2))).exitCode).toBe(2);
    expect(() => languageName("qqq")).toThrow("unknown language code 'qqq'");
  });

  test("languages from file names: exact codes at the end of the stem", () => {
    const one = ["xquad.de.json", "bactrian-x-de.json", "alpaca_de.json", "cmn_Hans.txt", "news.zh-TW.txt", "alpaca_5000.json", "deu-eng.txt", "my_data.txt", "de-beijing.txt"];
    expect(one.map(langFromFileName)).toEqual(["deu", "deu", "deu", "zho", "zho_Hant", null, null, null, null]);
    const two = ["deu-eng.tsv", "/a/x.de_en.tsv", "zho_Hant-eng.tsv", "data.tsv", "deu-xx.tsv"];
    expect(two.map(langPairFromFileName)).toEqual([["deu", "eng"], ["deu", "eng"], ["zho_Hant", "eng"], null, null]);
  });
});

describe("shared helpers", () => {
  test("splitLines: LF and CRLF, no empty last line", () => {
    expect(splitLines("a\r\nb\n")).toEqual(["a", "b"]);
    expect(splitLines("a\n\nb")).toEqual(["a", "", "b"]);
    expect(splitLines("")).toEqual([]);
    expect(splitLines("\n")).toEqual([""]);
  });

  test("firstInvalidUtf8: WHATWG rules", () => {
    const b = (...x: number[]) => new Uint8Array(x);
    expect(firstInvalidUtf8(new TextEncoder().encode("aé€😀"))).toBe(-1);
    expect(firstInvalidUtf8(b(0x61, 0xc0, 0x80))).toBe(1); // overlong
    expect(firstInvalidUtf8(b(0x61, 0x62, 0xed, 0xa0, 0x80))).toBe(2); // surrogate
    expect(firstInvalidUtf8(b(0xf4, 0x90, 0x80, 0x80))).toBe(0); // past U+10FFFF
    expect(firstInvalidUtf8(b(0x61, 0xe2, 0x82))).toBe(1); // truncated
    expect(firstInvalidUtf8(b(0x80))).toBe(0); // lone continuation
  });

  test("jsonErrorOffset: where JSON.parse failed", () => {
    expect(jsonErrorOffset('{"a": [1, 2.5e3, true, null, "x\\n"]}')).toBe(-1);
    expect(jsonErrorOffset('{"a": 1,\n "b": tru}')).toBe(15);
    expect(jsonErrorOffset("[1,2")).toBe(4);
    expect(jsonErrorOffset('{"a":1}x')).toBe(7);
    expect(jsonErrorOffset('{"a":01}')).toBe(6);
    expect(jsonErrorOffset("[1,]")).toBe(3);
    expect(jsonErrorOffset('[1, "abc')).toBe(4); // an unterminated string: where it starts
  });
});

describe("formats", () => {
  test("flores: one row per line index across the directory's files; a link file counts once", async () => {
    const { dir, w } = scratch();
    w("deu.dev", "Hallo\nWelt\nEnde\n");
    w("eng.dev", "Hello\nWorld\nEnd\n");
    w("cmn_Hans.dev", "你好\n世界\n结束\n");
    w("srp.dev", "Здраво\nСвет\nКрај\n");
    w("srp_Cyrl.dev", "srp.dev"); // FLORES-101's symbolic link, as a copy without links keeps it
    const [src] = await openInputs([dir]);
    expect(src!.format).toBe("flores");
    expect(src!.langs).toEqual(["zho", "deu", "eng", "srp"]);
    const rows = await collect(src!);
    expect(rows.length).toBe(3);
    expect(rows[1]).toEqual(par({ zho: "世界", deu: "Welt", eng: "World", srp: "Свет" }, `${dir}/{lang}.dev:2`));
  });

  test("flores: different line counts, two files of one language, an unknown language, an empty line", async () => {
    const { dir, w } = scratch();
    w("deu.dev", "a\nb\nc\n");
    w("eng.dev", "a\nb\n");
    const e = await failure(readAll([dir]));
    expect(e.message).toBe(`${dir}: line counts differ: ${dir}/deu.dev has 3 lines, ${dir}/eng.dev has 2`);
    expect(e.exitCode).toBe(1);

    w("eng.dev", "A\n\nC\n");
    w("de.dev", "x\ny\nz\n");
    expect((await failure(openInputs([dir]))).message).toBe(`${dir}: de.dev and deu.dev are both deu: remove one`);

    const s2 = scratch();
    s2.w("deu.dev", "a\n");
    s2.w("xx.dev", "b\n");
    const u = await failure(openInputs([s2.dir]));
    expect(u.message).toStartWith(`${s2.dir}/xx.dev: unknown language code 'xx'`);

    const s3 = scratch();
    s3.w("deu.dev", "a\nb\n");
    s3.w("eng.dev", "A\n \n");
    s3.w("fra.dev", "aa\nbb\n");
    expect(await readAll([s3.dir])).toEqual([[par({ deu: "a", eng: "A", fra: "aa" }, `${s3.dir}/{lang}.dev:1`), par({ deu: "b", fra: "bb" }, `${s3.dir}/{lang}.dev:2`)]]);
    const { opts, bad } = skipping();
    await readAll([s3.dir], opts);
    expect(bad).toEqual([`${s3.dir}/{lang}.dev:2: empty text in eng: those languages dropped`]);
  });

  test("moses: files of one stem pair up however they are named", async () => {
    const { dir, w } = scratch();
    const de = w("train.de", "Hallo Welt\r\nGuten Tag\n\nEnde\n");
    const en = w("train.en", "Hello world\r\nGood day\nNothing\nEnd\n");
    const expected = [
      par({ deu: "Hallo Welt", eng: "Hello world" }, `${dir}/train.{de,en}:1`),
      par({ deu: "Guten Tag", eng: "Good day" }, `${dir}/train.{de,en}:2`),
      par({ deu: "Ende", eng: "End" }, `${dir}/train.{de,en}:4`),
    ];
    expect(await readAll([de])).toEqual([expected]);
    expect(await readAll([de, en])).toEqual([expected]);
    expect(await readAll([join(dir, "train.*")])).toEqual([expected]);
    expect(await readAll([en, de, `${dir}/./train.de`])).toEqual([expected.map((r) => ({ ...r, texts: { eng: r.texts.eng!, deu: r.texts.deu! }, source: r.source.replace("{de,en}", "{en,de}") }))]);
    const [src] = await openInputs([de]);
    expect(src!.langs).toEqual(["deu", "eng"]);
    const { opts, bad } = skipping();
    await readAll([de], opts);
    expect(bad).toEqual([`${dir}/train.{de,en}:3: empty text in deu: row dropped`]);
  });

  test("moses: mismatched line counts, a lone file, several partners, three-way", async () => {
    const { dir, w } = scratch();
    w("a.deu", "1\n2\n3\n");
    w("a.eng", "1\n2\n");
    const e = await failure(readAll([join(dir, "a.deu")], skipping().opts)); // a whole-file problem: skipping does not help
    expect(e.message).toBe(`${dir}/a.{deu,eng}: line counts differ: ${dir}/a.deu has 3 lines, ${dir}/a.eng has 2`);
    const lone = w("lone.fra", "x\n");
    const l = await failure(openInputs([lone]));
    expect(l.message).toBe(`${lone}: a Moses file with no partner (expected another lone.LANG file beside it)`);
    expect(l.exitCode).toBe(2);
    w("m.de", "a\n");
    w("m.en", "b\n");
    w("m.fr", "c\n");
    expect((await failure(openInputs([join(dir, "m.de")]))).message).toBe(`${dir}/m.de: several partner files (m.en, m.fr): name the files to pair`);
    expect(await readAll([join(dir, "m.*")])).toEqual([[par({ deu: "a", eng: "b", fra: "c" }, `${dir}/m.{de,en,fr}:1`)]]);
  });

  test("tsv: two columns with the pair from the name, or four columns", async () => {
    const { dir, w } = scratch();
    const two = w("x.deu-eng.tsv", "Hallo\tHello\n\nJa\tYes\n");
    expect(await readAll([two])).toEqual([[par({ deu: "Hallo", eng: "Hello" }, `${two}:1`), par({ deu: "Ja", eng: "Yes" }, `${two}:3`)]]);
    const four = w("pairs.tsv", "src_lang\ttgt_lang\tsrc\ttgt\nfr\ten\tOui\tYes\nzh-TW\tde\t是\tJa\n");
    expect(await readAll([four])).toEqual([[par({ fra: "Oui", eng: "Yes" }, `${four}:2`), par({ zho_Hant: "是", deu: "Ja" }, `${four}:3`)]]);
    expect((await openInputs([two]))[0]!.langs).toEqual(["deu", "eng"]);
  });

  test("tsv: a wrong column count is a bad record naming file:line; an unknown language always throws", async () => {
    const { dir, w } = scratch();
    const two = w("deu-eng.tsv", "a\tb\nc\td\te\nf\tg\n");
    const e = await failure(readAll([two]));
    expect(e.message).toBe(`${two}:2: 3 columns, expected 2: src<TAB>tgt for deu-eng, from the file name`);
    expect(e.file).toBe(two);
    const { opts, bad } = skipping();
    expect((await readAll([two], opts))[0]!.length).toBe(2);
    expect(bad).toEqual([e.message]);
    const four = w("p.tsv", "de\ten\ta\tb\nde\tb\n");
    expect((await failure(readAll([four]))).message).toBe(`${four}:2: 2 columns, expected 4: src_lang<TAB>tgt_lang<TAB>src<TAB>tgt (the file name names no language pair)`);
    const unknown = w("q.tsv", "de\tqq\ta\tb\n");
    expect((await failure(readAll([unknown], skipping().opts))).message).toStartWith(`${unknown}:1: unknown language code 'qq'`);
  });

  test("jsonl: translation, src/tgt, instruction and text records", async () => {
    const { dir, w } = scratch();
    const f = w(
      "mix.de.jsonl",
      [
        JSON.stringify({ translation: { de: "Hallo", en: "Hello" } }),
        JSON.stringify({ src_lang: "fra", tgt_lang: "eng", src: "Oui", tgt: "Yes" }),
        "",
        JSON.stringify({ instruction: "Sag hallo.", output: "Hallo" }),
        JSON.stringify({ instruction: "Say hi.", input: "x", output: "Hi", lang: "en" }),
        JSON.stringify({ text: "Ein Text." }),
        JSON.stringify({ text: "Un texte.", language: "fr" }),
      ].join("\n"),
    );
    expect(await readAll([f])).toEqual([
      [
        par({ deu: "Hallo", eng: "Hello" }, `${f}:1`),
        par({ fra: "Oui", eng: "Yes" }, `${f}:2`),
        ins("Sag hallo.", "", "Hallo", "deu", `${f}:4`),
        ins("Say hi.", "x", "Hi", "eng", `${f}:5`),
        docu("Ein Text.", "deu", `${f}:6`),
        docu("Un texte.", "fra", `${f}:7`),
      ],
    ]);
  });

  test("jsonl: malformed JSON and unknown shapes are bad records naming file:line", async () => {
    const { dir, w } = scratch();
    const f = w("bad.jsonl", ['{"text": "ok"}', '{"text": "no end}', '{"foo": 1}', '{"translation": {"de": "nur"}}', "[1]", '{"instruction": "i"}', '{"text": "fine"}'].join("\n"));
    const e = await failure(readAll([f]));
    expect(e.message).toBe(`${f}:2:10: invalid JSON: Unterminated string`);
    const { opts, bad } = skipping();
    const items = (await readAll([f], opts))[0]!;
    expect(items.map((i) => i.source)).toEqual([`${f}:1`, `${f}:7`]);
    expect(bad.length).toBe(5);
    expect(bad.slice(1)).toEqual([
      `${f}:3: expected "translation", "src"/"tgt", "instruction" or "text"`,
      `${f}:4: a pair needs two different languages, got deu`,
      `${f}:5: not a JSON object`,
      `${f}:6: "output" must be a string`,
    ]);
    const g = w("l.jsonl", '{"text": "x", "lang": "qq"}\n');
    const u = await failure(readAll([g], skipping().opts)); // unknown languages throw even when skipping
    expect(u.message).toStartWith(`${g}:1: unknown language code 'qq'`);
    expect(u.file).toBe(g);
  });

  test("alpaca: an array of instructions; language from the record, --lang or the file name", async () => {
    const { dir, w } = scratch();
    const f = w("alpaca_de.json", JSON.stringify([{ instruction: "A", input: "B", output: "C" }, { instruction: "D", input: null, output: "E", language: "fr" }]));
    const expected = [
      ins("A", "B", "C", "deu", `${f}#0`),
      ins("D", "", "E", "fra", `${f}#1`),
    ];
    expect(await readAll([f])).toEqual([expected]);
    expect((await readAll([f], { lang: "es" }))[0]!.map((i) => (i as { lang: string }).lang)).toEqual(["spa", "fra"]);
    const g = w("plain.json", JSON.stringify([{ instruction: "A", output: "C" }]));
    expect((await readAll([g]))[0]![0]).toEqual(ins("A", "", "C", null, `${g}#0`));
  });

  test("alpaca: a missing output is a bad record; not an array or not JSON is an error with line and column", async () => {
    const { dir, w } = scratch();
    const f = w("a.json", JSON.stringify([{ instruction: "A", output: "C" }, { instruction: "B" }, { instruction: "D", output: "E" }]));
    expect((await failure(readAll([f]))).message).toBe(`${f}#1: "output" must be a string`);
    const { opts, bad } = skipping();
    expect((await readAll([f], opts))[0]!.map((i) => i.source)).toEqual([`${f}#0`, `${f}#2`]);
    expect(bad).toEqual([`${f}#1: "output" must be a string`]);
    const obj = w("o.json", '{"x": 1}');
    expect((await failure(readAll([obj], { format: "alpaca" }))).message).toBe(`${obj}: expected a JSON array of {instruction, input, output}`);
    const broken = w("b.json", '[{"instruction": "A",\n  "output": "C",}]');
    const e = await failure(readAll([broken], { format: "alpaca", ...skipping().opts }));
    expect(e.message).toBe(`${broken}:2:17: invalid JSON: Property name must be a string literal`);
  });

  test("squad: one instruction per question", async () => {
    const { dir, w } = scratch();
    const data = {
      version: "1.1",
      data: [
        {
          title: "T",
          paragraphs: [
            {
              context: " Berlin ist die Hauptstadt. ",
              qas: [
                { id: "q1", question: "Was ist Berlin?", answers: [{ text: "die Hauptstadt", answer_start: 10 }, { text: "Hauptstadt" }] },
                { id: "q2", question: "Unbeantwortbar?", answers: [] },
              ],
            },
          ],
        },
      ],
    };
    const f = w("xquad.de.json", JSON.stringify(data));
    expect(await detectFormat(f)).toBe("squad");
    const [src] = await openInputs([f]);
    expect(src!.langs).toEqual(["deu"]);
    expect(await collect(src!)).toEqual([
      ins(SQUAD_INSTRUCTION, "Context: Berlin ist die Hauptstadt.\nQuestion: Was ist Berlin?", "die Hauptstadt", "deu", `${f}#q1`),
    ]);
    expect(squadInput("C", "Q")).toBe("Context: C\nQuestion: Q");
    const { opts, bad } = skipping();
    await readAll([f], opts);
    expect(bad).toEqual([`${f}#q2: no answer: question dropped`]);
    const g = w("s.json", JSON.stringify({ data: [{ paragraphs: [{ context: "c", qas: [{ answers: [{ text: "a" }] }] }] }] }));
    expect((await failure(readAll([g]))).message).toBe(`${g}#data[0].paragraphs[0].qas[0]: "question" must be a string`);
  });

  test("text: a document per line or per paragraph", async () => {
    const { dir, w } = scratch();
    const f = w("news.fr.txt", "Un.\n  Deux.  \n\n\nTrois\nquatre.\n");
    expect(await readAll([f])).toEqual([
      [
        docu("Un.", "fra", `${f}:1`),
        docu("Deux.", "fra", `${f}:2`),
        docu("Trois", "fra", `${f}:5`),
        docu("quatre.", "fra", `${f}:6`),
      ],
    ]);
    expect(await readAll([f], { textUnit: "paragraph", lang: "de" })).toEqual([
      [
        docu("Un.\nDeux.", "deu", `${f}:1`),
        docu("Trois\nquatre.", "deu", `${f}:5`),
      ],
    ]);
    const g = w("notes.txt", "x\n");
    expect(await readAll([g])).toEqual([[docu("x", null, `${g}:1`)]]);
  });
});

describe("udhr", () => {
  test("the HTML extractor: <header> and <article> blocks, <p> inside <li>, entities", () => {
    const html = `<html><head><title>T</title></head><body><h1>Title</h1>
      <header><h2>Preamble</h2><p>a &amp; b &#x3C;c&#62;</p>
      <p>line
         two</p></header>
      <article data-number="1"><h2>Article 1</h2><ol><li><p>first</p></li><li>bare item</li><li></li></ol></article>
      <article data-number="2"><h2>Article 2</h2><p>only</p></article></body></html>`;
    expect([...parseUdhrHtml(html)]).toEqual([["preamble", ["a & b <c>", "line two"]], ["1", ["first", "bare item"]], ["2", ["only"]]]);
    expect(decodeEntities("&unknown; &#128512; &nbsp;")).toBe("&unknown; 😀 \u00a0");
  });

  test("alignment: per paragraph where counts agree, else the modal count's paragraphs plus the whole section", () => {
    const doc = (lang: string, sections: Record<string, string[]>): UdhrDoc => ({ lang, sections: new Map(Object.entries(sections)) });
    const docs = [
      doc("aaa", { preamble: ["a1", "a2"], "1": ["A"], "2": ["x1", "x2"], "3": ["p"], "4": ["only"], "5": ["a", "b"] }),
      doc("bbb", { preamble: ["b1", "b2"], "1": ["B"], "2": ["y1", "y2"], "3": ["q1", "q2"], "5": ["c", "d"] }),
      doc("ccc", { preamble: ["c1", "c2", "c3"], "1": ["C"], "2": ["z"], "5": ["e", "f", "g"] }),
      doc("ddd", { "5": ["h", "i", "j"] }),
    ];
    expect(alignUdhr(docs)).toEqual([
      { texts: [["aaa", "a1"], ["bbb", "b1"]], source: "udhr#preamble.p1" },
      { texts: [["aaa", "a2"], ["bbb", "b2"]], source: "udhr#preamble.p2" },
      { texts: [["aaa", "a1\na2"], ["bbb", "b1\nb2"], ["ccc", "c1\nc2\nc3"]], source: "udhr#preamble" },
      { texts: [["aaa", "A"], ["bbb", "B"], ["ccc", "C"]], source: "udhr#article-1.p1" },
      { texts: [["aaa", "x1"], ["bbb", "y1"]], source: "udhr#article-2.p1" },
      { texts: [["aaa", "x2"], ["bbb", "y2"]], source: "udhr#article-2.p2" },
      { texts: [["aaa", "x1\nx2"], ["bbb", "y1\ny2"], ["ccc", "z"]], source: "udhr#article-2" },
      // article 3: counts 1 and 2 tie, the smaller wins, and one language alone is not a row: the whole section only
      { texts: [["aaa", "p"], ["bbb", "q1\nq2"]], source: "udhr#article-3" },
      // article 4: one language only, no row
      // article 5: counts 2, 2, 3, 3 tie, the smaller wins
      { texts: [["aaa", "a"], ["bbb", "c"]], source: "udhr#article-5.p1" },
      { texts: [["aaa", "b"], ["bbb", "d"]], source: "udhr#article-5.p2" },
      { texts: [["aaa", "a\nb"], ["bbb", "c\nd"], ["ccc", "e\nf\ng"], ["ddd", "h\ni\nj"]], source: "udhr#article-5" },
    ]);
  });

  test("encodings: one per language, by preference, stage, plainness, length, recency", () => {
    const e = (code: string, iso6393: string, stage = 4) => ({ code, iso6393, name: code, stage });
    const index = [e("deu_1901", "deu"), e("deu_1996", "deu"), e("042", "spa"), e("spa", "spa"), e("cmn_hans_beijing", "cmn"), e("cmn_hans", "cmn"), e("cmn_hant", "cmn"), e("ron_1993", "ron"), e("ron_2006", "ron"), e("eng", "eng", 3), e("eng_x", "eng", 4), e("hau_3", "hau"), e("hau_NG", "hau"), e("qqq", "qqq")];
    expect(pickEncodings(index, ["deu", "spa", "zho", "zho_Hant", "ron", "eng", "hau"]).map((p) => p.code)).toEqual(["deu_1996", "spa", "cmn_hans", "cmn_hant", "ron_2006", "eng_x", "hau_NG"]);
    expect(pickEncodings(index, null).map((p) => p.lang)).toEqual(["deu", "eng", "hau", "ron", "spa", "zho", "zho_Hant"]);
    expect(() => pickEncodings(index, ["fra"])).toThrow("udhr: the udhr package has no declaration in fra");
    expect(udhrLangs("udhr:de, en,zh-Hant")).toEqual(["deu", "eng", "zho_Hant"]);
    expect(udhrLangs("udhr")).toBeNull();
    expect(() => udhrLangs("udhr:de")).toThrow("name two or more languages");
    expect(() => udhrLangs("udhr:de,deu")).toThrow("deu is named twice");
  });

  let haveUdhr = true;
  try {
    import.meta.resolve("udhr");
  } catch {
    haveUdhr = false;
    console.warn("skipping the UDHR package tests: the 'udhr' package is not installed");
  }
  test.skipIf(!haveUdhr)("the package: rows for the ten AlignX languages, the preamble and all 30 articles", async () => {
    const [src] = await openInputs([`udhr:${ALIGNX_LANGS.join(",")}`]);
    expect(src!.format).toBe("udhr");
    expect(src!.langs).toEqual([...ALIGNX_LANGS]);
    const rows = (await collect(src!)) as { texts: Record<string, string>; source: string }[];
    // The preamble has 8-13 paragraphs across the ten (jpn, tha, zho: 8), every article the same count in all.
    expect(rows.length).toBe(59);
    const sections = new Set(rows.map((r) => r.source.replace(/\.p\d+$/, "")));
    expect([...sections]).toEqual(["udhr#preamble", ...Array.from({ length: 30 }, (_, i) => `udhr#article-${i + 1}`)]);
    expect(rows.filter((r) => r.source.startsWith("udhr#preamble.p")).map((r) => Object.keys(r.texts).sort())).toEqual(Array(8).fill(["jpn", "tha", "zho"]));
    const whole = rows.find((r) => r.source === "udhr#preamble")!;
    expect(Object.keys(whole.texts).sort()).toEqual([...ALIGNX_LANGS]);
    expect(rows.filter((r) => r.source.startsWith("udhr#article")).every((r) => Object.keys(r.texts).length === 10)).toBe(true);
    const art1 = rows.find((r) => r.source === "udhr#article-1.p1")!;
    expect(art1.texts.eng).toBe("All human beings are born free and equal in dignity and rights. They are endowed with reason and conscience and should act towards one another in a spirit of brotherhood.");
    expect(art1.texts.deu).toStartWith("Alle Menschen sind frei und gleich an Würde und Rechten geboren.");
    const all = (await openInputs(["udhr"]))[0]!;
    expect(ALIGNX_LANGS.every((l) => all.langs!.includes(l))).toBe(true);
    expect(all.langs!.length).toBeGreaterThan(100);
  });
});

describe("bad input", () => {
  test("non-UTF-8 text: the file, line and byte offset, in every text format, even when skipping", async () => {
    const { dir, w } = scratch();
    const bytes = new Uint8Array([...new TextEncoder().encode("ok\nab"), 0xff, ...new TextEncoder().encode("cd\n")]);
    const f = w("x.txt", bytes);
    const e = await failure(readAll([f], skipping().opts));
    expect(e.message).toBe(`${f}:2: not valid UTF-8 (byte 0xFF at offset 5)`);
    expect(e.file).toBe(f);
    expect(e.exitCode).toBe(1);
    for (const name of ["y.jsonl", "deu-eng.tsv"]) {
      const g = w(name, bytes);
      expect((await failure(readAll([g]))).message).toBe(`${g}:2: not valid UTF-8 (byte 0xFF at offset 5)`);
    }
    const j = w("a.json", new Uint8Array([0x5b, 0x0a, 0x22, 0xc3, 0x28, 0x22, 0x5d])); // ["\xC3(" ]: a cut 2-byte sequence
    expect((await failure(readAll([j], { format: "alpaca" }))).message).toBe(`${j}:2: not valid UTF-8 (byte 0xC3 at offset 3)`);
    w("m.de", "a\n");
    w("m.en", bytes);
    expect((await failure(readAll([join(dir, "m.de")]))).message).toBe(`${dir}/m.en:2: not valid UTF-8 (byte 0xFF at offset 5)`);
  });

  test("globs: expanded and sorted; a plain existing path is not a glob; no match is a usage error", async () => {
    const { dir, w } = scratch();
    w("b.txt", "B\n");
    w("a.txt", "A\n");
    const odd = w("[x].txt", "X\n");
    expect((await openInputs([join(dir, "*.txt")])).map((s) => s.path)).toEqual([join(dir, "[x].txt"), join(dir, "a.txt"), join(dir, "b.txt")]);
    expect((await readAll([odd]))[0]!.map((d) => (d as { text: string }).text)).toEqual(["X"]);
    expect((await openInputs([join(dir, "a.txt"), join(dir, "*.txt")])).length).toBe(3); // named twice, read once
    const e = await failure(openInputs([join(dir, "*.nothing")]));
    expect(e.message).toBe(`${join(dir, "*.nothing")}: no file matches this pattern`);
    expect(e.exitCode).toBe(2);
    const m = await failure(openInputs([join(dir, "missing.txt")]));
    expect(m.message).toBe(`${join(dir, "missing.txt")}: no such file or directory`);
    expect(m.exitCode).toBe(2);
  });

  test("unreadable paths: a dangling link, a directory where a file is expected", async () => {
    const { dir, w } = scratch();
    const link = join(dir, "gone.tsv");
    symlinkSync(join(dir, "nowhere.tsv"), link);
    const e = await failure(readAll([link]));
    expect(e.message).toBe(`${link}: cannot be read: no such file (or a symbolic link to a missing file)`);
    expect(e.exitCode).toBe(1);
    const d = join(dir, "d.tsv");
    mkdirSync(d);
    expect((await failure(readAll([d], { format: "tsv" }))).message).toBe(`${d}: cannot be read: is a directory, not a file`);
    const notFlores = await failure(openInputs([d]));
    expect(notFlores.message).toBe(`${d}: a directory without *.dev or *.devtest files (FLORES layout); name its files, or use a glob`);
    expect(notFlores.exitCode).toBe(2);
    w("f.json", "[]");
    expect((await failure(readAll([join(dir, "f.json", "x")], { format: "alpaca" }))).exitCode).toBe(2); // ENOTDIR: no such path
  });

  test("usage errors: unknown --format, unknown --lang, an undetectable input, no inputs", async () => {
    const { dir, w } = scratch();
    const f = w("a.txt", "x\n");
    const fmt = await failure(openInputs([f], { format: "csv" as never }));
    expect(fmt.message).toBe("unknown --format 'csv' (one of: flores, moses, tsv, jsonl, alpaca, squad, text, udhr)");
    expect(fmt.exitCode).toBe(2);
    const lang = await failure(openInputs([f], { lang: "klingon" }));
    expect(lang.message).toStartWith("--lang: unknown language code 'klingon'");
    expect(lang.exitCode).toBe(2);
    const odd = w("data.xyz", "x\n");
    const u = await failure(openInputs([odd]));
    expect(u.message).toBe(`${odd}: cannot tell the format from the name; pass --format flores|moses|tsv|jsonl|alpaca|squad|text|udhr`);
    expect(u.exitCode).toBe(2);
    const j = w("other.json", '{"a": 1}');
    expect((await failure(openInputs([j]))).exitCode).toBe(2);
    expect((await failure(openInputs([]))).exitCode).toBe(2);
    const dev = w("x.dev", "a\n");
    expect((await failure(openInputs([dev]))).message).toBe(`${dev}: a FLORES file: name its directory to read the FLORES set`);
  });

  test("detection", async () => {
    const { dir, w } = scratch();
    w("fl/eng.devtest", "a\n");
    const files: [string, string][] = [
      [w("a.tsv", ""), "tsv"],
      [w("a.jsonl", ""), "jsonl"],
      [w("a.json", ' \n[{"instruction": "x", "output": "y"}]'), "alpaca"],
      [w("b.json", '{"version": "1", "data": [{"title": "t", "paragraphs": []}]}'), "squad"],
      [w("a.txt", ""), "text"],
      [w("c.deu", ""), "moses"],
      [join(dir, "fl"), "flores"],
      ["udhr", "udhr"],
      ["udhr:de,en", "udhr"],
    ];
    expect(await Promise.all(files.map(async ([p]) => [p, await detectFormat(p)]))).toEqual(files);
  });
});

describe("the data in ../shared/data", () => {
  const FLORES = join(SHARED, "flores101", "dev");
  const TATOEBA = join(SHARED, "tatoeba", "deu-eng.deu");
  const XQUAD = join(SHARED, "xquad", "xquad.de.json");
  const ALPACA = join(SHARED, "alpaca", "alpaca_5000.json");
  for (const p of [FLORES, TATOEBA, XQUAD, ALPACA]) if (!existsSync(p)) console.warn(`skipping a ../shared/data test: ${p} not found (../shared/data is not in this clone)`);

  test.skipIf(!existsSync(FLORES))("FLORES-101 dev: 997 rows with the ten AlignX languages", async () => {
    const [src] = await openInputs([FLORES]);
    expect(src!.langs!.length).toBe(102);
    expect(src!.langs).toContain("zho_Hant");
    const rows = (await collect(src!)) as { texts: Record<string, string>; source: string }[];
    expect(rows.length).toBe(997);
    expect(rows.every((r) => ALIGNX_LANGS.every((l) => (r.texts[l] ?? "") !== ""))).toBe(true);
    expect(rows[0]!.texts.eng).toStartWith("On Monday, scientists from the Stanford University School of Medicine");
    expect(rows[996]!.source).toBe(`${FLORES}/{lang}.dev:997`);
  });

  test.skipIf(!existsSync(TATOEBA))("Tatoeba deu-eng pairs up: 17565 rows", async () => {
    const sources = await openInputs([TATOEBA]);
    expect(sources.map((s) => [s.format, s.langs])).toEqual([["moses", ["deu", "eng"]]]);
    const rows = (await collect(sources[0]!)) as { texts: Record<string, string> }[];
    expect(rows.length).toBe(17565);
    expect(rows[0]!.texts).toEqual({
      deu: "1935 erhielt Einstein von den Vereinigten Staaten eine dauerhafte Aufenthaltsgenehmigung und 1940 die Staatsbürgerschaft.",
      eng: "In 1935 Einstein was granted permanent residency in the United States and became a citizen in 1940.",
    });
    const all = await openInputs([join(SHARED, "tatoeba", "*")]);
    expect(all.length).toBe(13);
    expect(all.every((s) => s.langs!.length === 2 && s.langs!.includes("eng"))).toBe(true);
  });

  test.skipIf(!existsSync(XQUAD))("xquad.de.json: 1190 German QA instructions", async () => {
    const items = (await readAll([XQUAD]))[0]! as { instruction: string; lang: string | null; output: string }[];
    expect(items.length).toBe(1190);
    expect(items.every((i) => i.instruction === SQUAD_INSTRUCTION && i.lang === "deu" && i.output !== "")).toBe(true);
    expect(items[0]!.output).toBe("308");
  });

  test.skipIf(!existsSync(ALPACA))("alpaca_5000.json: 5000 instructions", async () => {
    const items = (await readAll([ALPACA]))[0]! as { kind: string; lang: string | null; instruction: string }[];
    expect(items.length).toBe(5000);
    expect(items.every((i) => i.kind === "instruction" && i.lang === null)).toBe(true);
    expect(items[0]!.instruction).toBe("Are the two sentences below grammatically correct? Output yes or no.");
  });
});

// src/data/sentencepiece.ts against Debian's SentencePiece 0.1.97: every model in test/fixtures/sentencepiece/
// (trained by tools/goldens/sentencepiece_cases.py: unigram and BPE with nmt_nfkc, byte fallback with identity /
// nfkc_cf, CHAR, WORD) must give SentencePiece's EncodeAsPieces, EncodeAsIds, DecodePieces and DecodeIds for every golden
// text exactly; a truncated or corrupted model file is an error naming the file and the byte offset.
import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../helpers.ts";
import { loadSentencePiece, parseModelProto, SentencePieceError, SentencePieceProcessor } from "../../src/data/sentencepiece.ts";

const DIR = join(import.meta.dir, "..", "fixtures", "sentencepiece");

interface GoldenCase {
  text: string;
  pieces: string[];
  ids: number[];
  decode_pieces: string;
  decode_ids: string;
}
interface GoldenModel {
  name: string;
  file: string;
  vocab_size: number;
  unk_id: number;
  cases: GoldenCase[];
  decode_only: { ids: number[]; pieces: string[]; decode_ids: string }[];
}
const goldens = JSON.parse(readFileSync(join(DIR, "goldens.json"), "utf8")) as { sentencepiece: string; models: GoldenModel[] };

describe("SentencePiece models against SentencePiece " + goldens.sentencepiece, () => {
  test("the fixtures cover unigram, BPE, CHAR, WORD, byte fallback and several normalizers", () => {
    expect(goldens.models.map((m) => m.name)).toEqual(["unigram", "bpe", "unigram_bytes", "bpe_bytes", "char", "word"]);
  });

  for (const m of goldens.models) {
    describe(m.name, () => {
      const sp = SentencePieceProcessor.load(join(DIR, m.file));

      test("vocabulary", () => {
        expect(sp.vocabSize).toBe(m.vocab_size);
        expect(sp.unkId).toBe(m.unk_id);
      });

      test(`EncodeAsPieces / EncodeAsIds of ${m.cases.length} texts`, () => {
        const bad: string[] = [];
        for (const c of m.cases) {
          const got = sp.encode(c.text);
          const pieces = got.map((p) => p.piece);
          const ids = got.map((p) => p.id);
          if (JSON.stringify(pieces) !== JSON.stringify(c.pieces) || JSON.stringify(ids) !== JSON.stringify(c.ids))
            bad.push(`${JSON.stringify(c.text)}\n  want ${JSON.stringify(c.pieces)} ${JSON.stringify(c.ids)}\n  got  ${JSON.stringify(pieces)} ${JSON.stringify(ids)}`);
        }
        expect(bad.join("\n")).toBe("");
        expect(sp.encodeAsPieces(m.cases[0]!.text)).toEqual(m.cases[0]!.pieces);
        expect(sp.encodeAsIds(m.cases[0]!.text)).toEqual(m.cases[0]!.ids);
      });

      test("DecodePieces / DecodeIds", () => {
        const bad: string[] = [];
        for (const c of m.cases) {
          const dp = sp.decodePieces(c.pieces);
          const di = sp.decodeIds(c.ids);
          if (dp !== c.decode_pieces || di !== c.decode_ids)
            bad.push(`${JSON.stringify(c.pieces)}\n  want ${JSON.stringify(c.decode_pieces)} / ${JSON.stringify(c.decode_ids)}\n  got  ${JSON.stringify(dp)} / ${JSON.stringify(di)}`);
        }
        for (const c of m.decode_only) {
          expect(c.ids.map((i) => sp.idToPiece(i))).toEqual(c.pieces);
          const di = sp.decodeIds(c.ids);
          if (di !== c.decode_ids) bad.push(`ids ${JSON.stringify(c.ids)}\n  want ${JSON.stringify(c.decode_ids)}\n  got  ${JSON.stringify(di)}`);
        }
        expect(bad.join("\n")).toBe("");
      });
    });
  }

  test("loadSentencePiece reads a file once", () => {
    const f = join(DIR, "unigram.model");
    expect(loadSentencePiece(f)).toBe(loadSentencePiece(f));
  });
});

describe("bad model files say which file and where", () => {
  const dir = tempDir("alignx-spm-");
  const good = readFileSync(join(DIR, "unigram_bytes.model"));

  test("truncated inside a piece: the file and the byte offset", () => {
    const f = join(dir, "truncated.model");
    writeFileSync(f, good.subarray(0, 1001));
    expect(() => SentencePieceProcessor.load(f)).toThrow(SentencePieceError);
    try {
      SentencePieceProcessor.load(f);
    } catch (e) {
      const err = e as SentencePieceError;
      expect(err.message).toStartWith(`${f}: byte `);
      expect(err.file).toBe(f);
      expect(err.offset).toBeGreaterThan(0);
      expect(err.offset).toBeLessThanOrEqual(1001);
      expect(err.message).toMatch(/runs past the end|truncated/);
    }
  });

  test("every truncation of a model is an error, never a wrong model", () => {
    const small = readFileSync(join(DIR, "char.model"));
    for (let n = 1; n < small.length; n += 97) {
      let msg = "";
      try {
        parseModelProto(small.subarray(0, n), "char.model");
        msg = "parsed";
      } catch (e) {
        msg = (e as Error).message;
      }
      // A cut that falls between two fields parses (protobuf cannot tell), but then misses the trainer_spec.
      expect(msg).toMatch(/^char\.model: (byte \d+: |not a SentencePiece model)/);
    }
  });

  test("a corrupted byte: an invalid wire type or length names the offset", () => {
    const bytes = new Uint8Array(good);
    bytes[0] = 0x0f; // field 1, wire type 7
    expect(() => parseModelProto(bytes, "bad.model")).toThrow(/^bad\.model: byte 0: unsupported protobuf wire type 7/);
    const long = new Uint8Array(good);
    long[1] = 0xff; // the first piece's length becomes huge
    long[2] = 0xff;
    long[3] = 0x7f;
    expect(() => parseModelProto(long, "bad.model")).toThrow(/^bad\.model: byte 1: length-delimited field of \d+ bytes runs past the end/);
  });

  test("not a model at all, and a missing file", () => {
    const f = join(dir, "text.model");
    writeFileSync(f, "hello world, this is not protobuf\n");
    expect(() => SentencePieceProcessor.load(f)).toThrow(new RegExp(`^${f.replaceAll(".", "\\.")}: `));
    expect(() => SentencePieceProcessor.load(join(dir, "missing.model"))).toThrow(/missing\.model: cannot read the SentencePiece model/);
  });

  test("a model SentencePiece would refuse: a repeated piece, no unk, byte pieces missing", () => {
    const f = join(DIR, "unigram_bytes.model");
    const proto = parseModelProto(readFileSync(f), f);
    const dup = { ...proto, pieces: [...proto.pieces, { ...proto.pieces[300]! }], pieceBytes: [...proto.pieceBytes, proto.pieceBytes[300]!] };
    expect(() => new SentencePieceProcessor(dup, f)).toThrow(new RegExp(`piece ${proto.pieces.length} .* is already defined \\(id 300\\)`));
    const noUnk = { ...proto, pieces: proto.pieces.map((p) => (p.type === 2 ? { ...p, type: 3 } : p)) };
    expect(() => new SentencePieceProcessor(noUnk, f)).toThrow(/unk is not defined/);
    const noBytes = { ...proto, pieces: proto.pieces.map((p) => (p.piece === "<0x41>" ? { ...p, type: 1 } : p)) };
    expect(() => new SentencePieceProcessor(noBytes, f)).toThrow(/byte_fallback is true but the 256 byte pieces/);
    expect(() => SentencePieceProcessor.load(f).decodeIds([proto.pieces.length])).toThrow(/id 900 is out of range \(vocabulary of 900\)/);
  });

  test("a broken charsmap is refused", () => {
    const f = join(DIR, "unigram.model");
    const proto = parseModelProto(readFileSync(f), f);
    const blob = new Uint8Array(proto.normalizerSpec.precompiledCharsmap);
    new DataView(blob.buffer).setUint32(0, blob.length + 10, true);
    expect(() => new SentencePieceProcessor({ ...proto, normalizerSpec: { ...proto.normalizerSpec, precompiledCharsmap: blob } }, f)).toThrow(/precompiled_charsmap: trie size \d+ exceeds the blob/);
  });
});

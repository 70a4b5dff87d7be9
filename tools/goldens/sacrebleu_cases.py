"""sacreBLEU goldens for `alignx score` (src/eval/).

    python3 -m venv /tmp/sbvenv && /tmp/sbvenv/bin/pip install sacrebleu
    /tmp/sbvenv/bin/python tools/goldens/sacrebleu_cases.py   # writes test/fixtures/goldens/sacrebleu.json

Every case is scored by sacreBLEU itself (its metric classes, as its command line builds them); the JSON holds the
full-precision score, the lines sacreBLEU prints (`-f text` at widths 1 and 2, `-f json`), the signature, BLEU's
components, and for `ci` cases the bootstrap mean and half-width (`--confidence`, 1000 resamples, SACREBLEU_SEED).
Cases typed in from sacreBLEU's own test suite name their source file and carry its published expected value
(`published`, with the test's epsilon), which is asserted here too. The other cases (empty lines, Unicode
punctuation, CJK, multiple references, lowercase, each tokenizer, sentence level, bootstrap) are ours. `cli` holds
sacreBLEU's command-line output for a few file pairs; `rng` holds numpy's default_rng(seed).choice draws that the
bootstrap resamples with. test/eval/score.test.ts and test/cli/score_cli.test.ts read only the JSON.
"""
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF

OUT = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "goldens" / "sacrebleu.json"

CASES = []


def metric_of(kind, opts):
    o = dict(opts)
    if kind == "bleu":
        return BLEU(**o)
    if kind == "chrf++":
        o.setdefault("word_order", 2)
    return CHRF(**o)


def add(name, kind, hyps, refs, opts=None, sentence=False, ci=False, seed=12345, source=None, published=None, eps=None):
    """One case: `refs` is a list of reference streams (each as long as `hyps`), as sacreBLEU takes them."""
    opts = dict(opts or {})
    if sentence and kind == "bleu":
        opts.setdefault("effective_order", True)  # as sacreBLEU's --sentence-level sets it
    assert all(len(r) == len(hyps) for r in refs), name
    case = {"name": name, "metric": kind, "hyps": list(hyps), "refs": [list(r) for r in refs], "options": opts,
            "sentence": sentence, "ci": ci}
    if source:
        case["source"] = source
    if published is not None:
        case["published"] = published
        case["epsilon"] = eps
    if sentence:
        m = metric_of(kind, opts)
        outs = []
        for i, h in enumerate(hyps):
            s = m.sentence_score(h, [r[i] for r in refs])
            outs.append(result(m, s))
        case["expected"] = outs
        if published is not None:
            check_published(case, outs[0]["score"])
    else:
        m = metric_of(kind, opts)
        if ci:
            os.environ["SACREBLEU_SEED"] = str(seed)
            case["seed"] = seed
            s = m.corpus_score(hyps, refs, n_bootstrap=1000)
        else:
            s = m.corpus_score(hyps, refs)
        case["expected"] = result(m, s)
        if published is not None:
            check_published(case, s.score)
    CASES.append(case)


MISMATCH = []


def check_published(case, score):
    """The test suite's value holds for sacreBLEU 2.x too, else (a 1.x value the 2.x suite changed) it is dropped."""
    if abs(score - case["published"]) >= case["epsilon"]:
        MISMATCH.append((case["name"], score, case.pop("published"), case.pop("epsilon")))


def result(m, s):
    sig = m.get_signature().format()
    r = {"score": float(s.score), "signature": sig, "name": s.name,
         "text1": s.format(1, False, sig), "text2": s.format(2, False, sig),
         "json1": json.loads(s.format(1, False, sig, True))}
    if hasattr(s, "counts"):
        r.update(counts=[float(x) for x in s.counts], totals=[float(x) for x in s.totals],
                 precisions=[float(x) for x in s.precisions], bp=float(s.bp), sys_len=int(s.sys_len),
                 ref_len=int(s.ref_len))
    if s._mean > 0:
        r["ci_mean"] = float(s._mean)
        r["ci"] = float(s._ci)
    return r


# --- sacreBLEU's test suite (github.com/mjpost/sacrebleu, test/) -----------------------------------------------
RAW = {"smooth_method": "floor", "smooth_value": 0.01, "force": True, "tokenize": "none", "effective_order": True}

# test/test_bleu.py: test_raw_bleu_cases (raw_corpus_bleu(hyps, [refs], .01).score / 100, EPSILON 1e-8)
for i, (h, r, e) in enumerate([(["this is a test", "another test"], ["ref1", "ref2"], 0.003799178428257963),
                               (["this is a test"], ["this is a test"], 1.0),
                               (["this is a fest"], ["this is a test"], 0.223606797749979)]):
    add(f"test_bleu.py raw_bleu {i}", "bleu", h, [r], RAW, source="sacrebleu test/test_bleu.py test_raw_bleu_cases",
        published=e * 100, eps=1e-6)

# test/test_bleu.py: test_corpus_bleu_cases (README example, EPSILON 1e-8)
_refs = [
    ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
    ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.'],
]
_hyps = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.']
for i, (h, o, e) in enumerate([(_hyps, {}, 48.530827), (['', '', ''], {}, 0.0), (_hyps, {'tokenize': 'none'}, 49.1919566),
                               (_hyps, {'tokenize': '13a'}, 48.530827), (_hyps, {'tokenize': 'intl'}, 43.91623493),
                               (_hyps, {'smooth_method': 'none'}, 48.530827)]):
    add(f"test_bleu.py corpus_bleu {i}", "bleu", h, _refs, o, source="sacrebleu test/test_bleu.py test_corpus_bleu_cases",
        published=e, eps=1e-6)

# test/test_bleu.py: test_case_effective_order (raw_corpus_bleu(hyps, [refs], .01))
for i, (h, r, e) in enumerate([(["test"], ["a test"], 0.3678794411714425), (["a test"], ["a test"], 1.0),
                               (["a little test"], ["a test"], 0.03218297948685433)]):
    add(f"test_bleu.py effective_order {i}", "bleu", h, [r], RAW,
        source="sacrebleu test/test_bleu.py test_case_effective_order", published=e * 100, eps=1e-6)

# test/test_bleu.py: test_case_offset and test_case_statistics pass bare strings, which sacreBLEU 2.x iterates by
# character (a different corpus than the test means): left out.
# test/test_bleu.py: test_case_scoring / test_case_degenerate_stats go straight to compute_bleu (below).

# test/test_sentence_bleu.py (EPSILON 1e-3): sentence_score with effective_order=True
_REF = "producţia de zahăr brut se exprimă în zahăr alb;"
_SYS = "Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;"
for sm, sv, lc, tok, e in [('exp', None, False, '13a', 8.493), ('none', None, False, '13a', 0.0),
                           ('floor', None, False, '13a', 4.51688), ('floor', 0.1, False, '13a', 4.51688),
                           ('floor', 0.5, False, '13a', 10.10), ('add-k', None, False, '13a', 14.882),
                           ('add-k', 1, False, '13a', 14.882), ('add-k', 2, False, '13a', 21.389),
                           ('exp', None, False, 'none', 7.347), ('exp', None, False, 'intl', 8.493),
                           ('exp', None, False, 'char', 40.8759), ('exp', None, True, 'char', 42.0267)]:
    add(f"test_sentence_bleu.py {sm} {sv} {lc} {tok}", "bleu", [_SYS], [[_REF]],
        {"smooth_method": sm, "smooth_value": sv, "lowercase": lc, "tokenize": tok, "effective_order": True},
        sentence=True, source="sacrebleu test/test_sentence_bleu.py test_cases", published=e, eps=1e-3)
for sm, sv in [('exp', None), ('none', None), ('floor', None), ('floor', 0.1), ('add-k', None), ('add-k', 1)]:
    add(f"test_sentence_bleu.py zero {sm} {sv}", "bleu", ["this is a cat"], [["okay thanks"]],
        {"smooth_method": sm, "smooth_value": sv, "effective_order": True}, sentence=True,
        source="sacrebleu test/test_sentence_bleu.py test_cases_zero_bleu", published=0.0, eps=1e-3)

# test/test_chrf.py (EPSILON 1e-4)
for i, (h, r, e) in enumerate([
    (["abcdefg"], ["hijklmnop"], 0.0), (["a"], ["b"], 0.0), ([""], ["b"], 0.0), ([""], ["ref"], 0.0),
    ([""], ["reference"], 0.0), (["aa"], ["ab"], 8.3333), (["a", "b"], ["a", "c"], 8.3333), (["a"], ["a"], 16.6667),
    (["a b c"], ["a b c"], 50.0), (["a b c"], ["abc"], 50.0),
    ([" risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists ."],
     ["risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists ."], 63.361730),
    ([" Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. "],
     ["Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich."], 64.1302698),
    (["Niemand hat die Absicht, eine Mauer zu errichten"], ["Niemand hat die Absicht, eine Mauer zu errichten"], 100.0)]):
    add(f"test_chrf.py eps {i}", "chrf", h, [r], {"char_order": 6, "word_order": 0, "beta": 3, "eps_smoothing": True},
        source="sacrebleu test/test_chrf.py test_cases", published=e, eps=1e-4)
for i, (h, r, e) in enumerate([(["a"], ["a"], 100.0), ([""], ["reference"], 0.0), (["a b c"], ["a b c"], 100.0),
                               (["a b c"], ["abc"], 100.0), ([""], ["c"], 0.0), (["a", "b"], ["a", "c"], 50.0),
                               (["aa"], ["ab"], 25.0)]):
    add(f"test_chrf.py eff {i}", "chrf", h, [r], {"char_order": 6, "word_order": 0, "beta": 3, "eps_smoothing": False},
        source="sacrebleu test/test_chrf.py test_cases_effective_order", published=e, eps=1e-4)
for i, (h, r, e) in enumerate([
    (["Die Beziehung zwischen Obama und Netanjahu ist nicht gerade freundlich."],
     ["Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich."], 67.3481606),
    (["risk assessment must be made of those who are qualified and expertise in the sector - these are the scientists ."],
     ["risk assessment has to be undertaken by those who are qualified and expert in that area - that is the scientists ."], 65.2414427)]):
    add(f"test_chrf.py whitespace {i}", "chrf", h, [r], {"char_order": 6, "word_order": 0, "beta": 3, "whitespace": True},
        source="sacrebleu test/test_chrf.py test_cases_keep_whitespace", published=e, eps=1e-4)
for i, (h, r, e) in enumerate([
    ('Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře.',
     ['Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře.'], 39.14078509),
    ('Nebo prostě nemají vybavení, které by jim pomohlo, uvedli lékaři.',
     ['A někdy nemáme ani potřebný materiál, abychom jim pomohli, popsali lékaři.'], 31.22557079),
    ('Lapali po dechu, jejich životy skončily dřív, než skutečně začaly.',
     ['Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, připomněli.'], 57.15704367)]):
    add(f"test_chrf.py sentence {i}", "chrf", [h], [r], {"eps_smoothing": True}, sentence=True,
        source="sacrebleu test/test_chrf.py test_sentence_level_chrf", published=e, eps=1e-4)

# --- our cases, sacreBLEU's defaults unless named ------------------------------------------------------------
DEFAULT_METRICS = ["bleu", "chrf", "chrf++"]

README_H, README_R = _hyps, _refs
for k in DEFAULT_METRICS:
    add(f"readme 2 refs {k}", k, README_H, README_R)
    add(f"readme 1 ref {k}", k, README_H, README_R[:1])
    add(f"readme sentence {k}", k, README_H, README_R, sentence=True)

EMPTY_H = ["", "The cat sat on the mat.", "", "A dog.", ""]
EMPTY_R = ["", "The cat is on the mat.", "Nothing here.", "", ""]
for k in DEFAULT_METRICS:
    add(f"empty lines {k}", k, EMPTY_H, [EMPTY_R])
    add(f"empty lines sentence {k}", k, EMPTY_H, [EMPTY_R], sentence=True)
    add(f"all empty {k}", k, ["", ""], [["a b", "c"]])

PUNCT_H = ["„Das ist — wirklich — gut“, sagte er…", "«Bonjour», dit-il ; « ça va ? »", "It’s 3,5 km (approx.) — isn’t it?",
           "Price: $1,000.50 & 20% off!", "He said &quot;yes&quot; &amp; left <skipped> early-\nthen.", "2019. 3.14 1,2,3 A-1 x-2"]
PUNCT_R = ["„Das ist wirklich gut“, sagte er …", "« Bonjour », dit-il ; « ça va ? »", "It's 3.5 km (approximately) - isn't it?",
           "Price: $1,000.50 and 20 % off!", "He said \"yes\" & left early then.", "2019 . 3.14 1 , 2 , 3 A - 1 x - 2"]
for tok in ["13a", "intl", "none", "char", "zh"]:
    add(f"unicode punctuation tok {tok}", "bleu", PUNCT_H, [PUNCT_R], {"tokenize": tok})
    add(f"unicode punctuation sentence tok {tok}", "bleu", PUNCT_H, [PUNCT_R], {"tokenize": tok, "effective_order": True}, sentence=True)
for k in ["chrf", "chrf++"]:
    add(f"unicode punctuation {k}", k, PUNCT_H, [PUNCT_R])

CJK_H = ["我们今天去公园散步，天气很好。", "他说：“这是2024年的新计划！”", "東京タワーは高い。", "한국어 문장입니다.",
         "Mixed 中文 and English, 3.5 元。", "—— 破折号与省略号……", "𠀀𠀁 古字 ⺀ ⼀ ㄅ ㆠ ㇀ ㈀ ㌀ ☃ ✂"]
CJK_R = ["今天我们去公园散步，天气非常好。", "他说：“这是2024年的计划。”", "東京タワーはとても高い。", "한국어 문장이다.",
         "Mixed 中文 and English , 3.5 元 。", "——破折号和省略号…", "𠀀 古字 ⺀⼀ㄅ ㆠ㇀ ㈀㌀ ☃✂"]
for tok in ["zh", "13a", "intl", "char", "none"]:
    add(f"cjk tok {tok}", "bleu", CJK_H, [CJK_R], {"tokenize": tok})
    add(f"cjk sentence tok {tok}", "bleu", CJK_H, [CJK_R], {"tokenize": tok, "effective_order": True}, sentence=True)
for k in ["chrf", "chrf++"]:
    add(f"cjk {k}", k, CJK_H, [CJK_R])
    add(f"cjk sentence {k}", k, CJK_H, [CJK_R], sentence=True)

CASE_H = ["THE Cat SAT.", "ΟΔΟΣ ΚΑΙ ΣΟΦΟΣ", "Straße İstanbul ǅ", "ÀÉÎÕÜ àéîõü"]
CASE_R = ["the cat sat .", "οδος και σοφος", "straße i̇stanbul ǆ", "àéîõü ÀÉÎÕÜ"]
for lc in [False, True]:
    for k in DEFAULT_METRICS:
        add(f"case lc={lc} {k}", k, CASE_H, [CASE_R], {"lowercase": lc})
    add(f"case lc={lc} intl", "bleu", CASE_H, [CASE_R], {"lowercase": lc, "tokenize": "intl"})

WS_H = ["a\tb  c\u00a0d", "x\u3000y\u2028z\u0085w", "tail   \t", "\u001cq\u001dr", "p\ufeffq"]
WS_R = ["a b c d", "x y z w", "tail", "q r", "p q"]
for k in DEFAULT_METRICS:
    add(f"whitespace {k}", k, WS_H, [WS_R])
add("whitespace tok char", "bleu", WS_H, [WS_R], {"tokenize": "char"})

MULTI_H = ["the quick brown fox jumps", "over the lazy dog today", "short"]
MULTI_R = [["the fast brown fox jumped", "above the lazy dog", "short one"],
           ["a quick brown fox jumps", "over a lazy dog today", "short"],
           ["quick brown foxes jump", "over the sleepy dog now", ""]]
for k in DEFAULT_METRICS:
    add(f"three refs {k}", k, MULTI_H, MULTI_R)
    add(f"three refs sentence {k}", k, MULTI_H, MULTI_R, sentence=True)

# A corpus for the bootstrap: 60 sentence pairs from a fixed word list.
rnd = random.Random(7)
WORDS = "the a of to and in is it that was he for on are as with his they at be this from I have or by one had not but what all were when we there can an your which their said if do will each about how up out them then she many some so these would other into has more her two like him see time could no make than first been its who now people my made over did down only way find use may water long little very after words called just where most know".split()
BS_H, BS_R = [], []
for _ in range(60):
    ref = rnd.choices(WORDS, k=rnd.randint(3, 18))
    hyp = [w if rnd.random() < 0.7 else rnd.choice(WORDS) for w in ref]
    if rnd.random() < 0.3:
        hyp = hyp[: max(1, len(hyp) - rnd.randint(1, 3))]
    BS_H.append(" ".join(hyp).capitalize() + "."), BS_R.append(" ".join(ref).capitalize() + ".")
for k in DEFAULT_METRICS:
    add(f"bootstrap seed 12345 {k}", k, BS_H, [BS_R], ci=True, seed=12345)
    add(f"bootstrap seed 7 {k}", k, BS_H, [BS_R], ci=True, seed=7)
add("bootstrap 2 refs bleu", "bleu", README_H, README_R, ci=True, seed=12345)
add("bootstrap 1 segment bleu", "bleu", README_H[:1], [README_R[0][:1]], ci=True, seed=12345)
add("bootstrap zh lc bleu", "bleu", CJK_H, [CJK_R], {"tokenize": "zh", "lowercase": True}, ci=True, seed=12345)
add("bootstrap chrf lc", "chrf", CASE_H, [CASE_R], {"lowercase": True}, ci=True, seed=99)
add("corpus bleu 60", "bleu", BS_H, [BS_R])

# compute_bleu on given statistics: test/test_bleu.py test_case_scoring and test_case_degenerate_stats
COMPUTE = []
for (c, t, s, r), sm, sv, e, src in [
        (([9, 7, 5, 3], [10, 8, 6, 4], 11, 11), "none", None, 0.8375922397 * 100, "test_case_scoring"),
        (([0, 0, 0, 0], [4, 4, 2, 1], 0, 1), "floor", 0.0, 0.0, "test_case_degenerate_stats"),
        (([0, 0, 0, 0], [10, 11, 12, 0], 14, 10), "floor", 0.0, 0.0, "test_case_degenerate_stats"),
        (([0, 0, 0, 0], [0, 0, 0, 0], 0, 0), "floor", 0.0, 0.0, "test_case_degenerate_stats"),
        (([6, 5, 4, 0], [6, 5, 4, 3], 6, 6), "floor", 0.0, 0.0, "test_case_degenerate_stats"),
        (([0, 0, 0, 0], [0, 0, 0, 0], 0, 0), "floor", 0.1, 0.0, "test_case_degenerate_stats"),
        (([0, 0, 0, 0], [0, 0, 0, 0], 1, 5), "floor", 0.01, 0.0, "test_case_degenerate_stats")]:
    sc = BLEU.compute_bleu(list(c), list(t), s, r, smooth_method=sm, smooth_value=sv)
    assert abs(sc.score - e) < 1e-6
    COMPUTE.append({"correct": c, "total": t, "sys_len": s, "ref_len": r, "smooth_method": sm, "smooth_value": sv,
                    "score": sc.score, "published": e, "source": f"sacrebleu test/test_bleu.py {src}"})

# numpy's default_rng(seed).choice(n, size=(rows, n)), the draws of sacreBLEU's bootstrap
RNG = []
for seed, n, rows in [(12345, 7, 3), (12345, 1, 2), (0, 60, 2), (7, 1000, 1), (4294967295, 3, 4), (12345, 65537, 1)]:
    idx = np.random.default_rng(seed).choice(n, size=(rows, n), replace=True)
    RNG.append({"seed": seed, "n": n, "rows": rows, "idx": idx.reshape(-1).tolist() if n * rows <= 5000 else None,
                "head": idx.reshape(-1)[:50].tolist(), "sum": int(idx.sum())})

# sacreBLEU's command line on files: text (default width 1, and -w 2), json, sentence level, confidence
CLI = []
with tempfile.TemporaryDirectory() as d:
    def w(name, lines):
        p = os.path.join(d, name)
        with open(p, "w", encoding="utf-8") as f:
            f.write("".join(x + "\n" for x in lines))
        return p
    files = {"hyp.txt": README_H, "ref1.txt": README_R[0], "ref2.txt": README_R[1], "bs_hyp.txt": BS_H, "bs_ref.txt": BS_R,
             "zh_hyp.txt": CJK_H, "zh_ref.txt": CJK_R}
    paths = {k: w(k, v) for k, v in files.items()}
    sb = [sys.executable, "-m", "sacrebleu"]
    runs = [
        (["ref1.txt", "ref2.txt"], "hyp.txt", ["-m", "bleu", "chrf", "-f", "text"], {"metrics": "bleu,chrf"}),
        (["ref1.txt", "ref2.txt"], "hyp.txt", ["-m", "bleu", "chrf", "-f", "json"], {"metrics": "bleu,chrf", "json": True}),
        (["ref1.txt"], "hyp.txt", ["-m", "bleu", "-f", "text"], {}),
        (["ref1.txt"], "hyp.txt", ["-m", "bleu", "-f", "json"], {"json": True}),
        (["ref1.txt"], "hyp.txt", ["-m", "chrf", "--chrf-word-order", "2", "-f", "text"], {"metrics": "chrf++"}),
        (["ref1.txt", "ref2.txt"], "hyp.txt", ["-m", "bleu", "-f", "text", "-lc", "-tok", "intl"], {"lc": True, "tokenize": "intl"}),
        (["zh_ref.txt"], "zh_hyp.txt", ["-m", "bleu", "-f", "text", "-tok", "zh"], {"tokenize": "zh"}),
        (["ref1.txt"], "hyp.txt", ["-m", "bleu", "--sentence-level", "-f", "text"], {"sentence": True}),
        (["ref1.txt"], "hyp.txt", ["-m", "chrf", "--sentence-level", "-f", "text"], {"sentence": True, "metrics": "chrf"}),
        (["bs_ref.txt"], "bs_hyp.txt", ["-m", "bleu", "chrf", "--confidence", "-f", "text"], {"ci": True, "metrics": "bleu,chrf"}),
        (["bs_ref.txt"], "bs_hyp.txt", ["-m", "bleu", "--confidence", "-f", "json"], {"ci": True, "json": True}),
    ]
    env = {**os.environ, "SACREBLEU_SEED": "12345", "NO_COLOR": "1"}
    env.pop("SACREBLEU_FORMAT", None)
    for refs, hyp, args, ours in runs:
        out = subprocess.run(sb + [paths[r] for r in refs] + ["-i", paths[hyp]] + args, capture_output=True, text=True,
                             env=env, check=True).stdout
        CLI.append({"refs": refs, "hyp": hyp, "sacrebleu_args": args, "ours": ours, "stdout": out})

doc = {
    "generator": "tools/goldens/sacrebleu_cases.py",
    "sacrebleu_version": sacrebleu.__version__,
    "numpy_version": np.__version__,
    "files": files,
    "cases": CASES,
    "compute_bleu": COMPUTE,
    "rng": RNG,
    "cli": CLI,
}
OUT.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
for m in MISMATCH:
    print("published value not reproduced by this sacreBLEU (dropped):", m)
print(f"wrote {OUT}: {len(CASES)} cases, {len(COMPUTE)} compute_bleu, {len(RNG)} rng, {len(CLI)} cli runs")

"""Caption metrics on a hand-made three-image example, checked against independent computations."""

from __future__ import annotations

import math
import time
from collections import Counter

import pytest

CANDS = {
    "img1": "a red star above a blue circle",
    "img2": "a green square on a white background",
    "img3": "a drawing of a heart",
}
REFS = {
    "img1": ["a red star above a blue circle", "a small red star on a gray background"],
    "img2": ["a large green square", "there is a green square in the image"],
    "img3": ["a drawing of a small heart", "a heart drawing"],
}


def ngrams(words, n):
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def bleu_by_hand(cands, refs, max_n=4):
    """Corpus BLEU with the 'closest' reference length (pycocoevalcap's choice)."""
    correct, guess = [0] * max_n, [0] * max_n
    test_len = ref_len = 0
    for k, cand in cands.items():
        c = cand.split()
        rs = [r.split() for r in refs[k]]
        test_len += len(c)
        ref_len += min((abs(len(r) - len(c)), len(r)) for r in rs)[1]
        for n in range(1, max_n + 1):
            cn = ngrams(c, n)
            best = Counter()
            for r in rs:
                best |= ngrams(r, n)
            correct[n - 1] += sum(min(v, best[g]) for g, v in cn.items())
            guess[n - 1] += max(0, len(c) - n + 1)
    out = []
    for n in range(1, max_n + 1):
        logp = sum(math.log(correct[i] / guess[i]) for i in range(n)) / n
        bp = 1.0 if test_len >= ref_len else math.exp(1 - ref_len / test_len)
        out.append(bp * math.exp(logp))
    return out


def lcs(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def rouge_by_hand(cands, refs, beta=1.2):
    scores = []
    for k, cand in cands.items():
        c = cand.split()
        p = max(lcs(c, r.split()) / len(c) for r in refs[k])
        r_ = max(lcs(c, r.split()) / len(r.split()) for r in refs[k])
        scores.append(((1 + beta**2) * p * r_) / (r_ + beta**2 * p) if p and r_ else 0.0)
    return sum(scores) / len(scores)


def cider_d_by_hand(cands, refs, sigma=6.0):
    """CIDEr-D: tf-idf n-gram vectors (idf over the evaluated references), clipped overlap,
    Gaussian length penalty, ×10, averaged over references, n = 1..4 and images."""
    n_docs = len(cands)
    df = Counter()
    for k in cands:
        seen = set()
        for r in refs[k]:
            for n in range(1, 5):
                seen |= set(ngrams(r.split(), n))
        df.update(seen)

    def vec(words):
        vs, norms = [], []
        for n in range(1, 5):
            v = {g: c * (math.log(n_docs) - math.log(max(1.0, df[g]))) for g, c in ngrams(words, n).items()}
            vs.append(v)
            norms.append(math.sqrt(sum(x * x for x in v.values())))
        return vs, norms, len(words)

    total = 0.0
    for k, cand in cands.items():
        vc, nc, lc = vec(cand.split())
        per_ref = []
        for r in refs[k]:
            vr, nr, lr = vec(r.split())
            vals = []
            for n in range(4):
                s = sum(min(vc[n][g], vr[n].get(g, 0.0)) * vr[n].get(g, 0.0) for g in vc[n])
                if nc[n] and nr[n]:
                    s /= nc[n] * nr[n]
                vals.append(s * math.exp(-((lc - lr) ** 2) / (2 * sigma**2)))
            per_ref.append(sum(vals) / 4 * 10.0)
        total += sum(per_ref) / len(per_ref)
    return total / n_docs


def test_bleu_rouge_cider_match_independent_computations():
    from rlcf_bench_tasks.caption_metrics import reference_metrics

    values, notes = reference_metrics(CANDS, REFS, meteor=False, tokenize=False)
    for n, expected in enumerate(bleu_by_hand(CANDS, REFS), start=1):
        assert values[f"bleu{n}"] == pytest.approx(expected, abs=1e-6)
    assert values["rougeL"] == pytest.approx(rouge_by_hand(CANDS, REFS), abs=1e-9)
    assert values["cider"] == pytest.approx(cider_d_by_hand(CANDS, REFS), abs=1e-9)
    # sanity of the example itself: an exact match on img1, partial matches elsewhere
    assert 0.5 < values["bleu1"] < 1.0 and values["bleu4"] > 0
    assert "spice" not in values and any("SPICE absent" in n for n in notes)


def test_ptb_tokenisation_lowercases_and_strips_punctuation():
    from rlcf_bench_tasks.caption_metrics import reference_metrics

    shouting = {k: v.upper().replace(" A ", " A ") + "." for k, v in CANDS.items()}
    refs = {k: [r.capitalize() + "." for r in v] for k, v in REFS.items()}
    tokenised, _ = reference_metrics(shouting, refs, meteor=False, tokenize=True)
    plain, _ = reference_metrics(CANDS, REFS, meteor=False, tokenize=False)
    for key in ("bleu1", "bleu4", "rougeL", "cider"):
        assert tokenised[key] == pytest.approx(plain[key], abs=1e-9)


@pytest.mark.slow  # starts a JVM: 5 s idle, 35 s measured on the shared 2-core machine
def test_meteor_runs_offline():
    from rlcf_bench_tasks.caption_metrics import reference_metrics

    start = time.perf_counter()
    values, _ = reference_metrics(CANDS, REFS, meteor=True, tokenize=False)
    assert 0.0 < values["meteor"] < 1.0
    assert time.perf_counter() - start < 60


def test_clipscore_and_refclipscore_formulas():
    import torch

    from rlcf_bench_tasks.caption_metrics import CLIPSCORE_PREFIX, clip_scores

    table = {CLIPSCORE_PREFIX + "cand": [1.0, 0.0], CLIPSCORE_PREFIX + "ref-a": [0.6, 0.8],
             CLIPSCORE_PREFIX + "ref-b": [0.0, 1.0], CLIPSCORE_PREFIX + "bad": [-1.0, 0.0]}

    class FakeVLM:
        def text_features(self, texts):
            return torch.tensor([table[t] for t in texts])

    image = torch.tensor([[0.8, 0.6], [0.8, 0.6]])
    clip_s, ref_s = clip_scores(FakeVLM(), image, ["cand", "bad"], [["ref-a", "ref-b"], ["ref-a"]])
    assert clip_s.tolist() == pytest.approx([2.5 * 0.8, 0.0])
    # harmonic mean of CLIPScore (2.0) and the best candidate-reference cosine (0.6)
    assert ref_s[0].item() == pytest.approx(2 * 2.0 * 0.6 / 2.6)
    assert ref_s[1].item() == 0.0


def test_cider_terms_with_the_whole_sets_idf_average_to_pycocoevalcaps_corpus_cider():
    """Per-image CIDEr-D terms with the whole reference set's document frequencies: each equals
    pycocoevalcap's own per-image score on that set, so their mean is its corpus CIDEr exactly;
    on a subset (same fixed idf) they are the whole set's terms, not a subset re-score."""
    from pycocoevalcap.cider.cider import Cider

    from rlcf_bench_tasks.caption_metrics import CiderIdf, cider_terms

    cands = {**CANDS, "img4": "a blue circle", "img5": "something unrelated entirely"}
    refs = {**REFS, "img4": ["a blue circle on white", "one blue circle"], "img5": ["a red star", "a star"]}
    idf = CiderIdf.from_references(refs.values())
    terms = cider_terms(cands, refs, idf)
    corpus, per_image = Cider().compute_score({k: refs[k] for k in cands}, {k: [cands[k]] for k in cands})
    assert list(terms) == list(cands)
    assert [terms[k] for k in cands] == pytest.approx(list(per_image), rel=1e-12, abs=1e-15)
    assert sum(terms.values()) / len(terms) == pytest.approx(float(corpus), rel=1e-12)
    assert terms["img1"] > terms["img5"] >= 0.0
    subset = ["img1", "img2"]
    sub_terms = cider_terms({k: cands[k] for k in subset}, refs, idf)
    assert sub_terms == {k: terms[k] for k in subset}
    rescored = Cider().compute_score({k: refs[k] for k in subset}, {k: [cands[k]] for k in subset})[1]
    assert list(rescored) != pytest.approx([terms[k] for k in subset])  # the idf is the whole set's, held fixed
    with pytest.raises(ValueError, match="at least one"):
        CiderIdf.from_references([])

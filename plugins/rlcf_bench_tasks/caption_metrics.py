"""Caption metrics (``docs/original-code.md#caption-metrics``).

* :func:`reference_metrics`: BLEU-1..4, METEOR, ROUGE-L and CIDEr(-D) from ``pycocoevalcap`` after
  PTB tokenisation (Java; the tokenizer writes temporary files in its package folder), as
  fractions (×100 for reporting). CIDEr's IDF comes from the evaluated set only, as in the
  original evaluation. SPICE runs only when its Stanford CoreNLP 3.6.0 jars are installed in
  ``pycocoevalcap/spice/lib`` (it downloads them otherwise, impossible offline): when they are
  absent SPICE is left out and a note says why.
* :class:`CiderIdf` and :func:`cider_terms`: each image's CIDEr-D term with the document
  frequencies of a *fixed* reference set (the whole test set's), so that a corpus CIDEr over that
  set is exactly the mean of the stored per-image terms and two runs can be compared by a paired
  bootstrap over images (``docs/statistics.md#captioning``). Same arithmetic as pycocoevalcap's
  ``CiderScorer`` (n = 4, σ = 6, clipped tf-idf, length penalty, ×10), tested against it.
* :func:`clip_scores`: CLIPScore ``2.5·max(0, cos(image, "A photo depicts " + caption))`` and
  RefCLIPScore, the harmonic mean of CLIPScore and ``max_r cos(caption, reference_r)`` (text–text,
  both with the prefix, as the official ``clipscore`` code encodes every caption through the same
  prefixed dataset), computed with any ``OpenClipVLM``.
"""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CLIPSCORE_PREFIX = "A photo depicts "
CLIPSCORE_WEIGHT = 2.5
SPICE_NOTE = ("SPICE absent: pycocoevalcap's SPICE needs the Stanford CoreNLP 3.6.0 jars in "
              "pycocoevalcap/spice/lib (it downloads them at first use, impossible offline)")


def spice_available() -> bool:
    try:
        import pycocoevalcap.spice as sp
    except ImportError:
        return False
    lib = Path(sp.__file__).parent / "lib"
    return all((lib / f"stanford-corenlp-3.6.0{s}.jar").is_file() for s in ("", "-models"))


def ptb_tokenize(texts: Mapping[Any, Sequence[str]]) -> dict[Any, list[str]]:
    """PTB-tokenise (lower-case, punctuation removed) every caption of every key."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from rlcf_bench.quiet import quiet_stderr

    data = {k: [{"caption": c} for c in caps] for k, caps in texts.items()}
    with contextlib.redirect_stdout(io.StringIO()), quiet_stderr():  # the Java tokenizer's token counts
        tokenized: dict[Any, list[str]] = PTBTokenizer().tokenize(data)
    return tokenized


def reference_metrics(candidates: Mapping[Any, str], references: Mapping[Any, Sequence[str]], *,
                      meteor: bool = True, spice: bool | None = None, tokenize: bool = True
                      ) -> tuple[dict[str, float], list[str]]:
    """Corpus metrics of ``candidates`` (id → caption) against ``references`` (id → captions).

    Returns ``({"bleu1".."bleu4", "meteor", "rougeL", "cider"[, "spice"]}, notes)``, values as
    fractions. ``spice=None`` runs SPICE when available; ``tokenize=False`` skips PTB (inputs
    already tokenised: lower-case, space-separated).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    keys = list(candidates)
    if not keys:
        return {}, ["no captions"]
    missing = [k for k in keys if not references.get(k)]
    if missing:
        raise ValueError(f"{len(missing)} candidates have no references (e.g. {missing[0]!r})")
    if tokenize:
        res = ptb_tokenize({k: [candidates[k]] for k in keys})
        gts = ptb_tokenize({k: list(references[k]) for k in keys})
    else:
        res = {k: [candidates[k]] for k in keys}
        gts = {k: list(references[k]) for k in keys}
    out: dict[str, float] = {}
    notes: list[str] = []
    with contextlib.redirect_stdout(io.StringIO()):
        bleu, _ = Bleu(4).compute_score(gts, res)
    for n, value in enumerate(bleu, start=1):
        out[f"bleu{n}"] = float(value)
    if meteor:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            out["meteor"] = float(scorer.compute_score(gts, res)[0])
        finally:
            with contextlib.suppress(Exception):
                scorer.close()
    out["rougeL"] = float(Rouge().compute_score(gts, res)[0])
    out["cider"] = float(Cider().compute_score(gts, res)[0])
    want_spice = spice_available() if spice is None else spice
    if want_spice and spice_available():
        from pycocoevalcap.spice.spice import Spice

        out["spice"] = float(Spice().compute_score(gts, res)[0])
    else:
        notes.append(SPICE_NOTE)
    return out, notes


CIDER_N = 4
CIDER_SIGMA = 6.0


@dataclass(frozen=True)
class CiderIdf:
    """Document frequencies of every n-gram (n ≤ 4) over a reference set (one document = one
    image's references, PTB-tokenised) and ``log`` of the number of images: the idf CIDEr-D uses."""

    document_frequency: Mapping[tuple[str, ...], float]
    log_n: float

    @classmethod
    def from_references(cls, references: Iterable[Sequence[str]]) -> CiderIdf:
        from pycocoevalcap.cider.cider_scorer import cook_refs

        df: dict[tuple[str, ...], float] = defaultdict(float)
        n_images = 0
        for refs in references:
            n_images += 1
            for ngram in {g for ref in cook_refs(list(refs), CIDER_N) for g in ref}:
                df[ngram] += 1
        if n_images == 0:
            raise ValueError("CIDEr's document frequencies need at least one image's references")
        return cls(dict(df), float(np.log(float(n_images))))

    def vector(self, counts: Mapping[tuple[str, ...], int]) -> tuple[list[dict[tuple[str, ...], float]], list[float], int]:
        """tf-idf vectors per n-gram length, their norms and the unigram length (CiderScorer's)."""
        vec: list[dict[tuple[str, ...], float]] = [defaultdict(float) for _ in range(CIDER_N)]
        norm = [0.0] * CIDER_N
        length = 0
        for ngram, tf in counts.items():
            n = len(ngram) - 1
            vec[n][ngram] = float(tf) * (self.log_n - np.log(max(1.0, self.document_frequency.get(ngram, 0.0))))
            norm[n] += pow(vec[n][ngram], 2)
            if n == 1:  # as pycocoevalcap: the "length" counts bigram occurrences
                length += tf
        return vec, [float(np.sqrt(x)) for x in norm], length


def cider_terms(candidates: Mapping[Any, str], references: Mapping[Any, Sequence[str]], idf: CiderIdf
                ) -> dict[Any, float]:
    """Each image's CIDEr-D term (a fraction; ×100 for reporting) of an already tokenised caption
    against its tokenised references, with the fixed document frequencies ``idf``."""
    from pycocoevalcap.cider.cider_scorer import cook_refs, cook_test

    out: dict[Any, float] = {}
    for key, caption in candidates.items():
        refs = list(references[key])
        if not refs:
            raise ValueError(f"CIDEr: image {key!r} has no references")
        vec, norm, length = idf.vector(cook_test(caption, CIDER_N))
        score = np.zeros(CIDER_N)
        for ref in cook_refs(refs, CIDER_N):
            vec_r, norm_r, length_r = idf.vector(ref)
            penalty = np.e ** (-(float(length - length_r) ** 2) / (2 * CIDER_SIGMA ** 2))
            val = np.zeros(CIDER_N)
            for n in range(CIDER_N):
                for ngram in vec[n]:
                    val[n] += min(vec[n][ngram], vec_r[n][ngram]) * vec_r[n][ngram]
                if norm[n] != 0 and norm_r[n] != 0:
                    val[n] /= norm[n] * norm_r[n]
                val[n] *= penalty
            score += val
        out[key] = float(np.mean(score) / len(refs) * 10.0)
    return out


def clip_scores(vlm: Any, image_features: Any, candidates: Sequence[str],
                references: Sequence[Sequence[str]] | None = None, *, prefix: str = CLIPSCORE_PREFIX
                ) -> tuple[Any, Any]:
    """Per-sample CLIPScore and RefCLIPScore (fractions; ×100 for reporting).

    ``image_features``: L2-normalised image features ``[N, D]`` of ``vlm``. Returns two float
    tensors ``[N]`` (RefCLIPScore is ``None`` without references).
    """
    import torch

    text = vlm.text_features([prefix + c for c in candidates]).to(image_features.device)
    cos = (image_features.float() * text).sum(-1)
    clip_s = CLIPSCORE_WEIGHT * cos.clamp(min=0)
    if references is None:
        return clip_s, None
    flat = [prefix + r for refs in references for r in refs]
    ref_feats = vlm.text_features(flat).to(text.device)
    best, start = [], 0
    for row, refs in enumerate(references):
        sims = ref_feats[start : start + len(refs)] @ text[row]
        best.append(sims.max() if len(refs) else torch.tensor(0.0))
        start += len(refs)
    ref_s = torch.stack(best).clamp(min=0)
    denom = clip_s + ref_s
    ref_clip = torch.where(denom > 0, 2 * clip_s * ref_s / denom.clamp(min=1e-12), torch.zeros_like(denom))
    return clip_s, ref_clip

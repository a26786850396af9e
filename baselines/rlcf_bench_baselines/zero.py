"""Zero: test-time augmentation with zero temperature (Farina et al., NeurIPS 2024).

No learning. Per sample: the protocol's views are encoded once (no autograd graph), the
``⌊γ·V⌋`` views with the lowest entropy of ``softmax(s·f(v)Tᵀ)`` are kept (γ = 0.3: 19 of 64),
each kept view casts one vote for its argmax class ("temperature → 0"), and the class with the
most votes wins. A tie is broken by the discarded views, from the most to the least confident:
the first whose argmax is one of the tied classes gets the extra vote; if none is, the tied class
with the highest logit in the most confident discarded view gets it.

Departures from the official code (``FarinaMatteo/zero``), and why:

* Votes are an explicit argmax count, not ``softmax(logits / eps)``: the same one-hot votes,
  without the fp16 overflow that division can cause under autocast.
* The fallback tie-break blanks the non-tied classes with a proper mask: the official code
  applies ``~`` to an integer index tensor (bitwise NOT: classes ``C−1−c`` of the tied ``c``),
  which blanks the wrong entries and can give the extra vote to a class that is not tied. Only
  reached when no discarded view predicts a tied class (on the parity inputs, the 3 ties of 16
  samples are broken by a discarded view; a crafted sample reaches it). ``-m tie_break=official``
  reproduces the official votes (tested); the prediction among classes still tied then follows
  ``p̄`` here, where the official ``topk`` order is unspecified. With no discarded view at all
  (γ = 1), the most confident kept view decides instead (the official code fails there).
* The confidence selection uses the shared, numerically safe entropy (the official ``p·log p``
  gives NaN for exact zeros, sorted last) and a stable sort (ties → lower view index). Both only
  matter where a probability underflows to 0 (a logit gap above 103, out of CLIP's range) or two
  entropies are equal: no option.
* The output is a vote share, not a distribution: ``probs = (votes + δ·p̄) / (Σ votes + δ)``
  with ``p̄`` the mean softmax of the kept views and ``δ = 1e-3``. The prediction is the vote
  winner (``δ < 1`` cannot change it); the confidence used for ECE is the vote share within
  0.1 %, and classes with equal votes are ranked by ``p̄`` for top-5 (the official code reports
  no top-5 and no calibration).
* Views: the common protocol's by default (every method sees the same views). The paper's own
  (64 views, crop + flip, no AugMix on any set) with ``--protocol-param view_policy=method``.
* Not implemented: "Zero + Ensemble" (7 Tip-Adapter templates) and the "RLCF setting" (a larger
  CLIP casting the votes).

Parity: ``tests/parity/test_parity_zero.py`` checks the votes against the official ``Zero.zero``
per sample (``docs/parity.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlcf_bench import MethodSpec, Predictions, ReferenceResult, ViewPolicy, hookimpl
from rlcf_bench.tta.episode import FrozenViewsMethod
from rlcf_bench.tta.objectives import select_confident

PAPER = "Farina et al., Frustratingly Easy Test-Time Adaptation of Vision-Language Models (NeurIPS 2024)"
VOTE_TIE_SHARE = 1e-3  # δ above: ranks classes of equal votes, never changes the winner


#: The fallback tie-break: ``mask`` (the tied classes only) or ``official`` (the official code's
#: bitwise-NOT indexing, which blanks classes ``C−1−c`` of the tied ``c`` instead).
TIE_BREAKS = ("mask", "official")


@dataclass(frozen=True)
class ZeroConfig:
    """``gamma``: the fraction of views kept for the vote (official 0.3); ``tie_break``: how the
    fallback tie-break blanks classes (:func:`zero_votes`)."""

    gamma: float = 0.3
    tie_break: str = "mask"

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma={self.gamma}: expected a fraction of the views in (0, 1]")
        if self.tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break={self.tie_break!r}: expected one of {', '.join(TIE_BREAKS)}")


def zero_votes(logits: Any, n_keep: int, order: Any = None, tie_break: str = "mask") -> Any:
    """Zero's vote: ``[B, C]`` vote counts from view logits ``[B, V, C]`` (view order as given).

    The ``n_keep`` lowest-entropy views vote for their argmax; a tie between the most voted classes
    goes to the first discarded view (most confident first) that predicts one of them, else to the
    tied class with the highest logit in the most confident discarded view (or, if every view was
    kept, the most confident view). The winner's count is raised by one, so it is the unique
    maximum. ``order``: the views by confidence (``select_confident(logits, V)``), if known.
    ``tie_break="official"``: in that last case, the official code's ``logit[~ties] = -inf`` on an
    integer tensor, which blanks classes ``C−1−c`` for the tied ``c`` and takes the argmax of the
    rest, so the extra vote may go to a class that is not tied (the tie then stays).
    """
    import torch

    b, v, c = logits.shape
    if order is None:
        order = select_confident(logits, v)  # every view, most confident first
    ranked = logits.argmax(-1).gather(1, order)  # [B, V] predicted class per view, by confidence
    votes = torch.zeros(b, c, dtype=torch.float32, device=logits.device)
    votes.scatter_add_(1, ranked[:, :n_keep], torch.ones(b, n_keep, device=logits.device))
    tied = votes == votes.max(-1, keepdim=True).values  # [B, C]
    if tie_break == "official":
        _official_tie_break(logits, votes, tied, ranked, order, n_keep)
        return votes
    # without a host sync: every sample's winner is computed, and added where there is a tie
    fallback = order[:, n_keep] if n_keep < v else order[:, 0]
    row = logits.gather(1, fallback[:, None, None].expand(-1, 1, c))[:, 0].float()
    winner = row.masked_fill(~tied, float("-inf")).argmax(-1)
    if n_keep < v:  # else no discarded view: the fallback decides
        rest = ranked[:, n_keep:]  # the discarded views' classes, most confident first
        hit = tied.gather(1, rest)  # [B, V - n_keep]: does that view predict a tied class?
        first_hit = rest.gather(1, hit.float().argmax(-1, keepdim=True))[:, 0]  # argmax returns the first maximum
        winner = torch.where(hit.any(-1), first_hit, winner)
    votes.scatter_add_(1, winner[:, None], (tied.sum(-1, keepdim=True) >= 2).float())
    return votes



def _official_tie_break(logits: Any, votes: Any, tied: Any, ranked: Any, order: Any, n_keep: int) -> None:
    """``tie_break="official"`` (:func:`zero_votes`), per sample: only the parity option pays its syncs."""
    import torch

    b, v, c = logits.shape
    for i in range(b):
        if int(tied[i].sum()) < 2:
            continue
        rest = ranked[i, n_keep:]
        hits = rest[tied[i][rest]]
        if len(hits):
            winner = int(hits[0])
        else:
            fallback = order[i, n_keep] if n_keep < v else order[i, 0]
            blanked = torch.zeros_like(tied[i])
            blanked[c - 1 - tied[i].nonzero()[:, 0]] = True
            winner = int(logits[i, fallback].float().masked_fill(blanked, float("-inf")).argmax())
        votes[i, winner] += 1

class Zero(FrozenViewsMethod):
    """Zero: majority vote of the most confident views' argmax classes (no learning)."""

    name = "zero"
    version = "1"
    config_cls = ZeroConfig
    tasks = frozenset({"classification"})
    paper = PAPER
    view_policy = ViewPolicy(n_views=64, augmix=False)

    def decide(self, features: Any) -> Predictions:
        logits = self.view_logits(features)
        v = logits.shape[1]
        n_keep = max(1, int(self.config.gamma * v))
        order = select_confident(logits, v)
        votes = zero_votes(logits, n_keep, order, self.config.tie_break)
        kept = order[:, :n_keep]
        mean_p = logits.softmax(-1).gather(1, kept[..., None].expand(-1, -1, logits.shape[-1])).mean(1)
        share = (votes + VOTE_TIE_SHARE * mean_p) / (votes.sum(-1, keepdim=True) + VOTE_TIE_SHARE)
        return Predictions(probs=share)


# ---------------------------------------------------------------------------------------- paper

_SOURCE = "Zero (NeurIPS 2024), mean of 3 seeds, read from FarinaMatteo/zero docs/static/images/{}"
_IMAGENET = {"imagenet": 69.31, "imagenet-a": 59.61, "imagenet-v2": 64.16, "imagenet-r": 77.22,
             "imagenet-sketch": 48.40}
_FINE_GRAINED = {"aircraft": 25.21, "caltech101": 93.66, "cars": 68.04, "dtd": 46.12, "eurosat": 34.33,
                 "flower102": 67.68, "food101": 86.53, "pets": 87.75, "sun397": 65.03, "ucf101": 67.77}


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(Zero)]


@hookimpl
def rlcfb_register_references() -> list[ReferenceResult]:
    note = ("paper row 'Zero'; top-1 accuracy, percent (0-100); the paper's views: 64, crop + flip, "
            "no AugMix (view_policy=method)")
    return [ReferenceResult(task="classification", dataset=ds, method="zero", model="ViT-B-16@openai", metric="top1",
                            value=value, source=_SOURCE.format(image), note=note)
            for table, image in ((_IMAGENET, "nds.png"), (_FINE_GRAINED, "fg.png")) for ds, value in table.items()]

"""Drive an online method through its public path (``setup``, then ``adapt``/``predict``/
``after_predict`` per sample, as the runner does) on the fixed features of a golden file.

The golden files of the online methods (``tools/parity/record_online_common.py``) hold the raw
per-view image features ``views`` [N, V, d] and the class text features ``text`` [C, d] the official
code was run on. :class:`FeatureCLIP` is a model whose "images" are those features: its
``image_features`` only normalises them, as the official code normalises what CLIP's
``encode_image`` returns, and its ``text_features`` returns the recorded class features. Nothing in
the methods knows about it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from rlcf_bench.device import AmpHelper
from rlcf_bench.tta.cache import ClassCache
from rlcf_bench.types import Batch, MethodContext, RunProtocol

#: |Δ| allowed between our logits (scale 100) and the official ones: fp32 rounding of sums taken in
#: another order, amplified by one AdamW step for DPE.
LOGITS_ATOL = 2e-3
SCORE_ATOL = 1e-4


class FeatureCLIP:
    """A dual encoder whose images are feature vectors (see the module docstring)."""

    name = "parity-features"
    logit_scale = 100.0

    def __init__(self, text: torch.Tensor) -> None:
        self.text = text

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(images.flatten(1).float(), dim=-1)

    def text_features(self, prompts: list[str]) -> torch.Tensor:
        assert len(prompts) == self.text.shape[0], "one prompt per class"
        return self.text.clone()


def context(text: torch.Tensor, dataset: str, n_views: int) -> MethodContext:
    device = torch.device("cpu")
    protocol = RunProtocol(n_views=n_views, selection_ratio=0.1, precision="fp32")
    return MethodContext(task="classification", protocol=protocol, device=device, amp=AmpHelper(device, "fp32"),
                         model=FeatureCLIP(text), classnames=tuple(f"class{c}" for c in range(text.shape[0])),
                         templates=("a photo of a {}.",), dataset=dataset)


def sample_batch(views: torch.Tensor, i: int) -> Batch:
    """Sample ``i``: view 0 as the image, all its views as the protocol's views."""
    return Batch(sample_ids=(f"s{i}",), indices=(i,), images=views[i, :1].clone(), targets=torch.tensor([0]),
                 view_fn=lambda: views[i:i + 1].clone())


def run_stream(method: Any, golden: dict[str, torch.Tensor], dataset: str,
               state: Callable[[Any], Any]) -> tuple[torch.Tensor, list[Any]]:
    """Set the method up on the golden inputs, feed the stream in order; per sample the output
    (logits, or probabilities for a method that gives those) and ``state(method)`` after it."""
    views = golden["views"]
    method.setup(context(golden["text"], dataset, views.shape[1]))
    outputs, states = [], []
    for i in range(views.shape[0]):
        batch = sample_batch(views, i)
        method.adapt(batch)
        out = method.predict(batch)
        method.after_predict(batch)
        outputs.append((out.logits if out.logits is not None else out.probs)[0].detach())
        states.append(state(method))
    return torch.stack(outputs), states


def cache_entries(cache: ClassCache, keys: torch.Tensor) -> list[dict[int, float]]:
    """Per class ``{sample id: score}`` of a :class:`ClassCache`, each stored key identified as the
    row of ``keys`` [N, d] it equals (a key matching none fails)."""
    rows = F.normalize(keys.double(), dim=-1)
    out: list[dict[int, float]] = []
    for c in range(cache.n_classes):
        entries = {}
        for slot in torch.nonzero(cache.valid[c]).flatten().tolist():
            sims = rows @ F.normalize(cache.keys[c, slot].double(), dim=0)
            best = int(sims.argmax())
            assert float(sims[best]) > 1 - 1e-6, f"class {c} holds a key that is no sample's (cosine {float(sims[best])})"
            entries[best] = float(cache.scores[c, slot])
        out.append(entries)
    return out


def golden_entries(ids: torch.Tensor, scores: torch.Tensor) -> list[dict[int, float]]:
    """The same ``[{id: score}]`` per class from a golden ``[C, cap]`` id / score table."""
    return [{int(i): float(s) for i, s in zip(row_ids, row_scores) if int(i) >= 0}
            for row_ids, row_scores in zip(ids, scores)]


def assert_same_entries(ours: list[dict[int, float]], theirs: list[dict[int, float]], where: str,
                        score_atol: float = SCORE_ATOL) -> None:
    for c, (a, b) in enumerate(zip(ours, theirs)):
        assert sorted(a) == sorted(b), f"{where}, class {c}: entries {sorted(a)} != official {sorted(b)}"
        for ident in a:
            assert abs(a[ident] - b[ident]) <= score_atol, f"{where}, class {c}, entry {ident}: score {a[ident]} != {b[ident]}"


def assert_logits(ours: torch.Tensor, theirs: torch.Tensor, atol: float = LOGITS_ATOL) -> None:
    """Per sample: logits within ``atol`` and the same prediction."""
    diff = (ours.double() - theirs.double()).abs().amax(-1)
    bad = torch.nonzero(diff > atol).flatten().tolist()
    assert not bad, f"samples {bad}: max |Δ logits| {float(diff.max()):.3g} > {atol}"
    changed = torch.nonzero(ours.argmax(-1) != theirs.argmax(-1)).flatten().tolist()
    assert not changed, f"samples {changed}: prediction differs from the official"

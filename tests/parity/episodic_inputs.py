"""Fixed inputs of the episodic-zoo parity tests (Zero, MTA, TPS, confident-view-ensemble) and of
their recording scripts (``tools/parity/record_<method>.py``), which import this file by path.

These methods' official algorithms work on image and text *features*, so both code bases are fed
the same seeded features and the view generation stays out of the comparison: 16 samples of 64
views, 10 classes, 64-dimensional embeddings, CLIP's logit scale (``exp(log 100)``). The class
features share a common direction (cosine ≈ 0.95 between classes, as CLIP's prompts do); a view's
feature is ``a·t̂_y + c + n`` (un-normalised; ``t̂_y`` the sample's class direction with a
per-view strength ``a``, ``c`` a per-sample offset, ``n`` per-view noise). The logits then have
CLIP's range (largest gap 19, no probability underflows to 0; the 6 selected views' entropies
0.002 to 0.6), the views disagree (Zero's vote ties on 3 of 16 samples) and the confident views
change from step to step once a method tunes.

Our side runs a method through its public path (``setup``, then per batch ``reset``, ``adapt``,
``predict``) on a :class:`FeatureVLM`: a model whose "images" are these features (its image tower
is the identity followed by L2 normalisation) and whose text tower returns the fixed class features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

N_SAMPLES, N_VIEWS, N_CLASSES, EMBED = 16, 64, 10, 64
SELECTION_RATIO = 0.1  # 6 of 64 views, the official TPT-family value
LOG_SCALE = math.log(100.0)  # CLIP's logit scale, stored as its log as CLIP does
SEED = 11  # of the first 12 seeds, the one whose Zero votes tie most often (3 of 16 samples)
TEXT_COMMON = 4.0  # class features share a common direction (cos ≈ 0.8 between classes, as CLIP's)
CLASSNAMES = tuple(f"class{c}" for c in range(N_CLASSES))
TEMPLATE = "a photo of a {}."
DESCRIPTION = (f"{N_SAMPLES} samples x {N_VIEWS} seeded views, {N_CLASSES} classes, {EMBED}-d features "
               f"(tests/parity/episodic_inputs.py, seed {SEED}), fp32 CPU")


def logit_scale() -> float:
    """``exp(log 100)`` in fp32, as a CLIP model computes it (what both code bases multiply by)."""
    return float(torch.tensor(LOG_SCALE, dtype=torch.float32).exp())


def fixed_features(seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``(text [C, E], views [N, V, E])``, both un-normalised fp32; view 0 is the "centre crop"."""
    g = torch.Generator().manual_seed(seed)
    text = TEXT_COMMON * torch.randn(EMBED, generator=g) + torch.randn(N_CLASSES, EMBED, generator=g)
    unit = F.normalize(text - text.mean(0), dim=-1)
    labels = torch.arange(N_SAMPLES) % N_CLASSES
    strength = torch.linspace(0.5, 4.0, N_SAMPLES)
    views = []
    for i in range(N_SAMPLES):
        offset = 0.7 * torch.randn(EMBED, generator=g)
        a = strength[i] * torch.rand(N_VIEWS, generator=g)
        noise = torch.randn(N_VIEWS, EMBED, generator=g)
        views.append(a[:, None] * unit[labels[i]] + offset + noise)
    return text, torch.stack(views)


class FeatureVLM:
    """A dual encoder whose inputs are features: ``image_features`` L2-normalises what it is given
    (``[N, E]``), ``text_features`` maps the class prompts to the fixed class features."""

    name = "parity-features"
    image_size = 0
    mean = std = (0.0, 0.0, 0.0)
    context_length = 0

    def __init__(self, text: torch.Tensor) -> None:
        self._text = {TEMPLATE.format(c): row for c, row in zip(CLASSNAMES, text)}
        self.device = torch.device("cpu")

    @property
    def logit_scale(self) -> float:
        return logit_scale()

    def image_features(self, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        return F.normalize(images.float(), dim=-1)

    def text_features(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        return F.normalize(torch.stack([self._text[t] for t in texts]), dim=-1)


def feature_context(text: torch.Tensor) -> Any:
    """A fp32 CPU :class:`~rlcf_bench.types.MethodContext` on :class:`FeatureVLM`."""
    from rlcf_bench.device import AmpHelper
    from rlcf_bench.types import MethodContext, RunProtocol

    device = torch.device("cpu")
    protocol = RunProtocol(seed=SEED, n_views=N_VIEWS, selection_ratio=SELECTION_RATIO, precision="fp32")
    return MethodContext(task="classification", protocol=protocol, device=device, amp=AmpHelper(device, "fp32"),
                         model=FeatureVLM(text), classnames=CLASSNAMES, templates=(TEMPLATE,), dataset="parity")


def feature_batches(views: torch.Tensor, batch_size: int) -> list[Any]:
    """The samples in order, ``batch_size`` at a time, as the runner hands them to a method."""
    from rlcf_bench.types import Batch

    out = []
    for start in range(0, len(views), batch_size):
        rows = views[start:start + batch_size]
        idx = tuple(range(start, start + len(rows)))
        out.append(Batch(sample_ids=tuple(f"parity-{i:02d}" for i in idx), indices=idx, images=rows[:, 0],
                         view_fn=lambda rows=rows: rows))
    return out


def run_method(method_cls: type, options: dict[str, Any] | None = None, *, batch_size: int,
               seed: int = SEED) -> torch.Tensor:
    """Per-sample outputs ``[N, C]`` of a method on the fixed inputs: its logits, or its probs when
    it returns no logits. Driven as the runner drives it: setup once, then reset, adapt, predict."""
    from rlcf_bench.types import config_from_pairs

    text, views = fixed_features(seed)
    method = method_cls(config_from_pairs(method_cls.config_cls, options or {}))
    method.setup(feature_context(text))
    outputs = []
    for batch in feature_batches(views, batch_size):
        method.reset()
        method.adapt(batch)
        pred = method.predict(batch)
        out = pred.logits if pred.logits is not None else pred.probs
        outputs.append(out.detach().float())
    return torch.cat(outputs)

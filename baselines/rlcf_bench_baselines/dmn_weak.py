"""DMN-weak — TTA-VLM's single-view variant of DMN's zero-shot memory (``TomSheng21/tta-vlm
online_method/dmn_weak.py``, ``--algorithm dmn_weak``): DMN-ZS on the centre view alone.

"Weak" is the augmentation, not the supervision: the TTA-VLM driver gives ``dmn_weak`` its plain
preprocessing (one centre crop, no views) where ``dmn`` gets 64 views, and nothing in it reads a
label — it is a zero-label method like DMN-ZS (docs/methods.md).

Episode (per sample, in the protocol's seeded stream order; the memory starts empty, never reset):

1. ``f₀`` = the centre view's feature, ``p₀`` its zero-shot probabilities, ``ŷ = argmax p₀``,
   ``h = H(p₀)``;
2. **write before predict**: offer ``(f₀, h)`` to the memory of ``ŷ`` (50 entries per class);
3. read out as DMN-ZS (``dmn_zs.py``): per class, the memory entries and the text embedding
   weighed by ``exp(−β(1 − ⟨f₀, m⟩))`` (β = 5.5), summed and normalised;
4. predict ``(p₀ + a · softmax(s · f₀ πᵀ)) / (1 + a)`` with ``a = 1`` (the port's fixed α; no
   search on the test labels, unlike DMN's reported numbers).

Choices: ``replace`` — ``better`` (default) replaces a full class's highest-entropy entry only by a
lower-entropy sample, DMN's own rule (``YBZh/DMN``, and ``dmn-zs`` here); ``always`` reproduces
the port, whose full memory replaces its highest-entropy entry with *every* new sample of that
class, however uncertain (the comparison with the new entropy is missing: treated as a bug, since
it lets the latest uncertain sample evict a confident one). ``prompts``: ``single`` (default; the
port's one "a photo of a" prompt everywhere), ``auto``, ``ensemble``, ``tip``.

Departures: fp32 (the port runs under fp16 autocast); the port's entropy adds 1e-5 inside the
logarithm, ours is exact (scores differ by less than 1e-4 on the parity stream); its output is
``p₀ + a·p_mem`` unnormalised, ours is divided by ``1 + a`` (same argmax; a distribution for
calibration); a tie in entropy evicts the latest written of the tied entries (the port's
unstable ``torch.sort`` leaves it unspecified). With ``-m replace=always``, per sample the
probabilities and the memory equal the port's to float rounding (docs/parity.md). No reference
rows: TTA-VLM's result tables could not be read here.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlcf_bench import Batch, MethodSpec, hookimpl
from rlcf_bench.tta.cache import ClassCache
from rlcf_bench.tta.online import summarise_views

from .dmn_zs import DMNConfig, DMNZeroShot

REPLACE_RULES = ("better", "always")


@dataclass(frozen=True)
class DMNWeakConfig(DMNConfig):
    """DMN-ZS's fields (``memory_size`` 50, ``beta`` 5.5, ``fusion_weight`` 1) plus ``replace``."""

    prompts: str = "single"
    replace: str = "better"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.replace not in REPLACE_RULES:
            raise ValueError(f"replace={self.replace!r}: expected one of {', '.join(REPLACE_RULES)}")


class DMNWeak(DMNZeroShot):
    """DMN-weak: DMN-ZS's memory on the centre view alone (online, zero-label)."""

    name = "dmn-weak"
    version = "1"
    config_cls = DMNWeakConfig
    paper = ("Sheng et al., The Illusion of Progress? A Critical Look at Test-Time Adaptation for "
             "Vision-Language Models (NeurIPS 2025), DMN-weak; DMN: Zhang et al. (CVPR 2024)")
    view_policy = None

    def build_state(self) -> None:
        self.memory = ClassCache(self.n_classes, self.config.memory_size, int(self.text.shape[1]),
                                 device=self.ctx.device, replace_always=self.config.replace == "always")

    def adapt(self, batch: Batch) -> None:
        s = summarise_views(self.ctx, batch, self.text, multi_view=False)
        self.memory.insert(s.probs.argmax(), s.feats[0], s.entropy)
        self.summary = s


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(DMNWeak)]

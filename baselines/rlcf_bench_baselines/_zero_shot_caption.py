"""Zero-shot captioning: the captioner without adaptation (beam search with the trained mapper).

The "ClipCap (cross-domain)" / "CapDec (zero-shot)" rows of the paper
(``docs/paper-numbers.md#captioning``): 5 beams, one caption,
lower-cased, exactly the final prediction step of RLCF without its episode.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlcf_bench import Batch, Method, MethodContext, Predictions


@dataclass(frozen=True)
class ZeroShotCaptionConfig:
    beams: int = 5
    max_new_tokens: int | None = None  # None: the captioner's default


class ZeroShotCaption(Method[ZeroShotCaptionConfig]):
    """Zero-shot captioning: the captioner without test-time adaptation (beam search, 5 beams)."""

    name = "zero-shot"  # the captioning implementation of zero-shot (baselines/rlcf_bench_baselines/zero_shot.py)
    version = "1"
    config_cls = ZeroShotCaptionConfig
    tasks = frozenset({"captioning"})
    max_batch = 16

    def setup(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self.model = ctx.captioner

    def predict(self, batch: Batch) -> Predictions:
        import torch

        assert batch.images is not None, "a captioning batch carries images"
        with torch.no_grad(), self.ctx.amp.autocast():
            captions = self.model.caption(batch.images, num_beams=self.config.beams,
                                          max_new_tokens=self.config.max_new_tokens)
        return Predictions(captions=captions)


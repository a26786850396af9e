"""``ctx.vlm`` / ``ctx.captioner``: the policy typed for a method, its kind checked once; the
wrong kind is a one-line ``PluginError`` naming the model and the kind the method needs."""

from __future__ import annotations

from typing import Any

import pytest

from rlcf_bench.errors import PluginError
from rlcf_bench.types import MethodContext, RunProtocol


class StandInCaptioner:
    """The part of a captioner the check looks at (its ``caption``); no image towers."""

    name = "stand-in-captioner"

    def caption(self, images: Any, num_beams: int = 5, max_new_tokens: int | None = None) -> list[str]:
        return ["a caption"] * len(images)


def _ctx(model: Any) -> MethodContext:
    import torch

    return MethodContext(task="t", protocol=RunProtocol(), device=torch.device("cpu"), amp=None,
                         model=model)


def test_the_policy_of_the_right_kind_is_returned_as_it_is() -> None:
    import torch

    from rlcf_bench_fixtures.tiny import load_tiny_clip

    clip, captioner = load_tiny_clip("tiny-clip", torch.device("cpu")), StandInCaptioner()
    assert _ctx(clip).vlm is clip
    assert _ctx(captioner).captioner is captioner


@pytest.mark.parametrize(("model", "accessor", "kind"), [
    (StandInCaptioner(), "vlm", "a CLIP-style dual encoder"),
    ("not a model", "captioner", "an image captioner"),
])
def test_the_wrong_kind_is_a_one_line_plugin_error(model: Any, accessor: str, kind: str) -> None:
    with pytest.raises(PluginError) as info:
        getattr(_ctx(model), accessor)
    message = str(info.value)
    assert "\n" not in message and kind in message and type(model).__name__ in message, message

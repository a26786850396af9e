"""Frozen view features of a batch (the policy's image tower not tuned): read from the
invocation's shared cache when the run has one (``rlcf_bench.view_cache``), else encoded here
in inference mode."""

from __future__ import annotations

import contextlib
from typing import Any

from ...lazy import LazyModule
from ...types import Batch, MethodContext

torch: Any = LazyModule("torch")  # imported when a run needs it (see rlcf_bench/lazy.py)


def has_view_cache(ctx: MethodContext) -> bool:
    """Whether the run shares the invocation's frozen view-feature cache (``rlcf_bench.view_cache``)."""
    from ...view_cache import CONTEXT_KEY

    return ctx.cache.get(CONTEXT_KEY) is not None


def view_features(ctx: MethodContext, batch: Batch, section: Any = None) -> torch.Tensor:
    """L2-normalised fp32 features ``[B, V, E]`` of the batch's protocol views under the frozen
    policy, no autograd graph: read from the invocation's shared cache when the run has one (each
    sample computed once, its cost credited to every run that reuses it: ``rlcf_bench.view_cache``),
    else generated and encoded here (:func:`encode_views`). Only for a frozen image tower."""
    from ...view_cache import CONTEXT_KEY

    shared = ctx.cache.get(CONTEXT_KEY)
    if shared is not None:
        return shared(ctx, batch)
    section = section or (lambda _name: contextlib.nullcontext())
    with section("views"):
        views = batch.views
    return encode_views(ctx, views, section)


def encode_views(ctx: MethodContext, views: torch.Tensor, section: Any = None) -> torch.Tensor:
    """L2-normalised fp32 features ``[B, V, E]`` of views ``[B, V, 3, S, S]`` under the frozen
    policy, in inference mode (no autograd graph is ever built)."""
    section = section or (lambda _name: contextlib.nullcontext())
    b, v = views.shape[:2]
    with torch.inference_mode(), ctx.amp.autocast(), section("image_encoder"):
        return ctx.vlm.image_features(views.flatten(0, 1)).view(b, v, -1)

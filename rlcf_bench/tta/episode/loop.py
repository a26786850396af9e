"""The episode loop (:func:`run_episode`): confident-view selection at step 0, the steps, the
selected views' pixels cut only when the tuner or the objective reads them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..objectives import Objective, gather_views, select_confident
from .tuners import Tuner

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch


def needs_pixels(objective: Objective) -> bool:
    """Whether ``objective.begin`` reads the selected views' pixels (it overrides the no-op)."""
    return type(objective).begin is not Objective.begin


def run_episode(tuner: Tuner, objective: Objective, views: torch.Tensor | None, *, n_selected: int, steps: int,
                amp: Any, section: Any = None,
                select_views: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor | None:
    """One test-time tuning episode (:mod:`rlcf_bench.tta.episode`). Returns the selected view indices.

    ``views`` may be None when the tuner preloaded the view features (:meth:`Tuner.preload`); the
    pixels of the selected views, if the objective (:func:`needs_pixels`) or the tuner
    (:attr:`Tuner.reads_selected_views`) reads them, then come from ``select_views`` (indices
    ``[B, N]`` → ``[B, N, 3, S, S]``, e.g. :meth:`rlcf_bench.types.Batch.select_views`, which cuts
    only those views)."""
    section = section or (lambda _name: contextlib.nullcontext())
    if steps <= 0:
        return None
    tuner.begin(views)
    selected: torch.Tensor | None = None
    optimizer = tuner.optimizer
    assert optimizer is not None
    with tuner.episode():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            with amp.autocast():
                if selected is None:
                    all_logits = tuner.selection_logits()
                    selected = select_confident(all_logits, n_selected)
                    pixels = _selected_pixels(tuner, objective, views, selected, select_views, section)
                    if pixels is not None and tuner.reads_selected_views:
                        tuner.use_selected_views(pixels)
                    objective.begin(pixels)
                    logits = tuner.step_logits(selected, all_logits if all_logits.requires_grad else None)
                else:
                    logits = tuner.step_logits(selected)
                # per-sample losses [B]: summed by backward_step (exact per-sample gradients), each
                # scaled by its own sample's loss scale under amp-fp16 (rlcf_bench.device.AmpHelper)
                loss = objective.loss(logits)
            with section("backward+optimizer"):
                amp.backward_step(loss, optimizer)
    tuner.end()
    return selected


def _selected_pixels(tuner: Tuner, objective: Objective, views: torch.Tensor | None, selected: torch.Tensor,
                     select_views: Callable[[torch.Tensor], torch.Tensor] | None, section: Any) -> torch.Tensor | None:
    """The selected views' pixels when the tuner or the objective reads them, else None."""
    if not (tuner.reads_selected_views or needs_pixels(objective)):
        return None
    if views is not None:
        pixels: torch.Tensor = gather_views(views, selected)  # (gather_views is typed with the lazy torch, Any)
        return pixels
    if select_views is None:
        raise ValueError("this episode reads the selected views' pixels: give run_episode views or select_views")
    with section("views"):
        return select_views(selected)

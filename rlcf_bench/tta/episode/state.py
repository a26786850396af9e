"""What an episode keeps and restores: snapshots of the tuned tensors, the momentum start point,
gradients switched on for an episode only, and the timed sections of its work."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ...lazy import LazyModule, no_grad
from ...types import MethodContext

torch: Any = LazyModule("torch")  # imported when a run needs it (see rlcf_bench/lazy.py)


class ParamSnapshot:
    """The initial values of a list of tuned parameters; :meth:`restore` copies them back in
    place (bit-exact, no re-allocation, nothing else of the model touched)."""

    def __init__(self, params: Iterable[torch.nn.Parameter]) -> None:
        self.params = list(params)
        self.saved = [p.detach().clone() for p in self.params]

    @no_grad
    def restore(self, values: Sequence[torch.Tensor] | None = None) -> None:
        for p, v in zip(self.params, values if values is not None else self.saved):
            p.copy_(v)


class MomentumStart:
    """The momentum start point of the paper's "-M" variants (``docs/original-code.md#momentum-start-point``),
    shared by image-encoder tuning and retrieval.

    After each sample the adapted tensors are folded into an EMA (``mu``); every ``freq`` samples
    the start point of the next episodes becomes ``(1−w)·θ_clip + w·EMA``, where θ_clip are the
    ``initial`` values. (The original averages the tuned module's state dict; a CLIP tower's state
    is exactly its parameters, so averaging the tuned parameters is the same.)
    """

    def __init__(self, initial: Sequence[torch.Tensor], *, mu: float, freq: int, w: float) -> None:
        self.initial = [t.detach() for t in initial]
        self.mu, self.freq, self.w = mu, int(freq), float(w)
        self.ema = [t.clone() for t in self.initial]
        self.start: list[torch.Tensor] | None = None  # None → θ_clip
        self.counter = 0

    @no_grad
    def update(self, adapted: Sequence[torch.Tensor]) -> None:
        """After a sample is predicted: fold its adapted tensors into the EMA."""
        for m, p in zip(self.ema, adapted):
            m.mul_(self.mu).add_(p.detach(), alpha=1.0 - self.mu)
        self.counter += 1
        if self.counter >= self.freq:
            self.counter = 0
            w = self.w
            self.start = [c * (1.0 - w) + m * w for c, m in zip(self.initial, self.ema)]


@contextlib.contextmanager
def trainable(params: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """Switch ``requires_grad`` on for the duration of an episode only, so that a shared model
    is left frozen for the other methods of the session."""
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(False)
            p.grad = None


def sections(ctx: MethodContext) -> Any:
    """``section(name)`` context managers for the optional fine-grained profile.

    ``reward`` always goes to the runner's timer (reports show its share). The other sections
    (views, image_encoder, text_encoder, backward+optimizer — the backward pass of
    the tuned encoder is in the last one) are recorded only when a ``profile_timer``
    (a :class:`rlcf_bench.device.SectionTimer`) is in ``ctx.cache`` — the benchmarks set one — so
    that normal runs pay no extra device synchronisations.
    """
    timer = ctx.timer
    profile = ctx.cache.get("profile_timer")

    def section(name: str) -> contextlib.AbstractContextManager[Any]:
        if name == "reward":
            stack = contextlib.ExitStack()
            for t in (timer, profile):
                if t is not None:
                    stack.enter_context(t.section(name))
            return stack
        return profile.section(name) if profile is not None else contextlib.nullcontext()

    return section

"""The stream protocol parameters' names and their parsing (``stream=iid|continual|dirichlet:γ``,
``online_batch=B``; :mod:`rlcf_bench.streams` runs them). A leaf module, so the protocol-parameter
checks of :mod:`rlcf_bench.types` can read them without importing the runner's side."""

from __future__ import annotations

import math
import re
from typing import Any

STREAM = "stream"
ONLINE_BATCH = "online_batch"
CONTINUAL = "continual"
CONTINUAL_PREFIX = "continual:"
STREAM_KINDS = ("iid", "continual", "dirichlet:γ")
_DIRICHLET = re.compile(r"dirichlet:(?P<gamma>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")


class StreamError(ValueError):
    pass


def parse_stream(value: Any) -> tuple[str, float | None]:
    """``"iid"`` / ``"continual"`` / ``"dirichlet:γ"`` → (kind, γ or None); one-line error otherwise."""
    text = "iid" if value is None else str(value).strip()
    if text in ("iid", CONTINUAL):
        return text, None
    m = _DIRICHLET.fullmatch(text)
    if m:
        gamma = float(m.group("gamma"))
        if gamma > 0 and math.isfinite(gamma):
            return "dirichlet", gamma
    raise StreamError(f"stream={text!r}: expected one of iid, continual, dirichlet:γ (γ > 0, e.g. dirichlet:0.1)")


def stream_problem(raw: Any) -> str | None:
    try:
        parse_stream(raw)
    except StreamError as exc:
        return str(exc).split(": ", 1)[1]
    return None

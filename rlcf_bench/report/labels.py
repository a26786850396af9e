"""Display names of the paper layout: what a paper prints instead of a method's, model's,
dataset's, metric's, task's or average's name (``tpt-prompt`` → ``TPT``, a dataset given as a
folder path → ``Ours``).

Plugins and suites declare them (``rlcfb_display_names``); ``report --label KEY=TEXT`` overrides
them, key by key. A display name is plain text: every format escapes it as it escapes names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..plugins import PluginHost


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    """``KEY=TEXT`` strings as a mapping (the last one for a key wins); a one-line error otherwise."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise ValueError(f"--label expects KEY=TEXT (a name and its display text), got {item!r}")
        out[key.strip()] = text.strip()
    return out


def display_names(host: PluginHost | None, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The installed plugins' display names with ``overrides`` (``--label``) applied."""
    declared = host.display_names() if host is not None else {}
    return {**declared, **(overrides or {})}

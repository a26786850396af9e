"""``rlcf``: RLCF for image-text retrieval and captioning — one public name, as in the paper.

The algorithms live in ``_retrieval.py`` (``docs/original-code.md#retrieval``: tune the query's
tower, top-K candidates,
CLIP reward, 8 steps) and ``_captioning.py`` (``docs/original-code.md#captioning-episode``: K beams,
CLIPScore reward, tune the mapper
only, decoder frozen, pads excluded). Options of either can be set with ``-m``; an option the
run's task does not have is an error. Classification uses ``rlcf-prompt`` / ``rlcf-image``.
"""

from __future__ import annotations

from typing import Any

from rlcf_bench import Method, MethodSpec, hookimpl
from rlcf_bench.dispatch import task_dispatch

from ._paper import PAPER


def _rlcf() -> type[Method[Any]]:
    from ._captioning import RLCFCaption
    from ._retrieval import RLCFRetrieval

    return task_dispatch("rlcf", {"retrieval": RLCFRetrieval, "captioning": RLCFCaption}, version="1",
                         doc="RLCF for retrieval (tune the query tower) and captioning (tune the prefix mapper).",
                         paper=PAPER)


RLCF = _rlcf()


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    return [MethodSpec.from_method(RLCF)]

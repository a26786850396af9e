"""``rlcf``: RLCF for image-text retrieval and captioning — one public name, as in the paper.

The algorithms live in ``_retrieval.py`` (``docs/original-code.md#retrieval``: tune the query's
tower, top-K candidates,
CLIP reward, 8 steps) and ``_captioning.py`` (``docs/original-code.md#captioning-episode``: K beams,
CLIPScore reward, tune the mapper
only, decoder frozen, pads excluded). ``-m`` options are those of the run's task's implementation; an option it
does not have is an error naming the task. Classification uses ``rlcf-prompt`` / ``rlcf-image``.
"""

from __future__ import annotations

from rlcf_bench import MethodSpec, hookimpl

from ._captioning import RLCFCaption
from ._retrieval import RLCFRetrieval


@hookimpl
def rlcfb_register_methods() -> list[MethodSpec]:
    """One public name, one implementation per task (the registry keys methods by name and task)."""
    return [MethodSpec.from_method(RLCFRetrieval), MethodSpec.from_method(RLCFCaption)]

"""Captioner backends (``ModelSpec(kind="captioner")``): ClipCap and CapDec checkpoint folders.

Names: ``clipcap@/path/to/dir`` and ``capdec@/path/to/dir``, where the folder is what
``rlcf-bench caption train`` writes (``captioner.json``, ``mapper.safetensors``, ``decoder/`` in
``save_pretrained`` format or a reference to a local OPT-125m folder / hub name, ``tokenizer/``);
the CLIP image encoder is loaded by the model name recorded in ``captioner.json``. The prefix
must match the folder's kind. See ``plugins/rlcf_bench_tasks/CAPTIONING.md``.

The open_clip backend declines these prefixes (they are not open_clip architectures); a name two
backends accept is an error naming both (:class:`rlcf_bench.registry.Registry`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rlcf_bench import ModelSpec, hookimpl

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rlcf_bench.session import ComponentSession

KINDS = ("clipcap", "capdec")


def _accepts_for(kind: str) -> Callable[[str], bool]:
    def accepts(name: str) -> bool:
        prefix, sep, path = name.partition("@")
        return bool(sep and path) and prefix.lower() == kind

    return accepts


def load_captioner_name(name: str, device: Any, *, session: ComponentSession) -> Any:
    from rlcf_bench_models._clipcap.model import load_captioner

    kind, sep, path = name.partition("@")
    if not (sep and path):
        raise ValueError(f"{name!r}: name a checkpoint folder, e.g. {kind}@/path/to/dir")
    model = load_captioner(path, device, name=name, session=session)
    if model.kind != kind.lower():
        raise ValueError(f"{name}: the folder holds a {model.kind} model, not {kind}")
    return model


@hookimpl
def rlcfb_register_models() -> list[ModelSpec]:
    return [
        ModelSpec(name=kind, version="1", load=load_captioner_name, accepts=_accepts_for(kind), kind="captioner",
                  description=f"{'ClipCap' if kind == 'clipcap' else 'CapDec'} captioner from a checkpoint folder: "
                              f"{kind}@/path/to/dir (CLIP prefix → mapper → OPT)")
        for kind in KINDS
    ]

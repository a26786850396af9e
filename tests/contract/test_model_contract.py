"""The contract every registered model keeps: loads offline (where it needs no download), has a
stable version, is frozen after load, and (a vision-language model) encodes images and texts to
embeddings of one declared width.

A backend that serves a family of names (``open_clip`` ``ARCH@TAG``, ``hf:/dir``, ``clipcap@/dir``)
is no model by its registered name alone: asked for that name it must say, in one line, what to
pass; its real formats are loaded from tiny files in ``tests/models``.
"""

from __future__ import annotations

from typing import Any

import pytest

KINDS = ("vlm", "captioner")


def _spec(host: Any, name: str) -> Any:
    return host.registry("models").get(name)


def _session(host: Any) -> Any:
    from rlcf_bench.session import ComponentSession

    return ComponentSession(host, device="cpu")


def _load(host: Any, spec: Any) -> Any:
    """The model on the CPU through a fresh component session (how the runner loads it), or skip
    with the backend's own reason it cannot be loaded here."""
    if spec.check is not None:
        try:
            spec.check(spec.name)
        except Exception as exc:  # the backend's preflight: weights missing, download needed ...
            pytest.skip(f"model {spec.name!r} cannot be loaded on this machine: {exc}")
    return _session(host).model(spec.name)


def _version(spec: Any, model: Any) -> str:
    """The version a run records (the loaded weights' own, else the spec's)."""
    return str(getattr(model, "version", None) or spec.version)


def _modules(model: Any) -> list[Any]:
    import torch

    parts = [getattr(model, "module", None), getattr(model, "clip", None), getattr(model, "decoder", None)]
    return [m for m in parts if isinstance(m, torch.nn.Module)]


def test_every_model_spec_is_complete(registry_host: Any, model_name: str) -> None:
    spec = _spec(registry_host, model_name)
    assert spec.kind in KINDS, f"{model_name}: kind {spec.kind!r} not one of {KINDS}"
    assert spec.version and spec.description, f"{model_name}: needs a version and a description"
    assert registry_host.registry("models").get(model_name) is spec


def test_a_family_backend_names_what_to_pass(registry_host: Any, model_name: str) -> None:
    spec = _spec(registry_host, model_name)
    if spec.accepts is None:
        pytest.skip(f"{model_name!r} is one model, not a family of names")
    assert not spec.accepts(model_name), f"{model_name}: the backend claims its own bare name"
    with pytest.raises(Exception) as info:
        (spec.check or _session(registry_host).model)(model_name)
    message = str(info.value)
    assert message and "\n" not in message and model_name in message, message


def test_model_loads_frozen_with_a_stable_version(registry_host: Any, model_name: str) -> None:
    spec = _spec(registry_host, model_name)
    if spec.accepts is not None:
        pytest.skip(f"{model_name!r} is a backend of a family of names: it needs weights named on the command line")
    model = _load(registry_host, spec)
    again = _session(registry_host).model(spec.name)
    assert _version(spec, model) == _version(spec, again), f"{model_name}: the version changed between two loads"
    modules = _modules(model)
    assert modules, f"{model_name}: no torch module found on the loaded model"
    for module in modules:
        assert not module.training, f"{model_name}: {type(module).__name__} left in training mode"
        trainable = [n for n, p in module.named_parameters() if p.requires_grad]
        assert not trainable, f"{model_name}: trainable after load: {trainable[:3]}"


def test_vlm_encodes_to_one_declared_width(registry_host: Any, model_name: str) -> None:
    import torch

    from rlcf_bench.types import VisionLanguageModel

    spec = _spec(registry_host, model_name)
    if spec.kind != "vlm" or spec.accepts is not None:
        pytest.skip(f"{model_name!r} is not a single vision-language model (kind {spec.kind})")
    model = _load(registry_host, spec)
    assert isinstance(model, VisionLanguageModel)
    assert model.image_size > 0 and len(model.mean) == len(model.std) == 3 and model.context_length > 0
    assert model.logit_scale > 0
    with torch.no_grad():
        images = model.encode_image(torch.zeros(2, 3, model.image_size, model.image_size))
        tokens = model.tokenize(["a photo of a dog.", "a sketch"])
        texts = model.encode_text(tokens)
    assert tokens.shape == (2, model.context_length)
    assert images.ndim == texts.ndim == 2 and images.shape[0] == texts.shape[0] == 2
    assert images.shape[1] == texts.shape[1] > 0, f"image width {images.shape[1]} ≠ text width {texts.shape[1]}"
    assert torch.isfinite(images).all() and torch.isfinite(texts).all()

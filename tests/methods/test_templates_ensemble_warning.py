"""``templates=ensemble`` on a dataset with one template and no ensemble changes nothing: the
method says so (issue 28) instead of silently giving the single-template result."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch

from rlcf_bench.tta.prompts import SettingHasNoEffect, class_text_features


class _Model:
    name = "fake"

    def text_features(self, prompts: list[str]) -> torch.Tensor:
        gen = torch.Generator().manual_seed(sum(map(len, prompts)))
        return torch.randn(len(prompts), 8, generator=gen)


def _ctx(templates: tuple[str, ...], ensemble: tuple[str, ...] | None) -> SimpleNamespace:
    return SimpleNamespace(vlm=_Model(), cache={}, templates=templates, ensemble_templates=ensemble,
                           classnames=["cat", "dog"], device="cpu", dataset="micro-sketch")


def test_ensemble_on_a_single_template_dataset_warns_and_equals_single() -> None:
    ctx = _ctx(("a photo of a {}.",), None)
    with pytest.warns(SettingHasNoEffect, match="templates=ensemble has no effect on micro-sketch"):
        ensemble = class_text_features(ctx, templates="ensemble")
    assert torch.equal(ensemble, class_text_features(ctx, templates="single"))  # what the warning says


def test_a_real_ensemble_does_not_warn() -> None:
    ctx = _ctx(("a photo of a {}.",), ("a photo of a {}.", "a sketch of a {}."))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SettingHasNoEffect)
        ensemble = class_text_features(ctx, templates="ensemble")
    assert not torch.equal(ensemble, class_text_features(ctx, templates="single"))


def test_the_command_line_prints_it_as_one_warning_line() -> None:
    from rlcf_bench import errors

    text = errors._bench_format(SettingHasNoEffect("templates=ensemble has no effect on d"), SettingHasNoEffect,
                                "zero_shot.py", 54, "source line")
    assert text == "warning: templates=ensemble has no effect on d\n"
    other = errors._bench_format(UserWarning("x"), UserWarning, "f.py", 1, "src")
    assert "f.py:1" in other  # other warnings keep Python's format

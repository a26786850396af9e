"""Class prompts and their cached text features, shared by every classification method."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

ORIGINAL_UNDERSCORE_PREFIX = "a_photo_of_a"


class SettingHasNoEffect(UserWarning):
    """A method option that silently changes nothing on this dataset (e.g. ``templates=ensemble``
    where the dataset has a single template and no ensemble). The command line prints it as one
    ``warning:`` line."""

    one_line = True


def class_prompts(classnames: Sequence[str], template: str, *, underscore_prompt: bool = False) -> list[str]:
    """One prompt per class. ``underscore_prompt`` reproduces the original code's literal
    "a_photo_of_a <class>." used by its zero-shot and backbone-tuning scripts
    (``docs/original-code.md#underscored-prompts``)."""
    names = [c.replace("_", " ") for c in classnames]
    if underscore_prompt:
        return [f"{ORIGINAL_UNDERSCORE_PREFIX} {c}." for c in names]
    return [template.format(c) for c in names]


def class_text_features(ctx: Any, *, templates: str = "single", underscore_prompt: bool = False,
                        model: Any = None) -> Any:
    """Normalised ``[C, D]`` class features of ``model`` (default: the policy), computed once per run
    and kept in ``ctx.cache``. ``templates`` is ``single`` (the dataset's first template) or
    ``ensemble`` (mean of normalised features over the dataset's ensemble templates)."""
    import torch.nn.functional as F

    model = model or ctx.vlm
    key = ("class_text_features", model.name, templates, underscore_prompt)
    if key in ctx.cache:
        return ctx.cache[key]
    if templates == "single":
        chosen = list(ctx.templates[:1])
    elif templates == "ensemble":
        chosen = list(ctx.ensemble_templates or ctx.templates)
        if len(chosen) <= 1:
            warnings.warn(f"templates=ensemble has no effect on {getattr(ctx, 'dataset', None) or 'this dataset'}: it "
                          f"has a single template ({chosen[0] if chosen else 'none'!r}) and no ensemble, so the "
                          "result equals templates=single; compare templates on a dataset with an ensemble",
                          SettingHasNoEffect, stacklevel=2)
    else:
        raise ValueError(f"templates={templates!r}: expected 'single' or 'ensemble'")
    feats = None
    for template in chosen:
        f = model.text_features(class_prompts(ctx.classnames, template, underscore_prompt=underscore_prompt))
        feats = f if feats is None else feats + f
    assert feats is not None
    result = F.normalize(feats / len(chosen), dim=-1).to(ctx.device)
    ctx.cache[key] = result
    return result

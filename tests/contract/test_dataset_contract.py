"""The contract every registered dataset keeps, for each task kind it declares.

Generated datasets (no ``root_name``) are built with a small ``n`` where they take one; datasets
read from disk are checked against ``RLCF_BENCH_DATA_ROOT`` when it holds their folder and are
skipped otherwise, with a reason naming the folder (their layouts are exercised file by file on
tiny fixtures in ``tests/datasets``). What every dataset must do without its files — report a
missing folder as a layout problem instead of raising — is checked for all of them.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import pytest

#: Samples built for generated datasets that take ``n`` and samples whose images are decoded.
SMALL_N = 6
DECODED = 3


def _takes(spec: Any, param: str) -> bool:
    try:
        return param in inspect.signature(spec.build).parameters
    except (TypeError, ValueError):  # a builtin or C callable: say no
        return False


def _build(spec: Any, **params: Any) -> Any:
    """The dataset with cheap parameters, or skip naming what is missing."""
    from rlcf_bench.datasets import DATA_ROOT_ENV

    if _takes(spec, "n"):
        params.setdefault("n", SMALL_N)
    if spec.root_name is None:
        return spec.build(None, **params)
    root = os.environ.get(DATA_ROOT_ENV)
    if not root or not (Path(root) / spec.root_name).exists():
        pytest.skip(f"dataset {spec.name!r} reads {spec.root_name}/ under ${DATA_ROOT_ENV}, which this machine "
                    f"does not have (its layout is tested on tiny fixtures in tests/datasets)")
    if spec.check is not None:
        report = spec.check(Path(root), **params)
        assert report.ok, report.render()
    return spec.build(Path(root), **params)


def _ids(data: Any, kind: str) -> list[str]:
    one = data.image_id if kind == "retrieval" else data.sample_id
    return [one(i) for i in range(len(data))]


def _check_images(data: Any) -> None:
    import torch

    for i in range(min(DECODED, len(data))):
        img = data.load_image(i)
        assert isinstance(img, torch.Tensor) and img.dtype == torch.uint8, f"image {i}: expected a uint8 tensor"
        assert img.ndim == 3 and img.shape[0] == 3 and min(img.shape[1:]) > 0, f"image {i}: shape {tuple(img.shape)}"


def _check_classification(data: Any) -> None:
    from rlcf_bench.datasets import ClassificationData

    assert isinstance(data, ClassificationData)
    names = tuple(data.classnames)
    assert names and all(isinstance(c, str) and c.strip() for c in names), "class names must be non-empty strings"
    assert len(set(names)) == len(names), "class names must be distinct"
    assert data.templates and all("{}" in t for t in data.templates), "every template holds {}"
    labels = [data.label(i) for i in range(len(data))]
    # an open-set mix (docs/open-set.md): its OOD samples, and only those, have the label -1
    is_ood = data.is_ood if callable(getattr(data, "is_ood", None)) else (lambda i: False)
    ood = [bool(is_ood(i)) for i in range(len(data))]
    assert all(isinstance(y, int) and (y == -1 if o else 0 <= y < len(names)) for y, o in zip(labels, ood)), \
        f"labels out of range: {labels}"


def _check_retrieval(data: Any) -> None:
    from rlcf_bench.datasets import RetrievalData

    assert isinstance(data, RetrievalData)
    assert len(data.captions) == len(data.caption_image) > 0
    assert all(isinstance(c, str) and c.strip() for c in data.captions), "captions must be non-empty strings"
    assert all(0 <= i < len(data) for i in data.caption_image), "caption_image points past the images"
    assert set(data.caption_image) == set(range(len(data))), "every image needs at least one caption"


def _check_captioning(data: Any) -> None:
    from rlcf_bench.datasets import CaptioningData

    assert isinstance(data, CaptioningData)
    for i in range(len(data)):
        refs = data.references(i)
        assert refs and all(isinstance(r, str) and r.strip() for r in refs), f"sample {i}: references {refs!r}"


CHECKS = {"classification": _check_classification, "retrieval": _check_retrieval, "captioning": _check_captioning}


def test_every_dataset_declares_a_known_task_kind(registry_host: Any, dataset_name: str) -> None:
    spec = registry_host.registry("datasets").get(dataset_name)
    kinds = {t.kind for t in registry_host.registry("tasks")}
    assert spec.task_kinds and spec.task_kinds <= kinds, f"{dataset_name}: kinds {set(spec.task_kinds)} vs tasks {kinds}"
    assert spec.version and spec.description, f"{dataset_name}: needs a version and a description"


def test_dataset_yields_well_formed_samples(registry_host: Any, dataset_name: str) -> None:
    spec = registry_host.registry("datasets").get(dataset_name)
    first, second = _build(spec), _build(spec)
    if _takes(spec, "n"):
        assert len(first) == SMALL_N, f"n={SMALL_N} gave {len(first)} samples"
    assert len(first) == len(second) > 0
    for kind in sorted(spec.task_kinds):
        if kind not in CHECKS:
            continue  # a task kind from a plugin: its own tests define its samples
        CHECKS[kind](first)
        ids = _ids(first, kind)
        assert len(set(ids)) == len(ids), f"{kind}: duplicate ids {sorted(ids)[:5]}"
        assert _ids(second, kind) == ids, f"{kind}: ids differ between two loads"
    _check_images(first)


def test_a_bad_size_is_a_one_line_error(registry_host: Any, dataset_name: str) -> None:
    spec = registry_host.registry("datasets").get(dataset_name)
    if not _takes(spec, "n"):
        pytest.skip(f"dataset {dataset_name!r} takes no size parameter n")
    with pytest.raises((ValueError, TypeError)) as info:
        spec.build(None, n=0)
    message = str(info.value)
    assert message and "\n" not in message and "n" in message, message


def test_an_unknown_parameter_is_a_one_line_error(registry_host: Any, dataset_name: str, tmp_path: Path) -> None:
    spec = registry_host.registry("datasets").get(dataset_name)
    with pytest.raises((ValueError, TypeError)) as info:
        spec.build(tmp_path if spec.root_name else None, no_such_parameter=1)
    message = str(info.value)
    assert "no_such_parameter" in message and "\n" not in message, message


def test_a_missing_folder_is_a_layout_problem(registry_host: Any, dataset_name: str, tmp_path: Path) -> None:
    spec = registry_host.registry("datasets").get(dataset_name)
    if spec.root_name is None:
        pytest.skip(f"dataset {dataset_name!r} is generated: it reads no folder")
    assert spec.check is not None, f"{dataset_name} reads {spec.root_name}/ but declares no layout check"
    report = spec.check(tmp_path, **dict(spec.params))
    assert not report.ok and report.problems, f"{dataset_name}: an empty data root passed its layout check"
    assert dataset_name in report.render()

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

#: Samples built for generated datasets that take ``n``.
SMALL_N = 6


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


def test_every_dataset_declares_a_known_task_kind(registry_host: Any, dataset_name: str) -> None:
    spec = registry_host.registry("datasets").get(dataset_name)
    kinds = {t.kind for t in registry_host.registry("tasks")}
    assert spec.task_kinds and spec.task_kinds <= kinds, f"{dataset_name}: kinds {set(spec.task_kinds)} vs tasks {kinds}"
    assert spec.version and spec.description, f"{dataset_name}: needs a version and a description"


def test_dataset_yields_well_formed_samples(registry_host: Any, dataset_name: str) -> None:
    """Per task kind, the task's own ``TaskSpec.check_data`` (no task name is known here)."""
    from rlcf_bench.testing import check_dataset_samples

    spec = registry_host.registry("datasets").get(dataset_name)
    first, second = _build(spec), _build(spec)
    if _takes(spec, "n"):
        assert len(first) == SMALL_N, f"n={SMALL_N} gave {len(first)} samples"
    check_dataset_samples(registry_host, spec, first, second)


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

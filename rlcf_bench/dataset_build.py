"""Building a dataset under a data root, after checking its layout: a leaf of the host, used by
the component session and by the continual stream's combined dataset (:mod:`rlcf_bench.streams`)."""

from __future__ import annotations

from typing import Any

from .errors import ComponentError
from .types.components import DatasetSpec
from .types.layout import DatasetLayoutError


def build_dataset(spec: DatasetSpec, params: dict[str, Any], root: Any) -> Any:
    """Build ``spec`` under the data ``root``, after checking its layout (a dataset on disk)."""
    if spec.root_name is not None:
        if root is None:
            raise ComponentError(
                f"dataset {spec.name!r} needs a data root holding {spec.root_name}/: pass --data-root DIR, set "
                f"RLCF_BENCH_DATA_ROOT, or put {{\"data_root\": DIR}} in ~/.config/rlcf-bench/config.json")
        if spec.check is not None:
            report = spec.check(root, **params)
            if not report.ok:
                raise DatasetLayoutError(report)
    return spec.build(root, **params)

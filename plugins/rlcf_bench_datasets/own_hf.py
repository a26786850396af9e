"""``hf:NAME_OR_PATH``: a Hugging Face ``datasets`` dataset saved on disk or in the local cache.

A path (``save_to_disk`` output: a ``Dataset`` or a ``DatasetDict``) is read with
``load_from_disk``; any other name with ``load_dataset(NAME, split=...)`` from the local cache,
offline: nothing is downloaded unless ``RLCF_BENCH_ALLOW_DOWNLOAD=1``. Parameters
(``--data-param``): ``split`` (default ``test``; a single saved ``Dataset`` has none),
``image_column`` (default ``image``: an ``Image`` feature, or file paths), ``label_column``
(default ``label``: a ``ClassLabel``, whose names are the class names, integers with a class-name
file, or class-name strings), ``caption_column`` (default ``caption``: a string or a list of
strings) and ``id_column`` (default: none, the sample id is the row number). A column left at its
default may be absent; one named explicitly must exist. Needs the ``hf`` extra (``datasets``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlcf_bench import DatasetSpec, hookimpl
from rlcf_bench.types import LayoutReport

from ._common import fmt_names
from ._own import (
    Found,
    OwnItem,
    Scheme,
    bytes_digest,
    decode_bytes,
    image_error,
    label_index,
    meta_classnames,
    report_unreadable,
    require,
    resolve,
)

DEFAULTS: dict[str, Any] = {"split": "test", "image_column": "image", "label_column": "label",
                            "caption_column": "caption", "id_column": ""}
ALLOW_DOWNLOAD_ENV = "RLCF_BENCH_ALLOW_DOWNLOAD"
BATCH = 256


@contextlib.contextmanager
def _offline(datasets: Any) -> Iterator[None]:
    """Switch the ``datasets`` library to its local cache unless downloads are allowed."""
    if os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in {"1", "true", "yes"}:
        yield
        return
    config = datasets.config
    saved = {k: getattr(config, k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if hasattr(config, k)}
    for k in saved:
        setattr(config, k, True)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(config, k, v)


def open_split(report: LayoutReport, target: str, split: str) -> Any | None:
    """The ``datasets.Dataset`` of ``split``, or ``None`` (reported)."""
    datasets = require("datasets", "hf", "hf")
    path = Path(target)
    try:
        if path.exists():
            obj = datasets.load_from_disk(str(path))
        else:
            with _offline(datasets):
                obj = datasets.load_dataset(target, split=split)
    except Exception as exc:  # the library raises many types for a missing or foreign folder
        hint = "" if path.exists() else f" (not on disk; downloads are off: {ALLOW_DOWNLOAD_ENV}=1 allows them)"
        report.add(target, "a datasets folder written by save_to_disk, or a dataset in the local cache",
                   f"{type(exc).__name__}: {str(exc)[:200]}{hint}")
        return None
    if isinstance(obj, datasets.DatasetDict):
        if split not in obj:
            report.add(target, f"a split {split!r} (--data-param split=NAME)", f"splits present: {fmt_names(sorted(obj))}")
            return None
        obj = obj[split]
    return obj


def _undecoded(ds: Any, column: str) -> Any:
    """``ds`` with an ``Image`` column left encoded (``{"bytes", "path"}`` cells): decoded by us,
    the same way as every other scheme's files."""
    import datasets

    return ds.cast_column(column, datasets.Image(decode=False)) if isinstance(ds.features[column], datasets.Image) else ds


def _image_cells(raw: Any, column: str, base: Path) -> Iterator[bytes]:
    """The encoded bytes of every image, in row order, read in batches."""
    for batch in raw.select_columns([column]).iter(batch_size=BATCH):
        for cell in batch[column]:
            yield _cell_bytes(cell, base)


def _cell_bytes(cell: Any, base: Path) -> bytes:
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return bytes(cell["bytes"])
        cell = cell.get("path") or ""
    path = Path(str(cell))
    return (path if path.is_absolute() else base / path).read_bytes()


def inspect(target: str, params: dict[str, Any], report: LayoutReport) -> Found | None:
    ds = open_split(report, target, params["split"])
    if ds is None:
        return None
    columns = list(ds.column_names)
    cols: dict[str, str | None] = {}
    for key in ("image_column", "label_column", "caption_column", "id_column"):
        col = params[key]
        if col in columns:
            cols[key] = col
        elif key == "image_column" or (col and col != DEFAULTS[key]):
            report.add(target, f"a column {col!r} ({key}; set it with --data-param {key}=NAME)",
                       f"columns present: {fmt_names(columns)}")
        else:
            cols[key] = None
    if not report.ok:
        return None
    report.ok_items.append(f"split {params['split']!r}: {len(ds)} rows, columns {fmt_names(columns)}")
    base = Path(target) if Path(target).is_dir() else Path(".")
    image_col = str(cols["image_column"])
    cells = _undecoded(ds, image_col)
    digests: list[str] = []
    bad: list[str] = []
    for i, data in enumerate(_image_cells(cells, image_col, base)):
        digests.append(bytes_digest(data))
        if (err := image_error(data)) is not None:
            bad.append(f"row {i} ({err})")
    report_unreadable(report, bad, len(digests), len(ds))
    names: list[str] | dict[str, str] | None = None
    raw: list[Any] = [None] * len(ds)
    if cols["label_column"]:
        feature = ds.features[cols["label_column"]]
        names = list(getattr(feature, "names", None) or []) or meta_classnames(report, params, (base,))
        raw = list(ds[cols["label_column"]])
    labels, classnames = label_index(report, target, raw, names)
    caps: list[tuple[str, ...]] = [()] * len(ds)
    if cols["caption_column"]:
        caps = [tuple(c.strip() for c in ([v] if isinstance(v, str) else (v or [])) if str(c).strip())
                for v in ds[cols["caption_column"]]]
    ids = [str(v) for v in ds[cols["id_column"]]] if cols["id_column"] else [f"row{i}" for i in range(len(ds))]
    if not report.ok:
        return None
    items = [OwnItem(i, y, tuple(c)) for i, y, c in zip(ids, labels, caps)]
    return Found(items=items, load=lambda i: decode_bytes(_cell_bytes(cells[i][image_col], base), f"{target} row {i}"), digests=digests,
                 classnames=classnames, meta_dirs=(base,) if Path(target).is_dir() else ())


def peek(target: str, params: dict[str, Any]) -> frozenset[str]:
    """Task kinds from the split's column names alone (Arrow files are memory-mapped: cheap)."""
    report = LayoutReport(dataset=target, root=target)
    ds = open_split(report, target, params["split"])
    if ds is None:
        return frozenset()
    kinds: set[str] = set()
    if params["label_column"] in ds.column_names:
        kinds.add("classification")
    if params["caption_column"] in ds.column_names:
        kinds |= {"retrieval", "captioning"}
    return frozenset(kinds)


SCHEME = Scheme(
    prefix="hf", usage="hf:/path/saved-with-save_to_disk or hf:NAME (local cache)", defaults=DEFAULTS,
    inspect=inspect, peek=peek, description="a Hugging Face datasets dataset on disk or in the local cache",
)


@hookimpl
def rlcfb_resolve_dataset(name: str, params: dict[str, Any]) -> DatasetSpec | None:
    return resolve(SCHEME, name, params)

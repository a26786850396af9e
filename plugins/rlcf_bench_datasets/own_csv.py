"""``csv:/path/file.csv`` (also ``.tsv`` and ``.jsonl``): a manifest of images with labels and/or captions.

One row per image, or one row per caption (rows of the same image are merged: their captions
are collected, their labels must agree). Columns, with ``--data-param``: ``image_column``
(default ``image``; a path relative to the manifest's folder, or absolute), ``label_column``
(default ``label``: integer indices into a class-name file, or class names) and
``caption_column`` (default ``caption``; in JSONL a string or a list of strings). A column left at
its default may be absent; one named explicitly must exist. Class names: ``classnames.txt`` /
``.json`` beside the manifest or ``--data-param classnames=FILE`` (required for integer labels);
without one, name labels are indexed in sorted order. The sample id is the image path as the
manifest writes it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from rlcf_bench import DatasetSpec, hookimpl
from rlcf_bench.datasets import decode_image
from rlcf_bench.types import LayoutReport

from ._common import check_files_exist, fmt_names
from ._own import (
    ALL_KINDS,
    Found,
    OwnItem,
    Scheme,
    file_digest,
    label_index,
    meta_classnames,
    probe_images,
    resolve,
)

DEFAULTS: dict[str, Any] = {"image_column": "image", "label_column": "label", "caption_column": "caption"}
FORMATS = {".csv": ",", ".tsv": "\t", ".jsonl": None}


def _read_rows(report: LayoutReport, path: Path) -> tuple[list[dict[str, Any]], list[str]] | None:
    """Rows as dictionaries and the column names (CSV header, or the union of JSONL keys)."""
    fmt = FORMATS.get(path.suffix.lower(), "?")
    if fmt == "?":
        report.add(str(path), f"a manifest ending in {', '.join(FORMATS)}", f"suffix {path.suffix!r}")
        return None
    if not path.is_file():
        report.add(str(path), "a manifest file", "no such file")
        return None
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            if fmt is not None:
                reader = csv.DictReader(fh, delimiter=fmt)
                return list(reader), list(reader.fieldnames or [])
            rows, bad = [], []
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    obj = None
                if isinstance(obj, dict):
                    rows.append(obj)
                else:
                    bad.append(f"line {n}")
            if bad:
                report.add(str(path), "one JSON object per line", f"{len(bad)} malformed: {fmt_names(bad, 5)}")
            return rows, sorted({k for r in rows for k in r})
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        report.add(str(path), "a readable UTF-8 manifest", f"unreadable: {exc}")
        return None


def _text(value: Any) -> str:
    """A cell as stripped text; a missing or null cell is empty (a JSON 0 is the label 0)."""
    return "" if value is None else str(value).strip()


def _captions(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [str(value).strip()] if value is not None and str(value).strip() else []


def _columns(report: LayoutReport, path: Path, columns: list[str], params: dict[str, Any], explicit: set[str]) -> dict[str, str | None] | None:
    """Which configured columns exist; a missing image column, or an explicitly named one, is a problem."""
    out: dict[str, str | None] = {}
    for key in DEFAULTS:
        col = params[key]
        if col in columns:
            out[key] = col
        elif key == "image_column" or key in explicit:
            report.add(str(path), f"a column {col!r} ({key}; set it with --data-param {key}=NAME)",
                       f"columns present: {fmt_names(columns)}")
        else:
            out[key] = None
    return out if report.ok else None


def inspect(target: str, params: dict[str, Any], report: LayoutReport) -> Found | None:
    path = Path(target)
    explicit = {k for k in DEFAULTS if params[k] != DEFAULTS[k]}
    read = _read_rows(report, path)
    if read is None:
        return None
    rows, columns = read
    cols = _columns(report, path, columns, params, explicit)
    if cols is None:
        return None
    base = path.parent
    order: list[str] = []
    raw_labels: dict[str, set[str]] = {}
    captions: dict[str, list[str]] = {}
    blank = 0
    for row in rows:
        image = _text(row.get(cols["image_column"] or ""))
        if not image:
            blank += 1
            continue
        if image not in captions:
            order.append(image)
            captions[image], raw_labels[image] = [], set()
        if cols["label_column"] and _text(row.get(cols["label_column"])):
            raw_labels[image].add(_text(row[cols["label_column"]]))
        if cols["caption_column"]:
            captions[image] += _captions(row.get(cols["caption_column"]))
    if blank:
        report.add(str(path), f"an image path in every row (column {cols['image_column']!r})", f"{blank} row(s) without one")
    clashes = [f"{img}: {sorted(ls)}" for img, ls in raw_labels.items() if len(ls) > 1]
    if clashes:
        report.add(str(path), "one label per image", f"{len(clashes)} image(s) with several: {fmt_names(clashes, 3)}")
    if cols["label_column"] and not cols["caption_column"] and len(order) < len(rows) - blank:
        report.add(str(path), "each image listed once", f"{len(rows) - blank - len(order)} repeated row(s)")
    labels, classnames = label_index(report, str(path), [next(iter(raw_labels[i]), None) for i in order],
                                     meta_classnames(report, params, (base,)))
    paths = [Path(img) if Path(img).is_absolute() else base / img for img in order]
    check_files_exist(report, paths, limit=len(paths))
    if report.ok:
        probe_images(report, paths, lambda i: str(paths[i]))
    if not report.ok:
        return None
    items = [OwnItem(img, y, tuple(captions[img])) for img, y in zip(order, labels)]
    return Found(items=items, load=lambda i: decode_image(paths[i]), digests=[file_digest(p) for p in paths],
                 classnames=classnames, meta_dirs=(base,))


def peek(target: str, params: dict[str, Any]) -> frozenset[str]:
    """Task kinds from the header (CSV) or the first row (JSONL) alone."""
    path = Path(target)
    with open(path, encoding="utf-8", newline="") as fh:
        if FORMATS.get(path.suffix.lower()) is None:
            columns = list(json.loads(fh.readline()))
        else:
            columns = next(csv.reader(fh, delimiter=FORMATS[path.suffix.lower()] or ","))
    kinds: set[str] = set()
    if params["label_column"] in columns:
        kinds.add("classification")
    if params["caption_column"] in columns:
        kinds |= {"retrieval", "captioning"}
    return frozenset(kinds) or ALL_KINDS


SCHEME = Scheme(
    prefix="csv", usage="csv:/path/manifest.csv (or .tsv, .jsonl)", defaults=DEFAULTS, inspect=inspect, peek=peek,
    description="a CSV/TSV/JSONL manifest of image paths with labels and/or captions",
)


@hookimpl
def rlcfb_resolve_dataset(name: str, params: dict[str, Any]) -> DatasetSpec | None:
    return resolve(SCHEME, name, params)

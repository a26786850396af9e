"""Shared helpers of the real-dataset families: folder scanning, layout reports, data objects.

Private (leading underscore) so that the plugin host does not register it as a plugin.

Every family follows one pattern: an ``inspect`` function walks the layout once and returns a
:class:`~rlcf_bench.LayoutReport` together with the index it built (or ``None`` when the layout is
unusable). ``check`` returns the report; ``build`` raises :class:`~rlcf_bench.DatasetLayoutError`
unless the report is clean, so a malformed layout can never produce silently wrong labels.

No torch here: images are decoded lazily by :func:`rlcf_bench.datasets.decode_image`.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlcf_bench.types import DatasetLayoutError, LayoutReport

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: File suffixes accepted as images (torchvision's ImageFolder list), compared lower-cased.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}
)
#: The single CLIP template used by every classifier and reward of RLCF/TPT
#: (``docs/original-code.md#templates``).
SINGLE_TEMPLATE: tuple[str, ...] = ("a photo of a {}.",)
#: How many referenced image paths a check tests for existence (keeps checks fast).
DEFAULT_SAMPLE_LIMIT = 200
#: How many names an error message lists before "(+N more)".
LIST_LIMIT = 10

DATA_ROOT_HINT = (
    "a data root: pass --data-root DIR, set RLCF_BENCH_DATA_ROOT, "
    'or put {"data_root": DIR} in ~/.config/rlcf-bench/config.json'
)


# ------------------------------------------------------------------------------------ text
def fmt_names(names: Iterable[str], limit: int = LIST_LIMIT) -> str:
    """``a, b, c (+7 more)``; ``(none)`` for an empty list."""
    items = list(names)
    if not items:
        return "(none)"
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not name.startswith(".")


# ------------------------------------------------------------------------------------ folders
def list_dirs(path: Path) -> list[str]:
    """Sorted names of the visible sub-folders of ``path`` (hidden ones such as ``.DS_Store``
    or ``.ipynb_checkpoints`` are ignored)."""
    with os.scandir(path) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def list_images(path: Path) -> list[str]:
    """Sorted names of the image files directly inside ``path``."""
    with os.scandir(path) as it:
        return sorted(e.name for e in it if e.is_file() and is_image(e.name))


def dataset_dir(report: LayoutReport, data_root: Path | str | None, names: Sequence[str]) -> Path | None:
    """Find the dataset folder ``data_root/<name>`` for the first of ``names`` that exists.

    ``names[0]`` is the canonical folder; the others are accepted aliases. The data root may also
    be the dataset folder itself (``--data-root /data/imagenet-a``). A missing folder is reported
    with the closest names that do exist under the root (a case or spelling slip is common).
    """
    canonical = names[0]
    if data_root is None:
        report.add(f"<data root>/{canonical}", DATA_ROOT_HINT, "no data root configured")
        return None
    root = Path(data_root).expanduser()
    for name in names:
        if (root / name).is_dir():
            if name != canonical:
                report.ok_items.append(f"{root / name} (accepted alias of {canonical}/)")
            return root / name
    if root.name in names and root.is_dir():
        return root
    if not root.is_dir():
        report.add(str(root), "an existing data root folder", "no such directory")
        return None
    existing = list_dirs(root)
    lowered = {n.lower(): n for n in existing}
    close = [lowered[n.lower()] for n in names if n.lower() in lowered]
    close += difflib.get_close_matches(canonical, existing, n=3, cutoff=0.6)
    alias = f" (or {', '.join(n + '/' for n in names[1:])})" if len(names) > 1 else ""
    found = "no such folder"
    if close:
        found += f"; similar folders present: {fmt_names(dict.fromkeys(close))} (rename or symlink)"
    report.add(str(root / canonical), f"folder {canonical}/{alias} under the data root", found)
    return None


def scan_class_folders(
    report: LayoutReport,
    base: Path,
    expected: Sequence[str],
    *,
    kind: str,
    name_hint: Callable[[list[str]], str | None] | None = None,
) -> dict[str, list[str]] | None:
    """Compare the class folders of ``base`` with ``expected`` (exact set equality).

    Reports missing, unexpected and empty class folders, and a flat folder of images (the raw
    ImageNet validation archive). ``name_hint`` may explain unexpected names (e.g. integer folders
    in a wnid dataset). Returns ``{folder: [image names]}`` for the folders that exist, or
    ``None`` when ``base`` is not a folder.
    """
    if not base.is_dir():
        report.add(str(base), f"folder with {len(expected)} {kind} folders", "no such directory")
        return None
    found = list_dirs(base)
    expected_set = set(expected)
    missing = [n for n in expected if n not in set(found)]
    unexpected = [n for n in found if n not in expected_set]
    n_match = len(found) - len(unexpected)
    if not found:
        flat = list_images(base)
        detail = f"no sub-folders; {len(flat)} image files directly inside" if flat else "an empty folder"
        hint = "; images must be sorted into one folder per class" if flat else ""
        report.add(str(base), f"{len(expected)} {kind} folders", detail + hint)
        return {}
    if missing or unexpected:
        parts = [f"found {len(found)} folders ({n_match} expected names)"]
        if missing:
            parts.append(f"missing {len(missing)}: {fmt_names(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {fmt_names(unexpected)}")
            unexpected_hint = name_hint(unexpected) if name_hint else None
            if unexpected_hint:
                parts.append(unexpected_hint)
        report.add(str(base), f"exactly {len(expected)} {kind} folders", "; ".join(parts))
    else:
        report.ok_items.append(f"{base}: {len(found)} {kind} folders (expected {len(expected)})")
    images: dict[str, list[str]] = {}
    empty: list[str] = []
    for name in found:
        if name not in expected_set:
            continue
        files = list_images(base / name)
        images[name] = files
        if not files:
            empty.append(name)
    if empty:
        report.add(
            str(base / empty[0]),
            "at least one image (.jpg/.jpeg/.png/...) in every class folder",
            f"{len(empty)} empty class folder(s): {fmt_names(empty)}",
        )
    return images


def note_count(report: LayoutReport, what: str, found: int, standard: int | None, where: str | Path = "") -> None:
    """Record an image/caption count beside the standard test-set size. A smaller count is
    accepted (users run subsets) but said; zero is a problem (reported at ``where``)."""
    if found == 0:
        report.add(str(where or what), f"{standard or 'some'} {what}", "none")
        return
    if standard is None or found == standard:
        suffix = f" (standard test set: {standard})" if standard else ""
    else:
        suffix = f" (standard test set: {standard}; this looks like a {'subset' if found < standard else 'superset'})"
    report.ok_items.append(f"{found} {what}{suffix}")


def spread_sample(n: int, limit: int) -> list[int]:
    """Deterministic, evenly spread indices ``< n`` (all of them when ``n <= limit``)."""
    if n <= limit:
        return list(range(n))
    if limit <= 1:
        return [0][:limit]
    return [(i * (n - 1)) // (limit - 1) for i in range(limit)]


def check_files_exist(
    report: LayoutReport,
    paths: Sequence[Any],
    *,
    what: str = "referenced images",
    limit: int = DEFAULT_SAMPLE_LIMIT,
    exists: Callable[[Any], bool] = lambda p: Path(p).is_file(),
    describe: Callable[[Any], str] = str,
) -> None:
    """Test an evenly spread sample of ``paths`` for existence and report the missing ones,
    saying how many were checked. ``exists`` may try several candidate locations per entry;
    ``describe`` says where an entry was looked for."""
    picked = spread_sample(len(paths), limit)
    missing = [describe(paths[i]) for i in picked if not exists(paths[i])]
    scope = f"checked {len(picked)} of {len(paths)} {what}"
    if missing:
        report.add(
            missing[0],
            f"every one of the {what} to exist",
            f"{scope}: {len(missing)} missing, e.g. {fmt_names(missing, 3)}",
        )
    elif paths:
        report.ok_items.append(f"{scope}: all present")


def read_json(report: LayoutReport, path: Path, what: str) -> Any | None:
    """Load a JSON file, reporting a missing or unreadable file instead of raising."""
    if not path.is_file():
        report.add(str(path), what, "no such file")
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.add(str(path), f"{what} (valid JSON)", f"unreadable: {exc}")
        return None
    report.ok_items.append(f"{path}: readable {what}")
    return data


def read_lines(report: LayoutReport, path: Path, what: str) -> list[str] | None:
    """Non-empty stripped lines of a text file, or ``None`` (reported) when it is missing."""
    if not path.is_file():
        report.add(str(path), what, "no such file")
        return None
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        report.add(str(path), what, f"unreadable: {exc}")
        return None


def raise_if_problems(report: LayoutReport) -> None:
    """``build`` calls this: a layout with any problem never yields a dataset."""
    if not report.ok:
        raise DatasetLayoutError(report)


def parameterless_builders(name: str, inspect: Callable[[Path | str | None], tuple[LayoutReport, Any]]
                           ) -> tuple[Callable[..., LayoutReport], Callable[..., Any]]:
    """``check`` and ``build`` of a dataset without parameters from its ``inspect(root) -> (report,
    data or None)``: an unknown parameter is a one-line ``TypeError``; ``build`` raises the layout's
    problems."""

    def check(root: Path | str | None, **params: Any) -> LayoutReport:
        merge_params(name, {}, params)
        return inspect(root)[0]

    def build(root: Path | str | None, **params: Any) -> Any:
        merge_params(name, {}, params)
        report, data = inspect(root)
        raise_if_problems(report)
        assert data is not None
        return data

    return check, build


def merge_params(dataset: str, defaults: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``params``; an unknown parameter is a ``TypeError`` listing the valid ones."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        valid = ", ".join(sorted(defaults)) or "none"
        raise TypeError(f"dataset {dataset!r} has no parameter {', '.join(map(repr, unknown))} (valid: {valid})")
    return {**defaults, **params}


def as_int(value: Any, name: str) -> int:
    """Dataset parameters arrive as strings from the CLI (``--param severity=5``)."""
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"dataset parameter {name}={value!r} is not an integer") from exc


# ------------------------------------------------------------------------------------ data objects
@dataclass
class ImageListClassification:
    """A classification test set as a list of (relative path, label).

    ``sample_ids`` are the relative paths as the layout names them (stable across machines);
    ``resolve`` maps one to the file on disk (it may try several candidates, see fine-grained
    Stanford Cars). ``templates`` is the single CLIP template; ``ensemble_templates`` the 80 OpenAI
    ImageNet templates where they apply.
    """

    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    sample_ids: tuple[str, ...]
    labels: tuple[int, ...]
    resolve: Callable[[str], Path] = field(repr=False)
    ensemble_templates: tuple[str, ...] = ()
    name: str = ""

    def __len__(self) -> int:
        return len(self.sample_ids)

    def sample_id(self, index: int) -> str:
        return self.sample_ids[index]

    def label(self, index: int) -> int:
        return self.labels[index]

    def path(self, index: int) -> Path:
        return self.resolve(self.sample_ids[index])

    def load_image(self, index: int) -> torch.Tensor:
        from rlcf_bench.datasets import decode_image

        return decode_image(self.path(index))


def folder_items(images: dict[str, list[str]], order: Sequence[str], labels: dict[str, int], prefix: str = "") -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Flatten ``{class folder: [files]}`` into (ids, labels), classes in ``order``, files sorted."""
    ids: list[str] = []
    out: list[int] = []
    for name in order:
        for fname in images.get(name, ()):
            ids.append(f"{prefix}{name}/{fname}")
            out.append(labels[name])
    return tuple(ids), tuple(out)


# ------------------------------------------------------------------------------------ LAVIS JSON
@dataclass(frozen=True)
class CaptionedImage:
    image: str
    captions: tuple[str, ...]


def read_lavis_test(
    report: LayoutReport,
    ann_path: Path,
    image_base: Path,
    *,
    standard_images: int | None,
    standard_captions: int | None,
    sample_limit: int = DEFAULT_SAMPLE_LIMIT,
) -> list[CaptionedImage] | None:
    """Read a LAVIS test annotation file: a list of ``{"image": relpath, "caption": [..]}``.

    Reports a non-list file, entries without ``image``/``caption``, empty caption lists, duplicate
    images and a training-style file (one caption string per entry), then checks a sample of the
    image files under ``image_base``.
    """
    data = read_json(report, ann_path, "LAVIS annotation list")
    if data is None:
        return None
    if not isinstance(data, list):
        found = f"a JSON {type(data).__name__}"
        if isinstance(data, dict):
            found += f" with keys {fmt_names(sorted(map(str, data)))}"
        report.add(str(ann_path), 'a JSON list of {"image": path, "caption": [captions]}', found)
        return None
    entries: list[CaptionedImage] = []
    bad: list[str] = []
    string_captions = 0
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("image"), str) or "caption" not in item:
            keys = sorted(item) if isinstance(item, dict) else type(item).__name__
            bad.append(f"entry {i} ({keys})")
            continue
        caps = item["caption"]
        if isinstance(caps, str):
            string_captions += 1
            caps = [caps]
        if not isinstance(caps, list) or not caps or not all(isinstance(c, str) for c in caps):
            bad.append(f"entry {i} ({item['image']}: caption list empty or not strings)")
            continue
        entries.append(CaptionedImage(item["image"], tuple(caps)))
    if bad:
        report.add(str(ann_path), 'every entry {"image": str, "caption": [str, ...]}', f"{len(bad)} malformed: {fmt_names(bad, 5)}")
    if string_captions and string_captions == len(data):
        report.add(
            str(ann_path),
            "the test split: one entry per image with a list of captions",
            "one caption string per entry (a training-format file?)",
        )
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.image] = counts.get(e.image, 0) + 1
    dups = [k for k, v in counts.items() if v > 1]
    if dups:
        report.add(str(ann_path), "each image listed once", f"{len(dups)} images listed more than once: {fmt_names(dups, 5)}")
    note_count(report, "images in the annotation file", len(entries), standard_images, ann_path)
    note_count(report, "captions", sum(len(e.captions) for e in entries), standard_captions, ann_path)
    check_files_exist(report, [image_base / e.image for e in entries], limit=sample_limit)
    return entries


@dataclass(frozen=True)
class KarpathySource:
    """A LAVIS-format Karpathy test split: ``<folder>/<annotation>``, images under ``<folder>/``."""

    folder: str
    annotation: str
    standard_images: int
    standard_captions: int
    title: str


COCO_KARPATHY = KarpathySource("coco2014", "coco_karpathy_test.json", 5_000, 25_010, "COCO 2014 Karpathy test")
FLICKR30K_KARPATHY = KarpathySource("flickr30k", "annotations/flickr30k_test.json", 1_000, 5_000, "Flickr30k Karpathy test")


def inspect_karpathy(name: str, source: KarpathySource, root: Path | str | None) -> tuple[LayoutReport, Path | None, list[CaptionedImage] | None]:
    """Report on a Karpathy test split; returns (report, image base folder, entries or ``None``)."""
    report = LayoutReport(dataset=name, root=str(root))
    ds_dir = dataset_dir(report, root, (source.folder,))
    if ds_dir is None:
        return report, None, None
    entries = read_lavis_test(report, ds_dir / source.annotation, ds_dir,
                              standard_images=source.standard_images, standard_captions=source.standard_captions)
    return report, ds_dir, (entries if report.ok else None)


def numeric_id(file_name: str, fallback: int) -> int:
    """The integer image id a COCO-style evaluator wants: the last run of digits of the file stem
    (``COCO_val2014_000000391895.jpg`` → 391895, ``1007129816.jpg`` → 1007129816)."""
    stem = Path(file_name).stem
    digits = ""
    for ch in reversed(stem):
        if ch.isdigit():
            digits = ch + digits
        elif digits:
            break
    return int(digits) if digits else fallback

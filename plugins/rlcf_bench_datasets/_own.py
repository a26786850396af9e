"""Shared parts of the "your own data" readers: ``folder:``, ``csv:``, ``wds:`` and ``hf:`` names.

Private (leading underscore): not a plugin. Each scheme module describes itself with a
:class:`Scheme` and answers ``rlcfb_resolve_dataset`` with :func:`resolve`; this module turns what
a reader found (:class:`Found`) into one :class:`OwnDataset` that serves every task its content
allows: labels → classification, captions → retrieval and captioning.

Guarantees, the same as the named datasets': ``check``/``build`` validate the whole layout first
(``build`` raises on any problem, before a run writes anything); every item has a stable sample id
taken from the data itself (a relative path, a shard key, a row index), so resume and paired tests
work; and the dataset version is a hash of the content (every image's bytes, every label and
caption, the class names and templates), so an edited folder is a different dataset and is never
ranked with the old one. Hashing reads every image once per run: the price of that guarantee.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlcf_bench.datasets import fs_text
from rlcf_bench.types import DatasetSpec, LayoutReport, stable_hash

from ._common import SINGLE_TEMPLATE, fmt_names, merge_params, raise_if_problems, spread_sample

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Bump when a reader's interpretation of the same files changes (part of every content version).
READER_VERSION = "1"
#: The store keeps dataset names in 128 characters.
MAX_NAME = 128
ALL_KINDS: frozenset[str] = frozenset({"classification", "retrieval", "captioning"})
CLASSNAMES_FILES = ("classnames.txt", "classnames.json")
TEMPLATES_FILE = "zeroshot_classification_templates.txt"
#: Parameters every scheme takes: files overriding the class names and the prompt templates, and
#: the encoding file and folder names are written in (names are stored and shown as text decoded
#: with it; bytes it cannot decode as ``\xNN``: :func:`rlcf_bench.datasets.fs_text`).
COMMON_PARAMS: dict[str, Any] = {"classnames": "", "templates": "", "name_encoding": "utf-8"}
#: How many images a check opens (header only) to find unreadable files.
PROBE_LIMIT = 200


class MissingExtra(ValueError):
    """An optional dependency of a scheme is not installed (one line naming the extra)."""


def require(module: str, extra: str, scheme: str) -> Any:
    """Import ``module`` or fail with a one-line error naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(f"the {scheme}: dataset scheme needs the {module!r} package: "
                           f"pip install 'rlcf-bench[{extra}]'") from exc


# ------------------------------------------------------------------------------------ content
@dataclass(frozen=True)
class OwnItem:
    """One image: its stable id, label index (``None``: unlabelled) and captions."""

    sample_id: str
    label: int | None = None
    captions: tuple[str, ...] = ()


@dataclass
class Found:
    """What a reader found: items, class names (by label), an image loader, where to look for
    metadata files, and the per-item content digests that make the version."""

    items: list[OwnItem]
    load: Callable[[int], torch.Tensor] = field(repr=False)
    digests: Sequence[str] = ()
    classnames: tuple[str, ...] = ()
    meta_dirs: tuple[Path, ...] = ()


@dataclass
class OwnDataset:
    """Classification, retrieval and captioning views of one list of items (see
    :mod:`rlcf_bench.datasets`). ``content_version`` is what the runner stores as the version."""

    name: str
    items: tuple[OwnItem, ...]
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    ensemble_templates: tuple[str, ...]
    content_version: str
    load: Callable[[int], torch.Tensor] = field(repr=False)
    captions: tuple[str, ...] = field(init=False)
    caption_image: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.captions = tuple(c for it in self.items for c in it.captions)
        self.caption_image = tuple(i for i, it in enumerate(self.items) for _ in it.captions)

    def __len__(self) -> int:
        return len(self.items)

    def sample_id(self, index: int) -> str:
        return self.items[index].sample_id

    image_id = sample_id

    def label(self, index: int) -> int:
        label = self.items[index].label
        if label is None:
            raise ValueError(f"dataset {self.name!r} has no label for {self.items[index].sample_id!r}")
        return label

    def references(self, index: int) -> list[str]:
        return list(self.items[index].captions)

    def load_image(self, index: int) -> torch.Tensor:
        return self.load(index)


def task_kinds(items: Sequence[OwnItem], classnames: Sequence[str]) -> frozenset[str]:
    """Labels on every item → classification; captions on every item → retrieval and captioning."""
    kinds: set[str] = set()
    if items and classnames and all(it.label is not None for it in items):
        kinds.add("classification")
    if items and all(it.captions for it in items):
        kinds |= {"retrieval", "captioning"}
    return frozenset(kinds)


# ------------------------------------------------------------------------------------ files
def file_digest(path: Path | str) -> str:
    """SHA-256 of a file's bytes, hashed once per process while the file's size, times and inode
    stay the same (a suite resolves the same folder for every run it plans)."""
    st = os.stat(path)
    return _digest(os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@functools.lru_cache(maxsize=1 << 20)
def _digest(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_bytes(data: bytes, name: str) -> torch.Tensor:
    """Encoded image bytes (a shard member, a Hugging Face ``Image`` cell; ``name`` says which, in
    errors) → uint8 ``[3, H, W]``, by the runs' one decoder."""
    from rlcf_bench.datasets import decode_image

    return decode_image(io.BytesIO(data), name=name)


def image_error(src: Path | bytes) -> str | None:
    """``None`` when PIL can parse the image header of a file or of encoded bytes, else the error type."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as img:
            img.size  # noqa: B018 - parsing the header is the check
    except Exception as exc:  # PIL raises many types for a broken file
        return type(exc).__name__
    return None


def report_unreadable(report: LayoutReport, bad: Sequence[str], opened: int, total: int) -> None:
    """``bad`` are ``"<where> (<error>)"`` strings of images that could not be opened."""
    if bad:
        report.add(bad[0].rsplit(" (", 1)[0], "readable image files (JPEG, PNG, ... as PIL reads them)",
                   f"opened {opened} of {total}: {len(bad)} unreadable, e.g. {fmt_names(bad, 3)}")
    elif total:
        report.ok_items.append(f"opened {opened} of {total} images: all readable")


def probe_images(report: LayoutReport, sources: Sequence[Path | bytes], describe: Callable[[int], str],
                 *, limit: int = PROBE_LIMIT) -> None:
    """Open an evenly spread sample of images (header only) and report unreadable ones."""
    picked = spread_sample(len(sources), limit)
    bad = [f"{describe(i)} ({err})" for i in picked if (err := image_error(sources[i])) is not None]
    report_unreadable(report, bad, len(picked), len(sources))


def find_meta(dirs: Iterable[Path], names: Sequence[str]) -> Path | None:
    """The first of ``names`` present in the first of ``dirs`` that has one."""
    for d in dirs:
        for n in names:
            if (d / n).is_file():
                return d / n
    return None


def read_classnames(report: LayoutReport, path: Path) -> list[str] | dict[str, str] | None:
    """``.txt``: one name per line (line i = class i). ``.json``: a list (index order) or an object
    mapping a folder/label to its name. ``None`` (reported) when unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        report.add(str(path), "a class-name file", f"unreadable: {exc}")
        return None
    if path.suffix.lower() != ".json":
        return [line.strip() for line in text.splitlines() if line.strip()]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        report.add(str(path), "valid JSON: a list of class names or an object {label: name}", f"unreadable: {exc}")
        return None
    if isinstance(data, list) and all(isinstance(x, str) for x in data):
        return list(data)
    if isinstance(data, dict) and all(isinstance(v, str) for v in data.values()):
        return {str(k): v for k, v in data.items()}
    report.add(str(path), "a list of class names or an object {label: name}", f"a JSON {type(data).__name__} of other values")
    return None


def read_templates(report: LayoutReport, path: Path) -> tuple[str, ...] | None:
    """Prompt templates, one per line, each with one ``{c}`` (CLIP_benchmark) or ``{}`` placeholder."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        report.add(str(path), "a template file", f"unreadable: {exc}")
        return None
    out = [ln.replace("{c}", "{}") for ln in lines]
    bad = [ln for ln, o in zip(lines, out) if o.count("{}") != 1 or set("{}") & set(o.replace("{}", ""))]
    if not out or bad:
        report.add(str(path), "one template per line, each with exactly one {c} or {} placeholder",
                   f"{len(bad)} malformed: {fmt_names(bad, 3)}" if bad else "no templates")
        return None
    report.ok_items.append(f"{path}: {len(out)} prompt template(s), first {out[0]!r}")
    return tuple(out)


def param_path(value: str) -> Path | None:
    return Path(value).expanduser() if value else None


def order_names(names: Iterable[str]) -> tuple[list[str], str]:
    """Class order and how it was chosen: integer names numerically (never "10" before "2"),
    others by code point."""
    names = list(names)
    if names and all(n.isdigit() for n in names):
        return sorted(names, key=int), "numeric order of the names"
    return sorted(names), "sorted names (code-point order)"


# ------------------------------------------------------------------------------------ schemes
@dataclass(frozen=True)
class Scheme:
    """A generic reader. ``inspect(target, params, report)`` validates and returns what it found
    (``None`` when unusable); ``peek(target, params)`` guesses the task kinds cheaply."""

    prefix: str
    usage: str
    defaults: Mapping[str, Any]
    inspect: Callable[[str, dict[str, Any], LayoutReport], Found | None]
    peek: Callable[[str, dict[str, Any]], frozenset[str]]
    description: str


def inspect_own(scheme: Scheme, name: str, params: Mapping[str, Any]) -> tuple[LayoutReport, OwnDataset | None]:
    """Validate ``name`` with its scheme and build the dataset object when the layout is sound."""
    target = name[len(scheme.prefix) + 1:]
    merged = merge_params(name, {**COMMON_PARAMS, **scheme.defaults}, dict(params))
    report = LayoutReport(dataset=name, root=target)
    found = scheme.inspect(os.path.expanduser(target), merged, report)
    if found is None:
        return report, None
    meta = list(found.meta_dirs)
    tpl_path = param_path(merged["templates"]) or find_meta(meta, (TEMPLATES_FILE,))
    templates = read_templates(report, tpl_path) if tpl_path is not None else None
    kinds = task_kinds(found.items, found.classnames)
    labelled = sum(it.label is not None for it in found.items)
    if found.classnames:
        report.ok_items.append(f"{len(found.classnames)} classes: {fmt_names(found.classnames)}")
    report.ok_items.append(f"{len(found.items)} images, {labelled} labelled, "
                           f"{sum(len(it.captions) for it in found.items)} captions")
    if not found.items:
        report.add(target, "at least one image", "none")
    elif not kinds:
        report.add(target, "a label on every image (classification) or a caption on every image "
                   "(retrieval, captioning)", f"{labelled} of {len(found.items)} labelled, "
                   f"{sum(bool(it.captions) for it in found.items)} captioned")
    ids = [it.sample_id for it in found.items]
    dups = [i for i, n in Counter(ids).items() if n > 1]
    if dups:
        report.add(target, "a unique id per image", f"{len(dups)} duplicates: {fmt_names(dups, 5)}")
    if not report.ok:
        return report, None
    version = "own" + READER_VERSION + "-" + stable_hash(
        [scheme.prefix, sorted((k, str(v)) for k, v in merged.items() if k not in COMMON_PARAMS),
         list(found.classnames), list(templates or ()),
         [[it.sample_id, it.label, list(it.captions), d] for it, d in zip(found.items, found.digests)]])
    report.ok_items.append(f"tasks: {', '.join(sorted(kinds))}; dataset version {version} (content hash)")
    data = OwnDataset(name=fs_text(name), items=tuple(found.items), classnames=found.classnames,
                      templates=templates[:1] if templates else SINGLE_TEMPLATE,
                      ensemble_templates=templates or (), content_version=version, load=found.load)
    return report, data


def resolve(scheme: Scheme, name: str, params: Mapping[str, Any]) -> DatasetSpec | None:
    """The ``rlcfb_resolve_dataset`` answer of a scheme: ``None`` unless ``name`` is ``prefix:...``."""
    if not name.startswith(scheme.prefix + ":"):
        return None
    target = name[len(scheme.prefix) + 1:]
    if not target:
        raise ValueError(f"dataset {name!r}: expected {scheme.usage}")
    if len(name) > MAX_NAME:
        raise ValueError(f"dataset name {fs_text(name[:40])!r}... is {len(name)} characters; the store keeps {MAX_NAME}: "
                         "use a shorter path (e.g. a symlink)")
    defaults = {**COMMON_PARAMS, **scheme.defaults}
    try:
        merged = merge_params(fs_text(name), defaults, dict(params))
        codecs.lookup(merged["name_encoding"])
    except TypeError as exc:  # a usage error like any other bad name: one line, before anything runs
        raise ValueError(str(exc)) from exc
    except LookupError as exc:
        raise ValueError(f"dataset {fs_text(name)!r}: name_encoding={merged['name_encoding']!r} is not an encoding "
                         "Python knows (e.g. utf-8, latin-1, cp1252)") from exc
    try:
        kinds = scheme.peek(os.path.expanduser(target), merged) or ALL_KINDS
    except MissingExtra:
        raise
    except Exception:  # an unreadable target: let check/build report exactly what is wrong
        kinds = ALL_KINDS

    def check(root: Any = None, **given: Any) -> LayoutReport:
        return inspect_own(scheme, name, given)[0]

    def build(root: Any = None, **given: Any) -> OwnDataset:
        report, data = inspect_own(scheme, name, given)
        raise_if_problems(report)
        assert data is not None
        if not data.ensemble_templates:
            from .imagenet import openai_templates

            data.ensemble_templates = openai_templates()
        return data

    # the name a store keeps and reports show: text, whatever bytes the path holds (fs_text)
    return DatasetSpec(name=fs_text(name), version=READER_VERSION, task_kinds=kinds, build=build, check=check,
                       root_name=None, params=defaults, description=scheme.description)


def label_index(report: LayoutReport, where: str, raw: Sequence[Any], classnames: list[str] | dict[str, str] | None,
                ) -> tuple[list[int | None], tuple[str, ...]]:
    """Map raw labels (integers or class names; ``None``: unlabelled) to indices and class names.

    Integer labels index the class-name file (required: prompts need names). Name labels follow
    the file's order when there is one (every label must be in it), else sorted names.
    """
    present = [r for r in raw if r is not None and str(r).strip() != ""]
    if not present:
        return [None] * len(raw), ()
    as_text = [str(r).strip() for r in present]
    if all(t.lstrip("-").isdigit() for t in as_text):
        if isinstance(classnames, dict):
            names = [classnames.get(str(i), "") for i in range(len(classnames))]
        else:
            names = list(classnames or ())
        if not names:
            report.add(where, "class names for integer labels: classnames.txt/.json beside the data "
                       "or --data-param classnames=FILE", "none found")
            return [None] * len(raw), ()
        wrong = sorted({t for t in as_text if not 0 <= int(t) < len(names)}, key=int)
        if wrong or not all(names):
            report.add(where, f"labels 0..{len(names) - 1} (one per class name)",
                       f"label out of range: {fmt_names(wrong)}" if wrong else "a class-name file with gaps")
            return [None] * len(raw), ()
        out = [None if r is None or str(r).strip() == "" else int(str(r).strip()) for r in raw]
        report.ok_items.append(f"{where}: integer labels index the {len(names)} class names in their listed order")
        return out, tuple(names)
    if classnames:
        names = list(classnames.values()) if isinstance(classnames, dict) else list(classnames)
        how = "the class-name file's order"
    else:
        names, how = order_names(set(as_text))
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted({t for t in as_text if t not in index})
    if unknown:
        report.add(where, "labels that are class names of the class-name file", f"unknown: {fmt_names(unknown)}")
        return [None] * len(raw), ()
    report.ok_items.append(f"{where}: label names indexed in {how}")
    return [None if r is None or str(r).strip() == "" else index[str(r).strip()] for r in raw], tuple(names)


def meta_classnames(report: LayoutReport, params: Mapping[str, Any], dirs: Sequence[Path]) -> list[str] | dict[str, str] | None:
    """The class-name file given as a parameter or found beside the data (``None``: none)."""
    path = param_path(params.get("classnames", "")) or find_meta(dirs, CLASSNAMES_FILES)
    if path is None:
        return None
    if not path.is_file():
        report.add(str(path), "a class-name file (--data-param classnames=FILE)", "no such file")
        return None
    names = read_classnames(report, path)
    if names is not None:
        report.ok_items.append(f"{path}: {len(names)} class names")
    return names

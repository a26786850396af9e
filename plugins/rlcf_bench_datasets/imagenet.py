"""The ImageNet family: ImageNet val, -A, -R, -V2 (matched frequency), -Sketch and -C.

Class metadata is read at run time from installed packages, never copied into this repository:

* the 1000 WNIDs (sorted = the standard class order) and the 200-WNID subsets of ImageNet-A and
  ImageNet-R from ``timm/data/_info/imagenet{,_a,_r}_synsets.txt``;
* the 1000 CLIP class names and the 80 OpenAI templates from ``open_clip/zero_shot_metadata.py``.
  That file has no imports, so it is executed on its own: importing the ``open_clip`` package
  pulls in torch and takes ~10 s, which ``rlcf-bench data check`` should not pay.

Labels: wnid folders map to their position in the sorted expected WNID list (A and R are 200-way
classifiers over their subsets, as in TPT/RLCF). ImageNet-V2 folders are *class indices*:
``label = int(folder name)``. A string sort ("0", "1", "10", "100", ...) gives near-zero
accuracy without any error, which is the bug this module exists to prevent.
"""

from __future__ import annotations

import importlib.util
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache, partial
from pathlib import Path
from types import ModuleType
from typing import Any

from rlcf_bench import DatasetSpec, hookimpl
from rlcf_bench.types import LayoutReport, ParamRule, Range

from ._common import (
    SINGLE_TEMPLATE,
    ImageListClassification,
    as_int,
    dataset_dir,
    fmt_names,
    folder_items,
    list_dirs,
    merge_params,
    note_count,
    raise_if_problems,
    scan_class_folders,
)

VERSION = "1"

#: The 15 ImageNet-C benchmark corruptions followed by the 4 extra ones of the release.
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)


class MetadataError(RuntimeError):
    """An installed package that provides class metadata is missing or incomplete."""


# ------------------------------------------------------------------------------------ metadata
def _package_dir(package: str) -> Path:
    """Folder of an installed package, located without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MetadataError(f"package {package!r} is not installed (pip install {package})")
    return Path(next(iter(spec.submodule_search_locations)))


def timm_info_dir() -> Path:
    """``timm/data/_info`` of the installed timm (holds the WNID lists)."""
    return _package_dir("timm") / "data" / "_info"


def _read_wnids(filename: str, count: int) -> tuple[str, ...]:
    path = timm_info_dir() / filename
    if not path.is_file():
        raise MetadataError(f"{path} is missing: the installed timm has no {filename}; install timm>=0.9")
    wnids = tuple(sorted(w for w in path.read_text().split() if w))
    if len(wnids) != count or len(set(wnids)) != count:
        raise MetadataError(f"{path}: expected {count} distinct WNIDs, found {len(set(wnids))}")
    return wnids


@cache
def _open_clip_metadata() -> ModuleType:
    path = _package_dir("open_clip") / "zero_shot_metadata.py"
    if not path.is_file():
        raise MetadataError(f"{path} is missing: the installed open_clip ships no zero_shot_metadata.py")
    spec = importlib.util.spec_from_file_location("_rlcfb_open_clip_zero_shot_metadata", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class ImageNetMeta:
    """The 1000 sorted WNIDs, their CLIP class names and the A/R subsets."""

    wnids: tuple[str, ...]
    classnames: tuple[str, ...]
    subsets: dict[str, tuple[str, ...]]

    def names_of(self, wnids: Sequence[str]) -> tuple[str, ...]:
        index = {w: i for i, w in enumerate(self.wnids)}
        return tuple(self.classnames[index[w]] for w in wnids)


@lru_cache(maxsize=1)
def load_meta() -> ImageNetMeta:
    """Read the class metadata from timm and open_clip (cached)."""
    wnids = _read_wnids("imagenet_synsets.txt", 1000)
    names = tuple(_open_clip_metadata().IMAGENET_CLASSNAMES)
    if len(names) != 1000:
        raise MetadataError(f"open_clip IMAGENET_CLASSNAMES has {len(names)} entries, expected 1000")
    subsets = {"a": _read_wnids("imagenet_a_synsets.txt", 200), "r": _read_wnids("imagenet_r_synsets.txt", 200)}
    for key, subset in subsets.items():
        stray = sorted(set(subset) - set(wnids))
        if stray:
            raise MetadataError(f"imagenet_{key}_synsets.txt has WNIDs outside the 1000 classes: {fmt_names(stray)}")
    return ImageNetMeta(wnids, names, subsets)


def openai_templates() -> tuple[str, ...]:
    """The 80 OpenAI ImageNet templates as ``{}`` format strings (open_clip stores lambdas)."""
    return tuple(t("{}") for t in _open_clip_metadata().OPENAI_IMAGENET_TEMPLATES)


# ------------------------------------------------------------------------------------ layouts
@dataclass(frozen=True)
class Family:
    """One ImageNet variant's on-disk convention.

    ``folders`` are the accepted dataset folder names (first = canonical, ``DatasetSpec.root_name``);
    ``subdirs`` the candidate class roots inside it (first existing one with class folders wins);
    ``classes`` is ``all``, ``a`` or ``r``; ``index_folders`` marks V2's integer folder names.
    """

    name: str
    folders: tuple[str, ...]
    subdirs: tuple[str, ...]
    classes: str
    standard_images: int
    description: str
    index_folders: bool = False


FAMILIES: tuple[Family, ...] = (
    Family("imagenet", ("ImageNet", "imagenet"), ("val",), "all", 50_000,
           "ImageNet-1k validation, ImageNet/val/<wnid>/*, 1000 classes"),
    Family("imagenet-a", ("imagenet-a",), ("",), "a", 7_500,
           "ImageNet-A, imagenet-a/<wnid>/*, 200-way over its class subset"),
    Family("imagenet-r", ("imagenet-r",), ("",), "r", 30_000,
           "ImageNet-R, imagenet-r/<wnid>/*, 200-way over its class subset"),
    Family("imagenet-v2", ("imagenetv2-matched-frequency-format-val", "imagenet-v2", "imagenetv2-matched-frequency"),
           ("",), "all", 10_000,
           "ImageNet-V2 matched frequency, <dir>/<0..999>/*, label = int(folder name)", index_folders=True),
    Family("imagenet-sketch", ("ImageNet-Sketch", "imagenet-sketch"), ("", "sketch"), "all", 50_889,
           "ImageNet-Sketch, ImageNet-Sketch/<wnid>/* or ImageNet-Sketch/sketch/<wnid>/*, 1000 classes"),
    Family("imagenet-c", ("imagenet-c", "ImageNet-C"), ("",), "all", 50_000,
           "ImageNet-C, imagenet-c/<corruption>/<severity 1-5>/<wnid>/*, 1000 classes"),
)


def _wnid_hint(unexpected: list[str]) -> str | None:
    ints = [n for n in unexpected if n.isdigit()]
    if ints:
        return (f"integer folder names ({fmt_names(ints, 3)}) look like ImageNet-V2's class-index layout, "
                "not WNID folders")
    return None


def _index_hint(unexpected: list[str]) -> str | None:
    wnid_like = [n for n in unexpected if n.startswith("n") and n[1:].isdigit()]
    if wnid_like:
        return (f"folder named {wnid_like[0]!r} in ImageNet-V2 where integer class indices 0..999 are expected "
                "(a WNID-folder copy? the matched-frequency release names folders by class index)")
    ints = [n for n in unexpected if n.lstrip("-").isdigit()]
    if ints:
        return (f"label out of range: folders {fmt_names(ints, 3)} are not class indices 0..999 "
                "(zero-padded names such as '007' are not accepted either)")
    return None


def _class_root(report: LayoutReport, ds_dir: Path, family: Family, expected: Sequence[str]) -> Path | None:
    """Pick the class root among ``family.subdirs``: the first holding expected class folders."""
    candidates = [ds_dir / s if s else ds_dir for s in family.subdirs]
    want = set(expected)
    for cand in candidates:
        if cand.is_dir() and want.intersection(list_dirs(cand)):
            if cand != candidates[0]:
                report.ok_items.append(f"class folders found under {cand} (accepted layout)")
            return cand
    if candidates[0] != ds_dir and not candidates[0].is_dir():
        stray = want.intersection(list_dirs(ds_dir))
        if stray:
            report.add(str(candidates[0]), f"class folders under {candidates[0].name}/",
                       f"no such directory; {len(stray)} class folders sit directly in {ds_dir}: move them into "
                       f"{candidates[0].name}/")
            return None
    return candidates[0]


def inspect(family: Family, root: Path | str | None, *, corruption: str | None = None,
            severity: Any = None, meta: ImageNetMeta | None = None) -> tuple[LayoutReport, ImageListClassification | None]:
    """Validate one ImageNet variant's layout and build its index if valid.

    ``meta`` replaces the metadata read from timm/open_clip (tests inject small class lists).
    """
    label = f"{family.name}[corruption={corruption},severity={severity}]" if family.name == "imagenet-c" else family.name
    report = LayoutReport(dataset=label, root=str(root))
    try:
        meta = meta or load_meta()
    except MetadataError as exc:
        report.add("timm/data/_info and open_clip/zero_shot_metadata.py", "installed class metadata", str(exc))
        return report, None
    if family.classes == "all":
        expected = meta.wnids
    else:
        expected = meta.subsets[family.classes]
    folder_names = tuple(str(i) for i in range(len(meta.wnids))) if family.index_folders else expected

    c_params = None
    if family.name == "imagenet-c":
        c_params = _corruption_params(report, corruption, severity)
        if c_params is None:
            return report, None
    ds_dir = dataset_dir(report, root, family.folders)
    if ds_dir is None:
        return report, None
    if c_params is not None:
        ds_dir = _corruption_dir(report, ds_dir, *c_params)
        if ds_dir is None:
            return report, None
    base = _class_root(report, ds_dir, family, folder_names)
    if base is None:
        return report, None
    kind = "class-index" if family.index_folders else "wnid"
    images = scan_class_folders(report, base, folder_names, kind=kind,
                                name_hint=_index_hint if family.index_folders else _wnid_hint)
    if images is None:
        return report, None
    if family.index_folders:
        labels = {name: int(name) for name in folder_names}
        classnames = meta.classnames
    else:
        labels = {w: i for i, w in enumerate(expected)}
        classnames = meta.names_of(expected)
    ids, ys = folder_items(images, folder_names, labels)
    note_count(report, "images", len(ids), family.standard_images, base)
    if not report.ok:
        return report, None
    data = ImageListClassification(
        classnames=classnames, templates=SINGLE_TEMPLATE, sample_ids=ids, labels=ys,
        resolve=partial(operator.truediv, base), ensemble_templates=(), name=family.name,
    )
    return report, data


def _corruption_params(report: LayoutReport, corruption: Any, severity: Any) -> tuple[str, int] | None:
    """Validate ImageNet-C's parameters before touching the disk."""
    ok = True
    if corruption not in CORRUPTIONS:
        report.add("param corruption", f"one of {', '.join(CORRUPTIONS)}", repr(corruption))
        ok = False
    try:
        level = as_int(severity, "severity")
    except ValueError:
        level = -1
    if level not in SEVERITIES:
        report.add("param severity", "an integer 1..5", repr(severity))
        ok = False
    return (str(corruption), level) if ok else None


def _corruption_dir(report: LayoutReport, ds_dir: Path, corruption: str, level: int) -> Path | None:
    cdir = ds_dir / corruption
    if not cdir.is_dir():
        report.add(str(cdir), f"folder {corruption}/ with severities 1..5",
                   f"no such folder; corruptions present: {fmt_names(list_dirs(ds_dir))}")
        return None
    sdir = cdir / str(level)
    if not sdir.is_dir():
        report.add(str(sdir), f"severity folder {level}/", f"no such folder; severities present: {fmt_names(list_dirs(cdir))}")
        return None
    return sdir


def _defaults(family: Family) -> dict[str, Any]:
    return {"corruption": "gaussian_noise", "severity": 5} if family.name == "imagenet-c" else {}


def _builders(family: Family) -> tuple[Callable[..., LayoutReport], Callable[..., ImageListClassification]]:
    def check(root: Path | str | None, **params: Any) -> LayoutReport:
        return inspect(family, root, **merge_params(family.name, _defaults(family), params))[0]

    def build(root: Path | str | None, **params: Any) -> ImageListClassification:
        report, data = inspect(family, root, **merge_params(family.name, _defaults(family), params))
        raise_if_problems(report)
        assert data is not None
        data.ensemble_templates = openai_templates()
        return data

    return check, build


def spec_for(family: Family) -> DatasetSpec:
    check, build = _builders(family)
    return DatasetSpec(
        name=family.name, version=VERSION, task_kinds=frozenset({"classification"}), build=build, check=check,
        root_name=family.folders[0], params=_defaults(family), description=family.description, augmix=False,
        param_rules={"corruption": ParamRule(str, choices=CORRUPTIONS), "severity": ParamRule(int, Range(ge=1, le=5))}
        if family.name == "imagenet-c" else {},
    )


@hookimpl
def rlcfb_register_datasets() -> list[DatasetSpec]:
    return [spec_for(f) for f in FAMILIES]

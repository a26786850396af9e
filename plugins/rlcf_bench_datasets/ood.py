"""OOD sets of ImageNet open-set evaluation (``docs/open-set.md#datasets``), in their released
layouts, and ``imagenet-openset``: ImageNet val mixed with them for the ``open-set`` task.

=============== ============================================ ===================================
name            layout under the data root                   standard size
=============== ============================================ ===================================
``ninco``       ``NINCO/NINCO_OOD_classes/<class>/*.jpg``    64 classes, 5,879 images
``places-ood``  ``Places/images/*.jpg`` (MOS subset)         10,000 images
``inat-ood``    ``iNaturalist/images/*.jpg`` (MOS subset)    10,000 images
``textures``    ``dtd/images/<47 DTD classes>/*.jpg``, or    5,640 images
                ``Textures/<47 classes>`` (the folder
                OpenOOD scripts move ``dtd/images`` to)
=============== ============================================ ===================================

The Places and iNaturalist subsets are the archives of MOS (Huang & Li, CVPR'21) that
CLIPTTA/``ttavlm`` and most ImageNet OOD work read with ``ImageFolder``: one folder ``images/``
of images. Their classes are not labels here: every OOD image has the label ``-1``. The sets are
not datasets of their own (no task runs on OOD images alone): ``imagenet-openset``'s layout check
reports ImageNet val's and every chosen set's problems before anything runs
(``rlcf-bench data check imagenet-openset --data-param ood=ninco``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlcf_bench import DatasetSpec, hookimpl
from rlcf_bench.types import LayoutReport

from ._common import (
    ImageListClassification,
    dataset_dir,
    fmt_names,
    list_dirs,
    list_images,
    note_count,
    parameterless_builders,
    scan_class_folders,
)

VERSION = "1"
#: ``imagenet-openset``'s default OOD share: 12,500 OOD images next to the 50,000 of ImageNet val,
#: 3,125 from each of the four sets (the smallest, Textures, has 5,640).
IMAGENET_OOD_RATIO = 0.2

#: The 47 categories of the Describable Textures Dataset (folder names of ``dtd/images``).
DTD_CLASSES: tuple[str, ...] = (
    "banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked", "crosshatched",
    "crystalline", "dotted", "fibrous", "flecked", "freckled", "frilly", "gauzy", "grid", "grooved", "honeycombed",
    "interlaced", "knitted", "lacelike", "lined", "marbled", "matted", "meshed", "paisley", "perforated", "pitted",
    "pleated", "polka-dotted", "porous", "potholed", "scaly", "smeared", "spiralled", "sprinkled", "stained",
    "stratified", "striped", "studded", "swirly", "veined", "waffled", "woven", "wrinkled", "zigzagged",
)


@dataclass(frozen=True)
class OODFamily:
    """One OOD set's layout: ``folders`` (canonical first), where its images sit inside
    (``images_in``: per folder name, the sub-path; ``""``: the folder itself), whether they sit in
    class folders (``classes``: the expected names, ``()``: any non-empty set) or flat
    (``flat=True``), and the standard image count."""

    name: str
    folders: tuple[str, ...]
    images_in: Mapping[str, str]
    flat: bool
    standard_images: int
    description: str
    classes: tuple[str, ...] = ()
    n_classes: int | None = None


FAMILIES: tuple[OODFamily, ...] = (
    OODFamily("ninco", ("NINCO",), {"NINCO": "NINCO_OOD_classes"}, False, 5879,
              "NINCO OOD classes (ImageNet OOD, no ImageNet class in any image)", n_classes=64),
    OODFamily("places-ood", ("Places",), {"Places": "images"}, True, 10000,
              "Places subset of MOS (ImageNet OOD; scenes of classes outside ImageNet)"),
    OODFamily("inat-ood", ("iNaturalist",), {"iNaturalist": "images"}, True, 10000,
              "iNaturalist subset of MOS (ImageNet OOD; 110 plant classes outside ImageNet)"),
    OODFamily("textures", ("dtd", "Textures"), {"dtd": "images", "Textures": ""}, False, 5640,
              "Textures (DTD, all 5,640 images; ImageNet OOD)", classes=DTD_CLASSES),
)


def _any_class_folders(report: LayoutReport, base: Path, family: OODFamily) -> dict[str, list[str]] | None:
    """Class folders whose names are not fixed here (NINCO): at least one, none empty."""
    if not base.is_dir():
        report.add(str(base), f"folder with {family.n_classes or 'the'} class folders", "no such directory")
        return None
    names = list_dirs(base)
    if not names:
        flat = list_images(base)
        report.add(str(base), f"{family.n_classes or 'some'} class folders of images",
                   f"no sub-folders; {len(flat)} image files directly inside" if flat else "an empty folder")
        return None
    images = {n: list_images(base / n) for n in names}
    empty = [n for n, files in images.items() if not files]
    if empty:
        report.add(str(base / empty[0]), "at least one image in every class folder", f"{len(empty)} empty class folder(s)")
    count = f" (standard: {family.n_classes})" if family.n_classes and family.n_classes != len(names) else ""
    report.ok_items.append(f"{base}: {len(names)} class folders{count}")
    return images


def _flat_images(report: LayoutReport, base: Path, family: OODFamily) -> list[str] | None:
    if not base.is_dir():
        parent = base.parent
        inside = ""
        if parent.is_dir():
            flat = list_images(parent)
            inside = (f"; {len(flat)} image files directly in {parent.name}/ (move them into {parent.name}/images/)"
                      if flat else f"; {parent.name}/ holds {fmt_names(list_dirs(parent)) or 'no folders'}")
        report.add(str(base), f"folder {base.name}/ of images (the released archive's layout)", "no such directory" + inside)
        return None
    files = list_images(base)
    if not files and list_dirs(base):
        report.add(str(base), "image files directly inside", f"only sub-folders ({', '.join(list_dirs(base)[:3])}, ...)")
        return None
    return files


def inspect_ood(family: OODFamily, root: Path | str | None) -> tuple[LayoutReport, ImageListClassification | None]:
    """Validate one OOD set's layout and index its images (labels ``-1``) if valid."""
    report = LayoutReport(dataset=family.name, root=str(root))
    ds_dir = dataset_dir(report, root, family.folders)
    if ds_dir is None:
        return report, None
    sub = family.images_in.get(ds_dir.name, family.images_in[family.folders[0]])
    base = ds_dir / sub if sub else ds_dir
    if family.flat:
        files = _flat_images(report, base, family)
        ids = tuple(files or ())
    else:
        images = (scan_class_folders(report, base, family.classes, kind="texture class") if family.classes
                  else _any_class_folders(report, base, family))
        ids = tuple(f"{c}/{f}" for c in sorted(images or {}) for f in (images or {})[c])
    if report.ok:
        note_count(report, "images", len(ids), family.standard_images, base)
    if not report.ok:
        return report, None
    return report, ImageListClassification(
        classnames=(), templates=(), sample_ids=ids, labels=(-1,) * len(ids),
        resolve=base.joinpath, name=family.name)


def _ood_builders(family: OODFamily) -> tuple[Callable[..., LayoutReport], Callable[..., Any]]:
    return parameterless_builders(family.name, lambda root: inspect_ood(family, root))


def _openset_check(members: Sequence[str]) -> Callable[..., LayoutReport]:
    """The ``imagenet-openset`` layout check: ImageNet val's and each chosen OOD set's."""

    def check(root: Path | str | None, **params: Any) -> LayoutReport:
        from rlcf_bench_tasks.openset_mix import parse_ood_names

        from .imagenet import FAMILIES as IMAGENET_FAMILIES
        from .imagenet import inspect

        report = LayoutReport(dataset="imagenet-openset", root=str(root))
        names = parse_ood_names(params.get("ood", ",".join(members)), tuple(f.name for f in FAMILIES))
        parts = [inspect(next(f for f in IMAGENET_FAMILIES if f.name == "imagenet"), root)[0]]
        parts += [inspect_ood(next(f for f in FAMILIES if f.name == n), root)[0] for n in names]
        for part in parts:
            report.ok_items += [f"{part.dataset}: {item}" for item in part.ok_items]
            report.problems += part.problems
        return report

    return check


@hookimpl
def rlcfb_register_datasets() -> list[DatasetSpec]:
    from rlcf_bench_tasks.openset_mix import open_set_spec

    builders = {f.name: _ood_builders(f)[1] for f in FAMILIES}

    def imagenet_val(root: Any, params: Mapping[str, Any]) -> Any:
        from .imagenet import FAMILIES as IMAGENET_FAMILIES
        from .imagenet import spec_for

        return spec_for(next(f for f in IMAGENET_FAMILIES if f.name == "imagenet")).build(root, **params)

    def member(name: str) -> Callable[[Any, Mapping[str, Any]], Any]:
        return lambda root, params: builders[name](root, **params)

    default = ",".join(f.name for f in FAMILIES)
    return [open_set_spec(
        "imagenet-openset", VERSION, imagenet_val, {f.name: member(f.name) for f in FAMILIES}, default_ood=default,
        params={"ood_ratio": IMAGENET_OOD_RATIO}, root_name="ImageNet", check=_openset_check([f.name for f in FAMILIES]),
        description="ImageNet val mixed with NINCO, Places, iNaturalist and Textures (--task open-set; "
                    "--data-param ood=ninco,textures ood_ratio=0.5)")]

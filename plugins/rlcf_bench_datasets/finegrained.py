"""The 10 fine-grained sets of TPT with the CoOp ("zhou") split files
(``docs/original-code.md#classification-data``).

Each set lives in ``<data root>/<dir>/`` with an image sub-folder and a split JSON
``{"train": [...], "val": [...], "test": [[relpath, label, classname], ...]}``; only ``test`` is
used. FGVC-Aircraft has no JSON: ``variants.txt`` (one class per line, line index = label) and
``images_variant_test.txt`` (``<image id> <variant name>``), images ``images/<id>.jpg``.

Class names come from the split file itself (third element of each ``test`` entry, ordered by
label, underscores → spaces), so they always agree with the labels on disk.

Stanford Cars quirk: CoOp's split stores ``cars_test/00001.jpg`` relative to ``stanford_cars/``,
while the other splits are relative to their image sub-folder; the original code joins both and
looks for ``cars_test/cars_test/...``. Here a path whose first component *is* the image
sub-folder is tried relative to the dataset folder first, then relative to the sub-folder (which
also accepts a doubled ``cars_test/cars_test`` tree made for the original code).

These sets use AugMix views in the TPT protocol (``DatasetSpec.augmix=True``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rlcf_bench import DatasetSpec, hookimpl
from rlcf_bench.types import LayoutReport

from ._common import (
    SINGLE_TEMPLATE,
    ImageListClassification,
    check_files_exist,
    dataset_dir,
    fmt_names,
    note_count,
    parameterless_builders,
    read_json,
    read_lines,
)

VERSION = "1"


@dataclass(frozen=True)
class FineGrained:
    """One fine-grained set: folder, image sub-folder, split file (``None``: Aircraft text files)."""

    name: str
    folder: str
    image_dir: str
    split_file: str | None
    n_classes: int
    standard_images: int
    title: str


SETS: tuple[FineGrained, ...] = (
    FineGrained("flower102", "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json", 102, 2_463, "Oxford Flowers 102"),
    FineGrained("dtd", "dtd", "images", "split_zhou_DescribableTextures.json", 47, 1_692, "Describable Textures"),
    FineGrained("pets", "oxford_pets", "images", "split_zhou_OxfordPets.json", 37, 3_669, "Oxford-IIIT Pets"),
    FineGrained("cars", "stanford_cars", "cars_test", "split_zhou_StanfordCars.json", 196, 8_041, "Stanford Cars"),
    FineGrained("ucf101", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json", 101, 3_783, "UCF101 mid-frames"),
    FineGrained("caltech101", "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json", 100, 2_465, "Caltech101"),
    FineGrained("food101", "food-101", "images", "split_zhou_Food101.json", 101, 30_300, "Food-101"),
    FineGrained("sun397", "sun397", "SUN397", "split_zhou_SUN397.json", 397, 19_850, "SUN397"),
    FineGrained("aircraft", "fgvc_aircraft", "images", None, 100, 3_333, "FGVC-Aircraft (variants)"),
    FineGrained("eurosat", "eurosat", "2750", "split_zhou_EuroSAT.json", 10, 8_100, "EuroSAT"),
)


def candidates(ds_dir: Path, image_dir: str, rel: str) -> list[Path]:
    """Where a split path may live (see the Stanford Cars note in the module docstring)."""
    first = rel.replace("\\", "/").split("/", 1)[0]
    if first == image_dir:
        return [ds_dir / rel, ds_dir / image_dir / rel]
    return [ds_dir / image_dir / rel]


def _resolver(ds_dir: Path, image_dir: str) -> Callable[[str], Path]:
    def resolve(rel: str) -> Path:
        paths = candidates(ds_dir, image_dir, rel)
        return next((p for p in paths if p.is_file()), paths[0])

    return resolve


def _read_split(report: LayoutReport, fg: FineGrained, ds_dir: Path) -> list[tuple[str, int, str]] | None:
    """The ``test`` entries of a CoOp split JSON, or ``None`` (reported) if unusable."""
    path = ds_dir / fg.split_file  # type: ignore[operator]
    data = read_json(report, path, "CoOp split JSON")
    if data is None:
        return None
    if not isinstance(data, dict) or "test" not in data:
        keys = fmt_names(sorted(map(str, data))) if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        report.add(str(path), 'a JSON object with key "test" ([[relpath, label, classname], ...])',
                   f"missing key 'test'; keys present: {keys}")
        return None
    test = data["test"]
    if not isinstance(test, list):
        report.add(str(path), '"test": a list of [relpath, label, classname]', f"a {type(test).__name__}")
        return None
    entries: list[tuple[str, int, str]] = []
    bad: list[str] = []
    for i, item in enumerate(test):
        ok = (isinstance(item, (list, tuple)) and len(item) >= 3 and isinstance(item[0], str)
              and isinstance(item[1], int) and not isinstance(item[1], bool) and isinstance(item[2], str))
        if ok:
            entries.append((item[0], item[1], item[2]))
        else:
            bad.append(f"#{i}: {item!r}"[:80])
    if bad:
        report.add(str(path), '"test" entries [relpath: str, label: int, classname: str]',
                   f"{len(bad)} malformed: {fmt_names(bad, 3)}")
    return entries


def _read_aircraft(report: LayoutReport, fg: FineGrained, ds_dir: Path) -> tuple[list[tuple[str, int, str]], list[str]] | None:
    """Aircraft entries ``("<id>.jpg", label, variant)`` and the variant list (labels)."""
    variants = read_lines(report, ds_dir / "variants.txt", "variants.txt: one class name per line")
    lines = read_lines(report, ds_dir / "images_variant_test.txt", "images_variant_test.txt: '<image id> <variant>' lines")
    if variants is None or lines is None:
        return None
    dups = sorted({v for v in variants if variants.count(v) > 1})
    if dups:
        report.add(str(ds_dir / "variants.txt"), "distinct class names", f"duplicates: {fmt_names(dups)}")
    index = {v: i for i, v in enumerate(variants)}
    entries: list[tuple[str, int, str]] = []
    unknown: list[str] = []
    malformed: list[str] = []
    for line in lines:
        image_id, _, variant = line.partition(" ")
        if not variant:
            malformed.append(line)
        elif variant not in index:
            unknown.append(f"{image_id}: {variant!r}")
        else:
            entries.append((f"{image_id}.jpg", index[variant], variant))
    path = str(ds_dir / "images_variant_test.txt")
    if malformed:
        report.add(path, "lines '<image id> <variant name>'", f"{len(malformed)} malformed: {fmt_names(malformed, 3)}")
    if unknown:
        report.add(path, "variants listed in variants.txt", f"{len(unknown)} unknown: {fmt_names(unknown, 3)}")
    return entries, variants


def _classnames(report: LayoutReport, fg: FineGrained, entries: list[tuple[str, int, str]], where: str) -> tuple[str, ...] | None:
    """Class names by label from the entries; checks label range, class count and consistency."""
    by_label: dict[int, set[str]] = {}
    for _, label, name in entries:
        by_label.setdefault(label, set()).add(name)
    out_of_range = sorted(lb for lb in by_label if not 0 <= lb < fg.n_classes)
    if out_of_range:
        report.add(where, f"labels in 0..{fg.n_classes - 1}",
                   f"label out of range: {fmt_names(map(str, out_of_range))}")
    absent = [lb for lb in range(fg.n_classes) if lb not in by_label]
    if absent or out_of_range:
        report.add(where, f"exactly {fg.n_classes} classes (labels 0..{fg.n_classes - 1}) in the test split",
                   f"{len(by_label)} distinct labels; labels without test images: {fmt_names(map(str, absent))}")
    clashes = [f"{lb}: {sorted(names)}" for lb, names in sorted(by_label.items()) if len(names) > 1]
    if clashes:
        report.add(where, "one class name per label", f"{len(clashes)} labels with several names: {fmt_names(clashes, 3)}")
    if not report.ok:
        return None
    report.ok_items.append(f"{where}: {fg.n_classes} classes (expected {fg.n_classes})")
    return tuple(next(iter(by_label[lb])).replace("_", " ") for lb in range(fg.n_classes))


def inspect(fg: FineGrained, root: Path | str | None) -> tuple[LayoutReport, ImageListClassification | None]:
    """Validate one fine-grained set and build its index if the layout is sound."""
    report = LayoutReport(dataset=fg.name, root=str(root))
    ds_dir = dataset_dir(report, root, (fg.folder,))
    if ds_dir is None:
        return report, None
    image_dir = ds_dir / fg.image_dir
    if not image_dir.is_dir():
        report.add(str(image_dir), f"image folder {fg.image_dir}/ inside {fg.folder}/", "no such directory")
    if fg.split_file is None:
        read = _read_aircraft(report, fg, ds_dir)
        if read is None:
            return report, None
        entries, variants = read
        where = str(ds_dir / "variants.txt")
        if len(variants) != fg.n_classes:
            report.add(where, f"{fg.n_classes} class names", f"{len(variants)} lines")
    else:
        split = _read_split(report, fg, ds_dir)
        if split is None:
            return report, None
        entries, where = split, str(ds_dir / fg.split_file)
    classnames = _classnames(report, fg, entries, where)
    note_count(report, "test images listed", len(entries), fg.standard_images, where)
    if image_dir.is_dir():
        check_files_exist(report, [e[0] for e in entries],
                          exists=lambda rel: any(p.is_file() for p in candidates(ds_dir, fg.image_dir, rel)),
                          describe=lambda rel: " or ".join(map(str, candidates(ds_dir, fg.image_dir, rel))))
    if not report.ok or classnames is None:
        return report, None
    data = ImageListClassification(
        classnames=classnames, templates=SINGLE_TEMPLATE, sample_ids=tuple(e[0] for e in entries),
        labels=tuple(e[1] for e in entries), resolve=_resolver(ds_dir, fg.image_dir), name=fg.name,
    )
    return report, data


def spec_for(fg: FineGrained) -> DatasetSpec:
    check, build = parameterless_builders(fg.name, lambda root: inspect(fg, root))

    layout = f"{fg.folder}/{fg.image_dir}/, " + (fg.split_file or "variants.txt + images_variant_test.txt")
    return DatasetSpec(
        name=fg.name, version=VERSION, task_kinds=frozenset({"classification"}), build=build, check=check,
        root_name=fg.folder, description=f"{fg.title}, {fg.n_classes} classes, CoOp test split ({layout})",
        augmix=True,
    )


@hookimpl
def rlcfb_register_datasets() -> list[DatasetSpec]:
    return [spec_for(fg) for fg in SETS]

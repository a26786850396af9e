"""The 10 CoOp fine-grained sets: split JSON, Aircraft text files, Stanford Cars path quirk, broken splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlcf_bench import DatasetLayoutError
from rlcf_bench.datasets import ClassificationData
from rlcf_bench_datasets import finegrained as fgm

SETS = {fg.name: fg for fg in fgm.SETS}


def problems_text(report: Any) -> str:
    return "\n".join(f"{p.path} | {p.expected} | {p.found}" for p in report.problems)


def write_split_set(root: Path, fg: fgm.FineGrained, helpers: Any, *, per_class: int = 1, prefix: str = "") -> list[list[Any]]:
    """A valid CoOp-style set: one folder per class, ``test`` entries [relpath, label, classname]."""
    ds = root / fg.folder
    test = []
    for label in range(fg.n_classes):
        cname = f"class_{label:03d}"
        for k in range(per_class):
            rel = f"{prefix}{cname}/im{k}.jpg"
            helpers.image(ds / fg.image_dir / rel.removeprefix(prefix))
            test.append([rel, label, cname])
    helpers.json(ds / fg.split_file, {"train": [], "val": [], "test": test})
    return test


def write_aircraft(root: Path, helpers: Any, n_classes: int = 100) -> Path:
    ds = root / "fgvc_aircraft"
    variants = [f"7{k:02d}-200" for k in range(n_classes)]
    ds.mkdir(parents=True)
    (ds / "variants.txt").write_text("\n".join(variants) + "\n")
    lines = []
    for k, v in enumerate(variants):
        image_id = f"{1000000 + k}"
        helpers.image(ds / "images" / f"{image_id}.jpg")
        lines.append(f"{image_id} {v}")
    (ds / "images_variant_test.txt").write_text("\n".join(lines) + "\n")
    return ds


@pytest.mark.parametrize("name", [n for n in SETS if n != "aircraft"])
def test_each_split_set_builds(tmp_path: Path, spec: Any, helpers: Any, name: str) -> None:
    fg = SETS[name]
    write_split_set(tmp_path, fg, helpers)
    s = spec(name)
    assert s.augmix is True and s.root_name == fg.folder
    report = s.check(tmp_path)
    assert report.ok, report.render()
    assert any(f"{fg.n_classes} classes (expected {fg.n_classes})" in i for i in report.ok_items)
    checked = min(fg.n_classes, 200)  # the existence check samples at most 200 paths
    assert any(f"checked {checked} of {fg.n_classes} referenced images: all present" in i for i in report.ok_items)
    data = s.build(tmp_path)
    assert isinstance(data, ClassificationData)
    assert len(data) == fg.n_classes and len(data.classnames) == fg.n_classes
    assert data.classnames[3] == "class 003"  # underscores -> spaces, ordered by label
    assert data.label(3) == 3 and data.sample_id(3) == "class_003/im0.jpg"
    assert data.templates == ("a photo of a {}.",)
    assert data.path(3) == tmp_path / fg.folder / fg.image_dir / "class_003" / "im0.jpg"


def test_classnames_ordered_by_label_not_file_order(tmp_path: Path, spec: Any, helpers: Any) -> None:
    fg = SETS["eurosat"]
    test = write_split_set(tmp_path, fg, helpers)
    test.reverse()
    for entry in test:
        entry[2] = {0: "Annual Crop Land", 9: "Sea or Lake"}.get(entry[1], entry[2])
    helpers.json(tmp_path / fg.folder / fg.split_file, {"test": test})
    data = spec("eurosat").build(tmp_path)
    assert data.classnames[0] == "Annual Crop Land" and data.classnames[9] == "Sea or Lake"
    assert data.label(0) == 9  # file order kept for the samples


def test_aircraft_variants(tmp_path: Path, spec: Any, helpers: Any) -> None:
    write_aircraft(tmp_path, helpers)
    data = spec("aircraft").build(tmp_path)
    assert len(data) == 100 and data.classnames[5] == "705-200" and data.label(5) == 5
    assert data.sample_id(5) == "1000005.jpg" and data.path(5).is_file()


def test_aircraft_unknown_variant_and_count(tmp_path: Path, spec: Any, helpers: Any) -> None:
    ds = write_aircraft(tmp_path, helpers, n_classes=99)
    with open(ds / "images_variant_test.txt", "a") as fh:
        fh.write("1234567 A380\n")
    text = problems_text(spec("aircraft").check(tmp_path))
    assert "1 unknown: 1234567: 'A380'" in text and "100 class names" in text and "99 lines" in text


# ------------------------------------------------------------------------------------ Stanford Cars
def test_cars_paths_relative_to_dataset_folder_are_not_doubled(tmp_path: Path, spec: Any, helpers: Any) -> None:
    fg = SETS["cars"]
    ds = tmp_path / "stanford_cars"
    test = []
    for label in range(fg.n_classes):
        helpers.image(ds / "cars_test" / f"{label + 1:05d}.jpg")
        test.append([f"cars_test/{label + 1:05d}.jpg", label, f"Car_{label}"])
    helpers.json(ds / fg.split_file, {"train": [], "val": [], "test": test})
    report = spec("cars").check(tmp_path)
    assert report.ok, report.render()
    data = spec("cars").build(tmp_path)
    assert data.sample_id(0) == "cars_test/00001.jpg"
    assert data.path(0) == ds / "cars_test" / "00001.jpg"  # not cars_test/cars_test
    assert data.load_image(0).shape[0] == 3


def test_cars_doubled_layout_of_the_original_code_also_works(tmp_path: Path, spec: Any, helpers: Any) -> None:
    fg = SETS["cars"]
    ds = tmp_path / "stanford_cars"
    test = []
    for label in range(fg.n_classes):
        helpers.image(ds / "cars_test" / "cars_test" / f"{label + 1:05d}.jpg")
        test.append([f"cars_test/{label + 1:05d}.jpg", label, f"Car_{label}"])
    helpers.json(ds / fg.split_file, {"test": test})
    data = spec("cars").build(tmp_path)
    assert data.path(0) == ds / "cars_test" / "cars_test" / "00001.jpg"


def test_cars_paths_relative_to_image_dir(tmp_path: Path, spec: Any, helpers: Any) -> None:
    write_split_set(tmp_path, SETS["cars"], helpers)
    data = spec("cars").build(tmp_path)
    assert data.path(0) == tmp_path / "stanford_cars" / "cars_test" / "class_000" / "im0.jpg"


# ------------------------------------------------------------------------------------ broken splits
def test_split_without_test_key(tmp_path: Path, spec: Any, helpers: Any) -> None:
    fg = SETS["dtd"]
    write_split_set(tmp_path, fg, helpers)
    helpers.json(tmp_path / fg.folder / fg.split_file, {"train": [], "val": []})
    report = spec("dtd").check(tmp_path)
    assert report.problems[0].found == "missing key 'test'; keys present: train, val"
    with pytest.raises(DatasetLayoutError, match="missing key 'test'"):
        spec("dtd").build(tmp_path)


def test_unreadable_and_missing_split(tmp_path: Path, spec: Any, helpers: Any) -> None:
    fg = SETS["pets"]
    write_split_set(tmp_path, fg, helpers)
    (tmp_path / fg.folder / fg.split_file).write_text("{not json")
    assert "unreadable" in problems_text(spec("pets").check(tmp_path))
    (tmp_path / fg.folder / fg.split_file).unlink()
    report = spec("pets").check(tmp_path)
    assert report.problems[0].path.endswith("oxford_pets/split_zhou_OxfordPets.json")
    assert report.problems[0].found == "no such file"


def test_label_out_of_range_and_missing_class(tmp_path: Path, spec: Any, helpers: Any) -> None:
    fg = SETS["eurosat"]
    test = write_split_set(tmp_path, fg, helpers)
    test[4][1] = 10  # class 4 loses its only image, label 10 does not exist
    test.append(["class_001/im0.jpg", "1", "class_001"])  # label as a string: malformed
    helpers.json(tmp_path / fg.folder / fg.split_file, {"test": test})
    text = problems_text(spec("eurosat").check(tmp_path))
    assert "labels in 0..9 | label out of range: 10" in text
    assert "exactly 10 classes" in text and "labels without test images: 4" in text
    assert "1 malformed" in text
    with pytest.raises(DatasetLayoutError):
        spec("eurosat").build(tmp_path)


def test_inconsistent_classnames(tmp_path: Path, spec: Any, helpers: Any) -> None:
    fg = SETS["eurosat"]
    test = write_split_set(tmp_path, fg, helpers, per_class=2)
    test[1][2] = "Forest"
    helpers.json(tmp_path / fg.folder / fg.split_file, {"test": test})
    assert "one class name per label" in problems_text(spec("eurosat").check(tmp_path))


def test_missing_images_are_sampled_and_counted(tmp_path: Path, spec: Any, helpers: Any) -> None:
    fg = SETS["eurosat"]
    write_split_set(tmp_path, fg, helpers, per_class=50)  # 500 entries
    for img in (tmp_path / "eurosat" / "2750").rglob("*.jpg"):
        img.unlink()
    report = spec("eurosat").check(tmp_path)
    (problem,) = report.problems
    assert problem.found.startswith("checked 200 of 500 referenced images: 200 missing")
    with pytest.raises(DatasetLayoutError):
        spec("eurosat").build(tmp_path)


def test_missing_image_dir(tmp_path: Path, spec: Any, helpers: Any) -> None:
    fg = SETS["flower102"]
    write_split_set(tmp_path, fg, helpers)
    (tmp_path / "oxford_flowers" / "jpg").rename(tmp_path / "oxford_flowers" / "images")
    report = spec("flower102").check(tmp_path)
    assert report.problems[0].path == str(tmp_path / "oxford_flowers" / "jpg")
    assert report.problems[0].found == "no such directory"

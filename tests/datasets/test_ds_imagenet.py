"""ImageNet family layouts: label order, class subsets, V2's class-index folders, broken trees."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from rlcf_bench import DatasetLayoutError
from rlcf_bench.datasets import ClassificationData
from rlcf_bench_datasets import imagenet as inet


@pytest.fixture(scope="module")
def meta() -> inet.ImageNetMeta:
    return inet.load_meta()


@pytest.fixture(scope="module")
def wnid_tree(tmp_path_factory: pytest.TempPathFactory, helpers: Any, meta: inet.ImageNetMeta) -> Path:
    """1000 wnid folders with one tiny image each, written once and linked into read-only tests."""
    return helpers.tree(tmp_path_factory.mktemp("wnids"), meta.wnids)


@pytest.fixture(scope="module")
def index_tree(tmp_path_factory: pytest.TempPathFactory, helpers: Any) -> Path:
    """ImageNet-V2's layout: folders 0..999."""
    return helpers.tree(tmp_path_factory.mktemp("indices"), [str(i) for i in range(1000)], ext=".jpeg")


def link(path: Path, target: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target, target_is_directory=True)
    return path


def problems_text(report: Any) -> str:
    return "\n".join(f"{p.path} | {p.expected} | {p.found}" for p in report.problems)


# ------------------------------------------------------------------------------------ metadata
def test_metadata_from_installed_timm_and_open_clip(meta: inet.ImageNetMeta) -> None:
    assert len(meta.wnids) == 1000 and list(meta.wnids) == sorted(meta.wnids)
    assert meta.wnids[0] == "n01440764" and meta.classnames[0] == "tench"
    assert len(meta.subsets["a"]) == len(meta.subsets["r"]) == 200
    templates = inet.openai_templates()
    assert len(templates) == 80 and all("{}" in t for t in templates)


def test_missing_timm_metadata_is_a_clear_problem(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 spec: Any, helpers: Any) -> None:
    monkeypatch.setattr(inet, "timm_info_dir", lambda: tmp_path / "empty_info")
    inet.load_meta.cache_clear()
    try:
        report = spec("imagenet-a").check(tmp_path)
        assert not report.ok
        assert "imagenet_synsets.txt is missing" in problems_text(report)
        with pytest.raises(DatasetLayoutError):
            spec("imagenet-a").build(tmp_path)
    finally:
        monkeypatch.undo()
        inet.load_meta.cache_clear()


# ------------------------------------------------------------------------------------ ImageNet val
def test_imagenet_val_full_tree(tmp_path: Path, spec: Any, wnid_tree: Path, meta: inet.ImageNetMeta) -> None:
    link(tmp_path / "ImageNet" / "val", wnid_tree)
    report = spec("imagenet").check(tmp_path)
    assert report.ok, report.render()
    assert any("1000 wnid folders (expected 1000)" in item for item in report.ok_items)
    assert any("1000 images (standard test set: 50000; this looks like a subset)" in i for i in report.ok_items)
    data = spec("imagenet").build(tmp_path)
    assert isinstance(data, ClassificationData)
    assert len(data) == 1000 and data.classnames == meta.classnames
    assert data.templates == ("a photo of a {}.",) and len(data.ensemble_templates) == 80
    for i in (0, 1, 10, 999):
        assert data.sample_id(i).split("/")[0] == meta.wnids[i] and data.label(i) == i
    img = data.load_image(3)
    assert img.dtype.is_floating_point is False and img.shape == (3, 5, 6)


def test_imagenet_missing_and_empty_class_folders(tmp_path: Path, spec: Any, helpers: Any, meta: inet.ImageNetMeta) -> None:
    val = helpers.tree(tmp_path / "ImageNet" / "val", meta.wnids[1:])
    (val / "n99999999").mkdir()
    shutil.rmtree(val / meta.wnids[5])
    (val / meta.wnids[5]).mkdir()  # empty class folder
    report = spec("imagenet").check(tmp_path)
    text = problems_text(report)
    assert "exactly 1000 wnid folders" in text
    assert "missing 1: n01440764" in text and "unexpected 1: n99999999" in text
    assert f"1 empty class folder(s): {meta.wnids[5]}" in text
    with pytest.raises(DatasetLayoutError) as err:
        spec("imagenet").build(tmp_path)
    assert "n01440764" in str(err.value)


def test_imagenet_flat_val_archive_is_explained(tmp_path: Path, spec: Any, helpers: Any) -> None:
    for k in range(3):
        helpers.image(tmp_path / "ImageNet" / "val" / f"ILSVRC2012_val_0000000{k}.JPEG")
    text = problems_text(spec("imagenet").check(tmp_path))
    assert "no sub-folders; 3 image files directly inside" in text and "sorted into one folder per class" in text


def test_imagenet_without_val_subfolder(tmp_path: Path, spec: Any, helpers: Any, meta: inet.ImageNetMeta) -> None:
    helpers.tree(tmp_path / "ImageNet", meta.wnids[:3])
    (problem,) = spec("imagenet").check(tmp_path).problems
    assert problem.path == str(tmp_path / "ImageNet" / "val")
    assert "3 class folders sit directly in" in problem.found and "move them into val/" in problem.found


def test_missing_dataset_folder_suggests_near_miss(tmp_path: Path, spec: Any) -> None:
    (tmp_path / "Imagenet-A").mkdir()
    report = spec("imagenet-a").check(tmp_path)
    assert report.problems[0].path == str(tmp_path / "imagenet-a")
    assert "similar folders present: Imagenet-A" in report.problems[0].found


def test_no_data_root(spec: Any) -> None:
    report = spec("imagenet").check(None)
    assert "no data root configured" in problems_text(report) and "--data-root" in problems_text(report)


# ------------------------------------------------------------------------------------ A and R
@pytest.mark.parametrize("name,key", [("imagenet-a", "a"), ("imagenet-r", "r")])
def test_200_class_subsets(tmp_path: Path, spec: Any, helpers: Any, meta: inet.ImageNetMeta, name: str, key: str) -> None:
    subset = meta.subsets[key]
    helpers.tree(tmp_path / name, subset, ext=".jpg")
    (tmp_path / name / "README.txt").write_text("not a class folder")
    data = spec(name).build(tmp_path)
    assert len(data.classnames) == 200 and len(data) == 200
    index = {w: i for i, w in enumerate(meta.wnids)}
    for i in range(len(data)):
        wnid = data.sample_id(i).split("/")[0]
        assert data.label(i) == subset.index(wnid)  # sorted-wnid order, 200-way
        assert data.classnames[data.label(i)] == meta.classnames[index[wnid]]


def test_imagenet_a_missing_one_wnid(tmp_path: Path, spec: Any, helpers: Any, meta: inet.ImageNetMeta) -> None:
    helpers.tree(tmp_path / "imagenet-a", meta.subsets["a"][1:])
    report = spec("imagenet-a").check(tmp_path)
    assert not report.ok
    found = report.problems[0].found
    assert report.problems[0].expected == "exactly 200 wnid folders"
    assert "found 199 folders" in found and "missing 1: n01498041" in found
    with pytest.raises(DatasetLayoutError):
        spec("imagenet-a").build(tmp_path)


def test_imagenet_a_pointed_at_full_imagenet(tmp_path: Path, spec: Any, wnid_tree: Path) -> None:
    link(tmp_path / "imagenet-a", wnid_tree)
    assert "unexpected 800" in problems_text(spec("imagenet-a").check(tmp_path))


# ------------------------------------------------------------------------------------ V2
def test_v2_label_is_the_integer_folder_name(tmp_path: Path, spec: Any, index_tree: Path, meta: inet.ImageNetMeta) -> None:
    base = link(tmp_path / "imagenetv2-matched-frequency-format-val", index_tree)
    data = spec("imagenet-v2").build(tmp_path)
    assert data.classnames == meta.classnames
    labels = {data.sample_id(i).split("/")[0]: data.label(i) for i in range(len(data))}
    assert labels["10"] == 10 and labels["100"] == 100 and labels["2"] == 2 and labels["999"] == 999
    # the silent bug: ImageFolder's string sort puts "10" at position 2
    string_sorted = sorted(labels)
    assert string_sorted[2] == "10" and labels["10"] != 2
    assert all(labels[name] == int(name) for name in labels)
    assert base.is_dir()


def test_v2_accepts_short_alias_folder(tmp_path: Path, spec: Any, index_tree: Path) -> None:
    link(tmp_path / "imagenet-v2", index_tree)
    report = spec("imagenet-v2").check(tmp_path)
    assert report.ok and any("accepted alias" in i for i in report.ok_items)


def test_v2_with_wnid_folders_is_refused(tmp_path: Path, spec: Any, wnid_tree: Path) -> None:
    link(tmp_path / "imagenetv2-matched-frequency-format-val", wnid_tree)
    text = problems_text(spec("imagenet-v2").check(tmp_path))
    assert "folder named 'n01440764' in ImageNet-V2 where integer class indices 0..999 are expected" in text
    with pytest.raises(DatasetLayoutError):
        spec("imagenet-v2").build(tmp_path)


def test_v2_label_out_of_range(tmp_path: Path, spec: Any, helpers: Any) -> None:
    helpers.tree(tmp_path / "imagenetv2-matched-frequency-format-val", [str(i) for i in range(1, 1001)])
    text = problems_text(spec("imagenet-v2").check(tmp_path))
    assert "missing 1: 0" in text and "unexpected 1: 1000" in text and "label out of range" in text


def test_wnid_dataset_with_integer_folders_hints_v2(tmp_path: Path, spec: Any, index_tree: Path) -> None:
    link(tmp_path / "ImageNet-Sketch", index_tree)
    assert "look like ImageNet-V2's class-index layout" in problems_text(spec("imagenet-sketch").check(tmp_path))


# ------------------------------------------------------------------------------------ Sketch
@pytest.mark.parametrize("sub", ["", "sketch"])
def test_sketch_both_layouts(tmp_path: Path, spec: Any, wnid_tree: Path, meta: inet.ImageNetMeta, sub: str) -> None:
    link(tmp_path / "ImageNet-Sketch" / sub if sub else tmp_path / "ImageNet-Sketch", wnid_tree)
    data = spec("imagenet-sketch").build(tmp_path)
    assert len(data) == 1000 and data.label(7) == 7
    assert data.sample_id(7).startswith(meta.wnids[7] + "/")  # same id whichever layout
    assert data.path(7).is_file()


# ------------------------------------------------------------------------------------ C
def test_imagenet_c_params_and_layout(tmp_path: Path, spec: Any, wnid_tree: Path) -> None:
    link(tmp_path / "imagenet-c" / "fog" / "3", wnid_tree)
    (tmp_path / "imagenet-c" / "snow" / "1").mkdir(parents=True)
    c = spec("imagenet-c")
    assert dict(c.params) == {"corruption": "gaussian_noise", "severity": 5}
    data = c.build(tmp_path, corruption="fog", severity="3")  # CLI values arrive as strings
    assert len(data) == 1000 and data.label(999) == 999
    text = problems_text(c.check(tmp_path))  # defaults: gaussian_noise/5
    assert "corruptions present: fog, snow" in text
    assert "severities present: 3" in problems_text(c.check(tmp_path, corruption="fog", severity=5))
    bad = problems_text(c.check(tmp_path, corruption="fogg", severity=9))
    assert "param corruption" in bad and "param severity" in bad
    with pytest.raises(TypeError, match="has no parameter 'level'"):
        c.check(tmp_path, level=3)
    with pytest.raises(TypeError, match="valid: none"):
        spec("imagenet").check(tmp_path, corruption="fog")


def test_data_root_may_be_the_dataset_folder(tmp_path: Path, spec: Any, helpers: Any, meta: inet.ImageNetMeta) -> None:
    helpers.tree(tmp_path / "imagenet-r", meta.subsets["r"])
    assert spec("imagenet-r").check(tmp_path / "imagenet-r").ok

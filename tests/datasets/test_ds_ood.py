"""OOD sets in their released layouts (NINCO, MOS Places and iNaturalist, Textures) and the
``imagenet-openset`` mix: tiny fixtures in the exact formats, and the one-line layout errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlcf_bench import DatasetLayoutError
from rlcf_bench_datasets import imagenet as inet
from rlcf_bench_datasets import ood


class _Reader:
    """One OOD set's check and build (the sets are members of a mix, not datasets of their own)."""

    def __init__(self, family: ood.OODFamily) -> None:
        self.check, self.build = ood._ood_builders(family)


@pytest.fixture(scope="module")
def specs() -> dict[str, Any]:
    readers: dict[str, Any] = {f.name: _Reader(f) for f in ood.FAMILIES}
    return {**readers, **{s.name: s for s in ood.rlcfb_register_datasets()}}


def _problems(report: Any) -> str:
    return "\n".join(f"{p.path} | {p.expected} | {p.found}" for p in report.problems)


def test_the_47_dtd_classes():
    assert len(ood.DTD_CLASSES) == 47 == len(set(ood.DTD_CLASSES))


def test_each_released_layout_reads(tmp_path: Path, helpers: Any, specs: dict[str, Any]):
    helpers.tree(tmp_path / "NINCO" / "NINCO_OOD_classes", ["amphiuma_means", "caracal_caracal"], per_class=2, ext=".jpg")
    for k in range(3):
        helpers.image(tmp_path / "Places" / "images" / f"b_badlands_{k:08d}.jpg")
        helpers.image(tmp_path / "iNaturalist" / "images" / f"{k:032x}.jpg")
    helpers.tree(tmp_path / "dtd" / "images", ood.DTD_CLASSES, ext=".jpg")
    sizes = {"ninco": 4, "places-ood": 3, "inat-ood": 3, "textures": 47}
    for name, n in sizes.items():
        report = specs[name].check(tmp_path)
        assert report.ok, _problems(report)
        data = specs[name].build(tmp_path)
        assert len(data) == n and {data.label(i) for i in range(n)} == {-1}
        assert tuple(data.load_image(0).shape[:1]) == (3,)
    assert specs["ninco"].build(tmp_path).sample_id(0) == "amphiuma_means/img0.jpg"
    assert specs["places-ood"].build(tmp_path).sample_id(2) == "b_badlands_00000002.jpg"


def test_textures_also_read_from_the_openood_folder(tmp_path: Path, helpers: Any, specs: dict[str, Any]):
    helpers.tree(tmp_path / "Textures", ood.DTD_CLASSES, ext=".jpg")
    assert len(specs["textures"].build(tmp_path)) == 47


def test_layout_problems_are_reported_before_anything_runs(tmp_path: Path, helpers: Any, specs: dict[str, Any]):
    helpers.image(tmp_path / "Places" / "b_badlands_00000001.jpg")  # archive unpacked without images/
    report = specs["places-ood"].check(tmp_path)
    assert not report.ok and "1 image files directly in Places/ (move them into Places/images/)" in _problems(report)
    with pytest.raises(DatasetLayoutError, match="places-ood"):  # what build says, in one place
        specs["places-ood"].build(tmp_path)
    helpers.tree(tmp_path / "dtd" / "images", ood.DTD_CLASSES[:-1], ext=".jpg")  # one class missing
    assert "missing 1: zigzagged" in _problems(specs["textures"].check(tmp_path))
    (tmp_path / "NINCO" / "NINCO_OOD_classes" / "caracal_caracal").mkdir(parents=True)
    assert "empty class folder" in _problems(specs["ninco"].check(tmp_path))
    assert "no such folder" in _problems(specs["inat-ood"].check(tmp_path))
    assert not specs["ninco"].check(None).ok


def test_imagenet_openset_mixes_imagenet_val_with_the_chosen_sets(tmp_path: Path, helpers: Any,
                                                                  specs: dict[str, Any]):
    helpers.tree(tmp_path / "ImageNet" / "val", inet.load_meta().wnids)
    helpers.tree(tmp_path / "dtd" / "images", ood.DTD_CLASSES, ext=".jpg")
    helpers.tree(tmp_path / "NINCO" / "NINCO_OOD_classes", ["a", "b"], per_class=2, ext=".jpg")
    spec = specs["imagenet-openset"]
    params = {"ood": "textures,ninco", "ood_ratio": 0.005}
    assert spec.check(tmp_path, **params).ok
    mix = spec.build(tmp_path, **params)
    ids = [mix.sample_id(i) for i in range(len(mix))]
    assert len(mix) == 1005 and sum(s.startswith("ood:textures:") for s in ids) == 3
    assert sum(s.startswith("ood:ninco:") for s in ids) == 2 and len(mix.classnames) == 1000
    report = spec.check(tmp_path, ood="places-ood")  # not present: named in the combined report
    assert not report.ok and "Places" in _problems(report)
    with pytest.raises(ValueError, match="ood must be"):
        spec.build(tmp_path, ood="sun")

"""Captioning readers: COCO/Flickr30k Karpathy references and the official NoCaps validation JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlcf_bench import DatasetLayoutError
from rlcf_bench.datasets import CaptioningData


def problems_text(report: Any) -> str:
    return "\n".join(f"{p.path} | {p.expected} | {p.found}" for p in report.problems)


def write_nocaps(root: Path, helpers: Any) -> dict[str, Any]:
    """Six images (two per domain), ten captions each, COCO style as released."""
    images, annotations = [], []
    domains = ["in-domain", "near-domain", "out-domain"]
    for k in range(6):
        fname = f"{k:016x}.jpg"
        helpers.image(root / "nocaps" / "val" / fname)
        images.append({"id": k, "file_name": fname, "domain": domains[k % 3], "height": 5, "width": 6,
                       "coco_url": f"https://example.invalid/{fname}"})
        annotations += [{"image_id": k, "id": 10 * k + j, "caption": f" image {k} ref {j} "} for j in range(10)]
    data = {"licenses": [], "info": {}, "images": images, "annotations": annotations}
    helpers.json(root / "nocaps" / "nocaps_val_4500_captions.json", data)
    return data


def test_coco_captions_references(tmp_path: Path, spec: Any, helpers: Any) -> None:
    rel = "val2014/COCO_val2014_000000391895.jpg"
    helpers.image(tmp_path / "coco2014" / rel)
    helpers.json(tmp_path / "coco2014" / "coco_karpathy_test.json",
                 [{"image": rel, "caption": ["A man riding a bike. ", "Someone cycling"]}])
    data = spec("coco-captions").build(tmp_path)
    assert isinstance(data, CaptioningData)
    assert data.sample_id(0) == rel and data.references(0) == ["A man riding a bike.", "Someone cycling"]
    assert data.image_ids == (391895,)
    assert data.load_image(0).shape == (3, 5, 6)


def test_flickr_captions(tmp_path: Path, spec: Any, helpers: Any) -> None:
    helpers.image(tmp_path / "flickr30k" / "flickr30k-images" / "1000092795.jpg")
    helpers.json(tmp_path / "flickr30k" / "annotations" / "flickr30k_test.json",
                 [{"image": "flickr30k-images/1000092795.jpg", "caption": [f"c{j}" for j in range(5)]}])
    data = spec("flickr30k-captions").build(tmp_path)
    assert len(data) == 1 and len(data.references(0)) == 5 and data.image_ids == (1000092795,)


@pytest.mark.parametrize("domain,ids", [("all", [0, 1, 2, 3, 4, 5]), ("in", [0, 3]), ("near", [1, 4]),
                                        ("out-domain", [2, 5])])
def test_nocaps_domains(tmp_path: Path, spec: Any, helpers: Any, domain: str, ids: list[int]) -> None:
    write_nocaps(tmp_path, helpers)
    report = spec("nocaps").check(tmp_path, domain=domain)
    assert report.ok, report.render()
    assert any("images per domain: in-domain 2, near-domain 2, out-domain 2" in i for i in report.ok_items)
    data = spec("nocaps").build(tmp_path, domain=domain)
    assert list(data.image_ids) == ids
    assert data.references(0) == [f"image {ids[0]} ref {j}" for j in range(10)]
    assert data.sample_id(0) == f"{ids[0]:016x}.jpg"


def test_nocaps_fixed_domain_aliases(tmp_path: Path, spec: Any, helpers: Any) -> None:
    write_nocaps(tmp_path, helpers)
    assert list(spec("nocaps-out").build(tmp_path).image_ids) == [2, 5]
    assert dict(spec("nocaps").params) == {"domain": "all"} and dict(spec("nocaps-in").params) == {}
    with pytest.raises(TypeError):
        spec("nocaps-in").check(tmp_path, domain="out")


def test_nocaps_broken(tmp_path: Path, spec: Any, helpers: Any) -> None:
    data = write_nocaps(tmp_path, helpers)
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 4]
    data["annotations"].append({"image_id": 99, "id": 1, "caption": "orphan"})
    data["images"][0]["domain"] = "indoor"
    helpers.json(tmp_path / "nocaps" / "nocaps_val_4500_captions.json", data)
    (tmp_path / "nocaps" / "val" / f"{1:016x}.jpg").unlink()
    text = problems_text(spec("nocaps").check(tmp_path))
    assert "captions for 1 unknown image ids: 99" in text
    assert f"1 images without captions: {4:016x}.jpg" in text
    assert "also indoor" in text
    assert "checked 6 of 6 referenced images: 1 missing" in text
    with pytest.raises(DatasetLayoutError):
        spec("nocaps").build(tmp_path)


def test_nocaps_wrong_file_and_param(tmp_path: Path, spec: Any, helpers: Any) -> None:
    helpers.json(tmp_path / "nocaps" / "nocaps_val_4500_captions.json", [{"image": "a.jpg", "caption": ["x"]}])
    assert "lists \"images\" and \"annotations\"" in problems_text(spec("nocaps").check(tmp_path))
    assert "one of all, in, near, out" in problems_text(spec("nocaps").check(tmp_path, domain="inside"))

"""COCO / Flickr30k Karpathy test splits in LAVIS format, for retrieval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlcf_bench import DatasetLayoutError
from rlcf_bench.datasets import RetrievalData
from rlcf_bench_datasets.retrieval import blip_caption


def problems_text(report: Any) -> str:
    return "\n".join(f"{p.path} | {p.expected} | {p.found}" for p in report.problems)


def write_coco(root: Path, helpers: Any, n_images: int = 3) -> list[dict[str, Any]]:
    ann = []
    for k in range(n_images):
        rel = f"val2014/COCO_val2014_{391895 + k:012d}.jpg"
        helpers.image(root / "coco2014" / rel)
        ann.append({"image": rel, "caption": [f"A man (on a bike) #{k}.", "Two  dogs; playing!", f"cap {k}"][: 2 + k % 2]})
    helpers.json(root / "coco2014" / "coco_karpathy_test.json", ann)
    return ann


def write_flickr(root: Path, helpers: Any) -> None:
    ann = []
    for k in range(2):
        rel = f"flickr30k-images/{1007129816 + k}.jpg"
        helpers.image(root / "flickr30k" / rel)
        ann.append({"image": rel, "caption": [f"caption {j} of {k}" for j in range(5)]})
    helpers.json(root / "flickr30k" / "annotations" / "flickr30k_test.json", ann)


def test_blip_caption_matches_lavis_processing() -> None:
    assert blip_caption('A man (on a bike) #1.') == "a man on a bike 1"
    assert blip_caption('  "Quoted": *star* ~tilde~ ; semi! ') == "quoted star tilde semi"
    assert blip_caption("Don't-change hyphens, commas & apostrophes?") == "don't-change hyphens, commas & apostrophes?"
    long = " ".join(f"w{i}" for i in range(60))
    assert blip_caption(long).split() == [f"w{i}" for i in range(50)]


def test_coco_flattening_and_captions(tmp_path: Path, spec: Any, helpers: Any) -> None:
    ann = write_coco(tmp_path, helpers)
    s = spec("coco-retrieval")
    report = s.check(tmp_path)
    assert report.ok, report.render()
    assert any("3 images in the annotation file (standard test set: 5000; this looks like a subset)" in i
               for i in report.ok_items)
    data = s.build(tmp_path)
    assert isinstance(data, RetrievalData)
    assert len(data) == 3 and data.image_id(0) == ann[0]["image"]
    assert data.captions[:3] == ("a man on a bike 0", "two dogs playing", "a man on a bike 1")
    assert list(data.caption_image) == [0, 0, 1, 1, 1, 2, 2]
    assert data.image_captions[1] == (2, 3, 4)
    assert data.load_image(2).shape == (3, 5, 6)


def test_flickr_layout(tmp_path: Path, spec: Any, helpers: Any) -> None:
    write_flickr(tmp_path, helpers)
    data = spec("flickr30k-retrieval").build(tmp_path)
    assert len(data) == 2 and len(data.captions) == 10 and data.caption_image[5] == 1
    assert data.path(1) == tmp_path / "flickr30k" / "flickr30k-images" / "1007129817.jpg"


def test_annotation_file_missing(tmp_path: Path, spec: Any) -> None:
    (tmp_path / "flickr30k").mkdir()
    report = spec("flickr30k-retrieval").check(tmp_path)
    assert report.problems[0].path == str(tmp_path / "flickr30k" / "annotations" / "flickr30k_test.json")
    assert report.problems[0].found == "no such file"


def test_missing_images_and_malformed_entries(tmp_path: Path, spec: Any, helpers: Any) -> None:
    ann = write_coco(tmp_path, helpers)
    (tmp_path / "coco2014" / ann[1]["image"]).unlink()
    ann.append({"image": "val2014/x.jpg"})
    ann.append({"image": "val2014/y.jpg", "caption": []})
    helpers.json(tmp_path / "coco2014" / "coco_karpathy_test.json", ann)
    text = problems_text(spec("coco-retrieval").check(tmp_path))
    assert "2 malformed" in text and "caption list empty" in text
    assert "checked 3 of 3 referenced images: 1 missing" in text and ann[1]["image"] in text
    with pytest.raises(DatasetLayoutError):
        spec("coco-retrieval").build(tmp_path)


def test_wrong_json_shapes(tmp_path: Path, spec: Any, helpers: Any) -> None:
    helpers.json(tmp_path / "coco2014" / "coco_karpathy_test.json", {"images": [], "annotations": []})
    assert "a JSON dict with keys annotations, images" in problems_text(spec("coco-retrieval").check(tmp_path))
    helpers.json(tmp_path / "coco2014" / "coco_karpathy_test.json", [])
    empty = spec("coco-retrieval").check(tmp_path).problems[0]
    assert empty.path.endswith("coco_karpathy_test.json") and empty.found == "none"
    helpers.image(tmp_path / "coco2014" / "a.jpg")
    helpers.json(tmp_path / "coco2014" / "coco_karpathy_test.json",
                 [{"image": "a.jpg", "caption": "one", "image_id": "coco_1"}, {"image": "a.jpg", "caption": "two"}])
    text = problems_text(spec("coco-retrieval").check(tmp_path))
    assert "training-format file" in text and "listed more than once" in text

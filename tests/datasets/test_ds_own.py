"""Your own data: ``folder:``, ``csv:``, ``wds:`` and ``hf:`` names — layouts (good and broken),
stable sample ids, content versions, task kinds and the missing-extra errors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from rlcf_bench.registry import RegistryError
from rlcf_bench.types import DatasetLayoutError


def build(host: Any, name: str, **params: Any) -> Any:
    return host.dataset(name, params).build(None, **params)


def check(host: Any, name: str, **params: Any) -> Any:
    return host.dataset(name, params).check(None, **params)


def problems(report: Any) -> str:
    return "\n".join(f"{p.path} | {p.expected} | {p.found}" for p in report.problems)


# ------------------------------------------------------------------------------------ resolution
def test_scheme_names_resolve_to_specs_named_as_typed(host, own, tmp_path):
    tree = own.tree(tmp_path / "t", {"cat": 1})
    spec = host.dataset(f"folder:{tree}")
    assert spec.name == f"folder:{tree}" and spec.task_kinds == {"classification"}
    assert spec.provider == "rlcf_bench_datasets.own_folder" and spec.root_name is None
    with pytest.raises(RegistryError, match="unknown dataset 'nosuch:/x'"):
        host.dataset("nosuch:/x")
    with pytest.raises(ValueError, match="expected folder:/path"):
        host.dataset("folder:")
    with pytest.raises(ValueError, match="the store keeps 128"):
        host.dataset("folder:/" + "x" * 200)
    with pytest.raises(ValueError, match="has no parameter 'colour'"):
        host.dataset(f"folder:{tree}", {"colour": "red"})


# ------------------------------------------------------------------------------------ folder:
def test_folder_labels_ids_and_report(host, own, tmp_path):
    tree = own.tree(tmp_path / "t", {"dog": 2, "cat": 3})
    (tree / "cat" / "more").mkdir()
    (tree / "cat" / "more" / "x.png").write_bytes(own.png((1, 2, 3)))
    (tree / "cat" / "notes.txt").write_text("not an image")
    data = build(host, f"folder:{tree}")
    assert data.classnames == ("cat", "dog")  # sorted folder names
    assert [data.sample_id(i) for i in range(len(data))] == [
        "cat/0.png", "cat/1.png", "cat/2.png", "cat/more/x.png", "dog/0.png", "dog/1.png"]
    assert [data.label(i) for i in range(len(data))] == [0, 0, 0, 0, 1, 1]
    assert tuple(data.load_image(5).shape) == (3, 16, 16)
    assert data.templates == ("a photo of a {}.",) and len(data.ensemble_templates) == 80
    text = check(host, f"folder:{tree}").render()
    assert "2 classes: cat, dog" in text and "6 images, 6 labelled" in text and "sorted names" in text


def test_folder_integer_classes_are_ordered_numerically_and_named_by_file(host, own, tmp_path):
    tree = own.tree(tmp_path / "t", {"10": 1, "2": 1, "1": 1})
    (tree / "classnames.txt").write_text("one\ntwo\nten\n")
    data = build(host, f"folder:{tree}")
    assert data.classnames == ("one", "two", "ten")
    assert {data.sample_id(i): data.label(i) for i in range(3)} == {"1/0.png": 0, "2/0.png": 1, "10/0.png": 2}
    assert "numeric order" in check(host, f"folder:{tree}").render()
    (tree / "classnames.txt").unlink()
    (tree / "classnames.json").write_text(json.dumps({"1": "uno", "2": "dos", "10": "diez"}))
    assert build(host, f"folder:{tree}").classnames == ("uno", "dos", "diez")


def test_folder_broken_layouts_are_reported(host, own, tmp_path):
    assert "no such directory" in problems(check(host, f"folder:{tmp_path / 'absent'}"))
    tree = own.tree(tmp_path / "t", {"cat": 1, "dog": 1})
    (tree / "empty").mkdir()
    (tree / "loose.png").write_bytes(own.png((0, 0, 0)))
    (tree / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    (tree / "classnames.txt").write_text("cat\ndog\n")
    report = check(host, f"folder:{tree}")
    text = problems(report)
    assert "1 empty class folder(s): empty" in text
    assert "1 image(s) directly inside the root" in text
    assert "broken.jpg" in text and "unreadable" in text
    assert "3 class names (one per class folder, in folder order) | 2 names" in text
    with pytest.raises(DatasetLayoutError):
        build(host, f"folder:{tree}")


def test_folder_version_is_the_content(host, own, tmp_path):
    tree = own.tree(tmp_path / "a", {"cat": 2, "dog": 2})
    first = build(host, f"folder:{tree}")
    assert build(host, f"folder:{tree}").content_version == first.content_version
    copy = shutil.copytree(tree, tmp_path / "elsewhere")
    moved = build(host, f"folder:{copy}")  # same bytes elsewhere: same ids, same version
    assert moved.content_version == first.content_version and moved.items == first.items
    (tree / "dog" / "1.png").write_bytes(own.png((255, 255, 255)))  # same name, new pixels
    changed = build(host, f"folder:{tree}")
    assert changed.content_version != first.content_version and changed.items == first.items
    (tree / "dog" / "1.png").rename(tree / "cat" / "9.png")  # a relabelled image
    assert build(host, f"folder:{tree}").content_version not in {first.content_version, changed.content_version}


def test_template_file_gives_single_and_ensemble_prompts(host, own, tmp_path):
    tree = own.tree(tmp_path / "t", {"cat": 1})
    tpl = tmp_path / "templates.txt"
    tpl.write_text("a sketch of a {c}.\n{} in the wild\n")
    data = build(host, f"folder:{tree}", templates=str(tpl))
    assert data.templates == ("a sketch of a {}.",) and data.ensemble_templates == ("a sketch of a {}.", "{} in the wild")
    tpl.write_text("no placeholder\n")
    assert "exactly one {c} or {} placeholder" in problems(check(host, f"folder:{tree}", templates=str(tpl)))


# ------------------------------------------------------------------------------------ csv:
def _captioned_rows() -> list[dict[str, Any]]:
    return [{"image": "img/a.png", "label": "zebra", "caption": "a striped horse"},
            {"image": "img/a.png", "label": "zebra", "caption": "black and white"},
            {"image": "img/b.png", "label": "ant", "caption": "a small insect"}]


def _images(own: Any, folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, n in enumerate(names):
        (folder / n).write_bytes(own.png((k * 30, 200, 10)))


def test_csv_labels_captions_and_kinds(host, own, tmp_path):
    _images(own, tmp_path / "img", ["a.png", "b.png"])
    path = own.manifest(tmp_path / "m.csv", _captioned_rows())
    spec = host.dataset(f"csv:{path}")
    assert spec.task_kinds == {"classification", "retrieval", "captioning"}
    data = spec.build(None)
    assert data.classnames == ("ant", "zebra") and [data.label(0), data.label(1)] == [1, 0]
    assert data.references(0) == ["a striped horse", "black and white"]
    assert data.captions == ("a striped horse", "black and white", "a small insect")
    assert data.caption_image == (0, 0, 1) and data.image_id(1) == "img/b.png"
    only_labels = own.manifest(tmp_path / "l.csv", [{"file": "img/a.png", "y": "zebra"}])
    spec = host.dataset(f"csv:{only_labels}", {"image_column": "file", "label_column": "y"})
    assert spec.task_kinds == {"classification"}


def test_jsonl_integer_labels_need_class_names(host, own, tmp_path):
    _images(own, tmp_path / "img", ["a.png", "b.png"])
    rows = [{"image": "img/a.png", "label": 1, "caption": ["one", "two"]}, {"image": "img/b.png", "label": 0}]
    path = own.manifest(tmp_path / "m.jsonl", rows)
    assert "class names for integer labels" in problems(check(host, f"csv:{path}"))
    (tmp_path / "classnames.txt").write_text("ant\nzebra\n")
    data = build(host, f"csv:{path}")
    assert data.classnames == ("ant", "zebra") and [data.label(0), data.label(1)] == [1, 0]
    assert data.references(0) == ["one", "two"]
    (tmp_path / "classnames.txt").write_text("ant\n")
    assert "label out of range: 1" in problems(check(host, f"csv:{path}"))


def test_csv_broken_manifests_are_reported(host, own, tmp_path):
    _images(own, tmp_path / "img", ["a.png"])
    rows = _captioned_rows() + [{"image": "img/a.png", "label": "horse", "caption": "x"}]
    path = own.manifest(tmp_path / "m.csv", rows)
    text = problems(check(host, f"csv:{path}"))
    assert "one label per image" in text and "img/b.png" in text and "missing" in text
    assert "a column 'lbl'" in problems(check(host, f"csv:{path}", label_column="lbl"))
    assert "no such file" in problems(check(host, f"csv:{tmp_path / 'none.csv'}"))
    assert "suffix '.txt'" in problems(check(host, f"csv:{tmp_path / 'm.txt'}"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "img/a.png", "label": "x"}\nnot json\n')
    assert "1 malformed: line 2" in problems(check(host, f"csv:{bad}"))


# ------------------------------------------------------------------------------------ wds:
def _wds_samples(own: Any, start: int, n: int, *, captions: bool = True) -> list[dict[str, Any]]:
    out = []
    for i in range(start, start + n):
        sample: dict[str, Any] = {"__key__": f"s{i:04d}", "png": own.png((i * 20, 0, 0)), "cls": str(i % 2)}
        if captions:
            sample["txt"] = f"caption {i}\nsecond caption {i}"
        out.append(sample)
    return out


def test_wds_clip_benchmark_layout(host, own, tmp_path):
    pattern = own.shards(tmp_path / "wds" / "test", [_wds_samples(own, 0, 3), _wds_samples(own, 3, 2)])
    (tmp_path / "wds" / "classnames.txt").write_text("even\nodd\n")
    (tmp_path / "wds" / "zeroshot_classification_templates.txt").write_text("a photo of the {c}.\nart of the {c}.\n")
    spec = host.dataset(f"wds:{pattern}")
    assert spec.task_kinds == {"classification", "retrieval", "captioning"}
    data = spec.build(None)
    assert [data.sample_id(i) for i in range(5)] == [f"s{i:04d}" for i in range(5)]
    assert [data.label(i) for i in range(5)] == [0, 1, 0, 1, 0] and data.classnames == ("even", "odd")
    assert data.references(4) == ["caption 4", "second caption 4"]
    assert data.templates == ("a photo of the {}.",) and len(data.ensemble_templates) == 2
    in_order = [data.load_image(i) for i in range(5)]
    for i in (4, 0, 3, 1, 1, 2):  # backwards jumps re-stream a shard: same pixels
        assert (data.load_image(i) == in_order[i]).all()
    assert int(in_order[3][0, 0, 0]) == 60  # the red channel written for sample 3
    assert build(host, f"wds:{pattern}").content_version == data.content_version


def test_wds_broken_shards_are_reported(host, own, tmp_path):
    samples = _wds_samples(own, 0, 2)
    samples[1].pop("png")
    samples[0]["cls"] = "cat"
    pattern = own.shards(tmp_path / "w", [samples, _wds_samples(own, 0, 1)])
    text = problems(check(host, f"wds:{pattern}"))
    assert "1 sample(s) without one: s0001" in text and "1 malformed: s0000: 'cat'" in text
    assert "2 missing" in problems(check(host, f"wds:{tmp_path}/w/{{000002..000003}}.tar"))
    good = own.shards(tmp_path / "dup", [_wds_samples(own, 0, 2), _wds_samples(own, 1, 1)])
    (tmp_path / "dup" / "classnames.txt").write_text("even\nodd\n")
    assert "1 duplicates: s0001" in problems(check(host, f"wds:{good}"))


# ------------------------------------------------------------------------------------ hf:
def _save_hf(own: Any, path: Path, *, n: int = 4, label_names: bool = True) -> Path:
    import datasets

    images = [{"bytes": own.png((i * 40, 90, 0)), "path": None} for i in range(n)]
    label = datasets.ClassLabel(names=["plane", "ship"]) if label_names else datasets.Value("string")
    features = datasets.Features({"image": datasets.Image(), "label": label, "text": datasets.Value("string")})
    labels = [i % 2 for i in range(n)] if label_names else [["plane", "ship"][i % 2] for i in range(n)]
    ds = datasets.Dataset.from_dict({"image": images, "label": labels, "text": [f"t{i}" for i in range(n)]},
                                    features=features)
    datasets.DatasetDict({"test": ds, "train": ds.select([0])}).save_to_disk(str(path))
    return path


def test_hf_saved_dataset(host, own, tmp_path):
    path = _save_hf(own, tmp_path / "hf")
    spec = host.dataset(f"hf:{path}")
    assert spec.task_kinds == {"classification"}  # no "caption" column by default
    data = spec.build(None)
    assert data.classnames == ("plane", "ship") and [data.label(i) for i in range(4)] == [0, 1, 0, 1]
    assert [data.sample_id(i) for i in range(4)] == ["row0", "row1", "row2", "row3"]
    assert int(data.load_image(3)[0, 0, 0]) == 120
    params = {"caption_column": "text", "split": "train", "id_column": "text"}
    captioned = host.dataset(f"hf:{path}", params)
    assert captioned.task_kinds == {"classification", "retrieval", "captioning"}
    one = captioned.build(None, **params)
    assert len(one) == 1 and one.references(0) == ["t0"] and one.sample_id(0) == "t0"
    assert one.content_version != data.content_version
    assert "splits present: test, train" in problems(check(host, f"hf:{path}", split="validation"))
    assert "a column 'pixels'" in problems(check(host, f"hf:{path}", image_column="pixels"))


def test_hf_string_labels_and_missing_dataset(host, own, tmp_path):
    path = _save_hf(own, tmp_path / "hf", label_names=False)
    assert build(host, f"hf:{path}").classnames == ("plane", "ship")
    assert "downloads are off" in problems(check(host, "hf:surely-not-cached/nothing"))


@pytest.mark.parametrize(("scheme", "module", "extra"), [("wds", "webdataset", "wds"), ("hf", "datasets", "hf")])
def test_missing_extra_is_one_line_naming_it(host, monkeypatch, tmp_path, scheme, module, extra):
    from click.testing import CliRunner

    from rlcf_bench.cli import build_cli

    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like to import
    with pytest.raises(ValueError, match=rf"pip install 'rlcf-bench\[{extra}\]'"):
        host.dataset(f"{scheme}:{tmp_path}/data.tar")
    out = CliRunner().invoke(build_cli(host), ["data", "check", f"{scheme}:{tmp_path}/data.tar"])
    assert out.exit_code == 2 and f"rlcf-bench[{extra}]" in out.output and "Traceback" not in out.output


def test_data_check_command_prints_what_it_found(host, own, tmp_path):
    from click.testing import CliRunner

    from rlcf_bench.cli import build_cli

    tree = own.tree(tmp_path / "t", {"cat": 2, "dog": 1})
    out = CliRunner().invoke(build_cli(host), ["data", "check", f"folder:{tree}"])
    assert out.exit_code == 0 and ": OK" in out.output and "2 classes: cat, dog" in out.output
    assert "3 images, 3 labelled" in out.output and "dataset version own1-" in out.output
    (tree / "bird").mkdir()
    out = CliRunner().invoke(build_cli(host), ["data", "check", f"folder:{tree}"])
    assert out.exit_code == 1 and "1 empty class folder(s): bird" in out.output
    out = CliRunner().invoke(build_cli(host), ["data", "check", f"csv:{tmp_path / 'm.csv'}", "--param", "colour=red"])
    assert out.exit_code == 2 and "has no parameter 'colour'" in out.output

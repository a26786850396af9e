"""Fixture writers for the real-dataset layouts: tiny images in the exact on-disk formats.

Every image is the same few-hundred-byte JPEG (or PNG) encoded once, so trees with 1000 class
folders are written in a fraction of a second.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest


def _encode(fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (6, 5), (200, 30, 60)).save(buf, format=fmt)
    return buf.getvalue()


JPEG = _encode("JPEG")
PNG = _encode("PNG")


def write_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG if path.suffix.lower() == ".png" else JPEG)
    return path


def class_tree(base: Path, names: Iterable[str], per_class: int = 1, ext: str = ".JPEG") -> Path:
    """``base/<name>/img<k><ext>`` for every name."""
    for name in names:
        for k in range(per_class):
            write_image(base / name / f"img{k}{ext}")
    return base


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture(scope="session")
def helpers() -> Any:
    """The writers above, as a namespace (tests/ is not a package, so no imports between files)."""

    class H:
        jpeg = JPEG
        image = staticmethod(write_image)
        tree = staticmethod(class_tree)
        json = staticmethod(write_json)

    return H


@pytest.fixture(scope="session")
def host() -> Any:
    """A hermetic plugin host: autoload off, only this plugin package."""
    from rlcf_bench.plugins import PluginHost

    return PluginHost(autoload=False, extra=["rlcf_bench_datasets"])


@pytest.fixture(scope="session")
def spec(host: Any) -> Callable[[str], Any]:
    registry = host.registry("datasets")
    return registry.get


@pytest.fixture(autouse=True)
def _no_user_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Never read the developer's real data root or config file."""
    monkeypatch.delenv("RLCF_BENCH_DATA_ROOT", raising=False)
    monkeypatch.setenv("RLCF_BENCH_CONFIG", str(tmp_path / "no-config.json"))


# ------------------------------------------------------------------------------------ your own data
def colour_png(colour: tuple[int, int, int], size: int = 16) -> bytes:
    """A distinct small PNG per colour (the generic readers hash image bytes)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def own_tree(base: Path, counts: dict[str, int]) -> Path:
    """``base/<class>/<k>.png``, a different colour per image."""
    for c, (name, n) in enumerate(counts.items()):
        for k in range(n):
            path = base / name / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(colour_png((40 + 50 * c, 10 * k, 120)))
    return base


def own_manifest(path: Path, rows: list[dict[str, Any]]) -> Path:
    """A CSV (header from the first row) or JSONL manifest, by suffix."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def own_shards(folder: Path, shards: list[list[dict[str, Any]]]) -> str:
    """WebDataset shards ``folder/00000k.tar`` written with webdataset's TarWriter; returns the
    brace pattern naming them. Sample values that are ``str`` are written UTF-8 encoded."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    for s, samples in enumerate(shards):
        with wds.TarWriter(str(folder / f"{s:06d}.tar")) as sink:
            for sample in samples:
                sink.write({k: v.encode() if isinstance(v, str) and k != "__key__" else v for k, v in sample.items()})
    return str(folder / f"{{000000..{len(shards) - 1:06d}}}.tar")


@pytest.fixture(scope="session")
def own() -> Any:
    """Writers of tiny examples of each generic format."""

    class Own:
        png = staticmethod(colour_png)
        tree = staticmethod(own_tree)
        manifest = staticmethod(own_manifest)
        shards = staticmethod(own_shards)

    return Own

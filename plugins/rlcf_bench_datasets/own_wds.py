"""``wds:/path/{000000..000009}.tar``: WebDataset shards in CLIP_benchmark's layout, streamed.

Each sample is a group of tar members sharing a key: an image (``.jpg``/``.jpeg``/``.png``/
``.webp``), and a ``.cls`` (an integer label) and/or a ``.txt`` (captions, one per line). Beside
the shards (in their folder or its parent, as CLIP_benchmark publishes them) a ``classnames.txt``
(line i = class i; required with ``.cls``) and a ``zeroshot_classification_templates.txt``
(``{c}`` placeholders) are used when present. Shards are local tar files, expanded with
WebDataset's brace syntax, read with the ``webdataset`` library (the ``wds`` extra) and never
unpacked to disk. The sample id is the WebDataset key (it must be unique across shards).

Images are loaded by streaming: the dataset order (the default protocol order) reads each shard
once; a jump backwards re-streams the shard from its start, so a shuffled order is slow here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlcf_bench import DatasetSpec, hookimpl
from rlcf_bench.datasets import fs_text
from rlcf_bench.types import LayoutReport

from ._common import fmt_names
from ._own import (
    Found,
    OwnItem,
    Scheme,
    bytes_digest,
    decode_bytes,
    image_error,
    label_index,
    meta_classnames,
    report_unreadable,
    require,
    resolve,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")


def shard_list(target: str) -> list[str]:
    require("webdataset", "wds", "wds")
    from webdataset.shardlists import expand_urls

    return list(expand_urls(target))


def stream(url: str) -> Iterator[dict[str, Any]]:
    """The samples of one shard, in order, as ``{"__key__": ..., ext: bytes}``."""
    from webdataset.tariterators import tarfile_samples

    return iter(tarfile_samples([{"url": url}]))


def _image_key(sample: dict[str, Any]) -> str | None:
    return next((k for k in IMAGE_KEYS if k in sample), None)


class ShardReader:
    """Random access over streamed shards: a cursor per thread (``data check`` and retrieval
    decode in threads) that moves forward and restarts its shard when asked for an earlier
    sample. ``names[i]`` names sample ``i`` in errors (``shard:key.ext``)."""

    def __init__(self, urls: list[str], where: list[tuple[int, int]], names: list[str]) -> None:
        self.urls, self.where, self.names = urls, where, names
        self._local = threading.local()

    def __call__(self, index: int) -> torch.Tensor:
        shard, pos = self.where[index]
        cur = self._local
        if getattr(cur, "shard", -1) != shard or pos < cur.pos:
            cur.shard, cur.pos, cur.it = shard, 0, stream(self.urls[shard])
        sample: dict[str, Any] = {}
        while cur.pos <= pos:
            sample = next(cur.it)
            cur.pos += 1
        key = _image_key(sample)
        assert key is not None, "validated at build time"
        return decode_bytes(sample[key], self.names[index])


def inspect(target: str, params: dict[str, Any], report: LayoutReport) -> Found | None:
    urls = shard_list(target)
    missing = [u for u in urls if not Path(u).is_file()]
    if missing:
        report.add(missing[0], "local tar shards (brace patterns such as {000000..000009}.tar expand)",
                   f"{len(missing)} of {len(urls)} missing: {fmt_names(missing, 3)}")
        return None
    report.ok_items.append(f"{len(urls)} shard(s): {fmt_names(urls, 3)}")
    folders = list(dict.fromkeys(Path(u).parent for u in urls))
    meta_dirs = tuple(dict.fromkeys([*folders, *(f.parent for f in folders)]))
    ids: list[str] = []
    raw: list[str | None] = []
    caps: list[tuple[str, ...]] = []
    digests: list[str] = []
    where: list[tuple[int, int]] = []
    names: list[str] = []
    no_image: list[str] = []
    bad_cls: list[str] = []
    unreadable: list[str] = []
    for s, url in enumerate(urls):
        try:
            for pos, sample in enumerate(stream(url)):
                key, img = fs_text(sample["__key__"], params["name_encoding"]), _image_key(sample)
                if img is None:
                    no_image.append(f"{key} ({', '.join(k for k in sample if not k.startswith('__'))})")
                    continue
                if (err := image_error(sample[img])) is not None:
                    unreadable.append(f"{url}:{key}.{img} ({err})")
                cls = sample.get("cls")
                text = cls.decode("utf-8", "replace").strip() if cls is not None else None
                if text is not None and not text.lstrip("-").isdigit():
                    bad_cls.append(f"{key}: {text[:20]!r}")
                txt = sample.get("txt")
                lines = txt.decode("utf-8", "replace").splitlines() if txt is not None else []
                ids.append(key)
                raw.append(text)
                caps.append(tuple(ln.strip() for ln in lines if ln.strip()))
                digests.append(bytes_digest(sample[img]))
                where.append((s, pos))
                names.append(f"{url}:{key}.{img}")
        except Exception as exc:  # a truncated or corrupt tar: say which shard
            report.add(url, "a readable tar shard", f"{type(exc).__name__}: {exc}")
    if no_image:
        report.add(target, f"an image ({'/'.join('.' + k for k in IMAGE_KEYS)}) in every sample",
                   f"{len(no_image)} sample(s) without one: {fmt_names(no_image, 3)}")
    if bad_cls:
        report.add(target, ".cls members holding an integer label", f"{len(bad_cls)} malformed: {fmt_names(bad_cls, 3)}")
    report_unreadable(report, unreadable, len(ids), len(ids))
    if not report.ok:
        return None
    labels, classnames = label_index(report, target, raw, meta_classnames(report, params, meta_dirs))
    if not report.ok:
        return None
    items = [OwnItem(i, y, c) for i, y, c in zip(ids, labels, caps)]
    return Found(items=items, load=ShardReader(urls, where, names), digests=digests, classnames=classnames, meta_dirs=meta_dirs)


def peek(target: str, params: dict[str, Any]) -> frozenset[str]:
    """Task kinds from the first sample of the first shard."""
    first = next(stream(shard_list(target)[0]))
    kinds: set[str] = set()
    if "cls" in first:
        kinds.add("classification")
    if "txt" in first:
        kinds |= {"retrieval", "captioning"}
    return frozenset(kinds)


SCHEME = Scheme(
    prefix="wds", usage="wds:/path/{000000..000009}.tar (local WebDataset shards)", defaults={},
    inspect=inspect, peek=peek,
    description="WebDataset shards (CLIP_benchmark layout: image + .cls and/or .txt), streamed",
)


@hookimpl
def rlcfb_resolve_dataset(name: str, params: dict[str, Any]) -> DatasetSpec | None:
    return resolve(SCHEME, name, params)

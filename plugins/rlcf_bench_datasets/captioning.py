"""Captioning test sets: COCO and Flickr30k Karpathy test splits, NoCaps validation
(``docs/original-code.md#captioning-data``).

* ``coco-captions`` / ``flickr30k-captions`` read the same LAVIS files as retrieval (one entry
  per image with its reference captions, kept verbatim: scorers tokenise them themselves).
* ``nocaps`` reads the official ``nocaps/nocaps_val_4500_captions.json`` (COCO style:
  ``images`` with ``id``, ``file_name``, ``domain``; ``annotations`` with ``image_id``,
  ``caption``) with images in ``nocaps/val/<file_name>``. Parameter ``domain`` selects
  ``in``, ``near``, ``out`` (``in-domain``... also accepted) or ``all``;
  ``nocaps-in``/``-near``/``-out`` are the same data with the domain fixed, so that reference
  numbers (which carry no parameters) can name them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlcf_bench import DatasetSpec, hookimpl
from rlcf_bench.types import LayoutReport

from ._common import (
    COCO_KARPATHY,
    FLICKR30K_KARPATHY,
    KarpathySource,
    check_files_exist,
    dataset_dir,
    fmt_names,
    inspect_karpathy,
    merge_params,
    note_count,
    numeric_id,
    raise_if_problems,
    read_json,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

VERSION = "1"
NOCAPS_FOLDER = "nocaps"
NOCAPS_FILE = "nocaps_val_4500_captions.json"
NOCAPS_IMAGES = "val"
NOCAPS_STANDARD_IMAGES = 4_500
NOCAPS_STANDARD_CAPTIONS = 45_000
DOMAINS: dict[str, str] = {"in": "in-domain", "near": "near-domain", "out": "out-domain"}


@dataclass
class CaptionReferences:
    """A :class:`rlcf_bench.datasets.CaptioningData`. ``image_ids`` holds the integer ids a
    COCO-style evaluator expects (official ids for NoCaps, parsed from file names otherwise)."""

    sample_ids: tuple[str, ...]
    refs: tuple[tuple[str, ...], ...]
    image_ids: tuple[int, ...]
    base: Path = field(repr=False)
    name: str = ""

    def __len__(self) -> int:
        return len(self.sample_ids)

    def sample_id(self, index: int) -> str:
        return self.sample_ids[index]

    def references(self, index: int) -> list[str]:
        return list(self.refs[index])

    def path(self, index: int) -> Path:
        return self.base / self.sample_ids[index]

    def load_image(self, index: int) -> torch.Tensor:
        from rlcf_bench.datasets import decode_image

        return decode_image(self.path(index))


# ------------------------------------------------------------------------------------ Karpathy
def karpathy_spec(name: str, source: KarpathySource) -> DatasetSpec:
    def check(root: Path | str | None, **params: Any) -> LayoutReport:
        merge_params(name, {}, params)
        return inspect_karpathy(name, source, root)[0]

    def build(root: Path | str | None, **params: Any) -> CaptionReferences:
        merge_params(name, {}, params)
        report, base, entries = inspect_karpathy(name, source, root)
        raise_if_problems(report)
        assert base is not None and entries is not None
        return CaptionReferences(
            tuple(e.image for e in entries), tuple(tuple(c.strip() for c in e.captions) for e in entries),
            tuple(numeric_id(e.image, i) for i, e in enumerate(entries)), base, name,
        )

    return DatasetSpec(
        name=name, version=VERSION, task_kinds=frozenset({"captioning"}), build=build, check=check,
        root_name=source.folder, description=f"{source.title} captions, {source.folder}/{source.annotation}",
    )


# ------------------------------------------------------------------------------------ NoCaps
def _domain(value: Any) -> str | None:
    text = str(value).strip().lower()
    if text == "all":
        return "all"
    if text in DOMAINS:
        return DOMAINS[text]
    return text if text in DOMAINS.values() else None


def inspect_nocaps(name: str, root: Path | str | None, domain: Any = "all") -> tuple[LayoutReport, CaptionReferences | None]:
    """Validate ``nocaps_val_4500_captions.json`` and the sampled image files; select a domain."""
    report = LayoutReport(dataset=f"{name}[domain={domain}]" if name == "nocaps" else name, root=str(root))
    wanted = _domain(domain)
    if wanted is None:
        report.add("param domain", "one of all, in, near, out", repr(domain))
        return report, None
    ds_dir = dataset_dir(report, root, (NOCAPS_FOLDER,))
    if ds_dir is None:
        return report, None
    path = ds_dir / NOCAPS_FILE
    data = read_json(report, path, "NoCaps validation captions (COCO style)")
    if data is None:
        return report, None
    missing_keys = [k for k in ("images", "annotations") if not isinstance(data, dict) or not isinstance(data.get(k), list)]
    if missing_keys:
        found = f"keys {fmt_names(sorted(map(str, data)))}" if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        report.add(str(path), 'a JSON object with lists "images" and "annotations"', f"missing {missing_keys}; {found}")
        return report, None
    images: dict[int, tuple[str, str]] = {}
    bad_images: list[str] = []
    bad_domains: set[str] = set()
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not {"id", "file_name", "domain"} <= set(img):
            bad_images.append(f"#{i}")
            continue
        if img["domain"] not in DOMAINS.values():
            bad_domains.add(str(img["domain"]))
        images[img["id"]] = (str(img["file_name"]), str(img["domain"]))
    if bad_images:
        report.add(str(path), 'every image {"id", "file_name", "domain"}', f"{len(bad_images)} incomplete: {fmt_names(bad_images)}")
    if bad_domains:
        report.add(str(path), f"domain values {', '.join(DOMAINS.values())}", f"also {fmt_names(sorted(bad_domains))}")
    refs: dict[int, list[str]] = {k: [] for k in images}
    orphans: set[Any] = set()
    bad_anns = 0
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or not isinstance(ann.get("caption"), str) or "image_id" not in ann:
            bad_anns += 1
        elif ann["image_id"] not in refs:
            orphans.add(ann["image_id"])
        else:
            refs[ann["image_id"]].append(ann["caption"].strip())
    if bad_anns:
        report.add(str(path), 'every annotation {"image_id", "caption": str}', f"{bad_anns} malformed")
    if orphans:
        report.add(str(path), "annotations of listed images only",
                   f"captions for {len(orphans)} unknown image ids: {fmt_names(map(str, sorted(orphans, key=str)))}")
    uncaptioned = [images[k][0] for k, v in refs.items() if not v]
    if uncaptioned:
        report.add(str(path), "at least one caption per image", f"{len(uncaptioned)} images without captions: {fmt_names(uncaptioned)}")
    note_count(report, "images", len(images), NOCAPS_STANDARD_IMAGES, path)
    note_count(report, "captions", sum(map(len, refs.values())), NOCAPS_STANDARD_CAPTIONS, path)
    per_domain = {d: sum(1 for _, dd in images.values() if dd == d) for d in DOMAINS.values()}
    report.ok_items.append("images per domain: " + ", ".join(f"{d} {n}" for d, n in per_domain.items()))
    chosen = sorted(k for k, (_, d) in images.items() if wanted == "all" or d == wanted)
    if not chosen:
        report.add(str(path), f"images of domain {wanted}", "none")
    base = ds_dir / NOCAPS_IMAGES
    if not base.is_dir():
        report.add(str(base), "image folder val/ (files named by each image's file_name)", "no such directory")
    else:
        check_files_exist(report, [base / images[k][0] for k in chosen])
    if not report.ok:
        return report, None
    data_obj = CaptionReferences(tuple(images[k][0] for k in chosen), tuple(tuple(refs[k]) for k in chosen),
                                 tuple(int(k) if isinstance(k, int) else numeric_id(images[k][0], i) for i, k in enumerate(chosen)),
                                 base, name)
    return report, data_obj


def nocaps_spec(name: str, fixed_domain: str | None) -> DatasetSpec:
    defaults: dict[str, Any] = {} if fixed_domain else {"domain": "all"}

    def _params(params: dict[str, Any]) -> str:
        return fixed_domain or merge_params(name, defaults, params)["domain"]

    def check(root: Path | str | None, **params: Any) -> LayoutReport:
        merge_params(name, defaults, params)
        return inspect_nocaps(name, root, _params(params))[0]

    def build(root: Path | str | None, **params: Any) -> CaptionReferences:
        merge_params(name, defaults, params)
        report, data = inspect_nocaps(name, root, _params(params))
        raise_if_problems(report)
        assert data is not None
        return data

    scope = f"{DOMAINS[fixed_domain]} images" if fixed_domain else "param domain = all|in|near|out"
    return DatasetSpec(
        name=name, version=VERSION, task_kinds=frozenset({"captioning"}), build=build, check=check,
        root_name=NOCAPS_FOLDER, params=defaults,
        description=f"NoCaps validation ({scope}), {NOCAPS_FOLDER}/{NOCAPS_FILE} + {NOCAPS_FOLDER}/{NOCAPS_IMAGES}/",
    )


@hookimpl
def rlcfb_register_datasets() -> list[DatasetSpec]:
    return [
        karpathy_spec("coco-captions", COCO_KARPATHY),
        karpathy_spec("flickr30k-captions", FLICKR30K_KARPATHY),
        nocaps_spec("nocaps", None),
        *(nocaps_spec(f"nocaps-{d}", d) for d in DOMAINS),
    ]

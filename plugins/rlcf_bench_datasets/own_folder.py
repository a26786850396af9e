"""``folder:/path``: an image-folder tree, ``<path>/<class name>/**/<image>``, as a classification set.

Classes are the visible sub-folders of ``path``: in numeric order when every name is an integer
(``2`` before ``10``), else sorted by code point; the check states which. Class names are the
folder names (``_`` read as a space in prompts), or come from a ``classnames.txt`` (line i names
the i-th folder in that order) or ``classnames.json`` (a list in that order, or an object
``{folder: name}``) inside ``path``, or from ``--data-param classnames=FILE``. Images may sit in
sub-folders of a class folder. The sample id is the path relative to ``path``
(``cat/0001.jpg``). Prompt templates: ``zeroshot_classification_templates.txt`` in ``path`` or
``--data-param templates=FILE`` (one per line, ``{c}`` or ``{}``), else the single CLIP template.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rlcf_bench import DatasetSpec, hookimpl
from rlcf_bench.datasets import decode_image, fs_text
from rlcf_bench.types import LayoutReport

from ._common import fmt_names, is_image, list_dirs, list_images
from ._own import Found, OwnItem, Scheme, file_digest, meta_classnames, order_names, probe_images, resolve


def _images_under(base: Path) -> list[str]:
    """Image paths under ``base`` relative to it, sorted, hidden files and folders skipped."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(base)
        out += [(rel / f).as_posix() for f in sorted(filenames) if is_image(f)]
    return sorted(out)


def _names(report: LayoutReport, root: Path, folders: list[str], params: dict[str, Any],
           encoding: str) -> tuple[str, ...] | None:
    """Class names by label: the folder names as text (in ``encoding``), or a class-name file's."""
    texts = [fs_text(f, encoding) for f in folders]
    given = meta_classnames(report, params, (root,))
    if given is None:
        return tuple(texts)
    if isinstance(given, dict):
        missing = [t for t in texts if t not in given]
        if missing:
            report.add(str(root), "a class name for every class folder", f"none for {fmt_names(missing)}")
            return None
        return tuple(given[t] for t in texts)
    if len(given) != len(folders):
        report.add(str(root), f"{len(folders)} class names (one per class folder, in folder order)", f"{len(given)} names")
        return None
    return tuple(given)


def inspect(target: str, params: dict[str, Any], report: LayoutReport) -> Found | None:
    root = Path(target)
    if not root.is_dir():
        report.add(str(root), "a folder with one sub-folder of images per class", "no such directory")
        return None
    folders, how = order_names(list_dirs(root))
    loose = list_images(root)
    if loose:
        report.add(str(root), "images only inside class folders",
                   f"{len(loose)} image(s) directly inside the root, e.g. {fmt_names(loose, 3)}"
                   + ("" if folders else "; sort them into one folder per class"))
    if not folders:
        if not loose:
            report.add(str(root), "one sub-folder of images per class", "no sub-folders")
        return None
    report.ok_items.append(f"{len(folders)} class folders, label order: {how}")
    encoding = params["name_encoding"]
    classnames = _names(report, root, folders, params, encoding)
    rel: list[str] = []
    labels: list[int] = []
    empty: list[str] = []
    for label, folder in enumerate(folders):
        files = _images_under(root / folder)
        if not files:
            empty.append(folder)
        rel += [f"{folder}/{f}" for f in files]
        labels += [label] * len(files)
    if empty:
        report.add(str(root / empty[0]), "at least one image (.jpg/.png/...) in every class folder",
                   f"{len(empty)} empty class folder(s): {fmt_names(empty)}")
    paths = [root / r for r in rel]
    probe_images(report, paths, lambda i: str(paths[i]))
    if classnames is None or not report.ok:
        return None
    ids = [fs_text(r, encoding) for r in rel]  # the sample ids: text a store holds; the paths stay as given
    return Found(items=[OwnItem(r, y) for r, y in zip(ids, labels)], load=lambda i: decode_image(paths[i]),
                 digests=[file_digest(p) for p in paths], classnames=classnames, meta_dirs=(root,))


SCHEME = Scheme(
    prefix="folder", usage="folder:/path/to/tree (one sub-folder of images per class)", defaults={},
    inspect=inspect, peek=lambda target, params: frozenset({"classification"}),
    description="an image-folder tree <path>/<class>/*.jpg (classification)",
)


@hookimpl
def rlcfb_resolve_dataset(name: str, params: dict[str, Any]) -> DatasetSpec | None:
    return resolve(SCHEME, name, params)

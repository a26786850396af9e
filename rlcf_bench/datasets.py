"""Dataset interfaces per task kind, data-root resolution and image decoding.

A dataset plugin's ``DatasetSpec.build(root, **params)`` returns one of the objects below. The
runner validates the layout first (``DatasetSpec.check``) and refuses to start on problems.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable

from .fs_names import fs_text as fs_text  # public here: plugins import it from rlcf_bench.datasets

if TYPE_CHECKING:  # pragma: no cover
    import torch

DATA_ROOT_ENV = "RLCF_BENCH_DATA_ROOT"
CONFIG_ENV = "RLCF_BENCH_CONFIG"
DEFAULT_CONFIG = Path("~/.config/rlcf-bench/config.json")


@runtime_checkable
class ClassificationData(Protocol):
    """Images with integer labels into ``classnames``; ``templates`` contain ``{}``."""

    classnames: tuple[str, ...]
    templates: tuple[str, ...]

    def __len__(self) -> int: ...

    def sample_id(self, index: int) -> str: ...

    def label(self, index: int) -> int: ...

    def load_image(self, index: int) -> torch.Tensor:
        """uint8 ``[3, H, W]`` RGB."""
        ...


@runtime_checkable
class RetrievalData(Protocol):
    """Images and captions; ``caption_image[t]`` is the image index of caption ``t``."""

    captions: Sequence[str]
    caption_image: Sequence[int]

    def __len__(self) -> int:
        """Number of images."""
        ...

    def image_id(self, index: int) -> str: ...

    def load_image(self, index: int) -> torch.Tensor: ...


@runtime_checkable
class CaptioningData(Protocol):
    """Images with reference captions (``references(i)``)."""

    def __len__(self) -> int: ...

    def sample_id(self, index: int) -> str: ...

    def references(self, index: int) -> list[str]: ...

    def load_image(self, index: int) -> torch.Tensor: ...


CORRUPT_POLICIES = ("fail", "skip")


def decode_image(path: str | os.PathLike[str] | IO[bytes], name: str | None = None) -> torch.Tensor:
    """Read an image file (or a binary file object) as uint8 RGB ``[3, H, W]`` (PIL, so every
    format PIL reads works). The one decoder of runs and of ``rlcf-bench data check``.

    A file that cannot be read or decoded raises :class:`~rlcf_bench.errors.DataError` naming it
    (``name``: where a file object came from, e.g. a shard member) — the runner's ``--on-corrupt``
    policy decides whether that stops the run.
    """
    import numpy as np
    import torch
    from PIL import Image

    from .errors import DataError

    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"image {fs_text(name if name is not None else path)}",
                        f"cannot be decoded ({type(exc).__name__}: {fs_text(str(exc))})",
                        "replace the file, check the dataset with `rlcf-bench data check`, "
                        "or pass --on-corrupt skip") from exc
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def undecodable(dataset: Any, *, workers: int = 8, progress: Callable[[int], None] | None = None) -> list[str]:
    """Decode every image of ``dataset`` (``len`` + ``load_image``) in threads (PIL releases the
    GIL); return one line per image that fails, in index order."""
    from concurrent.futures import ThreadPoolExecutor

    from .errors import DataError

    def one(index: int) -> str | None:
        try:
            dataset.load_image(index)
        except DataError as exc:
            return str(exc)
        finally:
            if progress is not None:
                progress(1)
        return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return [r for r in pool.map(one, range(len(dataset))) if r is not None]


#: How to give the data root, for messages.
DATA_ROOT_HINT = ('pass --data-root DIR, set RLCF_BENCH_DATA_ROOT, or put {"data_root": DIR} in '
                  "~/.config/rlcf-bench/config.json")


def resolve_data_root(cli_value: str | None = None) -> Path | None:
    """``--data-root`` beats ``$RLCF_BENCH_DATA_ROOT`` beats ``data_root`` in the config file
    (``$RLCF_BENCH_CONFIG`` or ``~/.config/rlcf-bench/config.json``)."""
    if cli_value:
        return Path(cli_value).expanduser()
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser()
    config = Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser()
    if config.is_file():
        try:
            value = json.loads(config.read_text()).get("data_root")
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {config} is not valid JSON: {exc}") from exc
        if value:
            return Path(value).expanduser()
    return None

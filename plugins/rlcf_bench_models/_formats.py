"""Checkpoint formats: detection and safe reading (no code from a checkpoint is ever executed).

Formats, detected from the file's bytes (not its name):

* ``safetensors`` — read with ``safetensors.torch.load_file``.
* ``torch-zip`` / ``torch-legacy`` — ``torch.save`` archives (new zip and old pickle
  serialisation: open_clip ``.pt``/``.bin`` checkpoints, OpenAI plain state dicts, training
  checkpoints with a ``{'state_dict': ...}`` wrapper, DDP ``module.`` prefixes). Always read with
  ``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.
* ``torchscript`` — a TorchScript archive, the format of OpenAI's original ``ViT-B-16.pt`` and
  friends. ``torch.jit.load`` would run the archive's TorchScript code, so it is *not* used:
  :func:`read_torchscript_weights` reads the tensors straight out of the zip with a restricted
  unpickler that only knows how to rebuild tensors and plain containers (every TorchScript class
  becomes an inert attribute bag). No opt-in is needed because nothing is executed.
* ``npz`` — big_vision numpy weights (SigLIP); read by open_clip with ``allow_pickle=False``.

This module imports only the standard library at import time; torch is imported inside functions.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

Format = Literal["safetensors", "torch-zip", "torch-legacy", "torchscript", "npz"]

#: Scalars OpenAI's TorchScript archives keep beside the weights; not parameters of any model.
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
#: Wrapper keys of training checkpoints, tried in this order.
WRAPPER_KEYS = ("state_dict", "model", "module")
#: Prefixes added by DistributedDataParallel and torch.compile, stripped when *every* key has one.
STRIPPED_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(ValueError):
    """A checkpoint file cannot be read: unknown format, refused content, or malformed."""


# --------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------


def detect_format(path: str | Path) -> Format:
    """The format of the checkpoint at ``path``, from its leading bytes (and zip member names)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p} is not a file")
    with open(p, "rb") as fh:
        head = fh.read(16)
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(p) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile as exc:
            raise CheckpointError(f"{p}: looks like a zip archive but cannot be opened ({exc})") from exc
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            return "torch-zip"
        raise CheckpointError(f"{p}: a zip archive that is neither a torch checkpoint nor an .npz ({names[:5]})")
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < header_len <= p.stat().st_size - 8:
            return "safetensors"
    if head[:1] == b"\x80":  # a pickle protocol marker: the legacy torch.save format
        return "torch-legacy"
    raise CheckpointError(
        f"{p}: unknown checkpoint format (expected safetensors, a torch.save .pt/.bin/.pth, "
        f"an OpenAI TorchScript .pt or a big_vision .npz); first bytes {head[:8]!r}"
    )


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_state_dict(path: str | Path, fmt: Format | None = None) -> tuple[dict[str, torch.Tensor], Format]:
    """Read a flat ``name -> tensor`` state dict from ``path`` (any format but ``npz``).

    Wrappers (``{'state_dict': ...}``) are unwrapped and ``module.``/``_orig_mod.`` prefixes
    stripped. Returns the state dict and the detected format.
    """
    p = Path(path)
    fmt = fmt or detect_format(p)
    if fmt == "safetensors":
        from safetensors.torch import load_file

        try:
            raw: Any = load_file(str(p), device="cpu")
        except Exception as exc:  # safetensors' own error type: truncated data, bad header
            raise CheckpointError(f"{p}: not a complete safetensors file ({exc}); re-download or re-export it") from exc
    elif fmt in ("torch-zip", "torch-legacy"):
        import torch

        try:
            raw = torch.load(str(p), map_location="cpu", weights_only=True, mmap=fmt == "torch-zip")
        except pickle.UnpicklingError as exc:
            raise CheckpointError(
                f"{p}: refused by torch.load(weights_only=True) — it holds objects other than tensors and "
                f"plain containers, which could run code when unpickled. Convert it to safetensors where "
                f"you trust it. ({str(exc).splitlines()[0]})"
            ) from exc
    elif fmt == "torchscript":
        raw = read_torchscript_weights(p)
    else:
        raise CheckpointError(f"{p}: format {fmt!r} has no flat state dict reader")
    return normalise_state_dict(raw, source=str(p)), fmt


def normalise_state_dict(raw: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap training-checkpoint wrappers and strip DDP/compile prefixes; keep tensors only."""
    import torch

    obj = raw
    for _ in range(2):  # e.g. {'state_dict': {'module.x': ...}} or {'model': {'state_dict': ...}}
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        keys = list(obj)[:8]
        raise CheckpointError(f"{source}: no tensors found (top-level keys: {keys})")
    for prefix in STRIPPED_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


# --------------------------------------------------------------------------------------------
# TorchScript archives without torch.jit.load
# --------------------------------------------------------------------------------------------


class _ScriptObject:
    """An inert stand-in for any TorchScript class: it only keeps the attribute dict it is given."""

    attrs: dict[str, Any]

    def __setstate__(self, state: Any) -> None:
        self.attrs = dict(state) if isinstance(state, Mapping) else {}


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name = name


_STORAGE_DTYPES = {
    "FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "DoubleStorage": "float64", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
}


def _identity(value: Any, *_: Any) -> Any:
    return value


class _WeightsUnpickler(pickle.Unpickler):
    """Rebuilds tensors from a TorchScript archive's ``data.pkl``; refuses every other global."""

    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self._zf = zf
        self._prefix = prefix
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch.jit._pickle" and name in {
            "build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "restore_type_tag",
        }:
            return _identity
        raise pickle.UnpicklingError(f"refused global {module}.{name} in a TorchScript archive")

    def persistent_load(self, pid: Any) -> Any:
        import torch

        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        key = str(key)
        if key not in self._storages:
            dtype = getattr(torch, _STORAGE_DTYPES[storage_type.name])
            raw = self._zf.read(f"{self._prefix}data/{key}")
            if int(numel) == 0 or not raw:
                self._storages[key] = torch.empty(0, dtype=dtype)
            else:
                self._storages[key] = torch.frombuffer(bytearray(raw), dtype=dtype)[: int(numel)]
        return self._storages[key]


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any, *_: Any) -> Any:
    import torch

    if storage.numel() == 0:
        return torch.empty(tuple(size), dtype=storage.dtype)
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


def read_torchscript_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a TorchScript archive's module tree, by dotted attribute path.

    The archive's code is never loaded or run; only ``data.pkl`` is unpickled, by
    :class:`_WeightsUnpickler`. The result also holds non-persistent buffers and OpenAI's
    scalar attributes (``input_resolution``...); callers drop what their model does not expect.
    """
    p = Path(path)
    with zipfile.ZipFile(p) as zf:
        names = zf.namelist()
        data_pkl = next((n for n in names if n.endswith("/data.pkl") and n.count("/") == 1), None)
        if data_pkl is None:
            raise CheckpointError(f"{p}: TorchScript archive without a top-level data.pkl")
        prefix = data_pkl[: -len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        if byteorder in names and zf.read(byteorder).strip() not in (b"", b"little"):
            raise CheckpointError(f"{p}: big-endian TorchScript archives are not supported")
        try:
            root = _WeightsUnpickler(zf.read(data_pkl), zf, prefix).load()
        except (pickle.UnpicklingError, KeyError, AttributeError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{p}: cannot read the weights of this TorchScript archive safely: {exc}") from exc
    out: dict[str, torch.Tensor] = {}
    _collect(root, "", out)
    if not out:
        raise CheckpointError(f"{p}: TorchScript archive holds no tensors")
    return out


def _collect(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    import torch

    if not isinstance(obj, _ScriptObject):
        return
    for name, value in getattr(obj, "attrs", {}).items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptObject):
            _collect(value, f"{prefix}{name}.", out)


# --------------------------------------------------------------------------------------------
# open_clip model configs beside the weights
# --------------------------------------------------------------------------------------------


def sidecar_config_paths(weights: str | Path) -> list[Path]:
    """Where a model config for ``weights`` may live, in order of preference:
    ``<weights>.json`` (``model.safetensors.json``), ``<stem>.json`` (``model.json``), and
    open_clip's ``open_clip_config.json`` in the same folder (the layout of open_clip's hub repos).
    """
    w = Path(weights)
    candidates = [w.with_name(w.name + ".json"), w.with_suffix(".json"), w.parent / "open_clip_config.json"]
    return [c for c in dict.fromkeys(candidates) if c != w]


def find_sidecar_config(weights: str | Path) -> Path | None:
    return next((c for c in sidecar_config_paths(weights) if c.is_file()), None)


def read_model_config(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model_cfg, preprocess_cfg)`` from an open_clip config JSON.

    Accepts open_clip's ``open_clip_config.json`` layout (``{"model_cfg": ..., "preprocess_cfg": ...}``)
    and a bare model config as in open_clip's ``model_configs/*.json`` (``embed_dim``,
    ``vision_cfg``, ``text_cfg``; an optional ``preprocess_cfg`` key beside them).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{p}: cannot read model config JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{p}: a model config must be a JSON object")
    if "model_cfg" in data:
        model_cfg, pre = data["model_cfg"], data.get("preprocess_cfg") or {}
    else:
        model_cfg = dict(data)
        pre = model_cfg.pop("preprocess_cfg", None) or {}
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in model_cfg]
    if missing:
        raise CheckpointError(
            f"{p}: not an open_clip model config (missing {missing}); expected "
            '{"embed_dim": ..., "vision_cfg": {...}, "text_cfg": {...}} or {"model_cfg": {...}, "preprocess_cfg": {...}}'
        )
    return dict(model_cfg), dict(pre)


def quick_fingerprint(path: str | Path, chunk: int = 1 << 20) -> str:
    """A cheap content fingerprint: sha256 of the size and the first and last MiB (12 hex digits).

    Used as the model *version* of a local file so that leaderboard rows from different weights
    are never ranked together; hashing whole multi-GB files at every load would cost seconds.
    """
    import hashlib

    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(p, "rb") as fh:
        h.update(fh.read(chunk))
        if size > chunk:
            fh.seek(max(chunk, size - chunk))
            h.update(fh.read(chunk))
    return h.hexdigest()[:12]

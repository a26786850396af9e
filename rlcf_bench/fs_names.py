"""File-system names as text (a leaf module: the error boundary, the types and the datasets all
quote file names, and none of them may import another for it)."""

from __future__ import annotations

import os
from typing import Any


def fs_text(name: Any, encoding: str = "utf-8") -> str:
    """A file-system name as text that every store and output can hold, losslessly for names
    that are valid ``encoding``: a name is the bytes the file system gives (``os.fsencode``, so
    the surrogates ``os.fsdecode`` made of undecodable bytes are those bytes again), decoded with
    ``encoding`` (UTF-8 unless a dataset declares another, e.g. ``latin-1``); a byte that is not
    valid there is written ``\\xNN``. Text that is already valid (the common case) is returned
    unchanged."""
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if isinstance(name, str):
        if encoding.replace("-", "").replace("_", "").lower() in {"utf8", ""}:
            try:
                name.encode("utf-8")
                return name
            except UnicodeEncodeError:
                pass
        try:
            name = name.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # surrogates that are not escaped bytes: show them as code points
            return str(name.encode("utf-8", "backslashreplace").decode("utf-8"))
    if isinstance(name, bytes):
        return str(name.decode(encoding, "backslashreplace"))
    return fs_text(str(name), encoding)

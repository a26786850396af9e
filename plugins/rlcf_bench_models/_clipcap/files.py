"""Names of the files of a captioner checkpoint folder and its fingerprint (no torch import)."""

from __future__ import annotations

import hashlib
from pathlib import Path

SETTINGS_FILE = "captioner.json"
MAPPER_FILE = "mapper.safetensors"


def fingerprint(folder: str | Path) -> str:
    """sha256 (12 hex) over the settings, mapper and decoder weight files of a checkpoint folder."""
    folder = Path(folder)
    h = hashlib.sha256()
    paths = [folder / SETTINGS_FILE, folder / MAPPER_FILE, *sorted((folder / "decoder").glob("*.safetensors"))]
    for path in paths:
        if path.is_file():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]

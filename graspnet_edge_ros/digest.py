"""Model file digests for published model ids (torch-free: robot installs run without torch)."""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_digest(path: str | Path, length: int = 12) -> str:
    """Short sha256 of a model file, used as part of the published model id."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]

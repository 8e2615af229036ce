"""Database files on local disk as the store moves them: the checked copy an upload sends, its
digest, and their removal.

Standard library only, so the store (which the control plane loads) can name its upload's
input without loading SQLite; checking that a file is a good database is
``chalicelib.integrity``'s, taking a snapshot ``container.snapshot``'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Snapshot:
    """A verified copy of the database, ready to upload."""

    path: str
    sha256: str
    size: int


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def remove_file(path: str) -> None:
    """Remove ``path`` if it exists."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)

"""The shadow: a private copy of the database at the chain's last appended position.

Every segment the writer appends is applied to it, exactly as a restore applies it, so the
shadow is byte for byte what a restore of that position rebuilds. A snapshot of ``K`` is a copy
of the shadow: the exact state at its marker's position, taken without a second connection on
the app's file and without stalling the app.
"""

from __future__ import annotations

import os
import shutil

from chalicelib.files import remove_file, sha256_file
from wakeful_replica import ltx


class Shadow:
    def __init__(self, path: str, source: str | None) -> None:
        """A shadow at ``path`` holding ``source``'s bytes (none: the empty database)."""
        self.path = path
        remove_file(path)
        if source is not None and os.path.exists(source):
            shutil.copyfile(source, path)
        else:
            open(path, "wb").close()

    def apply(self, segment: ltx.Segment) -> None:
        with open(self.path, "r+b") as out:
            ltx.apply(segment, out)

    @property
    def size(self) -> int:
        return os.path.getsize(self.path)

    def copy(self, destination: str) -> str:
        """Copy the shadow to ``destination``; returns its sha256."""
        shutil.copyfile(self.path, destination)
        return sha256_file(destination)


__all__ = ["Shadow"]

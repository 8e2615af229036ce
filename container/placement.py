"""Putting a verified download where the app will open it."""

from __future__ import annotations

import os

from chalicelib.snapshot import remove_file, sidecars


def move_into_place(incoming: str, target: str) -> None:
    """Replace ``target`` with the file at ``incoming`` (same folder, so the rename is atomic).

    A ``-wal``, ``-shm`` or ``-journal`` left beside the old file goes first: SQLite would
    replay a stale WAL into the new database.
    """
    for sidecar in sidecars(target):
        remove_file(sidecar)
    os.replace(incoming, target)

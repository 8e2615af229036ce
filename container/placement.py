"""Moving database files as SQLite expects: a download into place, a lost holder's file aside.

A database is more than its file while SQLite has it open: a WAL, a shared-memory index or a
rollback journal may sit beside it. These moves keep each file with its own database.
"""

from __future__ import annotations

import os

from chalicelib.files import remove_file


def sidecars(path: str) -> tuple[str, str, str]:
    """The files SQLite keeps beside a database: WAL, shared memory and rollback journal."""
    return (path + "-wal", path + "-shm", path + "-journal")


def move_into_place(incoming: str, target: str) -> None:
    """Replace ``target`` with the file at ``incoming`` (same folder, so the rename is atomic).

    A ``-wal``, ``-shm`` or ``-journal`` left beside the old file goes first: SQLite would
    replay a stale WAL into the new database.
    """
    for sidecar in sidecars(target):
        remove_file(sidecar)
    os.replace(incoming, target)


def move_aside(local: str, target: str) -> None:
    """Move a database nobody has open any more to ``target``, its WAL and journal with it.

    The WAL moves under the matching name, so the copy stays complete; the shared-memory index
    is rebuilt from the WAL by whoever opens it next.
    """
    for suffix in ("-wal", "-journal"):
        if os.path.exists(local + suffix):
            os.replace(local + suffix, target + suffix)
    remove_file(local + "-shm")
    os.replace(local, target)

"""Whether a file is a good SQLite database: the check every download and snapshot passes.

This module loads ``sqlite3``. Only the agent and the operator tools import it (the agent's
downloads and snapshots, ``chalicelib.restore``); the control plane never does, and the Lambda
zip leaves it out. The store itself only moves bytes: a download is checked here, explicitly.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from chalicelib.errors import CorruptDatabase
from chalicelib.files import remove_file, sha256_file

if TYPE_CHECKING:
    from chalicelib.store import DatabaseStore, ObjectInfo, Progress

SQLITE_MAGIC = b"SQLite format 3\x00"


def check(path: str, full: bool = False) -> None:
    """Raise ``CorruptDatabase`` unless ``path`` is a SQLite database that passes its check.

    Opened read-only and immutable so a check never creates a -wal/-shm beside the file or
    changes it.
    """
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise CorruptDatabase(path, f"cannot read: {exc}") from exc
    if header != SQLITE_MAGIC:
        raise CorruptDatabase(path, "not a SQLite database (bad header)")
    pragma = "integrity_check" if full else "quick_check"
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            rows = connection.execute(f"PRAGMA {pragma}").fetchall()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise CorruptDatabase(path, f"{pragma} failed: {exc}") from exc
    if rows != [("ok",)]:
        detail = "; ".join(str(row[0]) for row in rows[:3])
        raise CorruptDatabase(path, f"{pragma}: {detail}")


def verify(path: str, expected_sha256: str | None, full: bool = False) -> str:
    """Check checksum (when one is known) and SQLite integrity; return the file's sha256."""
    actual = sha256_file(path)
    if expected_sha256 and actual != expected_sha256:
        raise CorruptDatabase(
            path, f"sha256 mismatch: expected {expected_sha256}, got {actual}"
        )
    check(path, full=full)
    return actual


def fetch_verified(
    store: DatabaseStore,
    info: ObjectInfo,
    destination: str,
    progress: Progress | None = None,
    full: bool = False,
) -> str:
    """Download exactly ``info``'s version to ``destination`` and verify it there.

    Returns the sha256. Raises ``CorruptDatabase`` (the file is removed) when the bytes are
    short, fail the checksum recorded at upload, or fail SQLite's check (``integrity_check``
    when ``full``, else ``quick_check``).
    """
    store.fetch(info, destination, progress)
    try:
        return verify(destination, info.sha256, full=full)
    except CorruptDatabase as exc:
        remove_file(destination)
        raise CorruptDatabase(store.where(info), exc.reason) from exc

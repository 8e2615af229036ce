"""Consistent, checked SQLite snapshots and file verification.

A snapshot is taken with SQLite's online backup API, so it contains what is committed in the
WAL too and never sees a half-written transaction; it is checked with ``PRAGMA quick_check``
and hashed before anything uploads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
from dataclasses import dataclass

from chalicelib.errors import CorruptDatabase

_CHUNK = 1024 * 1024
SQLITE_MAGIC = b"SQLite format 3\x00"


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


def take(source: str, destination: str) -> Snapshot:
    """Copy the live database at ``source`` to ``destination`` consistently, then check it.

    One backup step (``pages=-1``) copies a single consistent view. In WAL mode readers do not
    block writers, so the app keeps committing while the copy runs.
    """
    tmp = destination + ".partial"
    remove_file(tmp)
    # Read-write open: read-only connections cannot attach to a WAL database without its -shm.
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst, pages=-1)
            # The copy is a standalone file: no WAL beside it, so S3 gets one self-contained file.
            mode = dst.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() == "wal":
                dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    except sqlite3.DatabaseError as exc:
        remove_file(tmp)
        raise CorruptDatabase(source, f"snapshot failed: {exc}") from exc
    finally:
        src.close()
    check(tmp)
    digest = sha256_file(tmp)
    os.replace(tmp, destination)
    return Snapshot(path=destination, sha256=digest, size=os.path.getsize(destination))


def take_quiescent(source: str, destination: str) -> Snapshot:
    """A faster snapshot for the final upload: checkpoint, hold the write lock, copy the file.

    Holding ``BEGIN IMMEDIATE`` would stall a running app's writes, so this is for shutdown,
    when the app has stopped. When the checkpoint cannot finish (a reader still pins the WAL)
    it falls back to the online backup.
    """
    tmp = destination + ".partial"
    remove_file(tmp)
    try:
        connection = sqlite3.connect(source, timeout=30, isolation_level=None)
        try:
            busy = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if busy:
                return take(source, destination)
            # With the write lock held nothing can commit, so the file alone is the database.
            connection.execute("BEGIN IMMEDIATE")
            try:
                shutil.copyfile(source, tmp)
            finally:
                connection.execute("ROLLBACK")
        finally:
            connection.close()
        copy = sqlite3.connect(tmp)
        try:
            if str(copy.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
    except sqlite3.DatabaseError as exc:
        remove_file(tmp)
        raise CorruptDatabase(source, f"snapshot failed: {exc}") from exc
    check(tmp)
    digest = sha256_file(tmp)
    os.replace(tmp, destination)
    return Snapshot(path=destination, sha256=digest, size=os.path.getsize(destination))


class ChangeWatcher:
    """Tells whether the database has had commits since the last call to ``mark``.

    ``PRAGMA data_version`` on a long-lived connection changes whenever another connection
    commits, so idle databases cost no snapshot and no upload.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._seen: int | None = None

    def _version(self) -> int | None:
        if not os.path.exists(self._path):
            return None
        if self._connection is None:
            self._connection = sqlite3.connect(
                self._path, check_same_thread=False
            )
        try:
            return int(self._connection.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.DatabaseError:
            self.close()
            return None

    def changed(self) -> bool:
        version = self._version()
        return version is None or version != self._seen

    def mark(self) -> None:
        self._seen = self._version()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def sidecars(path: str) -> tuple[str, str, str]:
    """The files SQLite keeps beside a database: WAL, shared memory and rollback journal."""
    return (path + "-wal", path + "-shm", path + "-journal")


def remove_file(path: str) -> None:
    """Remove ``path`` if it exists."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)

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
    try:
        src = _open_existing(source)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst, pages=-1)
                _standalone(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.DatabaseError as exc:
        remove_file(tmp)
        raise CorruptDatabase(source, f"snapshot failed: {exc}") from exc
    return _checked(tmp, destination)


def take_quiescent(source: str, destination: str) -> Snapshot:
    """A faster snapshot for the final upload: checkpoint, hold the write lock, copy the file.

    Holding ``BEGIN IMMEDIATE`` would stall a running app's writes, so this is for shutdown,
    when the app has stopped. When the checkpoint cannot finish (a reader still pins the WAL)
    it falls back to the online backup.
    """
    tmp = destination + ".partial"
    remove_file(tmp)
    try:
        if not _copy_if_quiescent(source, tmp):
            return take(source, destination)
        copy = sqlite3.connect(tmp)
        try:
            _standalone(copy)
        finally:
            copy.close()
    except sqlite3.DatabaseError as exc:
        remove_file(tmp)
        raise CorruptDatabase(source, f"snapshot failed: {exc}") from exc
    return _checked(tmp, destination)


def _copy_if_quiescent(source: str, tmp: str) -> bool:
    """Copy the file under the write lock if nothing is left in the WAL; else ``False``."""
    connection = _open_existing(source, isolation_level=None)
    try:
        if connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
            return False  # a reader still pins the WAL
        connection.execute("BEGIN IMMEDIATE")
        try:
            # A writer may have committed between the checkpoint and the lock: then the WAL
            # holds frames the main file lacks, and only the online backup sees them.
            if _wal_size(source):
                return False
            # With the write lock held and the WAL empty, the file alone is the database.
            shutil.copyfile(source, tmp)
            return True
        finally:
            connection.execute("ROLLBACK")
    finally:
        connection.close()


def _checked(tmp: str, destination: str) -> Snapshot:
    """Check and hash a finished copy, then move it into place."""
    check(tmp)
    digest = sha256_file(tmp)
    os.replace(tmp, destination)
    return Snapshot(path=destination, sha256=digest, size=os.path.getsize(destination))


def _open_existing(path: str, **options: object) -> sqlite3.Connection:
    """Open a database that must already exist (never create an empty one in its place).

    Read-write: a read-only connection cannot attach to a WAL database without its -shm.
    """
    return sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30, **options)


def _standalone(connection: sqlite3.Connection) -> None:
    """A copy is one self-contained file: no WAL beside it when it reaches S3."""
    if str(connection.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        connection.execute("PRAGMA journal_mode=DELETE")


def _wal_size(path: str) -> int:
    try:
        return os.path.getsize(path + "-wal")
    except FileNotFoundError:
        return 0


class ChangeWatcher:
    """Tells whether the database has had commits since the last call to ``mark``.

    ``PRAGMA data_version`` on a long-lived connection changes whenever another connection
    commits, so idle databases cost no snapshot and no upload. The connection stays on the
    file it opened, so the file's identity is watched too: an app that replaces its database
    file (an import, a reset) is a change, and the watch moves to the new file.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None
        self._seen: tuple[tuple[int, int], int] | None = None

    def _state(self) -> tuple[tuple[int, int], int] | None:
        try:
            stat = os.stat(self._path)
        except FileNotFoundError:
            self.close()
            return None
        identity = (stat.st_dev, stat.st_ino)
        if self._connection is not None and identity != self._file:
            self.close()
        try:
            if self._connection is None:
                self._connection = _open_existing(self._path, check_same_thread=False)
                self._file = identity
            return identity, int(self._connection.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.DatabaseError:
            self.close()
            return None

    def changed(self) -> bool:
        state = self._state()
        return state is None or state != self._seen

    def mark(self) -> None:
        self._seen = self._state()

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

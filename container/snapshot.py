"""Consistent, checked SQLite snapshots of the live database: what the agent uploads.

A snapshot is taken with SQLite's online backup API, so it contains what is committed in the
WAL too and never sees a half-written transaction; it is checked with ``PRAGMA quick_check``
and hashed before anything uploads it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Iterator

from chalicelib.errors import CorruptDatabase
from chalicelib.files import Snapshot, remove_file, sha256_file
from chalicelib.integrity import check


def take(source: str, destination: str) -> Snapshot:
    """Copy the live database at ``source`` to ``destination`` consistently, then check it.

    One backup step (``pages=-1``) copies a single consistent view. In WAL mode readers do not
    block writers, so the app keeps committing while the copy runs.
    """
    with _partial(source, destination) as tmp:
        src = open_existing(source)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst, pages=-1)
                _standalone(dst)
            finally:
                dst.close()
        finally:
            src.close()
    return _checked(tmp, destination)


def take_quiescent(source: str, destination: str) -> Snapshot:
    """A faster snapshot for the final upload: checkpoint, hold the write lock, copy the file.

    Holding ``BEGIN IMMEDIATE`` would stall a running app's writes, so this is for shutdown,
    when the app has stopped. When the checkpoint cannot finish (a reader still pins the WAL)
    it falls back to the online backup.
    """
    with _partial(source, destination) as tmp:
        if not _copy_if_quiescent(source, tmp):
            return take(source, destination)
        copy = sqlite3.connect(tmp)
        try:
            _standalone(copy)
        finally:
            copy.close()
    return _checked(tmp, destination)


@contextlib.contextmanager
def _partial(source: str, destination: str) -> Iterator[str]:
    """The copy in the making, beside ``destination``: a failure of SQLite's while it is made
    removes it and is a ``CorruptDatabase`` of ``source``."""
    tmp = destination + ".partial"
    remove_file(tmp)
    try:
        yield tmp
    except sqlite3.DatabaseError as exc:
        remove_file(tmp)
        raise CorruptDatabase(source, f"snapshot failed: {exc}") from exc


def _copy_if_quiescent(source: str, tmp: str) -> bool:
    """Copy the file under the write lock if nothing is left in the WAL; else ``False``."""
    connection = open_existing(source, isolation_level=None)
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


def open_existing(path: str, **options: object) -> sqlite3.Connection:
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

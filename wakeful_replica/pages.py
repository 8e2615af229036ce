"""Changed pages of a rollback-journal database, by page hashes against the last captured state.

A rollback-journal app writes its changes into the database file itself, so there is no log to
read: each read takes a short read transaction (SQLite's SHARED lock keeps a writer from
committing while the pages are read, so they are one consistent state), hashes every page with
xxh3-64 and returns those whose hash differs from the state captured last. The file change
counter (header offset 24, bumped by every rollback-mode commit) skips the reading when nothing
committed. A read lasts as long as reading the file; the app's writers wait that long at most.

Outcomes are typed like the WAL reader's: ``Changes``, ``NoChange``, or ``Reset`` when the
database can no longer be followed this way (it switched to WAL mode, its page size changed).
A replaced file needs no reset: its pages are compared like any others.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import xxhash

from chalicelib.errors import CorruptDatabase
from wakeful_replica import ltx, sqlite
from wakeful_replica.errors import NotADatabase

_CHANGE_COUNTER = slice(24, 28)


@dataclass(frozen=True)
class Changes:
    pages: dict[int, bytes]
    commit: int
    page_size: int


@dataclass(frozen=True)
class NoChange:
    commit: int


@dataclass(frozen=True)
class Reset:
    reason: str


Capture = Changes | NoChange | Reset


def _page_size(header: bytes) -> int:
    raw = int.from_bytes(header[16:18], "big")
    return 65536 if raw == 1 else raw


class PageTracker:
    """Finds the pages of ``path`` that changed since the previous ``read`` (or ``snapshot``)."""

    def __init__(self, path: str, connect: Callable[[str], Any] = sqlite.connect) -> None:
        self.path = path
        self._connect = connect
        self._connection: Any = None
        self._handle: int | None = None
        self._identity: tuple[int, int] | None = None
        self._hashes: list[int] = []
        self._counter: bytes | None = None
        self.page_size = 0

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
        if self._handle is not None:
            # Only after SQLite let go: closing a descriptor drops this process's locks.
            os.close(self._handle)
            self._handle = None

    def __enter__(self) -> PageTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reopen_if_replaced(self) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError as exc:
            raise NotADatabase(self.path, "missing") from exc
        identity = (stat.st_dev, stat.st_ino)
        if self._connection is None or identity != self._identity:
            self.close()
            self._handle = os.open(self.path, os.O_RDONLY)
            self._connection = self._connect(self.path)
            self._identity = identity

    def _read_all(self) -> tuple[bytes, list[tuple[int, bytes]], int] | Reset:
        """Every page of one consistent state, under a read transaction."""
        self._reopen_if_replaced()
        assert self._handle is not None
        connection = self._connection
        connection.execute("BEGIN")
        try:
            connection.execute("SELECT count(*) FROM sqlite_schema").fetchall()
            header = os.pread(self._handle, 100, 0)
            if len(header) < 100:
                raise NotADatabase(self.path, "empty or truncated")
            if header[18] == 2:
                return Reset("the database is in WAL mode now")
            page_size = _page_size(header)
            if self.page_size and page_size != self.page_size:
                return Reset(f"the page size changed from {self.page_size} to {page_size}")
            count = int(connection.execute("PRAGMA page_count").fetchall()[0][0])
            lock = ltx.lock_pgno(page_size)
            pages: list[tuple[int, bytes]] = []
            for pgno in range(1, count + 1):
                if pgno == lock:
                    continue
                data = os.pread(self._handle, page_size, (pgno - 1) * page_size)
                if len(data) != page_size:
                    raise CorruptDatabase(self.path, f"page {pgno} is missing")
                pages.append((pgno, data))
            self.page_size = page_size
            return header, pages, count
        finally:
            connection.execute("COMMIT")

    def snapshot(self) -> tuple[int, int, list[tuple[int, bytes]]]:
        """The whole database: ``(page_size, commit, pages)``; the baseline for ``read``."""
        self.page_size = 0
        result = self._read_all()
        if isinstance(result, Reset):
            raise NotADatabase(self.path, result.reason)
        header, pages, count = result
        self._remember(header, pages, count)
        return self.page_size, count, pages

    def read(self) -> Capture:
        if self._handle is not None and self._identity is not None:
            with contextlib.suppress(FileNotFoundError):
                stat = os.stat(self.path)
                if (stat.st_dev, stat.st_ino) == self._identity and self._counter == os.pread(
                    self._handle, 4, _CHANGE_COUNTER.start
                ):
                    return NoChange(len(self._hashes))
        result = self._read_all()
        if isinstance(result, Reset):
            return result
        header, pages, commit = result
        old = self._hashes
        changed: dict[int, bytes] = {}
        hashes: list[int] = []
        for pgno, data in pages:
            digest = xxhash.xxh3_64_intdigest(data)
            hashes.append(digest)
            if pgno > len(old) or old[pgno - 1] != digest:
                changed[pgno] = data
        self._hashes, self._counter = _by_page(pages, hashes, commit), header[_CHANGE_COUNTER]
        if not changed and commit == len(old):
            return NoChange(commit)
        return Changes(changed, commit, self.page_size)

    def _remember(self, header: bytes, pages: list[tuple[int, bytes]], count: int) -> None:
        hashes = [xxhash.xxh3_64_intdigest(data) for _, data in pages]
        self._hashes, self._counter = _by_page(pages, hashes, count), header[_CHANGE_COUNTER]


def _by_page(pages: list[tuple[int, bytes]], hashes: list[int], count: int) -> list[int]:
    # Indexed by pgno - 1; the lock page (never read) keeps a hash no page can have.
    found = dict(zip((pgno for pgno, _ in pages), hashes, strict=True))
    return [found.get(pgno, -1) for pgno in range(1, count + 1)]

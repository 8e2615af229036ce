"""What changed in the app's live database since the last sync, in either journal mode.

One face over ``wakeful_replica.wal.WalReader`` (WAL mode: committed frames) and
``wakeful_replica.pages.PageTracker`` (rollback journal: pages whose hash changed), chosen by
the file's header and chosen again when the app switches modes. A reader that cannot prove it
saw every commit answers ``Full``: the whole database, which the chain takes as a full
snapshot segment.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from wakeful_replica import pages, wal
from wakeful_replica.errors import NotADatabase

Reader = wal.WalReader | pages.PageTracker


@dataclass(frozen=True)
class Delta:
    """The pages committed since the last capture."""

    pages: dict[int, bytes]
    commit: int
    page_size: int


@dataclass(frozen=True)
class Full:
    """The whole database; ``reason`` says why a delta could not be trusted (``None``: the
    first capture of a database the chain does not hold yet)."""

    page_size: int
    commit: int
    pages: Iterable[tuple[int, bytes]]
    reason: str | None


Captured = Delta | Full | None


class Capture:
    """Captures ``path``; ``None`` from ``read`` means nothing to ship (no request)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.reader: Reader | None = None

    def baseline(self) -> None:
        """The file as restored is what the chain holds already: capture from it, ship nothing.

        Call before the app starts. No file: the first capture is the whole database.
        """
        if _exists(self.path):
            self._open_and_snapshot()

    def read(self) -> Captured:
        if self.reader is None:
            if not _exists(self.path):
                return None
            return self._full(None)
        captured = self.reader.read()
        if isinstance(captured, wal.Frames | pages.Changes):
            return Delta(captured.pages, captured.commit, captured.page_size)
        if isinstance(captured, wal.NoChange | pages.NoChange):
            return None
        return self._full(captured.reason)

    def read_full(self, reason: str) -> Full | None:
        """The whole database now (after the chain dropped captures); ``None`` with no file."""
        if not _exists(self.path):
            return None
        return self._full(reason)

    def checkpoint(self) -> None:
        """Everything read is shipped: a WAL may be checkpointed (PASSIVE, never blocking)."""
        reader = self.reader
        if isinstance(reader, wal.WalReader) and reader.position is not None:
            reader.checkpoint(reader.position)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def _full(self, reason: str | None) -> Full:
        return self._open_and_snapshot(reason)

    def _open_and_snapshot(self, reason: str | None = None) -> Full:
        """Open the reader the file's journal mode needs (again, when it changed) and take the
        whole database from it."""
        wanted = wal.WalReader if wal.is_wal_database(self.path) else pages.PageTracker
        if not isinstance(self.reader, wanted):
            self.close()
            self.reader = wanted(self.path)
        try:
            return _snapshot(self.reader, reason)
        except NotADatabase:
            # The mode changed between the header check and the snapshot: the other reader.
            self.close()
            other = pages.PageTracker if wanted is wal.WalReader else wal.WalReader
            self.reader = other(self.path)
            return _snapshot(self.reader, reason)


def _snapshot(reader: Reader, reason: str | None) -> Full:
    if isinstance(reader, wal.WalReader):
        state = reader.snapshot()
        return Full(state.page_size, state.commit, state.pages(), reason)
    page_size, commit, found = reader.snapshot()
    return Full(page_size, commit, found, reason)


def _exists(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:
        return False

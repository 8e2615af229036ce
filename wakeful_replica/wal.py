"""Committed WAL frames of a live database that another process writes.

The reader parses the app's ``-wal`` file itself (header, frame headers, salts, cumulative
checksums) and returns the pages of every transaction committed since the last read, never
past the last commit frame. What makes that safe is a *pin*: one of its two APSW connections
always holds an open read transaction on the database.

- A pin with a WAL read mark (the WAL had unbackfilled frames when it began) forbids any WAL
  restart, so every frame stays where the reader can read it.
- A pin on read mark 0 (the WAL was fully backfilled when it began) forbids every backfill, so a
  restart can happen only before the first new commit, and then every later commit is in the
  new WAL from its first frame: exactly one restart (salt-1 + 1), seen and followed.

The pin is never dropped while capturing: ``checkpoint`` pins on the second connection before
it lets go of the first. The reader owns checkpoints (PASSIVE only, so the app is never blocked)
and lets the WAL restart only once every frame in it has been read and shipped.

Anything else (the database file replaced, the WAL removed, truncated or overwritten, salts
that did not come from one restart) is a ``Reset``: the caller takes a full snapshot, which this
reader also makes, consistent with the position it continues from. Never a silently wrong page
set. The reader never writes to the app's schema.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import CorruptDatabase
from wakeful_replica import ltx, sqlite
from wakeful_replica.errors import NotADatabase

WAL_HEADER_SIZE = 32
FRAME_HEADER_SIZE = 24
MAGIC_LE = 0x377F0682
MAGIC_BE = 0x377F0683
WAL_VERSION = 3007000
CHECKPOINT_FRAMES = 1000  # SQLite's own autocheckpoint threshold
_MASK = 0xFFFFFFFF
_HEADER = struct.Struct(">IIIIIIII")
_FRAME = struct.Struct(">IIIIII")
_SNAPSHOT_TRIES = 5


# -- the file format ------------------------------------------------------------------------


@dataclass(frozen=True)
class WalHeader:
    magic: int
    version: int
    page_size: int
    checkpoint_seq: int
    salt1: int
    salt2: int
    checksum: tuple[int, int]

    @property
    def big_endian(self) -> bool:
        return self.magic == MAGIC_BE

    @property
    def salts(self) -> tuple[int, int]:
        return (self.salt1, self.salt2)


def checksum(data: bytes | memoryview, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum (``walChecksumBytes``) over ``data``, continued from ``(s0, s1)``."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    pairs = iter(words)
    for x0, x1 in zip(pairs, pairs, strict=True):
        s0 = (s0 + x0 + s1) & _MASK
        s1 = (s1 + x1 + s0) & _MASK
    return s0, s1


def parse_header(data: bytes) -> WalHeader | None:
    """The WAL header, or ``None`` when there is none or it is not valid (bad magic/checksum)."""
    if len(data) < WAL_HEADER_SIZE:
        return None
    magic, version, page_size, seq, salt1, salt2, c0, c1 = _HEADER.unpack_from(data)
    if magic not in (MAGIC_LE, MAGIC_BE) or version != WAL_VERSION:
        return None
    if checksum(data[:24], 0, 0, magic == MAGIC_BE) != (c0, c1):
        return None
    if not ltx.valid_page_size(page_size):
        return None
    return WalHeader(magic, version, page_size, seq, salt1, salt2, (c0, c1))


@dataclass(frozen=True)
class Position:
    """How far the reader has captured: up to and including frame ``frames`` of one WAL.

    ``salts`` is ``None`` while there is no valid WAL header (no WAL, or an empty one).
    """

    salts: tuple[int, int] | None
    frames: int
    checksum: tuple[int, int]
    commit: int
    page_size: int

    def offset(self) -> int:
        return WAL_HEADER_SIZE + self.frames * (FRAME_HEADER_SIZE + self.page_size)


@dataclass(frozen=True)
class _Scan:
    header: WalHeader
    pages: dict[int, bytes]
    frames: int
    checksum: tuple[int, int]
    commit: int
    transactions: int


def _scan(handle: Any, header: WalHeader, start: int, cksum: tuple[int, int]) -> _Scan:
    """Read valid frames after frame ``start`` up to the last commit frame."""
    size = header.page_size
    frame_size = FRAME_HEADER_SIZE + size
    handle.seek(WAL_HEADER_SIZE + start * frame_size)
    pending: dict[int, bytes] = {}
    pages: dict[int, bytes] = {}
    frames = number = start
    committed_cksum = cksum
    commit = transactions = 0
    while True:
        raw = handle.read(frame_size)
        if len(raw) < frame_size:
            break
        pgno, db_size, salt1, salt2, c0, c1 = _FRAME.unpack_from(raw)
        if pgno == 0 or (salt1, salt2) != header.salts:
            break
        view = memoryview(raw)
        running = checksum(view[:8], *cksum, header.big_endian)
        running = checksum(view[FRAME_HEADER_SIZE:], *running, header.big_endian)
        if running != (c0, c1):
            break
        cksum = running
        number += 1
        pending[pgno] = bytes(view[FRAME_HEADER_SIZE:])
        if db_size:
            pages.update(pending)
            pending.clear()
            frames, committed_cksum, commit = number, cksum, db_size
            transactions += 1
    return _Scan(header, pages, frames, committed_cksum, commit, transactions)


# -- what a read gives ----------------------------------------------------------------------


@dataclass(frozen=True)
class Frames:
    """Pages committed since ``start``: the newest version of each, and the size after them."""

    pages: dict[int, bytes]
    commit: int
    page_size: int
    start: Position
    end: Position
    transactions: int
    restarted: bool = False  # the WAL restarted (seen and followed) before these frames


@dataclass(frozen=True)
class NoChange:
    position: Position


@dataclass(frozen=True)
class Reset:
    """The reader cannot prove it saw every commit: take a full ``snapshot()``."""

    reason: str


Capture = Frames | NoChange | Reset


@dataclass(frozen=True)
class CheckpointResult:
    busy: bool
    log_frames: int
    checkpointed: int
    restart_allowed: bool


class FullState:
    """A consistent image of the whole database at ``position``, read page by page.

    The pages are read lazily; iterate them before the reader's next call.
    """

    def __init__(
        self, path: str, handle: int, page_size: int, commit: int, overlay: dict[int, bytes],
        position: Position,
    ) -> None:
        self.path = path
        self._handle = handle
        self.page_size = page_size
        self.commit = commit
        self.position = position
        self._overlay = overlay

    def pages(self) -> Iterator[tuple[int, bytes]]:
        """Every page 1..commit but the lock page, in order."""
        lock = ltx.lock_pgno(self.page_size)
        for pgno in range(1, self.commit + 1):
            if pgno == lock:
                continue
            data = self._overlay.get(pgno)
            if data is None:
                # A checkpoint may be writing this file, but only pages that are in the
                # overlay (the WAL up to our pin); every other page is stable.
                data = os.pread(self._handle, self.page_size, (pgno - 1) * self.page_size)
                if len(data) != self.page_size:
                    raise CorruptDatabase(self.path, f"page {pgno} is missing")
            yield pgno, data


# -- the reader -----------------------------------------------------------------------------


def _identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


def is_wal_database(path: str) -> bool:
    """Whether the file's header says WAL mode (read/write versions 2)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except FileNotFoundError:
        return False
    return len(header) == 20 and header[18] == 2 and header[19] == 2


class WalReader:
    """Captures committed WAL frames of ``path``; see the module docstring for the guarantees.

    Call ``snapshot()`` first (a full image and a position), then ``read()`` each sync and, once
    what it returned is durably shipped, ``checkpoint(shipped)``.
    """

    def __init__(
        self,
        path: str,
        connect: Callable[[str], Any] = sqlite.connect,
        checkpoint_frames: int = CHECKPOINT_FRAMES,
    ) -> None:
        self.path = path
        self.wal_path = path + "-wal"
        self.checkpoint_frames = checkpoint_frames
        self._connect = connect
        self._connections: list[Any] = []
        # Our own descriptor on the database file, open as long as the connections are:
        # closing any descriptor of a file drops every POSIX lock this process holds on it,
        # SQLite's included (sqlite.org/howtocorrupt.html, 2.2).
        self._handle: int | None = None
        self._pinned = 0  # index of the connection holding the pin
        self._identity: tuple[int, int] | None = None
        self._wal_identity: tuple[int, int] | None = None
        self._position: Position | None = None
        self._pending: Frames | None = None  # read during a checkpoint, returned by read()

    @property
    def position(self) -> Position | None:
        return self._position

    # -- connections and the pin --------------------------------------------------------------

    def _open(self) -> None:
        self.close()
        identity = _identity(self.path)
        if identity is None or os.path.getsize(self.path) == 0:
            raise NotADatabase(self.path, "missing or empty")
        if not is_wal_database(self.path):
            raise NotADatabase(self.path, "not in WAL mode")
        self._handle = os.open(self.path, os.O_RDONLY)
        self._connections = [self._connect(self.path), self._connect(self.path)]
        self._identity = (os.fstat(self._handle).st_dev, os.fstat(self._handle).st_ino)
        self._pin(0)

    def _pin(self, index: int) -> None:
        connection = self._connections[index]
        connection.execute("BEGIN")
        # The first read opens the read transaction and takes a WAL read mark.
        connection.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        self._pinned = index

    def _unpin(self, index: int) -> None:
        connection = self._connections[index]
        if connection.in_transaction:
            connection.execute("COMMIT")

    def _rotate(self) -> None:
        """Move the pin to the other connection without a moment unpinned."""
        old = self._pinned
        self._pin(1 - old)
        self._unpin(old)

    def close(self) -> None:
        for connection in self._connections:
            with contextlib.suppress(Exception):
                connection.close()
        self._connections = []
        if self._handle is not None:
            os.close(self._handle)
            self._handle = None
        self._position = None
        self._pending = None

    def __enter__(self) -> WalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> FullState:
        """A full, consistent image of the database and the position to capture on from.

        Reopens the file when it was replaced. Raises ``NotADatabase`` when the file is missing
        or not in WAL mode (use ``pages.PageTracker`` then).
        """
        self._pending = None
        if not self._connections or _identity(self.path) != self._identity:
            self._open()
        for _ in range(_SNAPSHOT_TRIES):
            before = self._read_header()
            self._rotate()  # a fresh pin: its view is what the image starts from
            connection = self._connections[self._pinned]
            page_size = int(connection.execute("PRAGMA page_size").fetchall()[0][0])
            page_count = int(connection.execute("PRAGMA page_count").fetchall()[0][0])
            if before is None:
                if self._read_header() is not None:
                    continue  # a WAL appeared meanwhile: look again
                position = Position(None, 0, (0, 0), page_count, page_size)
                self._position = position
                self._wal_identity = _identity(self.wal_path)
                assert self._handle is not None
                return FullState(self.path, self._handle, page_size, page_count, {}, position)
            if before.page_size != page_size:
                raise CorruptDatabase(self.wal_path, "WAL page size differs from the database's")
            with open(self.wal_path, "rb") as handle:
                scan = _scan(handle, before, 0, before.checksum)
            after = self._read_header()
            if after is None or after.salts != before.salts:
                continue  # restarted while we looked: look again
            commit = scan.commit or page_count
            position = Position(before.salts, scan.frames, scan.checksum, commit, page_size)
            self._position = position
            self._wal_identity = _identity(self.wal_path)
            assert self._handle is not None
            return FullState(self.path, self._handle, page_size, commit, scan.pages, position)
        raise CorruptDatabase(self.wal_path, "the WAL kept restarting while taking a snapshot")

    def _read_header(self) -> WalHeader | None:
        try:
            with open(self.wal_path, "rb") as handle:
                return parse_header(handle.read(WAL_HEADER_SIZE))
        except FileNotFoundError:
            return None

    # -- read -------------------------------------------------------------------------------

    def read(self) -> Capture:
        """Pages committed since the last read (or snapshot), or why the caller must snapshot."""
        pending, self._pending = self._pending, None
        captured = self._read()
        if pending is None or isinstance(captured, Reset):
            return captured
        if isinstance(captured, NoChange):
            return pending
        pages = {**pending.pages, **captured.pages}
        return Frames(
            pages={n: pages[n] for n in sorted(pages) if n <= captured.commit},
            commit=captured.commit, page_size=captured.page_size, start=pending.start,
            end=captured.end, transactions=pending.transactions + captured.transactions,
            restarted=pending.restarted or captured.restarted,
        )

    def _read(self) -> Capture:
        position = self._position
        if position is None or not self._connections:
            return Reset("the reader has no position yet")
        if _identity(self.path) != self._identity:
            return Reset("the database file was replaced")
        wal_identity = _identity(self.wal_path)
        if wal_identity is None:
            if position.salts is None:
                return NoChange(position)
            return Reset("the WAL file was removed")
        if self._wal_identity is not None and wal_identity != self._wal_identity:
            return Reset("the WAL file was replaced")
        self._wal_identity = wal_identity
        with open(self.wal_path, "rb") as handle:
            header = parse_header(handle.read(WAL_HEADER_SIZE))
            size = os.fstat(handle.fileno()).st_size
            if header is None:
                if position.salts is None:
                    return NoChange(position)
                return Reset("the WAL was truncated or its header is not valid")
            if header.page_size != position.page_size:
                return Reset("the WAL's page size changed")
            if position.salts is None:
                return self._first_wal(handle, header, position)
            if header.salts != position.salts:
                return self._restarted(handle, header, position)
            if size < position.offset():
                return Reset("the WAL shrank below what was captured")
            if position.frames and not self._frame_intact(handle, header, position):
                return Reset("a captured WAL frame was overwritten")
            scan = _scan(handle, header, position.frames, position.checksum)
        return self._advance(scan, position, restarted=False)

    def _first_wal(self, handle: Any, header: WalHeader, position: Position) -> Capture:
        # No WAL when we pinned: our pin (on read mark 0) forbids backfills, so no WAL can have
        # been filled, checkpointed and restarted since. Every commit is in this one.
        scan = _scan(handle, header, 0, header.checksum)
        return self._advance(scan, position, restarted=False)

    def _restarted(self, handle: Any, header: WalHeader, position: Position) -> Capture:
        assert position.salts is not None
        # One restart under our pin (possible only on read mark 0, before any new commit)
        # bumps salt-1 by one; anything else happened without us.
        if header.salt1 != (position.salts[0] + 1) & _MASK:
            return Reset(
                f"the WAL restarted without us (salt-1 {position.salts[0]} -> {header.salt1})"
            )
        # Belt and braces: where the new WAL has not yet overwritten the old one, commits after
        # our position would still be there; finding one means they were never captured.
        old = WalHeader(header.magic, header.version, header.page_size, 0,
                        position.salts[0], position.salts[1], (0, 0))
        if position.frames and _scan(handle, old, position.frames, position.checksum).transactions:
            return Reset("the WAL restarted over commits that were not captured")
        scan = _scan(handle, header, 0, header.checksum)
        return self._advance(scan, position, restarted=True)

    def _frame_intact(self, handle: Any, header: WalHeader, position: Position) -> bool:
        frame_size = FRAME_HEADER_SIZE + position.page_size
        handle.seek(WAL_HEADER_SIZE + (position.frames - 1) * frame_size)
        raw = handle.read(FRAME_HEADER_SIZE)
        if len(raw) < FRAME_HEADER_SIZE:
            return False
        _, db_size, salt1, salt2, c0, c1 = _FRAME.unpack_from(raw)
        return (salt1, salt2) == header.salts and (c0, c1) == position.checksum and db_size > 0

    def _advance(self, scan: _Scan, position: Position, restarted: bool) -> Capture:
        if not scan.transactions:
            if restarted or position.salts != scan.header.salts:
                # Nothing committed in the new WAL yet: continue from its start.
                position = Position(
                    scan.header.salts, 0, scan.header.checksum, position.commit,
                    position.page_size,
                )
                self._position = position
            return NoChange(position)
        end = Position(
            scan.header.salts, scan.frames, scan.checksum, scan.commit, position.page_size
        )
        self._position = end
        pages = {pgno: data for pgno, data in sorted(scan.pages.items()) if pgno <= scan.commit}
        return Frames(
            pages=pages, commit=scan.commit, page_size=position.page_size, start=position,
            end=end, transactions=scan.transactions, restarted=restarted,
        )

    # -- checkpoint -------------------------------------------------------------------------

    def checkpoint(self, shipped: Position, force: bool = False) -> CheckpointResult | None:
        """A PASSIVE checkpoint, once everything read is durably shipped (``shipped``).

        Runs when the WAL has ``checkpoint_frames`` frames or more (or ``force``); ``None``
        when it did not run. When the checkpoint was complete it lets the WAL restart: it
        first reads, still pinned, whatever was committed meanwhile (the next ``read``
        returns it), so a restart can only ever overwrite frames already read.
        """
        position = self._position
        if position is None or shipped != position or not self._connections:
            return None
        if not force and position.frames < self.checkpoint_frames:
            return None
        # Pin the newest view first, so the checkpoint may backfill everything up to it.
        self._rotate()
        pinned = self._pinned
        other = self._connections[1 - pinned]
        busy, log, done = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
        complete = not busy and log > 0 and log == done
        if complete:
            # A second pin taken now lands on read mark 0 when nothing was committed since the
            # checkpoint: it forbids backfills (so no second restart) but not the restart. The
            # first pin still forbids the restart while we read what is left.
            self._pin(1 - pinned)
            try:
                self._pending = self._drain(position)
            finally:
                self._unpin(pinned)
        return CheckpointResult(bool(busy), int(log), int(done), complete)

    def _drain(self, position: Position) -> Frames | None:
        header = self._read_header()
        if header is None or header.salts != position.salts:
            return None
        with open(self.wal_path, "rb") as handle:
            scan = _scan(handle, header, position.frames, position.checksum)
        captured = self._advance(scan, position, restarted=False)
        return captured if isinstance(captured, Frames) else None

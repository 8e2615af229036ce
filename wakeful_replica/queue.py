"""A bounded local queue of encoded segments, for the time S3 does not answer.

Segments wait on disk (one file per position, written atomically) and ship in order. The
bound is in bytes (and a count): past it ``push`` raises ``QueueFull`` and the queue turns
*overflowed*: every later capture is dropped, the queued ones still ship, and the writer then
continues the chain with one full snapshot segment (docs/replication.md §3.5). So an outage
costs disk up to the bound, never memory, and never a gap in the chain. The queue belongs to
one holder's run: it starts empty (positions queued by an earlier process are another
holding's, and that holder's claim may have been overtaken).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from wakeful_replica.errors import QueueFull

MiB = 1024 * 1024
MAX_BYTES = 256 * MiB
MAX_SEGMENTS = 100_000


@dataclass(frozen=True)
class Queued:
    txid: int
    path: str
    size: int

    def read(self) -> bytes:
        with open(self.path, "rb") as handle:
            return handle.read()


class SegmentQueue:
    def __init__(
        self, directory: str, max_bytes: int = MAX_BYTES, max_segments: int = MAX_SEGMENTS
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_segments = max_segments
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        self._items: list[Queued] = []
        self.bytes = 0
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._items)

    def push(self, txid: int, body: bytes, bounded: bool = True) -> Queued:
        """Queue the segment at ``txid`` (after every queued one). ``QueueFull`` past the bound.

        ``bounded=False`` is for the one full snapshot that ends an overflow: it must wait
        somewhere, and it replaces everything that was dropped.
        """
        if self._items and txid != self._items[-1].txid + 1:
            raise ValueError(f"segment {txid} queued after {self._items[-1].txid}")
        if bounded and (self.overflowed or self.bytes + len(body) > self.max_bytes
                        or len(self._items) >= self.max_segments):
            self.overflowed = True
            raise QueueFull(len(self._items), self.bytes, self.max_bytes)
        path = os.path.join(self.directory, f"{txid:016x}.ltx")
        tmp = path + ".tmp"
        with open(tmp, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        item = Queued(txid, path, len(body))
        self._items.append(item)
        self.bytes += item.size
        return item

    def peek(self) -> Queued | None:
        return self._items[0] if self._items else None

    def pop(self, txid: int) -> None:
        """Drop the oldest segment once it is in S3."""
        item = self._items[0]
        if item.txid != txid:
            raise ValueError(f"popping {txid}, the oldest queued is {item.txid}")
        self._items.pop(0)
        self.bytes -= item.size
        os.remove(item.path)

    def end_overflow(self) -> None:
        self.overflowed = False

    @property
    def last_txid(self) -> int | None:
        return self._items[-1].txid if self._items else None


__all__ = ["Queued", "SegmentQueue"]

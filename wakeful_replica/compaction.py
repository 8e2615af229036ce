"""Compacted segments: one LTX file standing for a run of positions (docs/replication.md §2.1).

A holder, after shipping, merges runs of positions it shipped itself into one LTX file with
min txid ``a`` and max txid ``b``: the newest version of each page written in ``a..b``, the
database size and timestamp of ``b``. Applied to the state at ``a - 1`` it gives the state at
``b``, exactly as applying ``a..b`` one by one does, so a restore reads a few files instead of
one per sync. It lives at ``P/g/<gen>/c/<a>-<b>.ltx`` (16 hex digits each), a key fixed by the
range alone, written with ``IfNoneMatch: *``.

Levels: a run is aligned on the newest base ``s`` (a snapshot position): level ``k`` covers
``SPANS[k]`` positions, ``s + 1 + i·span … s + (i + 1)·span``, and restarts after each new
base, so a restore from the newest base reads at most ``FANOUT - 1`` files per level, then the
positions after the last one.

Why anyone's compaction is correct: positions are immutable, and a compaction is a pure
function of the positions it covers. A writer compacts only positions it saw land with its
own token (never queued ones): a stale holder's compaction covers only positions it wrote, so
it is the chain's own content there, and a range can never cross a position another holder
took. The pure parts (``merge``, ``cover``, ``Compactor``) are separate from the S3 edge
(``Compactions``).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wakeful_replica import ltx
from wakeful_replica.chain import (
    LTX_TYPE,
    META_GENERATION,
    META_HOLDER,
    META_KIND,
    META_SHA256,
    META_TOKEN,
    META_TXID,
    Found,
    Writer,
    info,
)
from wakeful_replica.errors import ConditionFailed, CorruptSegment
from wakeful_replica.objects import ONLY_IF_ABSENT, Objects

COMPACTION = "compaction"
META_MIN_TXID = "wakeful-min-txid"
META_LATEST_MS = "wakeful-latest-ms"  # the newest LTX timestamp inside the range

FANOUT = 8
SPANS = (FANOUT, FANOUT ** 2, FANOUT ** 3)  # 8, 64, 512 positions
# A run whose pages pass this stays uncompacted (a full snapshot segment inside it): the
# positions are there, only the shortcut is missing.
MAX_BYTES = 32 * 1024 * 1024

Range = tuple[int, int]


# -- pure: merging positions -------------------------------------------------------------------


@dataclass
class Merge:
    """The running merge of consecutive positions: the pages a..b leave, b's size and time."""

    first: int
    last: int
    page_size: int
    commit: int
    timestamp_ms: int
    latest_ms: int
    pages: dict[int, bytes]
    low: int  # the smallest size the database was cut to inside the range
    bytes: int = 0

    @classmethod
    def of(cls, txid: int, segment: ltx.Segment) -> Merge:
        header = segment.header
        merged = cls(txid, txid - 1, header.page_size, header.commit, header.timestamp_ms,
                     header.timestamp_ms, {}, header.commit)
        merged.add(txid, segment)
        return merged

    def add(self, txid: int, segment: ltx.Segment) -> bool:
        """Fold the next position in; ``False`` when it cannot be (not the next, other page
        size): the merge is then no longer usable."""
        header = segment.header
        if txid != self.last + 1 or header.page_size != self.page_size:
            return False
        for pgno, data in segment.pages.items():
            if pgno not in self.pages:
                self.bytes += len(data)
            self.pages[pgno] = data
        if header.commit < self.commit or header.commit < self.low:
            # A shrink drops the pages past it; pages it cut and nobody wrote again read back
            # as zeros once the file grows (``ltx.apply`` truncates, then extends).
            for pgno in [pgno for pgno in self.pages if pgno > header.commit]:
                self.bytes -= len(self.pages.pop(pgno))
            self.low = min(self.low, header.commit)
        self.last, self.commit = txid, header.commit
        self.timestamp_ms = header.timestamp_ms
        self.latest_ms = max(self.latest_ms, header.timestamp_ms)
        return True

    def encode(self) -> bytes:
        """The LTX file of the merge: min txid ``first``, max ``last``."""
        pages = dict(self.pages)
        lock = ltx.lock_pgno(self.page_size)
        zero = bytes(self.page_size)
        for pgno in range(self.low + 1, self.commit + 1):
            if pgno not in pages and pgno != lock:
                pages[pgno] = zero
        header = ltx.Header(self.page_size, self.commit, self.first, self.last,
                            self.timestamp_ms)
        return ltx.encode(header, sorted(pages.items()))


def merge(first: int, segments: Sequence[ltx.Segment]) -> bytes:
    """The compaction of ``segments``, the positions ``first, first + 1, …`` in order."""
    merged = Merge.of(first, segments[0])
    for offset, segment in enumerate(segments[1:], start=1):
        if not merged.add(first + offset, segment):
            raise ValueError(f"position {first + offset} cannot be merged (page size)")
    return merged.encode()


def same_state(a: ltx.Segment, b: ltx.Segment) -> bool:
    """Whether two LTX files change a database the same way (pages, size, range, time)."""
    return (a.header.page_size, a.header.commit, a.header.min_txid, a.header.max_txid,
            a.header.timestamp_ms, a.pages) == (
        b.header.page_size, b.header.commit, b.header.min_txid, b.header.max_txid,
        b.header.timestamp_ms, b.pages)


# -- pure: which compactions a holder writes --------------------------------------------------


def block(base: int, position: int, span: int) -> Range:
    """The run of ``span`` positions aligned on ``base`` that holds ``position``."""
    start = base + 1 + (position - base - 1) // span * span
    return start, start + span - 1


class Compactor:
    """Which compactions are due as positions land: one running merge per level.

    ``base`` is the newest base (the alignment); ``first`` the first position this writer may
    fold in (its own claim or first segment): a run that starts before it is skipped, since
    its earlier positions were written by someone else.
    """

    def __init__(self, base: int, first: int, spans: Sequence[int] = SPANS,
                 max_bytes: int = MAX_BYTES) -> None:
        self.spans = tuple(spans)
        self.max_bytes = max_bytes
        self.restart(base, first)

    def restart(self, base: int, first: int | None = None) -> None:
        """A new base at ``base``: runs align on it from the next position."""
        self.base = base
        self.first = base + 1 if first is None else first
        self._runs: list[Merge | None] = [None] * len(self.spans)

    def skip(self, txid: int) -> list[Merge]:
        """Position ``txid`` landed but is too large to merge (a full snapshot segment): no
        run holding it is compacted."""
        if txid > self.base:
            self._runs = [None] * len(self.spans)
        return []

    def landed(self, txid: int, segment: ltx.Segment) -> list[Merge]:
        """Position ``txid`` (this writer's own, landed) is in; the merges it completes,
        lowest level first."""
        due: list[Merge] = []
        if txid <= self.base or txid < self.first:
            return due
        for level, span in enumerate(self.spans):
            start, end = block(self.base, txid, span)
            run = self._runs[level]
            if txid == start and start >= self.first:
                run = Merge.of(txid, segment)
            elif run is not None and not run.add(txid, segment):
                run = None
            if run is not None and run.bytes > self.max_bytes:
                run = None
            if run is not None and txid == end:
                due.append(run)
                run = None
            self._runs[level] = run
        return due


# -- pure: which files a restore reads --------------------------------------------------------


def cover(first: int, last: int, ranges: Iterable[Range]) -> list[Range]:
    """The fewest steps from ``first`` to ``last``: at each position the largest listed
    compaction that starts there and ends by ``last``, else the single position."""
    by_start: dict[int, int] = {}
    for a, b in ranges:
        if b <= last and b > by_start.get(a, a - 1):
            by_start[a] = b
    steps: list[Range] = []
    number = first
    while number <= last:
        end = by_start.get(number, number)
        steps.append((number, end))
        number = end + 1
    return steps


def listed(ranges: Iterable[Range], after: int) -> tuple[Range, ...]:
    """The manifest's short list: ranges past the base at ``after``, none inside another."""
    kept = sorted({(a, b) for a, b in ranges if a > after and b >= a})
    return tuple(item for item in kept if not any(
        other != item and other[0] <= item[0] and item[1] <= other[1] for other in kept))


def aligned(bases: Iterable[int], first: int, last: int,
            spans: Sequence[int] = SPANS) -> list[Range]:
    """Every range a writer may have compacted inside ``first..last``: the blocks aligned on
    each base, up to the next one (where the compactor restarted). Retention deletes these
    keys with the positions (no LIST: most may not exist, which DeleteObjects ignores)."""
    points = sorted(set(bases))
    found: set[Range] = set()
    for index, base in enumerate(points):
        until = min(last, points[index + 1]) if index + 1 < len(points) else last
        for span in spans:
            start = base + 1
            while start + span - 1 <= until:
                if start >= first:
                    found.add((start, start + span - 1))
                start += span
    return sorted(found)


# -- the S3 edge -------------------------------------------------------------------------------


class Compactions:
    """The compacted segments of one chain under ``prefix``."""

    def __init__(self, objects: Objects, prefix: str) -> None:
        self.objects = objects
        self.prefix = prefix

    def key(self, generation: str, first: int, last: int) -> str:
        return f"{self.prefix}g/{generation}/c/{first:016x}-{last:016x}.ltx"

    def write(self, generation: str, merged: Merge, writer: Writer) -> Range:
        """Write the compaction of ``merged``'s range, never over another.

        A refusal is success: whoever wrote that key first wrote the same pure function of
        the same immutable positions.
        """
        body = merged.encode()
        metadata = {
            META_TOKEN: str(writer.token), META_HOLDER: writer.holder,
            META_SHA256: hashlib.sha256(body).hexdigest(), META_KIND: COMPACTION,
            META_GENERATION: generation, META_MIN_TXID: str(merged.first),
            META_TXID: str(merged.last), META_LATEST_MS: str(merged.latest_ms),
        }
        key = self.key(generation, merged.first, merged.last)
        # Refused: already compacted (our own lost answer, or another writer of the same).
        with contextlib.suppress(ConditionFailed):
            self.objects.put(key, body, metadata, ONLY_IF_ABSENT, content_type=LTX_TYPE)
        return merged.first, merged.last

    def get(self, generation: str, first: int, last: int) -> Found | None:
        """The verified compaction of ``first..last``; ``None`` when there is none.

        Raises ``CorruptSegment`` when its bytes fail their sha256 or the LTX checks, or its
        header names another range.
        """
        key = self.key(generation, first, last)
        fetched = self.objects.get(key)
        if fetched is None:
            return None
        where = f"s3://{self.objects.bucket}/{key}"
        found = info(generation, last, fetched.stored.metadata)
        if found.sha256 and hashlib.sha256(fetched.body).hexdigest() != found.sha256:
            raise CorruptSegment(where, "sha256 mismatch")
        segment = ltx.decode(fetched.body, where=where)
        if (segment.header.min_txid, segment.header.max_txid) != (first, last):
            raise CorruptSegment(where, f"holds {segment.header.min_txid}-"
                                 f"{segment.header.max_txid}, not {first}-{last}")
        return Found(found, segment, fetched.body)


def latest_ms(found: Found) -> int:
    """The newest timestamp inside a compaction's range (its header has the last one's)."""
    raw = found.info.metadata.get(META_LATEST_MS, "")
    return int(raw) if raw.isdigit() else found.segment.header.timestamp_ms


__all__ = [
    "COMPACTION", "FANOUT", "SPANS", "Compactions", "Compactor", "Merge", "aligned", "block",
    "cover",
    "latest_ms", "listed", "merge", "same_state",
]

"""Segments: the position-keyed, write-once objects of the chain (docs/replication.md §2, §3).

Each is an LTX file at ``KEY.wakeful/g/<generation>/<txid>.ltx``, written with
``IfNoneMatch: *`` and never overwritten, carrying its writer's token and holder. A refusal is
resolved by the object's metadata: our own write whose answer was lost is success, anything
else is ``PositionTaken`` (or ``Superseded`` when a newer token holds it). The claim, the
generation start and the generation end record are segments too, so every change of who
writes the chain is fenced by the same rule.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wakeful_replica import ltx
from wakeful_replica.errors import ConditionFailed, CorruptSegment, PositionTaken, Superseded
from wakeful_replica.objects import ONLY_IF_ABSENT, Objects

META_TOKEN = "wakeful-token"
META_HOLDER = "wakeful-holder"
META_SHA256 = "wakeful-sha256"
META_KIND = "wakeful-kind"
META_GENERATION = "wakeful-generation"
META_TXID = "wakeful-txid"
META_EPOCH = "wakeful-epoch"
META_PREVIOUS = "wakeful-previous-generation"
META_NEXT = "wakeful-next-generation"
META_ORIGIN = "wakeful-origin"
META_SNAPSHOT_SHA256 = "wakeful-snapshot-sha256"
META_CURRENT_VERSION = "wakeful-current-version"
META_CURRENT_ETAG = "wakeful-current-etag"

START, CLAIM, SEGMENT, SNAPSHOT, END = "start", "claim", "segment", "snapshot", "end"
KINDS = (START, CLAIM, SEGMENT, SNAPSHOT, END)
LTX_TYPE = "application/vnd.litestream.ltx"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Writer:
    """Who writes: the lease holder's id and fencing token."""

    holder: str
    token: int


@dataclass(frozen=True)
class SegmentInfo:
    generation: str
    txid: int
    kind: str
    token: int | None
    holder: str | None
    sha256: str | None
    metadata: dict[str, str] = field(default_factory=dict, compare=False)

    def is_by(self, writer: Writer) -> bool:
        return self.token == writer.token and self.holder == writer.holder


@dataclass(frozen=True)
class Found:
    """A verified segment read from the chain."""

    info: SegmentInfo
    segment: ltx.Segment
    body: bytes


@dataclass(frozen=True)
class Claimed:
    """A landed claim (or, when ``moved_to`` is set, none: the chain moved to a new generation).

    ``adopted`` are the segments stale holders landed first, in order, to apply before the app
    starts.
    """

    position: int
    adopted: tuple[Found, ...]
    moved_to: str | None = None


def generation_id(token: int, nonce: str) -> str:
    """``<token, 12 digits>-<nonce>``: sorts by who started it; two starts never collide."""
    return f"{token:012d}-{nonce}"


def empty_segment(page_size: int, commit: int, txid: int, timestamp_ms: int) -> bytes:
    """A segment that changes no page: a claim, a snapshot marker, an end record."""
    return ltx.encode(ltx.Header(page_size, commit, txid, txid, timestamp_ms), [])


class Segments:
    """The segments of one database's chain under ``prefix``."""

    def __init__(self, objects: Objects, prefix: str) -> None:
        self.objects = objects
        self.prefix = prefix

    def key(self, generation: str, txid: int) -> str:
        return f"{self.prefix}g/{generation}/{txid:016x}.ltx"

    def write(
        self, generation: str, body: bytes, writer: Writer, kind: str = SEGMENT,
        extra: dict[str, str] | None = None,
    ) -> SegmentInfo:
        """Write ``body`` (an LTX file) at the position its header names, never over another.

        Raises ``PositionTaken`` (carrying who holds it) when the position is taken by anyone
        but this very writer (whose earlier attempt may have landed with its answer lost).
        """
        txid = ltx.decode(body).header.max_txid
        key = self.key(generation, txid)
        digest = hashlib.sha256(body).hexdigest()
        metadata = {
            META_TOKEN: str(writer.token), META_HOLDER: writer.holder, META_SHA256: digest,
            META_KIND: kind, META_GENERATION: generation, META_TXID: str(txid), **(extra or {}),
        }
        try:
            self.objects.put(key, body, metadata, ONLY_IF_ABSENT, content_type=LTX_TYPE)
        except ConditionFailed as exc:
            there = self.head(generation, txid)
            if there is not None and there.is_by(writer) and there.sha256 == digest:
                return there  # our own write landed; its answer was lost
            raise PositionTaken(
                key, writer.token, there.holder if there else None,
                there.token if there else None,
            ) from exc
        return SegmentInfo(generation, txid, kind, writer.token, writer.holder, digest, metadata)

    def head(self, generation: str, txid: int) -> SegmentInfo | None:
        stored = self.objects.head(self.key(generation, txid))
        return None if stored is None else info(generation, txid, stored.metadata)

    def get(self, generation: str, txid: int) -> Found | None:
        """The verified segment at a position, ``None`` when there is none.

        Raises ``CorruptSegment`` when its bytes fail their sha256, the LTX checks, or do not
        sit at the position their header names.
        """
        key = self.key(generation, txid)
        fetched = self.objects.get(key)
        if fetched is None:
            return None
        where = f"s3://{self.objects.bucket}/{key}"
        found = info(generation, txid, fetched.stored.metadata)
        if found.sha256 and hashlib.sha256(fetched.body).hexdigest() != found.sha256:
            raise CorruptSegment(where, "sha256 mismatch")
        segment = ltx.decode(fetched.body, where=where)
        if segment.header.max_txid != txid:
            raise CorruptSegment(where, f"holds txid {segment.header.max_txid}, not {txid}")
        return Found(found, segment, fetched.body)

    # -- the claim and the generation records ------------------------------------------------

    def claim(
        self, generation: str, after: int, writer: Writer, page_size: int, commit: int,
        clock: Callable[[], int] = now_ms,
    ) -> Claimed:
        """Take the first free position past ``after`` (the end the holder restored).

        Each position found taken holds a segment an older holder landed first (acknowledged
        to its app): it is returned in ``adopted``, in order, to be applied before the app
        starts. A position taken by a *newer* token means this writer is stale. An end record
        found on the way means the chain moved to another generation: restore that one.
        """
        adopted: list[Found] = []
        position = after + 1
        while True:
            body = empty_segment(page_size, commit, position, clock())
            try:
                self.write(generation, body, writer, kind=CLAIM)
                return Claimed(position, tuple(adopted))
            except PositionTaken as taken:
                found = self._taken_by_older(generation, position, writer, taken)
                if found.info.kind == END:
                    return Claimed(position, tuple(adopted), moved_to=found.info.metadata.get(
                        META_NEXT))
                adopted.append(found)
                commit = found.segment.header.commit
                page_size = found.segment.header.page_size
                position += 1

    def start(
        self, generation: str, body: bytes, writer: Writer, epoch: int,
        previous: str | None, origin: str, current: tuple[str | None, str] | None,
        state_sha256: str,
    ) -> SegmentInfo:
        """Position 1 of a new generation: a full LTX snapshot of the state it starts from.

        ``current`` names the version of the current object K this start took into account
        (an operator's upload, the adopted v1 object), so a boot whose manifest update was
        lost still recognises it.
        """
        extra = {META_EPOCH: str(epoch), META_ORIGIN: origin, META_SNAPSHOT_SHA256: state_sha256}
        if previous:
            extra[META_PREVIOUS] = previous
        if current is not None:
            extra[META_CURRENT_VERSION] = current[0] or ""
            extra[META_CURRENT_ETAG] = current[1]
        return self.write(generation, body, writer, kind=START, extra=extra)

    def end(
        self, generation: str, after: int, writer: Writer, next_generation: str,
        page_size: int, commit: int, clock: Callable[[], int] = now_ms,
    ) -> Claimed:
        """End ``generation`` at its first free position past ``after``, naming the next one.

        Positions found taken by older holders are stepped over (returned in ``adopted``:
        their writes are part of the old chain, which stays whole for point-in-time restore).
        An end record already there (an older holder started a generation first) is
        ``moved_to``: the chain continues there, and this end is not written.
        """
        skipped: list[Found] = []
        position = after + 1
        while True:
            body = empty_segment(page_size, commit, position, clock())
            try:
                self.write(generation, body, writer, kind=END,
                           extra={META_NEXT: next_generation})
                return Claimed(position, tuple(skipped))
            except PositionTaken as taken:
                found = self._taken_by_older(generation, position, writer, taken)
                if found.info.kind == END:
                    return Claimed(position, tuple(skipped), moved_to=found.info.metadata.get(
                        META_NEXT))
                skipped.append(found)
                commit = found.segment.header.commit
                page_size = found.segment.header.page_size
                position += 1

    def _taken_by_older(
        self, generation: str, position: int, writer: Writer, taken: PositionTaken
    ) -> Found:
        if taken.token is not None and taken.token > writer.token:
            raise Superseded(taken.key, writer.token, taken.token) from taken
        found = self.get(generation, position)
        if found is None:  # taken, then gone: retention removed it below a snapshot
            raise taken
        return found


def info(generation: str, txid: int, metadata: dict[str, str]) -> SegmentInfo:
    raw = metadata.get(META_TOKEN, "")
    return SegmentInfo(
        generation, txid, metadata.get(META_KIND, SEGMENT),
        int(raw) if raw.isdigit() else None, metadata.get(META_HOLDER),
        metadata.get(META_SHA256), dict(metadata),
    )


__all__ = [
    "Claimed", "Found", "SegmentInfo", "Segments", "Writer", "empty_segment", "generation_id",
]

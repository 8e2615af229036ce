"""A holder's run on the chain: append segments, ship them in order, snapshot, stop.

``ChainWriter`` starts from a ``Booted`` (the claimed position) and is the only thing that
writes the chain during the run (docs/replication.md §3.3 to §3.5):

- ``append`` encodes one capture as the segment at the next position, queues it on disk and
  applies it to the shadow; ``ship`` writes what is queued, in order. S3 down: it stays queued
  (``SegmentQueue``, bounded); past the bound the capture is dropped and ``needs_full`` asks
  the agent for one full snapshot segment (``append_full``) once the queue drained;
- ``snapshot`` (when ``snapshot_due``, and at stop if anything changed): the marker at the next
  position, then ``K`` with the exact state there (from the shadow), then the manifest naming
  it; split in ``begin_snapshot`` / ``write_current`` / ``publish`` so the upload of ``K`` can
  run while segments keep shipping;
- ``stop``: ships everything, snapshots if needed, records the clean stop in the manifest.

The first refusal from the chain (``Superseded``, ``PositionTaken``) fences the writer: that
call and every later one raise ``Fenced``; the agent stops the app and keeps its file aside.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from chalicelib.errors import StoreError, StoreUnavailable
from chalicelib.files import remove_file
from chalicelib.integrity import check
from wakeful_replica import cadence, ltx
from wakeful_replica.boot import RESUMED, Booted
from wakeful_replica.chain import (
    META_SNAPSHOT_SHA256,
    SNAPSHOT,
    Writer,
    empty_segment,
    now_ms,
)
from wakeful_replica.compaction import Compactor, Merge, Range
from wakeful_replica.current import accounted, file_snapshot
from wakeful_replica.errors import (
    Fenced,
    OutOfBandUpload,
    PositionTaken,
    QueueFull,
    Superseded,
)
from wakeful_replica.manifest import OBJECT, Base, Manifest, Stop
from wakeful_replica.objects import Stored
from wakeful_replica.queue import SegmentQueue
from wakeful_replica.shadow import Shadow
from wakeful_replica.store import ChainStore

FENCING = (Superseded, PositionTaken)
DEFAULT_POLICY = cadence.Policy()


@dataclass(frozen=True)
class Shipped:
    shipped: int  # segments that landed in this call
    queued: int  # still waiting for S3
    needs_full: bool  # the queue overflowed: ``append_full`` once ``queued`` is 0
    error: StoreUnavailable | None = None


@dataclass(frozen=True)
class PendingSnapshot:
    """A snapshot under way: its marker landed at ``txid``; ``path`` holds that exact state."""

    txid: int
    path: str
    sha256: str
    size: int
    timestamp_ms: int
    reason: str
    stored: Stored | None = None


@dataclass(frozen=True)
class Stopped:
    position: int
    snapshot: Base | None
    manifest: Manifest
    warnings: tuple[str, ...]
    wrote_current: bool = False  # this stop wrote ``K`` (``snapshot`` names that version)
    skipped: str | None = None  # why the stop's snapshot was not written (the chain has it all)


class ChainWriter:
    def __init__(
        self, store: ChainStore, writer: Writer, booted: Booted, work_dir: str,
        policy: cadence.Policy = DEFAULT_POLICY,
        queue: SegmentQueue | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = now_ms,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.writer = writer
        self.generation = booted.generation
        self.policy = policy
        self.work_dir = work_dir
        os.makedirs(work_dir, exist_ok=True)
        # Not ``queue or …``: an empty queue is falsy.
        self.queue = queue if queue is not None else SegmentQueue(
            os.path.join(work_dir, "queue"))
        self.shadow = Shadow(os.path.join(work_dir, "shadow.db"), booted.path)
        self.next_position = booted.position + 1
        self.shipped_position = booted.position
        self.manifest = booted.manifest
        self.snapshot_base = booted.snapshot
        self.current_etag = booted.current.etag if booted.current is not None else None
        self._clock = clock
        self._wall_ms = wall_ms
        self._sleep = sleep
        self._since = cadence.Since(changed=booted.changed_since_snapshot)
        self._since_started = clock()
        self._manifest_at = (booted.position, clock())
        self._page_size, self._commit = _shape(self.shadow)
        self.fenced: Fenced | None = None
        self.warnings: list[str] = []
        self.compactions = store.compactions
        self._compactor = _compactor(booted, self._page_size, self._commit, policy)
        self._compacted: list[Range] = []  # landed since the manifest last named them
        self._restarts: list[int] = []  # full segments that landed: the compactor restarted

    # -- appending --------------------------------------------------------------------------

    @property
    def needs_full(self) -> bool:
        return self.queue.overflowed

    def append(
        self, pages: dict[int, bytes], commit: int, page_size: int,
        timestamp_ms: int | None = None,
    ) -> int | None:
        """The segment of one capture at the next position; ``None`` when it was dropped
        (the queue overflowed: a full snapshot segment replaces it later)."""
        self._check_fence()
        if self.queue.overflowed:
            return None
        position = self.next_position
        header = ltx.Header(page_size, commit, position, position,
                            timestamp_ms or self._wall_ms())
        body = ltx.encode(header, sorted(pages.items()))
        try:
            self.queue.push(position, body)
        except QueueFull as exc:
            self.warnings.append(f"{exc}: captures are dropped until a full snapshot")
            return None
        self._appended(body)
        return position

    def append_full(
        self, page_size: int, commit: int, pages: Iterable[tuple[int, bytes]],
        timestamp_ms: int | None = None,
    ) -> int:
        """A full snapshot segment (min txid 1) at the next position: the whole database.

        After a capture ``Reset`` or a queue overflow. It waits in the queue like any segment
        (past the bound: it replaces everything that was dropped).
        """
        self._check_fence()
        position = self.next_position
        header = ltx.Header(page_size, commit, 1, position, timestamp_ms or self._wall_ms())
        body = ltx.encode(header, pages)
        self.queue.push(position, body, bounded=False)
        self.queue.end_overflow()
        self._appended(body)
        return position

    def _appended(self, body: bytes) -> None:
        segment = ltx.decode(body)
        self.shadow.apply(segment)
        self.next_position += 1
        self._page_size, self._commit = segment.header.page_size, segment.header.commit
        if segment.header.is_snapshot:
            # A full segment holds the whole state: reading it costs a restore what reading a
            # snapshot of K at this position would, so it does not count toward one being due
            # (a first capture of a large file would otherwise make K due at once, only for
            # the stop to write K again).
            self._since = dataclasses.replace(
                self._since, positions=self._since.positions + 1, changed=True)
            return
        self._since = dataclasses.replace(
            self._since, bytes=self._since.bytes + len(body),
            positions=self._since.positions + 1,
            changed=self._since.changed or bool(segment.pages),
        )

    # -- shipping ---------------------------------------------------------------------------

    def ship(self, extras: bool = True) -> Shipped:
        """Write queued segments in order until the queue is empty or S3 does not answer.

        With ``extras``, then the compactions they completed and the manifest when it is due;
        a stop's drain leaves them out, so nothing but its segments stands before the durable
        point (the stop's manifest update comes after, and a run left uncompacted costs a
        restore a few GETs, never a state).
        """
        self._check_fence()
        shipped = 0
        error: StoreUnavailable | None = None
        due: list[Merge] = []
        while (item := self.queue.peek()) is not None:
            body = item.read()
            try:
                self._guarded(lambda body=body: self.store.segments.write(
                    self.generation, body, self.writer))
            except StoreUnavailable as exc:
                error = exc
                break
            self.queue.pop(item.txid)
            self.shipped_position = item.txid
            shipped += 1
            # Only now, landed with our token, may the position be part of a compaction.
            segment = ltx.decode(body)
            if segment.header.is_snapshot:
                # A full segment holds the whole state: runs align on it from the next
                # position, so what follows it compacts whatever came before; the manifest
                # names the restart for retention.
                self._compactor.restart(item.txid)
                self._restarts.append(item.txid)
            elif len(body) <= self._compactor.max_bytes:
                due += self._compactor.landed(item.txid, segment)
            else:
                due += self._compactor.skip(item.txid)
        if due and error is None and extras:
            self._compact(due)
        if shipped and error is None and extras:
            self._maybe_advance_manifest()
        return Shipped(shipped, len(self.queue), self.queue.overflowed, error)

    def _compact(self, due: list[Merge]) -> None:
        """Write the compactions the landed positions completed; a failed one is skipped
        (a restore reads its positions instead)."""
        for merged in due:
            try:
                self._compacted.append(
                    self.compactions.write(self.generation, merged, self.writer))
            except StoreUnavailable:
                continue

    def _maybe_advance_manifest(self) -> None:
        since_position, since_time = self._manifest_at
        # A landed compaction moves the manifest too: named there, a restore reads it
        # instead of its positions, and probes only past it.
        if self._compacted or cadence.manifest_due(
            self.policy, self.shipped_position - since_position, self._clock() - since_time
        ):
            with contextlib.suppress(StoreUnavailable):
                self.advance_manifest()  # a hint: when it fails, the next one or the probe

    def advance_manifest(self, stopped: Stop | None = None) -> Manifest:
        position = self.shipped_position
        compacted = tuple(self._compacted)
        restarts = tuple(self._restarts)

        def change(seen: Manifest | None) -> Manifest:
            base = seen or self.manifest
            return dataclasses.replace(
                base, generation=self.generation, position=max(position, base.position)
                if base.generation == self.generation else position,
                token=self.writer.token, holder=self.writer.holder, stopped=stopped,
            ).with_compactions(self.generation, compacted).with_restarts(
                self.generation, restarts)

        self.manifest = self._guarded(lambda: self.store.manifests.update(change))
        self._manifest_at = (position, self._clock())
        del self._compacted[:len(compacted)]
        del self._restarts[:len(restarts)]
        return self.manifest

    # -- snapshots --------------------------------------------------------------------------

    def snapshot_due(self) -> bool:
        since = dataclasses.replace(self._since, seconds=self._clock() - self._since_started)
        return cadence.snapshot_due(self.policy, since, self.shadow.size)

    @property
    def changed_since_snapshot(self) -> bool:
        return self._since.changed

    def begin_snapshot(self, reason: str = "periodic") -> PendingSnapshot:
        """Ship the queue, write the marker at the next position, copy the state there.

        ``StoreUnavailable`` when the queue cannot be shipped first (try later).
        """
        shipped = self.ship()
        if shipped.queued or shipped.needs_full:
            raise shipped.error or StoreUnavailable("segments still queued")
        timestamp = self._wall_ms()
        path = os.path.join(self.work_dir, "snapshot.db")
        sha = self.shadow.copy(path)
        size = os.path.getsize(path)
        if size:
            check(path)
        position = self.next_position
        body = empty_segment(self._page_size, self._commit, position, timestamp)
        self._guarded(lambda: self.store.segments.write(
            self.generation, body, self.writer, kind=SNAPSHOT,
            extra={META_SNAPSHOT_SHA256: sha}))
        self.next_position += 1
        self.shipped_position = position
        self._since = cadence.Since()
        self._since_started = self._clock()
        # The marker's state is the next base: compactions restart after it.
        self._compactor.restart(position)
        return PendingSnapshot(position, path, sha, size, timestamp, reason)

    def write_current(self, pending: PendingSnapshot) -> PendingSnapshot:
        """PUT the pending snapshot as ``K`` (``OutOfBandUpload`` when an operator's is there)."""
        stored = self._guarded(lambda: self.store.current.write(
            file_snapshot(pending.path, pending.sha256), self.writer, self.generation,
            pending.txid, self.current_etag, pending.reason,
        ))
        self.current_etag = stored.etag
        return dataclasses.replace(pending, stored=stored)

    def publish(self, pending: PendingSnapshot, stopped: Stop | None = None) -> Base:
        """Name the written snapshot in the manifest (only forward: a newer one stays)."""
        stored = pending.stored
        assert stored is not None
        base = Base(self.generation, pending.txid, pending.timestamp_ms, pending.sha256,
                    pending.size, OBJECT, stored.version_id, stored.etag)
        position = max(self.shipped_position, pending.txid)

        def change(seen: Manifest | None) -> Manifest:
            start = seen or self.manifest
            updated = dataclasses.replace(
                start, generation=self.generation, position=max(position, start.position)
                if start.generation == self.generation else position,
                token=self.writer.token, holder=self.writer.holder,
                accounted=accounted(stored), stopped=stopped,
            )
            newest = updated.snapshot
            if newest is None or newest.generation != self.generation or (
                newest.txid < base.txid
            ):
                updated = updated.with_base(base)
            else:
                updated = dataclasses.replace(
                    updated, history=tuple(sorted({*updated.history, base},
                                                  key=lambda item: item.txid)))
            return updated

        self.manifest = self._guarded(lambda: self.store.manifests.update(change))
        self._manifest_at = (position, self._clock())
        self.snapshot_base = base
        remove_file(pending.path)
        return base

    def snapshot(self, reason: str = "periodic", backup: bool = False) -> Base:
        pending = self.write_current(self.begin_snapshot(reason))
        base = self.publish(pending)
        if backup and pending.stored is not None:
            self.store.current.backup(pending.stored)
        return base

    # -- stopping ---------------------------------------------------------------------------

    def stop(
        self, deadline_s: float = 30.0, retry_every_s: float = 0.2,
        keep_trying: Callable[[], bool] = lambda: True,
        on_retry: Callable[[StoreUnavailable], None] = lambda _exc: None,
    ) -> Stopped:
        """``drain`` then ``finish``: everything shipped, ``K`` snapshotted, the stop recorded."""
        self.drain(deadline_s, retry_every_s, keep_trying, on_retry)
        return self.finish()

    def drain(
        self, deadline_s: float = 30.0, retry_every_s: float = 0.2,
        keep_trying: Callable[[], bool] = lambda: True,
        on_retry: Callable[[StoreUnavailable], None] = lambda _exc: None,
    ) -> int:
        """Ship everything queued (the stop's durable point); returns the shipped position.

        ``StoreUnavailable`` when the queue cannot be shipped before the deadline, or once
        ``keep_trying`` says no (the local file holds what is not in S3: keep it aside).
        """
        ends = self._clock() + deadline_s
        while True:
            shipped = self.ship(extras=False)
            if not shipped.queued:
                break
            error = shipped.error or StoreUnavailable("segments still queued at stop")
            on_retry(error)
            if self._clock() >= ends or not keep_trying():
                raise error
            self._sleep(retry_every_s)
        if self.queue.overflowed:
            raise StoreUnavailable("captures were dropped: a full snapshot segment is needed")
        return self.shipped_position

    def finish(self) -> Stopped:
        """After ``drain``: snapshot ``K`` if anything changed since the last one, and record
        the clean stop in the manifest.

        An operator's upload at ``K`` skips the snapshot (a warning); the stop is still
        recorded. The timestamped backup of ``K`` is the caller's (after the lease is released).
        """
        base = self.snapshot_base
        wrote = False
        if self._since.changed:
            try:
                base = self.snapshot(reason="shutdown")
                wrote = True
            except OutOfBandUpload as exc:
                self.warnings.append(f"{exc}; the next boot starts a generation from it")
        record = Stop(self.writer.holder, self.writer.token, self.shipped_position,
                      time.time(), base.sha256 if base else None)
        manifest = self.advance_manifest(stopped=record)
        return Stopped(self.shipped_position, base, manifest, tuple(self.warnings), wrote)

    # -- fencing ----------------------------------------------------------------------------

    def _guarded(self, call: Callable[[], object]):
        try:
            return call()
        except FENCING as exc:
            self.fenced = Fenced(exc)
            raise self.fenced from exc

    def _check_fence(self) -> None:
        if self.fenced is not None:
            raise self.fenced


def _compactor(
    booted: Booted, page_size: int, commit: int, policy: cadence.Policy
) -> Compactor:
    """The compactor of a run: aligned on the newest base; it folds in this writer's own
    positions only, from its claim (an empty segment it wrote at boot) on."""
    base = booted.snapshot.txid if (
        booted.snapshot is not None and booted.snapshot.generation == booted.generation) else 1
    # A full segment after the base restarted the alignment of the holder that shipped it:
    # align the same way, so retention finds every compaction key from the manifest alone.
    restarts = [point for point in booted.manifest.restarts.get(booted.generation, ())
                if base < point <= booted.position]
    base = max([base, *restarts])
    if booted.how != RESUMED:
        return Compactor(base, booted.position + 1, policy.compaction_spans)
    compactor = Compactor(base, booted.position, policy.compaction_spans)
    claim = empty_segment(page_size, commit, booted.position, booted.timestamp_ms)
    compactor.landed(booted.position, ltx.decode(claim))
    return compactor


def _shape(shadow: Shadow) -> tuple[int, int]:
    size = shadow.size
    if size < 100:
        return 4096, 0
    with open(shadow.path, "rb") as handle:
        header = handle.read(100)
    raw = int.from_bytes(header[16:18], "big")
    page_size = 65536 if raw == 1 else raw
    return page_size, size // page_size


__all__ = ["ChainWriter", "PendingSnapshot", "Shipped", "Stopped", "StoreError"]

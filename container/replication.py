"""The agent's ``chain`` replication (WAKEFUL_REPLICATION=chain): changed pages as fenced segments.

The calls and their order are the contract of docs/replication.md §11: ``boot`` after the lease
is acquired and before the app starts, ``sync`` each interval (capture → append → ship →
checkpoint → snapshot when due), ``stop`` once the app has stopped. Every call that reaches
AWS goes through the agent's ``call`` (bounded by the lease's trust, or the stop budget).

Retention (docs/replication.md §9) runs inside ``sync``, once after boot and after each
snapshot published (``container.retention``): never on its own schedule, never failing a sync.

Fencing: ``Fenced``/``Superseded`` mean a newer holder owns the chain; the agent stops the app
and keeps its file aside. ``ChainBroken`` means the chain cannot be restored to its end: the
app must not start on an older state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import LeaseLost, StoreError, WakefulError
from chalicelib.files import remove_file
from chalicelib.observability import MetricUnit, emit
from container.backups import timestamped_backup
from container.capture import Capture, Delta, Full
from container.deadline import Budget, call_within
from container.placement import move_into_place, sidecars
from container.retention import DAY, Retention
from container.sync import Caller, Holding
from wakeful_replica import boot as chain_boot
from wakeful_replica import cadence
from wakeful_replica.boot import Booted
from wakeful_replica.chain import Writer
from wakeful_replica.errors import ChainBroken, Fenced, OutOfBandUpload, Superseded
from wakeful_replica.manifest import OBJECT
from wakeful_replica.store import ChainStore
from wakeful_replica.writer import ChainWriter, PendingSnapshot, Stopped

SNAPSHOT, CHAIN = "snapshot", "chain"

# How long a manual snapshot waits for a periodic one already uploading.
SNAPSHOT_WAIT_SECONDS = 60.0

# What a newer holder's claim looks like from here: stop writing, keep the file aside.
CHAIN_FENCING = (Fenced, Superseded)

__all__ = ["CHAIN", "CHAIN_FENCING", "SNAPSHOT", "ChainBroken", "ChainSync", "SyncedChain"]


@dataclass(frozen=True)
class SyncedChain:
    appended: int  # segments appended by this sync
    shipped: int  # segments that landed in S3
    queued: int  # still waiting for S3
    snapshot: bool  # a snapshot of the whole database was named in the manifest


def work_dir(local_path: str) -> str:
    """Beside the database, never inside the app's schema: the queue and the shadow copy."""
    return local_path + ".wakeful-chain"


class ChainSync:
    def __init__(
        self, local_path: str, store: ChainStore, keeper: Holding, log: Any, metrics: Any,
        call: Caller, clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.local_path = local_path
        self.store = store
        self.keeper = keeper
        self.log = log
        self.metrics = metrics
        self._call = call
        self._clock = clock
        self.work_dir = work_dir(local_path)
        self.capture = Capture(local_path)
        self.writer: ChainWriter | None = None
        self.retention = Retention(store, log, metrics, call, wall)
        # A snapshot at least every half window while running, so the oldest base a restore
        # point inside the window needs keeps moving and retention can let the rest go.
        self.policy = cadence.Policy(max_age_s=store.retention_days * DAY / 2)
        # The upload of ``K`` runs beside the syncs (segments keep shipping meanwhile); its
        # thread and what it gave back (``value`` or ``error``).
        self._uploading: tuple[threading.Thread, dict[str, Any]] | None = None
        # A snapshot whose marker landed but whose ``K`` did not: the stop must write one.
        self._snapshot_owed = False
        # ``K`` failed its check at boot: snapshot at the first sync, even with no writes.
        self._repair_current = False

    @property
    def identity(self) -> Writer:
        return Writer(self.keeper.holder, self.keeper.token)

    # -- boot -------------------------------------------------------------------------------

    def boot(self) -> Booted:
        """Restore the chain's end into the local path, claim the next position, and take the
        capture's baseline from the file as restored."""
        os.makedirs(self.work_dir, exist_ok=True)
        incoming = os.path.join(self.work_dir, "boot.db")
        remove_file(incoming)
        store, identity = self.store, self.identity
        self.log.info("Checking for existing database in S3...")
        booted = self._call(lambda: chain_boot.boot(store, identity, incoming), "restore the chain")
        self.log.info(
            f"Chain booted: {booted.how}",
            extra={"how": booted.how, "generation": booted.generation,
                   "position": booted.position, "token": identity.token},
        )
        for failure in booted.failures:
            self.log.error(failure)
            emit(self.metrics, "DownloadFallback")
            self._repair_current = True
        for warning in booted.warnings:
            self.log.warning(f"Replication: {warning}")
            emit(self.metrics, "ReplicationWarning", phase="boot")
        # The writer's shadow starts as a copy of the state restored: before it moves.
        self.writer = ChainWriter(store, identity, booted, self.work_dir, policy=self.policy)
        restored = os.path.exists(incoming)
        url = f"s3://{store.bucket}/{store.key}"
        if restored:
            self.log.info("Database found in S3. Downloading...")
            move_into_place(incoming, self.local_path)
            # The seed's lines, which operators' log filters look for.
            self.log.info(f"Database downloaded successfully from {url}",
                          extra={"generation": booted.generation, "position": booted.position})
            shutil.copyfile(self.local_path, self.local_path + ".backup")
            self.log.info(f"Backup created at {self.local_path}.backup")
        elif booted.how != chain_boot.FRESH:
            # The chain's state is the empty database: a file left here is not it.
            for path in (self.local_path, *sidecars(self.local_path)):
                remove_file(path)
            self.log.info(f"The database in {url} is empty. Starting with a fresh database")
        elif os.path.exists(self.local_path):
            self.log.info("No database found in S3. Keeping the local database; "
                          "the first sync will upload it")
        else:
            self.log.info("No database found in S3. Starting with a fresh database")
        if restored:
            # What was restored is in the chain already: capture only what comes after it.
            self.capture.baseline()
        return booted

    # -- each sync --------------------------------------------------------------------------

    def sync(self, reason: str, snapshot: bool = False) -> SyncedChain:
        """Capture, append, ship; checkpoint what shipped; snapshot when due, or now when
        ``snapshot`` is asked (a manual ``upload``: ``K`` then holds every committed row).

        ``StoreUnavailable`` when S3 did not take the queue (it stays queued, bounded, for the
        next sync); ``Fenced`` when a newer holder owns the chain.
        """
        synced = self._sync(reason)
        if not snapshot:
            return synced
        self._snapshot_now(reason)
        return dataclasses.replace(synced, snapshot=True)

    def _sync(self, reason: str) -> SyncedChain:
        writer = self.writer
        assert writer is not None
        started = self._clock()
        appended = self._append(self.capture.read(), writer)
        if not appended and not len(writer.queue):
            # Idle: no request, but a snapshot upload that finished is still published, and
            # one that came due (its age: the retention window) or a corrupt ``K`` found at
            # boot is written.
            busy = (self._uploading is not None or self._repair_current
                    or writer.snapshot_due())
            published = busy and self._snapshot_step(writer, 0)
            self._retain(writer)
            return SyncedChain(0, 0, 0, published)
        shipped = self._call(writer.ship, "ship segments")
        if shipped.needs_full and not shipped.queued:
            appended += self._append(self.capture.read_full("the segment queue overflowed"),
                                     writer)
            shipped = self._call(writer.ship, "ship segments")
        if shipped.error is not None:
            raise shipped.error
        if not shipped.queued:
            self.capture.checkpoint()
        snapshot = self._snapshot_step(writer, shipped.queued)
        self._retain(writer)
        seconds = self._clock() - started
        self.log.info(
            "Segments shipped",
            extra={"reason": reason, "appended": appended, "shipped": shipped.shipped,
                   "position": writer.shipped_position, "snapshot": snapshot,
                   "seconds": round(seconds, 3)},
        )
        emit(self.metrics, "SyncDuration", seconds, MetricUnit.Seconds, reason=reason)
        return SyncedChain(appended, shipped.shipped, shipped.queued, snapshot)

    # -- snapshots ----------------------------------------------------------------------------

    def _snapshot_now(self, reason: str) -> None:
        """A snapshot of ``K`` at the chain's end, written before returning, and its backup."""
        writer = self.writer
        assert writer is not None
        self._settle_snapshot(writer, lambda: SNAPSHOT_WAIT_SECONDS)
        base = self._call(lambda: writer.snapshot(reason=reason), "write a snapshot")
        self._snapshot_owed = False
        self.log.info(f"Snapshot written to s3://{self.store.bucket}/{self.store.key}",
                      extra={"position": base.txid, "size": base.size, "reason": reason})
        database = self.store.current.database
        info = self._call(lambda: database.head(version_id=base.version_id), "find the snapshot")
        if info is not None:
            timestamped_backup(database, info, self.log, self._call)

    def _snapshot_step(self, writer: ChainWriter, queued: int) -> bool:
        """Publish a finished upload of ``K``, or start one when due; ``True`` once published.

        The marker goes first, on this thread (it is a position in the chain); only the PUT
        of ``K`` runs in the background, so segments keep shipping while it uploads.
        """
        if self._uploading is not None:
            thread, outcome = self._uploading
            if thread.is_alive():
                return False
            self._uploading = None
            return self._published(writer, outcome)
        if queued or not (writer.snapshot_due() or self._repair_current):
            return False
        pending = self._call(writer.begin_snapshot, "write a snapshot marker")
        self._repair_current = False
        self._snapshot_owed = True
        box: dict[str, Any] = {}

        def upload() -> None:
            try:
                box["value"] = self._call(lambda: writer.write_current(pending),
                                          "upload the snapshot")
            except BaseException as exc:  # handed to the sync that publishes it
                box["error"] = exc

        uploader = threading.Thread(target=upload, name="wakeful-snapshot", daemon=True)
        uploader.start()
        self._uploading = (uploader, box)
        return False

    def _published(self, writer: ChainWriter, outcome: dict[str, Any]) -> bool:
        error = outcome.get("error")
        if isinstance(error, (*CHAIN_FENCING, LeaseLost)):
            raise error
        if isinstance(error, OutOfBandUpload):
            # Never written over; the next boot starts a generation from it.
            self.log.warning(f"Replication: {error}")
            emit(self.metrics, "ReplicationWarning", phase="snapshot")
            self._snapshot_owed = False
            return False
        if error is not None:
            # Every segment is in the chain; only the shortcut for restores is late.
            self.log.warning(f"Failed to write a snapshot: {error}; the stop writes one")
            emit(self.metrics, "SnapshotFailed")
            return False
        pending: PendingSnapshot = outcome["value"]
        base = self._call(lambda: writer.publish(pending), "publish the snapshot")
        self._snapshot_owed = False
        self.log.info(
            f"Snapshot written to s3://{self.store.bucket}/{self.store.key}",
            extra={"position": base.txid, "size": base.size, "sha256": base.sha256},
        )
        self.retention.after_snapshot()
        return True

    def _retain(self, writer: ChainWriter) -> None:
        """The retention pass when one is due (no request otherwise)."""
        applied = self.retention.run(writer.manifest)
        if applied is not None:
            writer.manifest = applied

    def _settle_snapshot(self, writer: ChainWriter, remaining: Callable[[], float]) -> None:
        """At stop: let an upload under way finish (inside the budget) and publish it."""
        if self._uploading is None:
            return
        thread, outcome = self._uploading
        thread.join(max(0.0, remaining()))
        if thread.is_alive():
            raise TimeoutError("the snapshot upload did not finish within the stop budget")
        self._uploading = None
        self._published(writer, outcome)

    def _append(self, captured: Delta | Full | None, writer: ChainWriter) -> int:
        if captured is None:
            return 0
        if isinstance(captured, Delta):
            return int(writer.append(captured.pages, captured.commit, captured.page_size)
                       is not None)
        if captured.reason is not None:
            self.log.warning(
                f"Capture reset: {captured.reason}; shipping a full snapshot segment",
                extra={"path": self.local_path},
            )
            emit(self.metrics, "CaptureReset")
        writer.append_full(captured.page_size, captured.commit, captured.pages)
        return 1

    # -- stop -------------------------------------------------------------------------------

    def stop(
        self, remaining: Callable[[], float], keep_trying: Callable[[], bool] = lambda: True,
        reserve: float = 0.0,
    ) -> Stopped:
        """The final capture and its segment (the durable point), then, in what is left of
        the stop budget less ``reserve`` seconds (kept for the release), the snapshot of ``K``
        if it changed and the stop recorded in the manifest.

        Shipping is retried inside the budget until ``keep_trying`` says no; its failure is
        raised (the local file holds what is not in S3). A snapshot that does not fit is
        skipped, loudly: every row is in the chain already. The timestamped backup is the
        caller's, after the release.
        """
        writer = self.writer
        assert writer is not None
        self.log.info("Uploading database to S3...")
        self._append(self.capture.read(), writer)

        def retrying(exc: Exception) -> None:
            self.log.warning(f"Failed to upload database: {exc}; retrying")

        # The final segment first: durable within about a second of the stop signal, however
        # long the snapshot under way takes.
        position = self._call(
            lambda: writer.drain(max(0.0, remaining()), keep_trying=keep_trying,
                                 on_retry=retrying),
            "ship the final segment",
        )
        self.log.info(
            f"Final segment shipped to s3://{self.store.bucket}/{self.store.prefix}",
            extra={"position": position},
        )
        try:
            optional = Budget(self._clock() + remaining() - reserve, self._clock)
            with self._calls_within(optional):
                stopped = self._finish(writer, optional.remaining)
        except (*CHAIN_FENCING, LeaseLost):
            raise
        except (StoreError, WakefulError, OSError) as exc:
            skipped = (
                f"Snapshot skipped: {exc}. Every committed row is in the chain at "
                f"s3://{self.store.bucket}/{self.store.prefix} (position {position}); "
                f"s3://{self.store.bucket}/{self.store.key} is behind it until the next stop"
            )
            self.log.warning(skipped)
            emit(self.metrics, "FinalSnapshotSkipped")
            stopped = Stopped(position, writer.snapshot_base, writer.manifest,
                              tuple(writer.warnings), False, skipped)
        for warning in stopped.warnings:
            self.log.warning(f"Replication: {warning}")
            emit(self.metrics, "ReplicationWarning", phase="stop")
        base = stopped.snapshot
        held = base is not None and base.source == OBJECT
        proof = {
            "holder": self.keeper.holder, "token": self.keeper.token, "reason": "shutdown",
            "at": time.time(), "generation": writer.generation, "position": stopped.position,
            "sha256": base.sha256 if base else None, "size": base.size if base else 0,
            # The version of K holding that state, as the whole-file layout records it.
            "key": self.store.key, "etag": base.etag if held else None,
            "version_id": base.version_id if held else None,
        }
        # The control plane's verified stop reads this as well as the manifest's ``stopped``
        # (which a skipped snapshot may have left unwritten).
        self._call(lambda: self.keeper.record_upload(proof), "record the stop")
        if stopped.snapshot is not None and stopped.snapshot.source == OBJECT and (
            not stopped.warnings and stopped.skipped is None
        ):
            self.log.info(f"Database uploaded successfully to s3://{self.store.bucket}/"
                          f"{self.store.key}",
                          extra={"position": stopped.position, "snapshot": proof["sha256"],
                                 "written": stopped.wrote_current})
        return stopped

    def _finish(self, writer: ChainWriter, remaining: Callable[[], float]) -> Stopped:
        self._settle_snapshot(writer, remaining)
        owed = self._snapshot_owed and not writer.changed_since_snapshot
        if owed:
            # A periodic snapshot's marker landed but its ``K`` did not, and nothing changed
            # since: ``finish`` alone would not write ``K``, which must hold the final state.
            self._call(lambda: writer.snapshot(reason="shutdown"), "write the final snapshot")
        stopped = self._call(writer.finish, "write the final snapshot")
        return dataclasses.replace(stopped, wrote_current=True) if owed else stopped

    @contextlib.contextmanager
    def _calls_within(self, end: Budget) -> Iterator[None]:
        """Every call inside also gives up at ``end`` (earlier than the agent's own bound)."""
        outer = self._call

        def bounded(fn: Callable[[], Any], what: str) -> Any:
            return outer(lambda: call_within(fn, end, what), what)

        self._call = bounded
        try:
            yield
        finally:
            self._call = outer

    def close(self) -> None:
        self.capture.close()


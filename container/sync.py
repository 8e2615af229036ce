"""Fenced uploads of consistent snapshots: the one way the agent writes S3."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.files import remove_file
from chalicelib.lease import Lease
from chalicelib.observability import MetricUnit, emit
from chalicelib.store import DatabaseStore, ObjectInfo, UploadIntent
from container import state
from container.backups import Caller, timestamped_backup
from container.changes import ChangeWatcher
from container.snapshot import take, take_quiescent

# Reasons whose uploads also leave a timestamped backup; periodic uploads are covered by
# bucket versioning and would otherwise churn the backup list.
BACKUP_REASONS = frozenset({"shutdown", "manual", "restore"})



def direct(fn: Callable[[], Any], _what: str) -> Any:
    return fn()


class Holding(Protocol):
    """The lease a sync writes under: the agent's keeper, or a manual command's hold."""

    @property
    def holder(self) -> str: ...

    @property
    def token(self) -> int: ...

    def renew(self) -> Lease: ...

    def record_upload(self, upload: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class SyncResult:
    uploaded: bool
    info: ObjectInfo | None
    seconds: float
    reason: str


class Syncer:
    """Snapshot → check → renew lease → compare-and-swap upload → record → backup.

    ``FencingError`` and ``LeaseLost`` propagate: the caller treats both as a lost fence.
    """

    def __init__(
        self,
        local_path: str,
        store: DatabaseStore,
        keeper: Holding,
        base_etag: str | None,
        log,
        metrics,
        clock: Callable[[], float] = time.monotonic,
        call: Caller = direct,
    ) -> None:
        self.local_path = local_path
        self.store = store
        self.keeper = keeper
        self.etag = base_etag
        self.log = log
        self.metrics = metrics
        self._clock = clock
        self._call = call
        self._watcher = ChangeWatcher(local_path)
        self._pending = True

    def start_watching(self, dirty: bool = False) -> None:
        """From now on only commits after this call count as changes (or all, if ``dirty``)."""
        self._watcher.mark()
        self._pending = dirty

    def needed(self) -> bool:
        return self._pending or self._watcher.changed()

    def sync(self, reason: str, force: bool = False, backup: bool = True) -> SyncResult:
        """Upload if the database changed (or ``force``); ``backup=False`` leaves the
        timestamped backup to the caller (the final upload releases the lease first)."""
        started = self._clock()
        if not os.path.exists(self.local_path):
            self.log.info("No local database yet; nothing to upload", extra={"reason": reason})
            if reason == "shutdown":
                # Still the control plane's proof that this stop lost nothing.
                proof = {
                    "holder": self.keeper.holder, "token": self.keeper.token,
                    "reason": reason, "at": time.time(), "size": 0,
                    "note": "no local database: nothing to upload",
                }
                self._call(lambda: self.keeper.record_upload(proof), "record the upload")
            return SyncResult(False, None, 0.0, reason)
        if not force and not self.needed():
            return SyncResult(False, None, 0.0, reason)
        # Mark before the snapshot: commits that land during it count for the next sync.
        self._watcher.mark()
        self._pending = True
        snapshot_path = self.local_path + ".snapshot"
        try:
            self.log.info("Uploading database to S3...", extra={"reason": reason})
            # The final upload may hold the write lock briefly; periodic ones never block the app.
            snapshot = (take_quiescent if reason == "shutdown" else take)(
                self.local_path, snapshot_path
            )
            self._call(self.keeper.renew, "renew the lease")
            intent = UploadIntent(self.keeper.holder, self.keeper.token, reason)
            etag = self.etag
            info = self._call(lambda: self.store.upload(snapshot, etag, intent), "upload")
            self.etag = info.etag
            self._pending = False
            self._call(lambda: self.keeper.record_upload(info.describe()), "record the upload")
        finally:
            remove_file(snapshot_path)
        seconds = self._clock() - started
        state.update(self.local_path, {"etag": info.etag, "last_upload": info.describe()})
        self.log.info(
            f"Database uploaded successfully to {self.store.url}",
            extra={
                "reason": reason,
                "size": info.size,
                "sha256": info.sha256,
                "version_id": info.version_id,
                "token": self.keeper.token,
                "seconds": round(seconds, 3),
            },
        )
        emit(self.metrics, "SyncDuration", seconds, MetricUnit.Seconds, reason=reason)
        emit(self.metrics, "DatabaseSize", info.size, MetricUnit.Bytes)
        if backup and reason in BACKUP_REASONS:
            self.backup(info)
        return SyncResult(True, info, seconds, reason)

    def backup(self, info: ObjectInfo, call: Caller | None = None) -> None:
        """Timestamped backup and retention; a failure here never fails the sync.

        ``call`` bounds its calls differently (after the release: by the stop budget alone).
        """
        timestamped_backup(self.store, info, self.log, call or self._call)

    def close(self) -> None:
        self._watcher.close()

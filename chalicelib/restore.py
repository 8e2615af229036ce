"""Restore: make a backup or an older version the current database, under a renewed lease.

The one restore both doors run (``wakeful-agent restore`` inside a container, ``wakeful
restore`` from an operator's machine); they differ only in who they say holds the lease and
how they show progress. The lease keeps any agent from starting on the database meanwhile; the
upload is a compare-and-swap like every other, so nothing written meanwhile is overwritten.

Agent and operator tools only: the source is checked with SQLite (``chalicelib.integrity``)
before it is uploaded, so the control plane never imports this module.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib import text
from chalicelib.errors import LeaseHeld, WakefulError
from chalicelib.files import Snapshot
from chalicelib.hold import LeaseHold, refusal
from chalicelib.integrity import fetch_verified
from chalicelib.lease import Lease, LeaseTable
from chalicelib.sources import label
from chalicelib.store import DatabaseStore, ObjectInfo, UploadIntent

# How long a restore whose process died keeps others out; renewed every third of it meanwhile.
RESTORE_TTL = 30.0


class Transfer(Protocol):
    """Progress of one transfer: called with the bytes moved since the last call."""

    def __call__(self, moved: int) -> None: ...

    def finish(self) -> None: ...


# ``watch(kind, what, size)`` is called before each transfer, ``kind`` being "download" (``what``
# names the source) or "upload" (``what`` is the store's URL); it may return a ``Transfer``.
Watch = Callable[[str, str, int], Transfer | None]


def _unwatched(_kind: str, _what: str, _size: int) -> Transfer | None:
    return None


def _ignore(_error: WakefulError) -> None:
    pass


def restore(
    table: LeaseTable,
    store: DatabaseStore,
    source: ObjectInfo,
    holder: str,
    ttl: float = RESTORE_TTL,
    watch: Watch = _unwatched,
    scratch: str | None = None,
    on_release_failure: Callable[[WakefulError], None] = _ignore,
) -> ObjectInfo:
    """Make ``source`` the current object; returns the new current object.

    Raises ``LeaseHeld`` (someone is live on the lease: nothing was done), ``LeaseLost`` or
    ``FencingError`` (another writer came in meanwhile: nothing was overwritten),
    ``CorruptDatabase`` (the source does not verify) or ``StoreUnavailable``.
    """
    with LeaseHold(table, holder, ttl, on_release_failure) as hold, tempfile.TemporaryDirectory(
        dir=scratch, prefix="wakeful-restore-"
    ) as folder:
        path = os.path.join(folder, "restore.sqlite3")
        progress = watch("download", label(source), source.size)
        digest = fetch_verified(store, source, path, progress=progress, full=True)
        _finish(progress)
        current = store.head()
        snapshot = Snapshot(path=path, sha256=digest, size=os.path.getsize(path))
        hold.renew()
        progress = watch("upload", store.url, snapshot.size)
        info = store.upload(
            snapshot,
            current.etag if current else None,
            UploadIntent(holder, hold.token, "restore"),
            progress=progress,
        )
        _finish(progress)
        hold.record_upload(info.describe())
        store.create_backup(info)
        store.prune_backups()
    return info


def _finish(progress: Transfer | None) -> None:
    if progress is not None:
        progress.finish()


@dataclass(frozen=True)
class Preview:
    """What a restore of ``source`` would do, found out without changing anything."""

    source: ObjectInfo
    current: ObjectInfo | None
    sha256: str
    rows: dict[str, int]
    lease: Lease
    now: float

    @property
    def refusal(self) -> LeaseHeld | None:
        """The refusal the restore would meet now: someone is live on the lease."""
        return refusal(self.lease, self.now)

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "source": {"label": label(self.source), **self.source.describe()},
            "current": self.current.describe() if self.current else None,
            "check": {"ok": True, "rows": dict(self.rows), "size": self.source.size,
                      "sha256": self.sha256},
            "lease": {"state": self.lease.state, "holder": self.lease.holder,
                      "would_take": self.refusal is None},
        }

    def lines(self, url: str) -> list[str]:
        """What both doors print for a dry run."""
        source, current, lease = self.source, self.current, self.lease
        origin = ", ".join(part for part in (
            f"stored {text.moment(source.last_modified.timestamp(), self.now)}",
            f"{source.reason} upload" if source.reason else "no wakeful metadata",
            f"by {source.holder}" if source.holder else "",
            f"token {source.token}" if source.token is not None else "",
        ) if part)
        now_there = (f"version {current.version_id} ({text.size(current.size)})"
                     if current else "no current object")
        total = sum(self.rows.values())
        tables = ", ".join(f"{name} {count}" for name, count in self.rows.items()) or "no tables"
        if self.refusal is None:
            taking = (f"the restore would take the lease {lease.name!r} (now {lease.state}, "
                      f"token {lease.token} -> {lease.token + 1}) for as long as it runs")
        else:
            taking = (f"the lease {lease.name!r} is {lease.state} by {lease.holder}: "
                      "the restore would be refused")
        return [
            f"would restore {label(source)} ({origin})",
            f"  as {url}, which is now {now_there}",
            f"check: {text.size(source.size)}, sha256 {self.sha256[:12]}…, integrity_check ok, "
            f"{total} rows ({tables})",
            taking,
            "nothing was changed (dry run)",
        ]


def preview(
    table: LeaseTable,
    store: DatabaseStore,
    source: ObjectInfo,
    watch: Watch = _unwatched,
    scratch: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Preview:
    """The dry run of ``restore``: the source is downloaded and checked exactly as the restore
    would check it (checksum, ``integrity_check``), its rows are counted, and the lease is
    read, not taken. Nothing in S3 or DynamoDB is written.

    Raises ``CorruptDatabase`` (the source does not verify) or ``StoreUnavailable``.
    """
    with tempfile.TemporaryDirectory(dir=scratch, prefix="wakeful-restore-") as folder:
        path = os.path.join(folder, "restore.sqlite3")
        progress = watch("download", label(source), source.size)
        digest = fetch_verified(store, source, path, progress=progress, full=True)
        _finish(progress)
        rows = count_rows(path)
    return Preview(source, store.head(), digest, rows, table.read(), clock())


# "Every table of the schema that SQLite did not make for itself."
USER_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"


def count_rows(path: str) -> dict[str, int]:
    """Rows per table of a verified database file, opened read-only."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [row[0] for row in db.execute(USER_TABLES + " ORDER BY name")]
        return {
            name: int(db.execute(f'SELECT count(*) FROM "{name.replace(chr(34), chr(34) * 2)}"')
                      .fetchone()[0])
            for name in names
        }
    finally:
        db.close()

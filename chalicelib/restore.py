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
import tempfile
from collections.abc import Callable
from typing import Protocol

from chalicelib.errors import WakefulError
from chalicelib.files import Snapshot
from chalicelib.hold import LeaseHold
from chalicelib.integrity import fetch_verified
from chalicelib.lease import LeaseTable
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

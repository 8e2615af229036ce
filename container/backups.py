"""The timestamped backup ``K.backup.YYYYMMDD_HHMMSS`` a graceful stop leaves (seed layout).

Both replication modes make it the same way, after the lease is released and only in what is
left of the stop budget: bucket versioning already keeps the version it copies, so a backup
must never delay the release or fail the stop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.store import DatabaseStore, ObjectInfo

# Runs one AWS call, named for its errors: the agent's bounds each wait by its lease's trust.
Caller = Callable[[Callable[[], Any], str], Any]


def timestamped_backup(store: DatabaseStore, info: ObjectInfo, log: Any, call: Caller) -> None:
    """Copy the version ``info`` to a timestamped backup, then prune past the retention count.

    A backup identical to the newest one is skipped: a backend woken and put back to sleep
    without writes must not push distinct restore points out of the retention window.
    """
    try:
        newest = call(store.newest_backup, "find the newest backup")
        if newest is not None and info.sha256 and newest.sha256 == info.sha256:
            log.info(f"Backup skipped: unchanged since backup {newest.key}")
            return
        log.info("Creating timestamped backup in S3...")
        backup = call(lambda: store.create_backup(info), "create a backup")
        pruned = call(store.prune_backups, "prune backups")
    except Exception as exc:  # the database itself is safely in S3
        log.warning(f"Failed to create timestamped backup: {exc}")
        return
    log.info(f"Backup created at s3://{store.bucket}/{backup.key}", extra={"pruned": pruned})

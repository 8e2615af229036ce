"""What an agent does to the lease and the store, done with the same chalicelib calls it uses.

For tests of the control plane that need "the agent acquired / uploaded / released" without
running an agent process (the end-to-end test runs the real one).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from chalicelib.lease import Lease, LeaseTable
from chalicelib.ledger import TaskLedger
from chalicelib.settings import ControlPlaneSettings
from chalicelib.store import DatabaseStore, ObjectInfo, UploadIntent
from container.snapshot import take


class AgentDouble:
    def __init__(self, settings: ControlPlaneSettings, holder: str, workdir: Path) -> None:
        location = settings.location
        self.table = LeaseTable(location.lease_table, location.lease_name)
        self.ledger = TaskLedger(location.lease_table, location.lease_name)
        self.store = DatabaseStore(location.bucket, location.key)
        self.holder = holder
        self.db = workdir / "db.sqlite3"
        self.lease: Lease | None = None
        self.etag: str | None = None

    def acquire(self, reservation_id: str | None = None) -> Lease:
        """Take the lease and mark the task a holder in the ledger, as the agent's boot does."""
        self.lease = self.table.acquire(
            self.holder, ttl=60, reservation_id=reservation_id, task_arn=self.holder
        )
        self.ledger.mark_held(self.holder, self.lease.token)
        # The double's "app" answers at once, as a real agent's with no port to probe does.
        self.lease = self.table.mark_ready(self.holder, self.lease.token)
        return self.lease

    def write(self, rows: int = 1) -> None:
        with sqlite3.connect(self.db) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS notes (body TEXT)")
            conn.executemany("INSERT INTO notes VALUES (?)", [(f"row {i}",) for i in range(rows)])
        conn.close()

    def upload(self, reason: str) -> ObjectInfo:
        assert self.lease is not None
        snapshot = take(str(self.db), str(self.db) + ".snapshot")
        info = self.store.upload(
            snapshot, self.etag, UploadIntent(self.holder, self.lease.token, reason)
        )
        self.etag = info.etag
        self.table.record_upload(self.holder, self.lease.token, info.describe())
        return info

    def release(self) -> None:
        assert self.lease is not None
        self.table.release(self.holder, self.lease.token)

"""One holder's run for the tests: boot on the chain, an app writing rows, capture, ship.

The app is a real SQLite connection (rollback journal) on the holder's own file; capture is
the real ``PageTracker``; the chain is the real ``boot`` + ``ChainWriter`` on moto. A row is
*acknowledged* once the segment holding it landed in S3 (nothing of it is still queued).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import boto3

from tests.conftest import BUCKET
from wakeful_replica import cadence
from wakeful_replica.boot import Booted, boot
from wakeful_replica.chain import Writer
from wakeful_replica.pages import Changes, PageTracker, Reset
from wakeful_replica.queue import SegmentQueue
from wakeful_replica.store import ChainStore
from wakeful_replica.writer import ChainWriter, Shipped

KEY = "db.sqlite3"


class Holder:
    def __init__(
        self, store: ChainStore, name: str, token: int, work: Path,
        policy: cadence.Policy | None = None, queue_bytes: int | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.writer = Writer(name, token)
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.path = work / "db.sqlite3"
        self.booted: Booted = boot(store, self.writer, str(self.path))
        fresh = not self.path.exists()
        self.tracker = PageTracker(str(self.path)) if not fresh else None
        if self.tracker is not None:
            self.tracker.snapshot()  # the restored state is the chain's: the baseline
        self.app = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.app.execute("CREATE TABLE IF NOT EXISTS rows (id TEXT PRIMARY KEY, body BLOB)")
        queue = SegmentQueue(str(work / "queue"), max_bytes=queue_bytes) if queue_bytes else None
        self.chain = ChainWriter(store, self.writer, self.booted, str(work / "replica"),
                                 policy=policy or cadence.Policy(), queue=queue)
        self.count = 0
        self.uncaptured: list[str] = []
        self.captured: list[str] = []
        self.acked: set[str] = set()
        if fresh:
            self.tracker = PageTracker(str(self.path))
            page_size, commit, pages = self.tracker.snapshot()
            self.chain.append_full(page_size, commit, pages)
            self._settle(self.chain.ship())

    def insert(self, count: int = 1, size: int = 200) -> list[str]:
        ids = [f"{self.name}-{self.count + n}" for n in range(count)]
        self.count += count
        self.app.execute("BEGIN")
        self.app.executemany("INSERT INTO rows (id, body) VALUES (?, randomblob(?))",
                             [(row, size) for row in ids])
        self.app.execute("COMMIT")
        self.uncaptured += ids
        return ids

    def sync(self) -> Shipped:
        """One sync: capture what committed, append it, ship what is queued."""
        assert self.tracker is not None
        capture = self.tracker.read()
        if isinstance(capture, Changes):
            if self.chain.append(capture.pages, capture.commit, capture.page_size) is None:
                self.uncaptured = self.captured + self.uncaptured
                self.captured = []
            else:
                self.captured += self.uncaptured
                self.uncaptured = []
        elif isinstance(capture, Reset):
            raise AssertionError(capture.reason)
        if self.chain.needs_full and not self.chain.queue.peek():
            self.full()
        return self._settle(self.chain.ship())

    def full(self) -> Shipped:
        assert self.tracker is not None
        page_size, commit, pages = self.tracker.snapshot()
        self.chain.append_full(page_size, commit, pages)
        self.captured += self.uncaptured
        self.uncaptured = []
        return self._settle(self.chain.ship())

    def _settle(self, shipped: Shipped) -> Shipped:
        if not shipped.queued and not shipped.needs_full:
            self.acked |= set(self.captured)
        return shipped

    def close(self) -> None:
        self.app.close()
        if self.tracker is not None:
            self.tracker.close()


def rows_of(path: str | Path) -> set[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT id FROM rows")}
    finally:
        db.close()


def current_rows(path: Path) -> set[str]:
    """The rows of the current object K, as ``aws s3 cp s3://…/db.sqlite3`` gives it."""
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
    path.write_bytes(body)
    return rows_of(path)


def upload_plain(source: Path) -> str:
    """An operator's ``aws s3 cp good.db s3://bucket/db.sqlite3``: no wakeful metadata."""
    response = boto3.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=source.read_bytes())
    return response.get("VersionId")

"""A chain with a known history, written by the replica library's own holder.

One holding of the lease (a real token from the lease table), an app committing batches of
rows, each batch captured and shipped as its own segment, then a graceful stop (final
snapshot, stop record) and the lease released: what an agent in chain mode leaves behind.
Each batch records its rows, its position and a moment between it and the next one, so a test
can ask for the state "as of" a time between two segments.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from pathlib import Path

from chalicelib.lease import LeaseTable
from tests.conftest import BUCKET, TABLE
from tests.replica.holder import Holder
from wakeful_replica.chain import now_ms
from wakeful_replica.store import ChainStore

KEY = "db.sqlite3"
LEASE = f"{BUCKET}/{KEY}"


@dataclasses.dataclass(frozen=True)
class Batch:
    rows: frozenset[str]  # every row committed up to and including this batch
    generation: str
    txid: int  # the position that holds it
    after_ms: int  # a moment after its segment was captured and before the next one


def written(
    work: Path, batches: int = 3, rows: int = 4, name: str = "agent-a", stop: bool = True
) -> list[Batch]:
    """Run one holding that commits ``batches`` batches of ``rows`` rows, one segment each,
    then stops gracefully (``stop``), or ends as a crash does: no snapshot, no stop record."""
    table = LeaseTable(TABLE, LEASE)
    lease = table.acquire(name, ttl=60)
    holder = Holder(ChainStore(BUCKET, KEY), name, lease.token, work)
    found: list[Batch] = []
    try:
        committed: set[str] = set()
        for _ in range(batches):
            committed |= set(holder.insert(rows))
            holder.sync()
            txid = holder.chain.shipped_position
            found.append(Batch(frozenset(committed), holder.booted.generation, txid,
                               _a_moment_later()))
        if stop:
            holder.chain.stop()
    finally:
        holder.close()
        table.release(name, lease.token)
    return found


def _a_moment_later() -> int:
    """A millisecond stamp strictly between the segment just captured and the next one."""
    mark = now_ms() + 2
    while now_ms() <= mark + 2:
        time.sleep(0.002)
    return mark


def epoch_arg(ms: int) -> str:
    """How an operator passes a moment with millisecond precision: epoch seconds."""
    return f"{ms / 1000:.3f}"


def rows_in(path: Path) -> set[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT id FROM rows")}
    finally:
        db.close()

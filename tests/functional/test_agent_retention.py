"""Retention in the agent's chain mode, as a real process: moto over HTTP, real SQLite, signals.

With a window of a few seconds (``WAKEFUL_RETENTION``), a run of some windows writes several
snapshots (at least one every half window); after each one the agent removes the segments below
the oldest base a restore point inside the window can need. What is inside the window still
restores to the rows committed by then; what is before the oldest base is refused, clearly.
Retention runs only while the agent is awake and after a snapshot: an idle agent sends nothing.
"""

from __future__ import annotations

import datetime as dt
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.agent_harness import (
    AgentProcess,
    commits,
    env_for,
    s3_rows,
    wait_for,
    writer,
)
from tests.fault_proxy import Request
from wakeful_replica.errors import NothingToRestore
from wakeful_replica.store import ChainStore

BUCKET, KEY = "wakeful-test-db", "db.sqlite3"
WINDOW = 3.0  # seconds: WAKEFUL_RETENTION
# How late a commit can be captured: the sync interval, and generous slack for a loaded machine.
CAPTURE_LAG = 3.0


def _env(base: dict[str, str], tmp_path: Path, name: str, **extra: str) -> dict[str, str]:
    return env_for(base, tmp_path, name, WAKEFUL_REPLICATION="chain",
                   WAKEFUL_RETENTION=f"{WINDOW:g}", WAKEFUL_SYNC_INTERVAL="0.3", **extra)


def _rows(path: Path) -> list[int]:
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [row for (row,) in db.execute("SELECT id FROM rows ORDER BY id")]
    finally:
        db.close()


def _snapshots(agent: AgentProcess) -> int:
    return sum(m.startswith("Snapshot written to") for m in agent.messages())


def _deletes(requests: list[Request]) -> list[Request]:
    """S3 DeleteObjects (``POST /bucket?delete``) and DeleteObject requests."""
    return [r for r in requests if r.service == "s3" and (
        r.method == "DELETE" or (r.method == "POST" and "delete" in r.query.split("&")))]


def _run_for_some_windows(agent: AgentProcess, log: Path, windows: float) -> None:
    agent.wait_running()
    wait_for(lambda: (found := commits(log)) and found[-1][1] - found[0][1] >= windows * WINDOW,
             timeout=90, what=f"the writer to run {windows:g} windows")


def test_old_segments_go_and_every_restore_point_inside_the_window_still_restores(
    agent_env, tmp_path
):
    env = _env(agent_env, tmp_path, "a")
    log = tmp_path / "writes.log"
    agent = AgentProcess(env, writer(env, log), tmp_path, "a")
    _run_for_some_windows(agent, log, 5)
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output()
    stopped_at = time.time()

    store = ChainStore(BUCKET, KEY)
    manifest = store.read_manifest()
    assert manifest is not None and len(manifest.lineage) == 1
    generation = manifest.generation
    oldest = manifest.history[0]
    # Retention moved the chain's start forward: the positions below the oldest base kept are
    # gone from S3 (the first one included), and that base and everything after it is there.
    assert oldest.txid > 1, (manifest.history, agent.output())
    assert manifest.retained.get(generation) == oldest.txid
    for position in range(1, oldest.txid):
        assert store.head_segment(generation, position) is None, position
    assert store.head_segment(generation, oldest.txid) is not None
    assert _snapshots(agent) >= 3, agent.output()

    acknowledged = commits(log)
    ids = [row for row, _ in acknowledged]
    # Every restore point inside the window (measured back from the stop) gives the rows
    # committed by then: a prefix of what was acknowledged, holding every row committed a
    # capture's lag before it, and none committed after it.
    for step in range(5):
        at = stopped_at - WINDOW + step * WINDOW / 4
        target = tmp_path / f"at-{step}.sqlite3"
        store.restore(str(target), at=dt.datetime.fromtimestamp(at, dt.UTC))
        restored = _rows(target)
        assert restored == ids[: len(restored)], at
        assert {row for row, when in acknowledged if when <= at - CAPTURE_LAG} <= set(restored)
        assert not {row for row, when in acknowledged if when > at + 1.0} & set(restored)
    # Before the oldest base kept, a point is outside the window and is refused, saying so.
    first_commit = acknowledged[0][1]
    with pytest.raises(NothingToRestore, match="outside the retention window"):
        store.restore(str(tmp_path / "too-old.sqlite3"),
                      at=dt.datetime.fromtimestamp(first_commit, dt.UTC))
    # The chain's end is every row, and the seed's `aws s3 cp` promise holds.
    store.restore(str(tmp_path / "now.sqlite3"))
    assert _rows(tmp_path / "now.sqlite3") == ids
    assert [row for row, _ in s3_rows()] == ids
    assert store.verify(str(tmp_path)).ok

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
import sys
import time
from pathlib import Path

import pytest

from tests.agent_harness import (
    IDLE,
    AgentProcess,
    commits,
    committed_ids,
    env_for,
    s3_rows,
    wait_for,
    writer,
)
from tests.fault_proxy import Request, fault_proxy
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


def _is_delete(request: Request) -> bool:
    return bool(_deletes([request]))


@pytest.mark.parametrize("status", [403, 503])
def test_a_refused_delete_is_a_warning_and_the_app_keeps_running_and_syncing(
    agent_env, tmp_path, moto_server, status
):
    with fault_proxy(moto_server.url) as proxy:
        refused = proxy.fail(status, _is_delete, code="AccessDenied" if status == 403 else None)
        env = _env(agent_env, tmp_path, "a", AWS_ENDPOINT_URL_S3=proxy.url)
        log = tmp_path / "writes.log"
        agent = AgentProcess(env, writer(env, log), tmp_path, "a")
        agent.wait_running()

        def failures() -> list[str]:
            return [m for m in agent.messages() if m.startswith("Retention failed")]

        wait_for(lambda: len(failures()) >= 2, timeout=90,
                 what="retention to fail after two snapshots")
        # The sync went on: segments ship and snapshots land after each refusal.
        shipped = sum(m == "Segments shipped" for m in agent.messages())
        rows = len(committed_ids(log))
        wait_for(lambda: sum(m == "Segments shipped" for m in agent.messages()) >= shipped + 3
                 and len(committed_ids(log)) >= rows + 20, what="the app and the sync to go on")
        assert agent.process.poll() is None
        assert refused.hits >= 2
        # Once S3 takes deletes again, the next snapshot's pass removes what was left.
        proxy.remove(refused)
        wait_for(lambda: any(m.startswith("Retention removed") for m in agent.messages()),
                 timeout=60, what="retention to succeed after the fault")
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0, agent.output()
    assert "tried again after the next snapshot" in failures()[0]
    assert not any(m.startswith("Failed to ship segments") for m in agent.messages())
    ids = committed_ids(log)
    assert [row for row, _ in s3_rows()] == ids
    store = ChainStore(BUCKET, KEY)
    store.restore(str(tmp_path / "now.sqlite3"))
    assert _rows(tmp_path / "now.sqlite3") == ids
    manifest = store.read_manifest()
    assert manifest is not None and manifest.history[0].txid > 1
    assert store.head_segment(manifest.generation, 1) is None


def test_an_idle_agent_sends_no_request_for_retention(agent_env, tmp_path, moto_server):
    """A chain with bases in it; the next agent's app writes nothing. Windows pass while it is
    awake (its lease renewals show it), and not one S3 request is sent: retention waits for a
    snapshot, and a snapshot for a change."""
    first_env = _env(agent_env, tmp_path, "first")
    log = tmp_path / "writes.log"
    first = AgentProcess(first_env, writer(first_env, log), tmp_path, "first")
    _run_for_some_windows(first, log, 2)
    first.signal(signal.SIGTERM)
    assert first.wait() == 0, first.output()

    with fault_proxy(moto_server.url) as proxy:
        env = _env(agent_env, tmp_path, "idle", AWS_ENDPOINT_URL_S3=proxy.url,
                   AWS_ENDPOINT_URL_DYNAMODB=proxy.url, WAKEFUL_LEASE_TTL="3")
        agent = AgentProcess(env, [sys.executable, IDLE], tmp_path, "idle")
        agent.wait_running()
        # The first sync is done (and with it the pass due after boot).
        wait_for(lambda: agent.state().get("sync_outcome") is not None, what="the first sync")
        proxy.clear_log()

        def renewals() -> list[Request]:
            return [r for r in proxy.requests if r.target == "UpdateItem"]

        wait_for(lambda: len(found := renewals()) >= 2
                 and found[-1].at - found[0].at >= 2 * WINDOW,
                 timeout=60, what="two windows of lease renewals")
        idle = proxy.requests
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0, agent.output()
    s3 = [f"{r.method} {r.path}" for r in idle if r.service == "s3"]
    assert s3 == [], s3
    assert [row for row, _ in s3_rows()] == committed_ids(log)

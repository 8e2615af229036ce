"""The agent with WAKEFUL_REPLICATION=chain as a real process: real SQLite, signals, moto over HTTP.

The app's commits ship as position-keyed segments; a graceful stop still leaves the whole
database at ``s3://…/db.sqlite3`` (the seed's promise).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest

from chalicelib.settings import AgentSettings
from container.agent import Agent
from container.wiring import Wiring, wire
from tests.agent_harness import (
    IDLE,
    AgentProcess,
    chain_rows,
    child_pid,
    commits,
    committed_ids,
    env_for,
    lease_item,
    s3_rows,
    seed_database,
    wait_for,
    writer,
)
from tests.fault_proxy import Request, fault_proxy, s3_put
from wakeful_replica.sqlite import Versions
from wakeful_replica.store import ChainStore

BUCKET, KEY = "wakeful-test-db", "db.sqlite3"
SEGMENTS = KEY + ".wakeful/"


def _env(base: dict[str, str], tmp_path: Path, name: str, **extra: str) -> dict[str, str]:
    return env_for(base, tmp_path, name, WAKEFUL_REPLICATION="chain", **extra)


def _local_rows(path: str) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [row for (row,) in db.execute("SELECT id FROM rows ORDER BY id")]
    finally:
        db.close()


def _uploaded_bytes(request: Request) -> int:
    headers = {name.lower(): value for name, value in request.headers.items()}
    return int(headers.get("x-amz-decoded-content-length") or headers.get("content-length") or 0)


def _segment_puts(requests: list[Request]) -> list[Request]:
    return [r for r in requests if r.service == "s3" and r.method == "PUT" and SEGMENTS in r.path]


@pytest.mark.parametrize("mode", ["wal", "delete"])
def test_graceful_stop_leaves_every_row_in_the_current_object_and_the_next_agent_gets_them(
    agent_env, tmp_path, mode
):
    env = _env(agent_env, tmp_path, "first", WAKEFUL_SYNC_INTERVAL="1")
    log = tmp_path / "writes.log"
    first = AgentProcess(env, writer(env, log, mode=mode), tmp_path, "first")
    first.wait_running()
    wait_for(lambda: len(committed_ids(log)) >= 40, what="40 committed rows")
    first.signal(signal.SIGTERM)
    assert first.wait() == 0, first.output()

    acknowledged = committed_ids(log)
    assert [row for row, _ in s3_rows()] == acknowledged  # the seed's `aws s3 cp` promise
    assert chain_rows(tmp_path / "check") == acknowledged
    assert any(m.startswith("Chain booted: fresh") for m in first.messages()), first.output()
    lease = lease_item()
    assert lease.state == "FREE"
    manifest = ChainStore(BUCKET, KEY).read_manifest()
    assert manifest is not None and manifest.stopped is not None
    # The proof of a clean stop, where today's control plane reads it and in the manifest.
    assert lease.last_upload["reason"] == "shutdown"
    assert int(lease.last_upload["position"]) == manifest.stopped.position

    second_env = _env(agent_env, tmp_path, "second")  # an empty disk of its own
    second = AgentProcess(second_env, writer(second_env, log, mode=mode), tmp_path, "second")
    second.wait_running()
    assert any(m.startswith("Chain booted: resumed") for m in second.messages()), second.output()
    wait_for(lambda: len(committed_ids(log)) >= len(acknowledged) + 10, what="more rows")
    second.signal(signal.SIGTERM)
    assert second.wait() == 0, second.output()
    every = committed_ids(log)
    assert every[: len(acknowledged)] == acknowledged
    assert [row for row, _ in s3_rows()] == every


def test_sigkill_loses_nothing_acknowledged_before_interval_plus_one_upload(agent_env, tmp_path):
    env = _env(agent_env, tmp_path, "a", WAKEFUL_SYNC_INTERVAL="1")
    log = tmp_path / "writes.log"
    agent = AgentProcess(env, writer(env, log), tmp_path, "a")
    agent.wait_running()
    interval, one_upload = 1.0, 2.0
    # Long enough that some commits are older than the window the guarantee allows.
    wait_for(lambda: (found := commits(log)) and time.time() - found[0][1] > 2 * (
        interval + one_upload), timeout=60, what="the writer to run a while")
    wait_for(lambda: sum(m == "Segments shipped" for m in agent.messages()) >= 2,
             what="two shipped syncs")
    time.sleep(random.uniform(0.0, 0.9))  # anywhere in the interval, mid-upload included
    app = child_pid(agent.pid)
    killed_at = time.time()
    agent.process.kill()
    agent.wait()
    if app is not None:
        with contextlib.suppress(ProcessLookupError):  # gone already with its agent
            os.kill(app, signal.SIGKILL)
    restored = set(chain_rows(tmp_path / "after-kill"))
    # The guarantee: what was acknowledged more than one interval and one upload before the
    # kill is in the chain. The slack for one upload is generous (a loaded test machine).
    must_have = [row for row, at in commits(log) if at < killed_at - interval - one_upload]
    assert must_have, "the writer acknowledged nothing early enough to check"
    assert set(must_have) <= restored
    # And what restored is a prefix of what was acknowledged: no hole, nothing invented.
    acknowledged = committed_ids(log)
    assert sorted(restored) == acknowledged[: len(restored)]


def test_a_paused_holder_whose_write_lands_before_the_new_holders_first_write_loses_nothing(
    agent_env, tmp_path, moto_server
):
    """The chain twin of test_agent_lifecycle's xfail (issue 10): B claimed its position at
    boot, so A's delayed segment lands on a taken key and is refused."""
    with fault_proxy(moto_server.url) as proxy:
        env_a = _env(agent_env, tmp_path, "a", AWS_ENDPOINT_URL_S3=proxy.url,
                     WAKEFUL_LEASE_TTL="1.5", WAKEFUL_SYNC_INTERVAL="0.3")
        log_a = tmp_path / "a.log"
        a = AgentProcess(env_a, writer(env_a, log_a), tmp_path, "a")
        a.wait_running()
        wait_for(lambda: len(_segment_puts(proxy.requests)) >= 2, what="A's first segments")
        # A's next segment leaves A, and A is paused with it in flight.
        in_flight = proxy.hold(s3_put(SEGMENTS))
        wait_for(lambda: in_flight.hits, what="A's next segment to be sent")
        app_a = wait_for(lambda: child_pid(a.pid), what="A's app")
        os.kill(a.pid, signal.SIGSTOP)
        os.kill(app_a, signal.SIGSTOP)
        wait_for(lambda: lease_item().expires_at < time.time(), timeout=10,
                 what="A's lease to expire")

        env_b = _env(agent_env, tmp_path, "b")  # ships only at its stop
        log_b = tmp_path / "b.log"
        b = AgentProcess(env_b, writer(env_b, log_b), tmp_path, "b")
        b.wait_running()
        wait_for(lambda: len(committed_ids(log_b)) >= 10, what="B's rows")
        # Before B's first segment, the network delivers A's write; then A resumes.
        proxy.release(in_flight)
        wait_for(lambda: in_flight.answered, what="A's write to be answered")
        os.kill(app_a, signal.SIGCONT)
        os.kill(a.pid, signal.SIGCONT)
        assert a.wait(timeout=30) == 5, a.output()
        assert any(m.startswith("Local database kept aside at") for m in a.messages()), a.output()

        b.signal(signal.SIGTERM)
        assert b.wait() == 0, b.output()
    rows = {row for row, _ in s3_rows()}
    assert set(committed_ids(log_b)) <= rows
    assert set(committed_ids(log_b)) <= set(chain_rows(tmp_path / "check"))


def test_steady_writing_sends_no_list_and_ships_only_the_changed_pages(
    agent_env, tmp_path, moto_server
):
    """A 5 MB database and a few small commits: each sync's upload is a few pages, not the
    file; no LIST is sent while running."""
    local = tmp_path / "big" / "db.sqlite3"
    local.parent.mkdir(parents=True)
    db = sqlite3.connect(local, isolation_level=None)
    db.execute("PRAGMA journal_mode=wal")
    db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, pid INTEGER, body TEXT)")
    db.execute("CREATE TABLE ballast (body BLOB)")
    db.executemany("INSERT INTO ballast VALUES (randomblob(4000))", [()] * 1280)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = os.path.getsize(local)
    assert size > 5 * 1024 * 1024
    with fault_proxy(moto_server.url) as proxy:
        env = env_for(agent_env, tmp_path, "big", WAKEFUL_REPLICATION="chain",
                      AWS_ENDPOINT_URL_S3=proxy.url, WAKEFUL_SYNC_INTERVAL="0.5")
        log = tmp_path / "writes.log"
        agent = AgentProcess(env, writer(env, log, interval=0.2), tmp_path, "big")
        agent.wait_running()
        # The first sync ships the whole database once (the chain held nothing).
        wait_for(lambda: sum(m == "Segments shipped" for m in agent.messages()) >= 1,
                 what="the first shipped sync")
        proxy.clear_log()
        wait_for(lambda: sum(m == "Segments shipped" for m in agent.messages()) >= 6,
                 timeout=60, what="five more shipped syncs")
        steady = proxy.requests
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0, agent.output()
    assert not [r for r in steady if r.is_list], [r.path for r in steady if r.is_list]
    segments = _segment_puts(steady)
    assert len(segments) >= 5
    biggest = max(_uploaded_bytes(r) for r in segments)
    # A few 4 KB pages per commit, LZ4-compressed: far below the database's size.
    assert biggest < size / 50, (biggest, size)
    assert [row for row, _ in s3_rows()] == committed_ids(log)
    print(f"\nchain: database {size} B; {len(segments)} segment PUTs while steady, "
          f"largest {biggest} B, total {sum(_uploaded_bytes(r) for r in segments)} B")


def test_a_corrupt_segment_in_the_chain_does_not_start_the_app_on_an_older_state(
    agent_env, tmp_path
):
    env = _env(agent_env, tmp_path, "a", WAKEFUL_SYNC_INTERVAL="0.3")
    log = tmp_path / "writes.log"
    first = AgentProcess(env, writer(env, log), tmp_path, "a")
    first.wait_running()
    wait_for(lambda: sum(m == "Segments shipped" for m in first.messages()) >= 4,
             what="four shipped syncs")
    first.kill()  # no stop: no snapshot covers the segments
    store = ChainStore(BUCKET, KEY)
    manifest = store.read_manifest()
    assert manifest is not None
    damaged = store.segment_key(manifest.generation, manifest.position + 2)
    boto3.client("s3").put_object(Bucket=BUCKET, Key=damaged, Body=b"not a segment")

    marker = tmp_path / "started"
    second_env = _env(agent_env, tmp_path, "b")
    second = AgentProcess(second_env, ["touch", str(marker)], tmp_path, "b")
    assert second.wait() == 4, second.output()
    assert not marker.exists()
    assert any("cannot be restored to its end" in m for m in second.messages()), second.output()
    assert lease_item().state == "FREE"


def test_chain_mode_is_refused_on_an_agent_sqlite_with_the_wal_reset_bug(resources, tmp_path):
    env = {
        **os.environ, "DB_S3_BUCKET": BUCKET, "DB_S3_KEY": KEY,
        "DB_LOCAL_PATH": str(tmp_path / "app" / "db.sqlite3"),
        "WAKEFUL_LEASE_TABLE": "wakeful-test-leases", "WAKEFUL_REPLICATION": "chain",
    }
    deps = dataclasses.replace(
        wire(AgentSettings.from_env(env), Wiring, supervising=True),
        sqlite_versions=lambda: Versions(agent="3.51.2", stdlib="3.40.1", apsw="3.51.2.0"),
    )
    marker = tmp_path / "started"
    codes: list[int] = []
    # Off the main thread: the agent installs no signal handlers in the test's process.
    thread = threading.Thread(
        target=lambda: codes.append(Agent(deps).run(["touch", str(marker)])))
    thread.start()
    thread.join(timeout=30)
    assert codes == [2]
    assert not marker.exists()
    lease = lease_item()
    assert lease is None or (lease.holder is None and lease.token == 0)  # never taken


@pytest.mark.parametrize("fault", ["outage", "lost-answer"])
def test_segments_that_s3_did_not_take_ship_later_and_lose_nothing(
    agent_env, tmp_path, moto_server, fault
):
    """S3 refuses segment writes for a while (they queue on disk), or takes one and loses the
    answer (the retry finds its own segment there): the app keeps writing, the stop ships
    everything."""
    with fault_proxy(moto_server.url) as proxy:
        env = _env(agent_env, tmp_path, "a", AWS_ENDPOINT_URL_S3=proxy.url,
                   WAKEFUL_SYNC_INTERVAL="0.3")
        log = tmp_path / "writes.log"
        agent = AgentProcess(env, writer(env, log), tmp_path, "a")
        agent.wait_running()
        wait_for(lambda: len(_segment_puts(proxy.requests)) >= 2, what="the first segments")
        if fault == "outage":
            refused = proxy.fail(503, s3_put(SEGMENTS), count=6)
        else:
            refused = proxy.lose_answer(s3_put(SEGMENTS), count=1)
        wait_for(lambda: refused.hits >= (6 if fault == "outage" else 1), timeout=30,
                 what="the fault to be hit")
        during = len(committed_ids(log))
        wait_for(lambda: len(committed_ids(log)) >= during + 20, what="the app to keep writing")
        wait_for(lambda: agent.state().get("sync_outcome") == "uploaded", timeout=30,
                 what="a sync that shipped after the fault")
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0, agent.output()
    if fault == "outage":
        queued = "Failed to upload database: segments stay queued"
        assert any(m.startswith(queued) for m in agent.messages())
    acknowledged = committed_ids(log)
    assert [row for row, _ in s3_rows()] == acknowledged
    assert chain_rows(tmp_path / "check") == acknowledged


def _wal_salt(path: str) -> bytes | None:
    try:
        with open(path + "-wal", "rb") as handle:
            header = handle.read(32)
    except FileNotFoundError:
        return None
    return header[16:24] if len(header) == 32 else None


@pytest.mark.parametrize("mode", ["wal", "wal-autocheckpoint"])
def test_the_wal_restarts_after_what_was_shipped_and_nothing_is_lost(agent_env, tmp_path, mode):
    """The agent checkpoints once it has shipped (``wal``: only the agent does); the app's own
    checkpoints (``wal-autocheckpoint``) cannot restart the WAL under frames not yet read."""
    env = _env(agent_env, tmp_path, "a", WAKEFUL_SYNC_INTERVAL="0.3")
    log = tmp_path / "writes.log"
    agent = AgentProcess(env, writer(env, log, interval=0.002, mode=mode), tmp_path, "a")
    agent.wait_running()
    first = wait_for(lambda: _wal_salt(env["DB_LOCAL_PATH"]), what="the WAL")
    # Past 1000 frames a checkpoint completes and the next commit restarts the WAL.
    wait_for(lambda: _wal_salt(env["DB_LOCAL_PATH"]) not in (None, first), timeout=90,
             what="the WAL to restart")
    during = len(committed_ids(log))
    wait_for(lambda: len(committed_ids(log)) >= during + 50, what="commits after the restart")
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output()
    assert not any(m.startswith("Capture reset") for m in agent.messages()), agent.output()
    acknowledged = committed_ids(log)
    assert [row for row, _ in s3_rows()] == acknowledged
    assert chain_rows(tmp_path / "check") == acknowledged


def _current_put(request: Request) -> bool:
    """A PUT of the current object ``K`` itself (not of a segment, not a backup copy)."""
    path = request.path.split("?", 1)[0]
    return request.service == "s3" and request.method == "PUT" and path == f"/{BUCKET}/{KEY}"


def test_segments_keep_shipping_while_a_periodic_snapshot_uploads(
    agent_env, tmp_path, moto_server
):
    local = tmp_path / "big" / "db.sqlite3"
    local.parent.mkdir(parents=True)
    db = sqlite3.connect(local, isolation_level=None)
    db.execute("PRAGMA journal_mode=wal")
    db.execute("CREATE TABLE ballast (body BLOB)")
    db.executemany("INSERT INTO ballast VALUES (randomblob(4000))", [()] * 600)
    db.close()
    slow_for = 1.5
    with fault_proxy(moto_server.url) as proxy:
        # The first sync ships the whole 2.4 MB as one full segment; a 2 s window makes a
        # snapshot due a second later (one at least every half window).
        slow = proxy.delay(slow_for, _current_put, count=1)
        env = env_for(agent_env, tmp_path, "big", WAKEFUL_REPLICATION="chain",
                      AWS_ENDPOINT_URL_S3=proxy.url, WAKEFUL_SYNC_INTERVAL="0.2",
                      WAKEFUL_LEASE_TTL="10", WAKEFUL_RETENTION="2")
        log = tmp_path / "writes.log"
        agent = AgentProcess(env, writer(env, log), tmp_path, "big")
        agent.wait_running()
        wait_for(lambda: slow.answered >= 1, timeout=60, what="the slow snapshot upload")
        requests = proxy.requests
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0, agent.output()
    upload = next(r for r in requests if _current_put(r))
    during = [r for r in _segment_puts(requests) if upload.at < r.at < upload.at + slow_for - 0.2]
    assert during, "no segment shipped while the snapshot uploaded"
    acknowledged = committed_ids(log)
    assert [row for row, _ in s3_rows()] == acknowledged


def test_a_snapshot_that_failed_is_written_at_the_stop_even_with_no_later_change(
    agent_env, tmp_path, moto_server
):
    """Its marker took a position, so nothing counts as changed since; yet ``K`` must hold the
    final state after a graceful stop."""
    local = seed_database(tmp_path / "idle" / "db.sqlite3", rows=30)
    db = sqlite3.connect(local, isolation_level=None)
    db.execute("PRAGMA journal_mode=wal")
    db.execute("CREATE TABLE ballast (body BLOB)")
    db.executemany("INSERT INTO ballast VALUES (randomblob(4000))", [()] * 600)
    db.close()
    with fault_proxy(moto_server.url) as proxy:
        refused = proxy.fail(503, _current_put)
        # A 2 s window: a snapshot of the shipped file is due a second later.
        env = env_for(agent_env, tmp_path, "idle", WAKEFUL_REPLICATION="chain",
                      AWS_ENDPOINT_URL_S3=proxy.url, WAKEFUL_SYNC_INTERVAL="0.2",
                      WAKEFUL_RETENTION="2")
        agent = AgentProcess(env, [sys.executable, IDLE], tmp_path, "idle")
        agent.wait_running()
        wait_for(lambda: any(m.startswith("Failed to write a snapshot") for m in agent.messages()),
                 timeout=60, what="the snapshot to fail")
        proxy.remove(refused)
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0, agent.output()
    assert [row for row, _ in s3_rows()] == list(range(1, 31))


def test_download_after_a_crash_gives_the_chains_end_not_the_last_snapshot(agent_env, tmp_path):
    env = _env(agent_env, tmp_path, "a", WAKEFUL_SYNC_INTERVAL="0.3")
    log = tmp_path / "writes.log"
    agent = AgentProcess(env, writer(env, log), tmp_path, "a")
    agent.wait_running()
    wait_for(lambda: sum(m == "Segments shipped" for m in agent.messages()) >= 3,
             what="three shipped syncs")
    agent.kill()
    output = tmp_path / "copy" / "db.sqlite3"
    done = subprocess.run(
        [sys.executable, "-m", "container", "download", "--output", str(output)],
        env=_env(agent_env, tmp_path, "operator"), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert _local_rows(str(output)) == chain_rows(tmp_path / "check")
    assert len(_local_rows(str(output))) > 0

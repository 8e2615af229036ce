"""The real agent process with faults at the network edge (``tests/fault_proxy.py``).

Each test points one service of one agent at a fault proxy in front of moto, and asserts what a
user cares about: the app stopped before another agent could take the lease, the rows are in
S3, the lease was released. Commit times come from the writer app's log, never from polling.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.agent_harness import (
    AgentProcess,
    alive,
    child_pid,
    commits,
    committed_ids,
    env_for,
    lease_item,
    put_object,
    s3_rows,
    seed_database,
    wait_for,
    writer,
)
from tests.fault_proxy import fault_proxy, s3_put, service


@pytest.mark.snapshot_layout
def test_hanging_dynamodb_during_a_periodic_sync_stops_the_app_before_the_lease_runs_out(
    agent_env, tmp_path, moto_server
):
    with fault_proxy(moto_server.url) as proxy:
        env = {
            **agent_env,
            "AWS_ENDPOINT_URL_DYNAMODB": proxy.url,
            "WAKEFUL_LEASE_TTL": "3",
            "WAKEFUL_SYNC_INTERVAL": "0.5",
        }
        log = tmp_path / "writes.log"
        agent = AgentProcess(env, writer(env, log), tmp_path)
        agent.wait_running()
        app_pid = wait_for(lambda: child_pid(agent.pid), what="the app")
        wait_for(lambda: lease_item().last_upload, what="a periodic sync")
        # Every 0.5 s a sync renews the lease before it uploads: from now on that call hangs,
        # and so does every renewal of the heartbeat.
        proxy.hang(service("dynamodb"))
        wait_for(lambda: not alive(app_pid), timeout=30, what="the app to be stopped")
        assert agent.wait(timeout=30) == 5, agent.output()
        stopped_at = time.time()

    expires_at = lease_item().expires_at  # the last renewal that reached DynamoDB
    assert commits(log)[-1][1] < expires_at, "the app wrote after its lease ran out"
    # The agent itself was done soon after, not after the hung calls gave up.
    assert stopped_at < expires_at + 1.0
    messages = agent.messages()
    assert any("not renewed in time" in m for m in messages), agent.output()
    last_start = max(i for i, m in enumerate(messages) if m == "Uploading database to S3...")
    assert not any(m.startswith("Database uploaded") for m in messages[last_start:]), (
        "the hang did not catch a sync in flight"
    )
    assert list((tmp_path / "app").glob("db.sqlite3.conflict.*"))


def test_held_dynamodb_answers_stop_the_app_before_another_agent_takes_over(
    agent_env, tmp_path, moto_server
):
    """The split brain: A's renewals land but their answers are held while B starts."""
    with fault_proxy(moto_server.url) as proxy:
        env_a = env_for(
            agent_env, tmp_path, "a",
            AWS_ENDPOINT_URL_DYNAMODB=proxy.url, WAKEFUL_SYNC_INTERVAL="0.5",
        )
        log_a = tmp_path / "a.log"
        a = AgentProcess(env_a, writer(env_a, log_a), tmp_path, "a")
        a.wait_running()
        wait_for(lambda: a.state().get("sync_outcome") == "uploaded",
                 what="A's first periodic sync")
        proxy.delay(6.0, service("dynamodb"))

        env_b = env_for(agent_env, tmp_path, "b", WAKEFUL_ACQUIRE_TIMEOUT="30")
        log_b = tmp_path / "b.log"
        b = AgentProcess(env_b, writer(env_b, log_b), tmp_path, "b")
        b.wait_running(timeout=45)
        taken = lease_item()
        assert taken.token == 2
        late = [row for row, at in commits(log_a) if at >= taken.acquired_at]
        assert not late, f"A's app acknowledged {len(late)} rows after B acquired the lease"
        assert a.wait(timeout=30) == 5, a.output()

    b.signal(signal.SIGTERM)
    assert b.wait() == 0, b.output()
    rows = s3_rows()
    assert [row[0] for row in rows][-1] == committed_ids(log_b)[-1]


def test_a_lease_counts_from_the_acquire_that_wrote_it_not_from_the_answer(
    agent_env, tmp_path, moto_server
):
    """Two acquires land with their answers lost; the third finds the first one's item."""
    with fault_proxy(moto_server.url) as proxy:
        acquire = service("dynamodb", "UpdateItem")
        proxy.lose_answer(acquire, count=2)
        env = {**agent_env, "AWS_ENDPOINT_URL_DYNAMODB": proxy.url, "WAKEFUL_LEASE_TTL": "3"}
        log = tmp_path / "writes.log"
        agent = AgentProcess(env, writer(env, log), tmp_path)
        wait_for(lambda: sum(acquire(r) for r in proxy.requests) >= 3, what="the third acquire")
        proxy.hang(service("dynamodb"))  # no renewal gets through from now on
        assert agent.wait(timeout=30) == 5, agent.output()

    lease = lease_item()
    assert lease.token == 1, "the retries were one acquisition"
    late = [row for row, at in commits(log) if at >= lease.expires_at]
    assert not late, f"the app acknowledged {len(late)} rows after the lease expired"


@pytest.mark.snapshot_layout
@pytest.mark.parametrize("budget", [4.0, 6.0], ids=["backup-skipped", "backup-cut-short"])
def test_slow_s3_at_stop_releases_the_lease_before_any_backup(
    agent_env, tmp_path, moto_server, budget
):
    with fault_proxy(moto_server.url) as proxy:
        env = {**agent_env, "AWS_ENDPOINT_URL_S3": proxy.url, "WAKEFUL_STOP_BUDGET": str(budget)}
        log = tmp_path / "writes.log"
        agent = AgentProcess(env, writer(env, log), tmp_path)
        agent.wait_running()
        wait_for(lambda: len(committed_ids(log)) >= 10, what="rows")
        proxy.delay(2.5, service("s3"))  # every answer from now on
        agent.signal(signal.SIGTERM)
        try:
            # ECS kills the container at its stop timeout (the budget, and a little more).
            code = agent.process.wait(timeout=budget + 2)
        except subprocess.TimeoutExpired:
            code = None
            agent.kill()

    lease = lease_item()
    assert lease.state == "FREE", f"exit {code}, lease not released:\n{agent.output()}"
    assert lease.last_upload["reason"] == "shutdown"
    assert [row[0] for row in s3_rows()] == committed_ids(log)
    assert code == 0, agent.output()
    # The optional backup got what was left of the budget, and says so when it ran out.
    assert any("backup" in m.lower() and "stop budget" in m for m in agent.messages()), (
        agent.output()
    )


@pytest.mark.snapshot_layout
def test_a_periodic_upload_whose_answers_were_all_lost_is_not_a_lost_fence(
    agent_env, tmp_path, moto_server
):
    with fault_proxy(moto_server.url) as proxy:
        env = {**agent_env, "AWS_ENDPOINT_URL_S3": proxy.url, "WAKEFUL_SYNC_INTERVAL": "0.3"}
        log = tmp_path / "writes.log"
        agent = AgentProcess(env, writer(env, log), tmp_path)
        agent.wait_running()
        wait_for(lambda: lease_item().last_upload, what="a first periodic sync")
        # One sync's PUT lands, and its answer and its retries' answers are all lost.
        lost = proxy.lose_answer(s3_put("db.sqlite3"), count=None)
        wait_for(lambda: any(m.startswith("Failed to upload") for m in agent.messages()),
                 what="a sync that failed")
        proxy.remove(lost)
        # The next syncs send newer snapshots, swapped against the ETag the agent last saw.
        seen = (lease_item().last_upload or {}).get("version_id")
        wait_for(lambda: agent.process.poll() is not None
                 or (lease_item().last_upload or {}).get("version_id") != seen,
                 what="a sync after the lost answers")
        assert agent.process.poll() is None, f"the agent gave up:\n{agent.output()}"
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0, agent.output()
    assert not any(m.startswith("Lease lost") for m in agent.messages())
    assert [row[0] for row in s3_rows()] == committed_ids(log)


def test_a_lease_that_runs_out_during_the_download_never_starts_the_app(
    agent_env, tmp_path, moto_server
):
    good = seed_database(tmp_path / "seed" / "good.sqlite3", rows=10)
    put_object(good.read_bytes())
    marker = tmp_path / "started"
    with fault_proxy(moto_server.url) as proxy:
        proxy.delay(8.0, service("s3"))  # the download takes longer than the lease's TTL
        acquire = service("dynamodb", "UpdateItem")
        env = {**agent_env, "AWS_ENDPOINT_URL": proxy.url}
        agent = AgentProcess(env, ["touch", str(marker)], tmp_path)
        wait_for(lambda: any(acquire(r) for r in proxy.requests), what="the acquire")
        proxy.hang(service("dynamodb"))  # and no renewal gets through
        assert agent.wait(timeout=30) == 5, agent.output()
    assert not marker.exists()
    assert any(m.startswith("Lease lost") for m in agent.messages()), agent.output()

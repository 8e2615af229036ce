"""The agent in its default (chain) layout with faults at the network edge.

The twins of ``test_agent_faults.py``'s whole-file tests whose mechanics differ in the chain:
a chain sync renews nothing itself (the heartbeat does) and a stop makes several writes (the
final segment, then the snapshot of ``K`` and the manifest's stop record), so what the user
cares about is asserted against the chain: the app stopped before the lease ran out, every
acknowledged row restores, the lease was released inside the stop budget.
"""

from __future__ import annotations

import signal
import subprocess
import time

from tests.agent_harness import (
    AgentProcess,
    alive,
    chain_rows,
    child_pid,
    commits,
    committed_ids,
    lease_item,
    wait_for,
    writer,
)
from tests.fault_proxy import fault_proxy, service


def _shipped(agent: AgentProcess) -> bool:
    return agent.state().get("sync_outcome") == "uploaded"


def test_hanging_dynamodb_while_segments_ship_stops_the_app_before_the_lease_runs_out(
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
        wait_for(lambda: _shipped(agent), what="a sync that shipped segments")
        # Every renewal hangs from now on; the segments themselves keep shipping to S3.
        proxy.hang(service("dynamodb"))
        wait_for(lambda: not alive(app_pid), timeout=30, what="the app to be stopped")
        assert agent.wait(timeout=30) == 5, agent.output()
        stopped_at = time.time()

    expires_at = lease_item().expires_at  # the last renewal that reached DynamoDB
    assert commits(log)[-1][1] < expires_at, "the app wrote after its lease ran out"
    assert stopped_at < expires_at + 1.0
    assert any("not renewed in time" in m for m in agent.messages()), agent.output()
    # Whatever the chain holds was written under the lease; the file is kept aside.
    assert set(chain_rows(tmp_path / "restored")) <= set(committed_ids(log))
    assert list((tmp_path / "app").glob("db.sqlite3.conflict.*"))


def test_slow_s3_at_stop_ships_the_final_segment_and_releases_inside_the_budget(
    agent_env, tmp_path, moto_server
):
    budget = 4.0
    with fault_proxy(moto_server.url) as proxy:
        env = {**agent_env, "AWS_ENDPOINT_URL_S3": proxy.url, "WAKEFUL_STOP_BUDGET": str(budget)}
        log = tmp_path / "writes.log"
        agent = AgentProcess(env, writer(env, log), tmp_path)
        agent.wait_running()
        wait_for(lambda: len(committed_ids(log)) >= 10, what="rows")
        proxy.delay(1.5, service("s3"))  # every answer from now on
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
    assert code == 0, agent.output()
    # The final segment is the durable point: every acknowledged row restores from the chain,
    # though the snapshot of K did not fit in the budget (and says so).
    assert chain_rows(tmp_path / "restored") == committed_ids(log)
    messages = agent.messages()
    assert any(m.startswith("Snapshot skipped") for m in messages), agent.output()
    assert any(m.startswith("Backup skipped") for m in messages), agent.output()

"""The whole loop with the real agent process: wake → acquire → RUNNING → writes → sleep →
SIGTERM (as ECS sends on StopTask) → STOPPED → verified stop; and a SIGKILL → unsynced stop."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from chalicelib.lease import FREE, HELD
from tests.agent_harness import (
    AgentProcess,
    committed_ids,
    lease_item,
    s3_rows,
    wait_for,
    writer,
)
from tests.controlplane.conftest import KEY, ecs_tasks, event
from tests.controlplane.test_task_events import deliver


@pytest.fixture
def task_metadata() -> Iterator[dict[str, Any]]:
    """A stand-in for the ECS task metadata endpoint: the agent learns its task ARN here."""
    answer: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    answer["_uri"] = f"http://127.0.0.1:{server.server_address[1]}/v4/container"
    try:
        yield answer
    finally:
        server.shutdown()


def _start_agent(chalice_client, agent_env, task_metadata, tmp_path, name="agent"):
    woke = json.loads(chalice_client.http.post("/wake", headers=KEY).body)
    [task] = [t for t in ecs_tasks() if t["taskArn"] == woke["task_arn"]]
    task_metadata["TaskARN"] = task["taskArn"]
    env = {
        **agent_env,
        # What the task definition and RunTask's overrides give the container.
        "WAKEFUL_RESERVATION_ID": task["startedBy"],
        "ECS_CONTAINER_METADATA_URI_V4": task_metadata["_uri"],
        "WAKEFUL_SYNC_INTERVAL": "0.5",
    }
    log = tmp_path / f"{name}.log"
    agent = AgentProcess(env, writer(env, log), tmp_path, name)
    agent.wait_running()
    return task, agent, log


def test_wake_run_sleep_is_a_verified_stop(chalice_client, agent_env, task_metadata, tmp_path):
    task, agent, log = _start_agent(chalice_client, agent_env, task_metadata, tmp_path)
    lease = lease_item()
    assert lease.state == HELD and lease.holder == task["taskArn"] and lease.token == 1
    # The agent marked itself a holder where the next holder cannot erase it.
    from chalicelib.ledger import TaskLedger

    entry = TaskLedger("wakeful-test-leases", "wakeful-test-db/db.sqlite3").entry(task["taskArn"])
    assert entry.held_token == 1

    assert deliver(chalice_client, event("task-running.json", task)) == "running"
    status = json.loads(chalice_client.http.get("/status", headers=KEY).body)
    assert status["lease"]["holder"] == task["taskArn"]
    awake = chalice_client.http.post("/wake", headers=KEY)
    assert awake.status_code == 200
    assert json.loads(awake.body)["endpoint"] == "http://10.0.0.139:8000"

    wait_for(lambda: len(committed_ids(log)) >= 20, what="rows written by the app")
    stopping = chalice_client.http.post("/sleep", headers=KEY)
    assert stopping.status_code == 202
    agent.signal(signal.SIGTERM)  # ECS turns StopTask into SIGTERM for the container
    assert agent.wait() == 0, agent.output()

    stopped = event("task-stopped-user-initiated.json", task)
    assert deliver(chalice_client, stopped) == "verified"
    lease = lease_item()
    assert lease.state == FREE and lease.last_unsynced_stop is None
    assert [row[0] for row in s3_rows()] == committed_ids(log)


def test_sigkilled_task_is_an_unsynced_stop_and_the_next_wake_restores_the_last_sync(
    chalice_client, agent_env, task_metadata, tmp_path
):
    task, agent, _log = _start_agent(chalice_client, agent_env, task_metadata, tmp_path)
    deliver(chalice_client, event("task-running.json", task))
    wait_for(lambda: agent.state().get("sync_outcome") == "uploaded", what="a periodic sync")
    agent.kill()

    assert deliver(chalice_client, event("task-stopped-exit-137.json", task)) == "unsynced"
    lease = lease_item()
    assert lease.state == FREE  # ECS says the holder is dead: released for the next wake
    assert lease.last_unsynced_stop["task_arn"] == task["taskArn"]
    assert lease.last_unsynced_stop["window_seconds"] >= 0

    task2, agent2, _log2 = _start_agent(chalice_client, agent_env, task_metadata, tmp_path, "b")
    assert task2["taskArn"] != task["taskArn"]
    assert lease_item().token == 2
    agent2.signal(signal.SIGTERM)
    assert agent2.wait() == 0, agent2.output()
    rows = [row[0] for row in s3_rows()]
    assert rows == list(range(1, len(rows) + 1))



def test_a_stopping_backend_is_never_offered_to_a_wake(
    chalice_client, agent_env, task_metadata, tmp_path
):
    task, agent, _log = _start_agent(chalice_client, agent_env, task_metadata, tmp_path)
    deliver(chalice_client, event("task-running.json", task))
    assert chalice_client.http.post("/wake", headers=KEY).status_code == 200
    assert chalice_client.http.post("/sleep", headers=KEY).status_code == 202
    # The agent is still uploading (ECS's SIGTERM not yet sent): a wake must wait.
    during = chalice_client.http.post("/wake", headers=KEY)
    assert during.status_code == 202, during.body
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0, agent.output()

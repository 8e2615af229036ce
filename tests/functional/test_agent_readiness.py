"""Readiness: the backend counts as running only once its app answers on its port.

Before, the lease said "running" as soon as the agent held it and ECS reported the task, so
`URL=$(wakeful wake --wait); curl "$URL"` could be refused by an app still booting.
"""

from __future__ import annotations

import signal
import sys

from tests.agent_harness import ROOT, AgentProcess, lease_item, wait_for
from wakeful_local.moto import free_port

SLOW_APP = str(ROOT / "tests" / "apps" / "slow_http.py")


def test_the_lease_is_marked_ready_only_once_the_app_listens(agent_env, tmp_path):
    port = free_port()
    env = {**agent_env, "WAKEFUL_APP_PORT": str(port)}
    agent = AgentProcess(env, [sys.executable, SLOW_APP, str(port), "1.5"], tmp_path)
    try:
        agent.wait_running()
        assert lease_item().ready_at is None, "ready before the app listens"
        lease = wait_for(lambda: lease_item().ready_at and lease_item(), 30, "the ready mark")
        assert lease.serving_endpoint() is None  # no endpoint recorded by ECS here
        assert wait_for(lambda: agent.state().get("ready"), 10, "the state file's ready")
        assert "App ready" in agent.messages()
    finally:
        agent.signal(signal.SIGTERM)
        assert agent.wait(60) == 0, agent.output()


def test_a_ready_path_must_answer_below_500(agent_env, tmp_path):
    port = free_port()
    env = {**agent_env, "WAKEFUL_APP_PORT": str(port), "WAKEFUL_READY_PATH": "/ready"}
    # Listening at once, but /ready answers 503 for its first 10 probes (about 2 s).
    agent = AgentProcess(env, [sys.executable, SLOW_APP, str(port), "0", "10"], tmp_path)
    try:
        agent.wait_running()
        wait_for(lambda: _listening(port), 10, "the app to listen")
        assert lease_item().ready_at is None, "a 503 counted as ready"
        wait_for(lambda: lease_item().ready_at, 30, "the ready mark")
    finally:
        agent.signal(signal.SIGTERM)
        assert agent.wait(60) == 0, agent.output()


def test_a_new_holder_is_not_ready_because_the_last_one_was(agent_env, tmp_path):
    first = AgentProcess(agent_env, [sys.executable, str(ROOT / "tests/apps/idle.py")], tmp_path,
                         name="first")
    first.wait_running()
    wait_for(lambda: lease_item().ready_at, 30, "the first holder's ready mark")
    first.kill()  # SIGKILL: its lease (with ready_at) stays until it expires
    port = free_port()
    env = {**agent_env, "WAKEFUL_APP_PORT": str(port)}
    second = AgentProcess(env, [sys.executable, SLOW_APP, str(port), "2"], tmp_path,
                          name="second")
    try:
        second.wait_running(timeout=60)
        assert lease_item().token == 2
        assert lease_item().ready_at is None
        wait_for(lambda: lease_item().ready_at, 30, "the second holder's ready mark")
    finally:
        second.signal(signal.SIGTERM)
        assert second.wait(60) == 0, second.output()


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_the_ready_mark_is_retried_while_dynamodb_refuses_it(agent_env, tmp_path):
    from tests.fault_proxy import fault_proxy, service

    with fault_proxy(agent_env["AWS_ENDPOINT_URL"]) as proxy:
        env = {**agent_env, "AWS_ENDPOINT_URL_DYNAMODB": proxy.url, "WAKEFUL_LEASE_TTL": "8"}
        port = free_port()
        env["WAKEFUL_APP_PORT"] = str(port)
        # The app listens after 1 s; every lease write fails from then on for 3 s.
        agent = AgentProcess(env, [sys.executable, SLOW_APP, str(port), "1"], tmp_path)
        try:
            agent.wait_running()
            proxy.fail(503, service("dynamodb", "UpdateItem"), seconds=3)
            wait_for(lambda: _listening(port), 10, "the app to listen")
            assert lease_item().ready_at is None
            wait_for(lambda: lease_item().ready_at, 30, "the ready mark, once DynamoDB answers")
            assert any("retrying" in m for m in agent.messages()), agent.output()
        finally:
            agent.signal(signal.SIGTERM)
            assert agent.wait(60) == 0, agent.output()

"""POST /wake, GET /status, POST /sleep through chalice.test.Client against moto."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import boto3

from chalicelib.lease import FREE, HELD, RESERVED
from chalicelib.settings import ControlPlaneSettings
from tests.conftest import create_bucket, create_lease_table
from tests.controlplane.agent_double import AgentDouble
from tests.controlplane.conftest import (
    CLUSTER,
    KEY,
    build_plane,
    chalice_client_for,
    create_cluster,
    ecs_tasks,
    lease_table,
    pin_tasks,
)
from tests.controlplane.serial_moto import SerialMotoServer
from tests.moto_server import free_port


def post(client: Any, path: str, body: str = "", headers: dict[str, str] | None = None) -> Any:
    headers = {**KEY, "Content-Type": "application/json", **(headers or {})}
    return client.http.post(path, headers=headers, body=body)


def test_wake_while_asleep_starts_one_task_with_the_reservation(chalice_client, settings):
    response = post(chalice_client, "/wake")
    assert response.status_code == 202
    assert response.headers["Retry-After"] == "5"
    body = json.loads(response.body)
    assert body["state"] == "starting"
    reservation = body["reservation_id"]
    [task] = ecs_tasks()
    assert task["taskArn"] == body["task_arn"]
    assert task["startedBy"] == reservation
    [override] = task["overrides"]["containerOverrides"]
    assert override["environment"] == [{"name": "WAKEFUL_RESERVATION_ID", "value": reservation}]
    tags = boto3.client("ecs").list_tags_for_resource(resourceArn=task["taskArn"])["tags"]
    assert {"key": "stage", "value": "test"} in tags
    lease = lease_table(settings).read()
    assert lease.state == RESERVED and lease.holder == reservation


def test_wake_while_starting_starts_nothing_more(chalice_client):
    first = json.loads(post(chalice_client, "/wake").body)
    again = post(chalice_client, "/wake")
    assert again.status_code == 202
    assert json.loads(again.body)["reservation_id"] == first["reservation_id"]
    assert len(ecs_tasks()) == 1


def test_a_backend_whose_app_does_not_answer_yet_is_starting_not_running(
    chalice_client, settings
):
    table = lease_table(settings)
    task = "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/slow"
    lease = table.acquire(task, ttl=60, task_arn=task)
    table.record_task(task, None, "http://10.0.1.9:8000")  # ECS says RUNNING: not enough
    response = post(chalice_client, "/wake")
    assert response.status_code == 202
    assert json.loads(response.body)["state"] == "starting"
    status = json.loads(chalice_client.http.get("/status", headers=KEY).body)
    assert status["state"] == "starting" and status["endpoint"] is None
    table.mark_ready(task, lease.token)  # the agent's probe: the app answers on its port
    response = post(chalice_client, "/wake")
    assert response.status_code == 200
    assert json.loads(response.body)["endpoint"] == "http://10.0.1.9:8000"


def test_wake_while_running_keeps_it_awake_and_answers_the_endpoint(
    chalice_client, settings, tmp_path
):
    agent = AgentDouble(settings, "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/abc",
                        tmp_path)
    agent.acquire()
    table = lease_table(settings)
    table.record_task(agent.holder, None, "http://10.0.1.5:8000")
    before = table.read().last_wake
    response = post(chalice_client, "/wake")
    assert response.status_code == 200
    body = json.loads(response.body)
    assert body == {"state": "running", "endpoint": "http://10.0.1.5:8000",
                    "task_arn": agent.holder}
    after = table.read()
    assert after.state == HELD and (before is None or after.last_wake > before)
    assert ecs_tasks() == []


def test_twenty_concurrent_wakes_start_exactly_one_task(control_env, monkeypatch):
    server = SerialMotoServer().start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        create_bucket()
        create_lease_table()
        pin_tasks(server)
        network = create_cluster()
        env = {**os.environ, **control_env, "AWS_ENDPOINT_URL": server.url,
               "WAKEFUL_SUBNETS": network["subnet"],
               "WAKEFUL_SECURITY_GROUPS": network["security_group"]}
        plane = build_plane(ControlPlaneSettings.from_env(env))
        barrier = threading.Barrier(20)
        replies: list[Any] = []

        def wake() -> None:
            barrier.wait()
            replies.append(plane.wake())

        threads = [threading.Thread(target=wake) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [r.status for r in replies] == [202] * 20
        assert len(ecs_tasks()) == 1
        assert plane.metrics.names().count("TaskStarted") == 1
    finally:
        server.stop()


def test_no_api_key_is_forbidden(chalice_client):
    response = chalice_client.http.post("/wake", headers={"Content-Type": "application/json"})
    assert response.status_code == 403
    assert chalice_client.http.get("/status").status_code == 403
    assert ecs_tasks() == []


def test_bad_json_is_a_400_that_starts_nothing(chalice_client):
    for body in ("{not json", "[1, 2]", '"wake"'):
        response = post(chalice_client, "/wake", body)
        assert response.status_code == 400, body
        assert "JSON object" in json.loads(response.body)["message"]
    assert ecs_tasks() == []
    assert post(chalice_client, "/wake", '{"reason": "page view"}').status_code == 202


def test_run_task_refused_is_a_503_and_the_lease_is_free_again(control_env, settings, tmp_path):
    # A task definition ECS does not know: RunTask is refused, as with a bad configuration.
    env = {**control_env, "WAKEFUL_TASK_DEFINITION": "no-such-family"}
    with chalice_client_for(env, tmp_path) as client:
        response = post(client, "/wake")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    body = json.loads(response.body)
    assert body["state"] == "asleep" and body["reason"]
    assert lease_table(settings).read().state == FREE
    assert ecs_tasks() == []


def test_bad_configuration_is_a_500_naming_the_variable(control_env, tmp_path, caplog):
    env = {**control_env, "WAKEFUL_LEASE_TTL": "soon"}
    with chalice_client_for(env, tmp_path) as client:
        response = post(client, "/wake")
        status = client.http.get("/status", headers=KEY)
    assert response.status_code == 500 and status.status_code == 500
    body = json.loads(response.body)
    assert body["variable"] == "WAKEFUL_LEASE_TTL"
    assert "WAKEFUL_LEASE_TTL" in body["message"]
    assert any(r.levelname == "ERROR" and r.getMessage() == "Invalid configuration"
               for r in caplog.records)


def test_status_reports_lease_task_upload_and_backups(chalice_client, settings, tmp_path):
    woke = json.loads(post(chalice_client, "/wake").body)
    status = json.loads(chalice_client.http.get("/status", headers=KEY).body)
    assert status["state"] == "starting"
    assert status["lease"]["state"] == RESERVED
    assert status["task"]["arn"] == woke["task_arn"]
    assert status["task"]["status"] == "RUNNING"
    agent = AgentDouble(settings, woke["task_arn"], tmp_path)
    agent.acquire(woke["reservation_id"])
    agent.write(3)
    info = agent.upload("periodic")
    status = json.loads(chalice_client.http.get("/status", headers=KEY).body)
    assert status["lease"]["holder"] == woke["task_arn"]
    assert status["lease"]["token"] == 1
    assert status["last_upload"]["reason"] == "periodic"
    assert status["last_upload"]["size"] == info.size
    assert status["last_upload"]["token"] == 1
    assert status["backups"] == 0
    assert status["last_unsynced_stop"] is None


def test_sleep_stops_the_holder_task(chalice_client, settings, tmp_path):
    woke = json.loads(post(chalice_client, "/wake").body)
    AgentDouble(settings, woke["task_arn"], tmp_path).acquire(woke["reservation_id"])
    response = post(chalice_client, "/sleep")
    assert response.status_code == 202
    assert json.loads(response.body) == {"state": "stopping", "task_arns": [woke["task_arn"]]}
    [task] = ecs_tasks()
    assert task["desiredStatus"] == "STOPPED"
    assert task["stoppedReason"] == "wakeful: sleep requested"
    asleep = boto3.client("ecs").list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")
    assert asleep["taskArns"] == []


def test_sleep_while_asleep_does_nothing(chalice_client):
    response = post(chalice_client, "/sleep")
    assert response.status_code == 200
    assert json.loads(response.body) == {"state": "asleep"}


def test_a_holder_whose_running_event_was_missed_is_found_through_ecs(
    chalice_client, settings, tmp_path
):
    woke = json.loads(post(chalice_client, "/wake").body)
    [task] = ecs_tasks()
    AgentDouble(settings, woke["task_arn"], tmp_path).acquire(woke["reservation_id"])
    # No RUNNING event was delivered (it came while the lease was still someone else's).
    assert task["lastStatus"] == "RUNNING"
    [ip] = [d["value"] for a in task["attachments"] for d in a["details"]
            if d["name"] == "privateIPv4Address"]
    answer = post(chalice_client, "/wake")
    assert answer.status_code == 200, answer.body
    assert json.loads(answer.body)["endpoint"] == f"http://{ip}:8000"
    assert post(chalice_client, "/wake").status_code == 200  # now recorded: one call per wake


def test_run_task_without_an_answer_keeps_the_reservation(control_env, settings, tmp_path):
    # ECS unreachable: RunTask may or may not have started a task. Releasing the
    # reservation would let the next wake start a second one.
    env = {**control_env, "AWS_ENDPOINT_URL_ECS": f"http://127.0.0.1:{free_port()}"}
    with chalice_client_for(env, tmp_path) as client:
        response = post(client, "/wake")
        again = post(client, "/wake")
    assert response.status_code == 202, response.body
    assert again.status_code == 202
    lease = lease_table(settings).read()
    assert lease.state == RESERVED


def test_a_wrong_api_key_is_forbidden_and_starts_nothing(chalice_client):
    # chalice.test.Client, like chalice local or a function URL, does not run API Gateway's
    # key check: the app's own comparison is all that stands between a guess and a task.
    for key in ("wrong", "test-ke", "test-key ", "TEST-KEY", "x" * 4096):
        response = post(chalice_client, "/wake", headers={"x-api-key": key})
        assert response.status_code == 403, key
        assert chalice_client.http.get("/status", headers={"x-api-key": key}).status_code == 403
    assert ecs_tasks() == []
    assert post(chalice_client, "/wake").status_code == 202


def test_api_key_mode_without_a_configured_key_is_a_500_naming_the_variable(
    control_env, tmp_path
):
    env = {k: v for k, v in control_env.items() if k != "WAKEFUL_API_KEY_SHA256"}
    with chalice_client_for(env, tmp_path) as client:
        response = post(client, "/wake")
    assert response.status_code == 500
    assert json.loads(response.body)["variable"] == "WAKEFUL_API_KEY_SHA256"
    assert ecs_tasks() == []


def test_deeply_nested_json_is_a_400(chalice_client):
    for body in ("[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000):
        for path in ("/wake", "/sleep"):
            response = post(chalice_client, path, body)
            assert response.status_code == 400, path
            assert "JSON object" in json.loads(response.body)["message"]
    assert ecs_tasks() == []


def test_a_reserve_whose_answer_was_lost_still_starts_the_task(control_env, settings, tmp_path):
    from tests.fault_proxy import Request, fault_proxy, service

    updates = service("dynamodb", "UpdateItem")
    seen: list[Request] = []

    def second_update(request: Request) -> bool:
        # The wake's keepalive is the first UpdateItem, the reservation the second.
        if updates(request):
            seen.append(request)
            return len(seen) == 2
        return False

    with fault_proxy(control_env["AWS_ENDPOINT_URL"]) as proxy:
        proxy.lose_answer(second_update, count=1)
        env = {**control_env, "AWS_ENDPOINT_URL_DYNAMODB": proxy.url}
        with chalice_client_for(env, tmp_path) as client:
            response = post(client, "/wake")
    # The reservation landed, its answer was lost, and the SDK's retry was refused by the
    # reservation it had itself made: that is ours, and the task must be started.
        sent = [r for r in proxy.requests if updates(r)]
    assert len(sent) == 3, "the reservation was not retried"  # keepalive, reserve, its retry
    assert response.status_code == 202, response.body
    body = json.loads(response.body)
    [task] = ecs_tasks()
    assert task["startedBy"] == body["reservation_id"] == lease_table(settings).read().holder
    assert body["task_arn"] == task["taskArn"]


def test_a_dependency_that_refuses_the_call_is_a_500_not_a_retry(control_env, settings, tmp_path):
    """AccessDenied (the role lacks a permission) cannot mend itself: telling the client to
    come back in 30 seconds would only bring it back to the same refusal."""
    from tests.fault_proxy import fault_proxy, service

    with fault_proxy(control_env["AWS_ENDPOINT_URL"]) as proxy:
        proxy.fail(400, service("dynamodb"), code="AccessDeniedException")
        env = {**control_env, "AWS_ENDPOINT_URL_DYNAMODB": proxy.url}
        with chalice_client_for(env, tmp_path) as client:
            wake = post(client, "/wake")
            sleep = post(client, "/sleep")
        proxy.heal()
        proxy.fail(403, service("s3"))  # the bucket refuses HeadObject
        env = {**control_env, "AWS_ENDPOINT_URL_S3": proxy.url}
        with chalice_client_for(env, tmp_path) as client:
            status = client.http.get("/status", headers=KEY)
    for name, response in (("wake", wake), ("sleep", sleep), ("status", status)):
        assert response.status_code == 500, (name, response.body)
        assert "Retry-After" not in response.headers, name
        body = json.loads(response.body)
        assert body["error"] == "a dependency refused the call", name
    assert "AccessDeniedException" in json.loads(wake.body)["reason"]
    assert "403" in json.loads(status.body)["reason"]
    assert ecs_tasks() == []
    assert lease_table(settings).read().state == FREE


def test_a_dependency_that_cannot_be_reached_is_a_503_to_retry(control_env, tmp_path):
    env = {**control_env, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{free_port()}"}
    with chalice_client_for(env, tmp_path) as client:
        status = client.http.get("/status", headers=KEY)
    assert status.status_code == 503, status.body
    assert status.headers["Retry-After"] == "30"
    assert json.loads(status.body)["error"] == "a dependency is unavailable"

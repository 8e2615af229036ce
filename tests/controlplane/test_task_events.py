"""The "ECS Task State Change" handler, invoked as Lambda would invoke it."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.lease import FREE, HELD, RESERVED
from tests.controlplane.agent_double import AgentDouble
from tests.controlplane.conftest import KEY, build_plane, ecs_tasks, event, lease_table


def deliver(client: Any, raw: Any) -> str:
    response = client.lambda_.invoke("on_task_state_change", raw)
    return response.payload["outcome"]


def woken(client: Any) -> dict[str, Any]:
    """Wake through the API and return the task moto started for it."""
    body = json.loads(client.http.post("/wake", headers=KEY).body)
    [task] = [t for t in ecs_tasks() if t["taskArn"] == body["task_arn"]]
    return task


def metric_lines(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_running_records_the_task_and_its_endpoint(chalice_client, settings):
    task = woken(chalice_client)
    assert deliver(chalice_client, event("task-running.json", task)) == "running"
    lease = lease_table(settings).read()
    assert lease.state == RESERVED
    assert lease.task_arn == task["taskArn"]
    assert lease.endpoint == "http://10.0.0.139:8000"


def test_stop_after_the_final_upload_is_verified(chalice_client, settings, tmp_path):
    task = woken(chalice_client)
    agent = AgentDouble(settings, task["taskArn"], tmp_path)
    agent.acquire(task["startedBy"])
    agent.write(5)
    agent.upload("shutdown")
    # The agent did not get to release (it was stopped right after the upload).
    assert deliver(chalice_client, event("task-stopped-exit-0.json", task)) == "verified"
    lease = lease_table(settings).read()
    assert lease.state == FREE and lease.last_holder == task["taskArn"]
    assert lease.last_unsynced_stop is None


def test_stop_whose_lease_the_agent_released_is_verified_without_a_second_release(
    settings, tmp_path
):
    plane = build_plane(settings)
    reply = plane.wake()
    task = ecs_tasks()[0]
    agent = AgentDouble(settings, reply.body["task_arn"], tmp_path)
    agent.acquire(reply.body["reservation_id"])
    agent.write()
    agent.upload("shutdown")
    agent.release()
    before = lease_table(settings).read()
    outcome = plane.handle_event(event("task-stopped-user-initiated.json", task))
    assert outcome == "verified"
    assert "VerifiedStop" in plane.metrics.names()
    after = lease_table(settings).read()
    assert after.extra.get("updated_at") == before.extra.get("updated_at")  # untouched
    assert not [m for m, _ in plane.log.at("INFO") if m.startswith("Lease released")]


def test_sigkill_without_a_final_upload_is_an_unsynced_stop_with_its_window(
    settings, tmp_path
):
    plane = build_plane(settings)
    reply = plane.wake()
    task = ecs_tasks()[0]
    agent = AgentDouble(settings, reply.body["task_arn"], tmp_path)
    agent.acquire(reply.body["reservation_id"])
    agent.write(2)
    periodic = agent.upload("periodic")
    killed = event("task-stopped-exit-137.json", task)
    stopped_at = periodic.last_modified.timestamp() + 90
    killed["detail"]["stoppedAt"] = stopped_at
    assert plane.handle_event(killed) == "unsynced"
    assert "UnsyncedStop" in plane.metrics.names()
    assert plane.metrics.value("UnsyncedWindow") == 90
    [(message, extra)] = plane.log.at("ERROR")
    assert message.startswith("Unsynced stop")
    assert extra["exit_codes"] == {"app": 137} and extra["killed"] is True
    assert extra["stop_code"] == "EssentialContainerExited"
    lease = lease_table(settings).read()
    assert lease.state == FREE
    assert lease.last_unsynced_stop["task_arn"] == task["taskArn"]
    assert lease.last_unsynced_stop["window_seconds"] == 90


def test_unsynced_stop_is_visible_in_status(chalice_client, settings, tmp_path):
    task = woken(chalice_client)
    AgentDouble(settings, task["taskArn"], tmp_path).acquire(task["startedBy"])
    assert deliver(chalice_client, event("task-stopped-exit-137.json", task)) == "unsynced"
    status = json.loads(chalice_client.http.get("/status", headers=KEY).body)
    assert status["state"] == "asleep"
    assert status["last_unsynced_stop"]["task_arn"] == task["taskArn"]


def test_failed_to_start_releases_the_reservation_and_records_why(chalice_client, settings):
    task = woken(chalice_client)
    assert deliver(chalice_client, event("task-failed-to-start.json", task)) == "failed_to_start"
    lease = lease_table(settings).read()
    assert lease.state == FREE
    assert "CannotPullContainerError" in lease.extra["last_start_failure"]["reason"]
    status = json.loads(chalice_client.http.get("/status", headers=KEY).body)
    assert "CannotPullContainerError" in status["last_start_failure"]["reason"]


def test_duplicate_and_out_of_order_events_change_nothing(settings, tmp_path):
    plane = build_plane(settings)
    reply = plane.wake()
    task = ecs_tasks()[0]
    agent = AgentDouble(settings, reply.body["task_arn"], tmp_path)
    agent.acquire(reply.body["reservation_id"])
    agent.write()
    agent.upload("shutdown")
    agent.release()
    stopped = event("task-stopped-exit-0.json", task)
    assert plane.handle_event(stopped) == "verified"
    # The next task takes over and writes: a late duplicate must not read its object as ours.
    nxt = AgentDouble(settings, "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/n2",
                      tmp_path)
    nxt.etag = agent.etag
    nxt.acquire()
    nxt.write()
    nxt.upload("periodic")
    assert plane.handle_event(stopped) == "stale"
    assert plane.handle_event(event("task-running.json", task)) == "stale"  # version 4 < 6
    assert plane.metrics.names().count("VerifiedStop") == 1
    assert "UnsyncedStop" not in plane.metrics.names()
    lease = lease_table(settings).read()
    assert lease.state == HELD and lease.holder == nxt.holder and lease.endpoint is None


def test_events_of_other_clusters_and_families_are_left_alone(chalice_client, settings):
    task = woken(chalice_client)
    other_cluster = event("task-stopped-exit-137.json", task)
    other_cluster["detail"]["clusterArn"] = "arn:aws:ecs:us-east-1:123456789012:cluster/other"
    assert deliver(chalice_client, other_cluster) == "other"
    other_family = event("task-stopped-exit-137.json", task)
    other_family["detail"]["taskDefinitionArn"] = (
        "arn:aws:ecs:us-east-1:123456789012:task-definition/someone-else:7"
    )
    assert deliver(chalice_client, other_family) == "other"
    assert lease_table(settings).read().state == RESERVED


def test_malformed_events_are_dropped_without_an_exception(chalice_client, settings):
    woken(chalice_client)
    # EventBridge always sends the envelope (Chalice reads it before our code runs); what can
    # be wrong is inside it.
    bad_version = event("task-running.json", version="latest")
    no_detail = event("task-running.json")
    no_detail["detail"] = None
    no_arn = event("task-stopped-exit-137.json", taskArn=None)
    wrong_kind = event("task-running.json")
    wrong_kind["detail-type"] = "ECS Container Instance State Change"
    for raw in (bad_version, no_detail, no_arn, wrong_kind):
        assert deliver(chalice_client, raw) == "malformed"
    assert lease_table(settings).read().state == RESERVED


def test_event_with_bad_configuration_is_dropped_not_retried(control_env, tmp_path):
    from tests.controlplane.conftest import chalice_client_for

    with chalice_client_for({**control_env, "WAKEFUL_CLUSTER": ""}, tmp_path) as client:
        assert deliver(client, event("task-running.json")) == "config_error"


def test_a_late_stop_event_is_verified_even_after_a_newer_task_uploaded(settings, tmp_path):
    plane = build_plane(settings)
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    first = plane.wake()
    [task] = ecs_tasks()
    old = AgentDouble(settings, first.body["task_arn"], tmp_path / "old")
    old.acquire(first.body["reservation_id"])
    old.write(3)
    old.upload("shutdown")
    old.release()
    # The next task starts, takes over and syncs before the old task's event is handled.
    second = plane.wake()
    new = AgentDouble(settings, second.body["task_arn"], tmp_path / "new")
    new.acquire(second.body["reservation_id"])
    new.etag = old.etag
    new.write(2)
    new.upload("periodic")

    outcome = plane.handle_event(event("task-stopped-user-initiated.json", task))

    assert outcome == "verified"
    assert "UnsyncedStop" not in plane.metrics.names()
    assert lease_table(settings).read().holder == second.body["task_arn"]


def test_a_holder_that_lost_the_lease_by_expiry_is_still_accounted_unsynced(settings, tmp_path):
    import time as clock_module

    from chalicelib.ledger import TaskLedger
    from tests.controlplane.conftest import Clock

    plane = build_plane(settings)
    first = plane.wake()
    [task] = ecs_tasks()
    stalled = AgentDouble(settings, first.body["task_arn"], tmp_path)
    stalled.acquire(first.body["reservation_id"])
    # What the real agent does on acquiring (see test_end_to_end): mark itself a holder.
    location = settings.location
    TaskLedger(location.lease_table, location.lease_name).mark_held(
        first.body["task_arn"], stalled.lease.token
    )
    # It stalls past its lease; a wake much later reserves the lease for a new task.
    later = build_plane(settings, clock=Clock(clock_module.time() + 3600))
    assert later.wake().status == 202
    assert lease_table(settings).read().state == "RESERVED"

    outcome = later.handle_event(event("task-stopped-exit-137.json", task))

    assert outcome == "unsynced"
    assert "UnsyncedStop" in later.metrics.names()
    assert lease_table(settings).read().state == "RESERVED"  # the new task's, untouched


def test_numbers_out_of_range_are_refused_by_the_handler_not_raised(
    chalice_client, settings, tmp_path
):
    task = woken(chalice_client)
    AgentDouble(settings, task["taskArn"], tmp_path).acquire(task["startedBy"])
    before = lease_table(settings).read()
    crashers = [
        event("task-stopped-exit-137.json", task, stoppedAt=float("inf")),
        event("task-stopped-exit-137.json", task, stoppedAt=float("nan")),
        event("task-stopped-exit-137.json", task, stoppedAt=1e300),
        event("task-stopped-exit-137.json", task, startedAt=10**400),
        event("task-stopped-exit-137.json", task, version=10**40),
        event("task-stopped-exit-137.json", task,
              containers=[{"name": "app", "exitCode": 10**40}]),
        {**event("task-stopped-exit-137.json", task), "time": float("inf")},
    ]
    for raw in crashers:
        assert deliver(chalice_client, raw) == "malformed"
    # Nothing was half-done: the holder is untouched, and a good event is still handled.
    assert lease_table(settings).read().holder == before.holder
    assert deliver(chalice_client, event("task-stopped-exit-137.json", task)) == "unsynced"


def test_no_value_makes_a_lease_write_raise(settings):
    table = lease_table(settings)
    odd = {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "big": 1e300,
           "tiny": 1e-300, "huge": 10**40, "neg": -(10**40), "fine": 1.5, "n": 7}
    lease = table.set_fields({"last_unsynced_stop": {"odd": odd, "list": [float("nan"), 1]}})
    stored = lease.last_unsynced_stop["odd"]
    assert stored["fine"] == 1.5 and stored["n"] == 7
    # What DynamoDB cannot hold as a number is kept as text, so nothing is lost or raised.
    assert stored["nan"] == "nan" and stored["inf"] == "inf" and stored["huge"] == str(10**40)


def test_a_running_event_after_sleep_does_not_publish_the_stopping_apps_endpoint(
    chalice_client, settings, tmp_path
):
    task = woken(chalice_client)
    AgentDouble(settings, task["taskArn"], tmp_path).acquire(task["startedBy"])
    assert deliver(chalice_client, event("task-running.json", task)) == "running"
    assert json.loads(chalice_client.http.post("/wake", headers=KEY).body)["state"] == "running"
    assert chalice_client.http.post("/sleep", headers=KEY).status_code == 202
    # ECS reports the stop request as a newer RUNNING event (desiredStatus STOPPED) while the
    # agent uploads; it must not hand the endpoint out again.
    stopping = event("task-running.json", task, version=5, desiredStatus="STOPPED")
    deliver(chalice_client, stopping)
    lease = lease_table(settings).read()
    assert lease.endpoint is None and lease.endpoint_task is None
    wake = chalice_client.http.post("/wake", headers=KEY)
    assert wake.status_code == 202 and json.loads(wake.body)["state"] == "starting"


def test_a_takeover_names_the_expired_holder_and_every_acquire_marks_its_task(
    settings, tmp_path
):
    import time as clock_module

    from chalicelib.lease import LeaseTable
    from chalicelib.ledger import TaskLedger
    from tests.controlplane.conftest import Clock

    plane = build_plane(settings)
    first = plane.wake()
    [task] = ecs_tasks()
    location = settings.location
    clock = Clock(clock_module.time())
    table = LeaseTable(location.lease_table, location.lease_name, clock=clock)
    # The task's agent acquires and runs the app; nothing else is written for it (its own
    # mark in the ledger failed, it never got to upload).
    arn = first.body["task_arn"]
    table.acquire(arn, ttl=30, reservation_id=first.body["reservation_id"], task_arn=arn)
    assert TaskLedger(location.lease_table, location.lease_name).entry(arn).held
    # It stalls past its lease; another task takes over, and later gives the lease back.
    clock.now += 3600
    other = "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/successor"
    taken = table.acquire(other, ttl=30, task_arn=other)
    assert taken.last_holder == arn and table.read().last_holder == arn
    table.release(other, taken.token)

    outcome = plane.handle_event(event("task-stopped-exit-137.json", task))

    assert outcome == "unsynced"
    assert "UnsyncedStop" in plane.metrics.names()
    assert lease_table(settings).read().last_unsynced_stop["task_arn"] == arn


def test_events_are_handled_without_an_api_key_configured(control_env, tmp_path):
    from tests.controlplane.conftest import chalice_client_for

    env = {k: v for k, v in control_env.items() if k != "WAKEFUL_API_KEY_SHA256"}
    with chalice_client_for(env, tmp_path) as client:
        # The key guards the HTTP routes only; the event handler must not drop events for it.
        assert deliver(client, event("task-running.json")) == "other"

"""The reconciler schedule: orphaned reservations, dead holders, a second task."""

from __future__ import annotations

import time

import boto3

from chalicelib.decisions import NOT_HOLDER, START_TIMEOUT
from chalicelib.lease import FREE, HELD
from tests.controlplane.agent_double import AgentDouble
from tests.controlplane.conftest import CLUSTER, Clock, build_plane, ecs_tasks, lease_table


def running_arns() -> list[str]:
    return boto3.client("ecs").list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"]


def test_asleep_it_does_nothing(chalice_client, settings):
    # The call count of the asleep path (one read, no ECS) is measured in bench/bench_wake.py.
    scheduled = {
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
        "time": "2015-10-08T16:53:06Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/wakeful-dev-reconcile"],
        "detail": {},
    }
    response = chalice_client.lambda_.invoke("reconcile", scheduled)
    assert response.payload == {"actions": []}
    assert lease_table(settings).read().state == FREE


def test_orphaned_reservation_is_stopped_and_released(settings):
    clock = Clock(time.time())
    plane = build_plane(settings, clock=clock)
    reply = plane.wake()
    assert plane.reconcile() == []  # within the start timeout: leave it
    clock.now += settings.start_timeout + 1
    done = plane.reconcile()
    # Released first: had its agent taken it meanwhile, the task would be kept.
    assert done == [f"released {reply.body['reservation_id']}",
                    f"stopped {reply.body['task_arn']}"]
    assert lease_table(settings).read().state == FREE
    [task] = ecs_tasks()
    assert task["desiredStatus"] == "STOPPED" and task["stoppedReason"] == START_TIMEOUT


def test_holder_that_died_is_released_and_accounted_as_unsynced(settings, tmp_path):
    plane = build_plane(settings)
    reply = plane.wake()
    arn = reply.body["task_arn"]
    agent = AgentDouble(settings, arn, tmp_path)
    agent.acquire(reply.body["reservation_id"])
    # ECS stops it behind our back (the event is lost): the lease still names it.
    boto3.client("ecs").stop_task(cluster=CLUSTER, task=arn, reason="host failure")
    assert plane.reconcile() == [f"unsynced {arn}"]
    lease = lease_table(settings).read()
    assert lease.state == FREE
    assert lease.last_unsynced_stop["task_arn"] == arn
    assert "UnsyncedStop" in plane.metrics.names()


def test_holder_that_died_after_its_final_upload_is_verified(settings, tmp_path):
    plane = build_plane(settings)
    reply = plane.wake()
    arn = reply.body["task_arn"]
    agent = AgentDouble(settings, arn, tmp_path)
    agent.acquire(reply.body["reservation_id"])
    agent.write()
    agent.upload("shutdown")
    boto3.client("ecs").stop_task(cluster=CLUSTER, task=arn, reason="stopped")
    assert plane.reconcile() == [f"verified {arn}"]
    assert lease_table(settings).read().state == FREE


def test_a_second_running_task_is_stopped(settings, tmp_path):
    plane = build_plane(settings)
    reply = plane.wake()
    holder = reply.body["task_arn"]
    AgentDouble(settings, holder, tmp_path).acquire(reply.body["reservation_id"])
    # Someone starts another task of the family by hand.
    ecs = boto3.client("ecs")
    extra = plane.launcher.start("manual-start")
    assert sorted(running_arns()) == sorted([holder, extra.task_arn])
    assert plane.reconcile() == [f"stopped {extra.task_arn}"]
    assert running_arns() == [holder]
    stopped = ecs.describe_tasks(cluster=CLUSTER, tasks=[extra.task_arn])["tasks"][0]
    assert stopped["stoppedReason"] == NOT_HOLDER
    lease = lease_table(settings).read()
    assert lease.state == HELD and lease.holder == holder


def test_a_reservation_taken_at_the_last_moment_keeps_its_task(settings, tmp_path):
    clock = Clock(time.time())
    plane = build_plane(settings, clock=clock)
    reply = plane.wake()
    clock.now += settings.start_timeout + 1
    # The reconciler has read the expired reservation; the slow agent takes it right now.
    late = build_plane(settings, clock=clock)
    agent = AgentDouble(settings, reply.body["task_arn"], tmp_path)
    agent.acquire(reply.body["reservation_id"])
    done = late.reconcile()
    assert not any(d.startswith("stopped") for d in done)
    [task] = ecs_tasks()
    assert task["desiredStatus"] == "RUNNING"
    assert lease_table(settings).read().holder == reply.body["task_arn"]

"""The reconciler schedule: orphaned reservations, dead holders, a second task."""

from __future__ import annotations

import time

import boto3

from chalicelib.decisions import NOT_HOLDER, START_TIMEOUT
from chalicelib.lease import FREE, HELD, LeaseTable
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
    # The slow agent takes the reservation after it expired, before the reconciler looks
    # (the test below has it take the reservation while the reconciler is already acting).
    late = build_plane(settings, clock=clock)
    agent = AgentDouble(settings, reply.body["task_arn"], tmp_path)
    agent.acquire(reply.body["reservation_id"])
    done = late.reconcile()
    assert not any(d.startswith("stopped") for d in done)
    [task] = ecs_tasks()
    assert task["desiredStatus"] == "RUNNING"
    assert lease_table(settings).read().holder == reply.body["task_arn"]


def stopped_behind_our_back(arn: str) -> None:
    """ECS stops the task and its STOPPED event is lost (the handler failed three times)."""
    boto3.client("ecs").stop_task(cluster=CLUSTER, task=arn, reason="host failure")


def test_a_stopped_task_that_is_not_the_holder_is_accounted(settings, tmp_path):
    clock = Clock(time.time())
    plane = build_plane(settings, clock=clock)
    first = plane.wake()
    old = AgentDouble(settings, first.body["task_arn"], tmp_path)
    old.acquire(first.body["reservation_id"])
    # Its agent stalls past the lease; a later wake starts a task that takes over.
    later = build_plane(settings, clock=Clock(clock.now + 3600))
    second = later.wake()
    table = LeaseTable(settings.location.lease_table, settings.location.lease_name,
                       clock=later.clock)
    table.acquire(second.body["task_arn"], ttl=3600, reservation_id=second.body["reservation_id"],
                  task_arn=second.body["task_arn"])
    stopped_behind_our_back(first.body["task_arn"])

    assert later.reconcile() == [f"unsynced {first.body['task_arn']}"]
    assert later.metrics.names().count("UnsyncedStop") == 1
    assert lease_table(settings).read().holder == second.body["task_arn"]  # untouched
    assert later.reconcile() == []  # accounted once


def test_a_stop_after_the_lease_was_freed_is_accounted_then_the_asleep_path_is_one_read(
    settings, tmp_path, resources
):
    from chalicelib import aws
    from chalicelib.tasks import EcsTaskLauncher
    from tests.fault_proxy import fault_proxy

    clock = Clock(time.time())
    plane = build_plane(settings, clock=clock)
    first = plane.wake()
    stalled = AgentDouble(settings, first.body["task_arn"], tmp_path)
    stalled.acquire(first.body["reservation_id"])
    # A manual agent takes over the expired lease, then gives it back: the lease is free.
    table = LeaseTable(settings.location.lease_table, settings.location.lease_name,
                       clock=lambda: clock.now + 3600)
    taken = table.acquire("operator@laptop:1", ttl=30)
    table.release("operator@laptop:1", taken.token)
    stopped_behind_our_back(first.body["task_arn"])

    with fault_proxy(resources.url) as proxy:
        region = settings.location.region
        watched = build_plane(
            settings, clock=clock,
            launcher=EcsTaskLauncher(settings, client=aws.client("ecs", region, proxy.url)),
        )
        assert watched.reconcile() == [f"unsynced {first.body['task_arn']}"]
        assert watched.reconcile() == []  # settled: nothing left alive, everything accounted
        proxy.clear_log()
        watched.lease = LeaseTable(
            settings.location.lease_table, settings.location.lease_name,
            client=aws.client("dynamodb", region, proxy.url),
        )
        assert watched.reconcile() == []
        calls = [(r.service, r.target) for r in proxy.requests]
    assert calls == [("dynamodb", "GetItem")]  # asleep: one read, no ECS call
    assert watched.metrics.names().count("UnsyncedStop") == 1


def test_a_reservation_taken_between_the_read_and_the_release_keeps_its_task(
    settings, tmp_path, resources
):
    import threading

    from chalicelib import aws
    from tests.fault_proxy import fault_proxy, service

    clock = Clock(time.time())
    plane = build_plane(settings, clock=clock)
    reply = plane.wake()
    clock.now += settings.start_timeout + 1
    with fault_proxy(resources.url) as proxy:
        # The reconciler has read the expired reservation and planned to release it and stop
        # its task; its release is held on the wire while the slow agent takes the lease.
        held = proxy.hang(service("dynamodb", "UpdateItem"), count=1)
        late = build_plane(settings, clock=clock)
        late.lease = LeaseTable(settings.location.lease_table, settings.location.lease_name,
                                client=aws.client("dynamodb", settings.location.region,
                                                  proxy.url), clock=clock)
        done: list[list[str]] = []
        worker = threading.Thread(target=lambda: done.append(late.reconcile()))
        worker.start()
        deadline = time.monotonic() + 60
        while held.hits == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert held.hits == 1
        AgentDouble(settings, reply.body["task_arn"], tmp_path).acquire(
            reply.body["reservation_id"]
        )
        proxy.heal()  # the held release is dropped; the SDK's retry finds the lease taken
        worker.join(timeout=120)
    assert done == [[f"kept reservation {reply.body['reservation_id']} (taken or gone)",
                     f"kept {reply.body['task_arn']}"]]
    [task] = ecs_tasks()
    assert task["desiredStatus"] == "RUNNING"
    lease = lease_table(settings).read()
    assert lease.state == HELD and lease.holder == reply.body["task_arn"]

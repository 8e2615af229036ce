"""The pure decisions, without I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from chalicelib import decisions
from chalicelib.decisions import (
    CheckDeadHolder,
    FailedToStart,
    Ignore,
    NeverHeld,
    RecordRunning,
    ReleaseReservation,
    StopTask,
    UnsyncedStop,
    VerifiedStop,
)
from chalicelib.events import TaskState, parse_event
from chalicelib.lease import FREE, HELD, RESERVED, Lease
from chalicelib.model import ChainEvidence, ChainSegment, ChainStop
from chalicelib.store import ObjectInfo
from tests.controlplane.conftest import event

NOW = 1_700_000_000.0


def task(name: str, **detail: object) -> TaskState:
    return parse_event(event(name, **detail)).task


ARN = task("task-running.json").task_arn


def upload(holder: str, reason: str, at: float) -> ObjectInfo:
    return ObjectInfo(
        key="db.sqlite3", etag='"e"', version_id="v1", size=4096,
        last_modified=dt.datetime.fromtimestamp(at, dt.UTC),
        metadata={"wakeful-holder": holder, "wakeful-reason": reason, "wakeful-token": "3"},
    )


def held(**fields: object) -> Lease:
    return Lease(name="db", state=HELD, holder=ARN, token=3, expires_at=NOW + 30, **fields)


def test_running_records_the_endpoint_for_the_holder_or_its_reservation() -> None:
    running = task("task-running.json", startedBy="res-1")
    action = decisions.decide(running, held(), None, NOW, 8000)
    assert action == RecordRunning(ARN, "res-1", "http://10.0.0.139:8000")
    reserved = Lease(name="db", state=RESERVED, holder="res-1", expires_at=NOW + 60)
    assert isinstance(decisions.decide(running, reserved, None, NOW, 8000), RecordRunning)
    other = Lease(name="db", state=HELD, holder="arn:aws:ecs:r:1:task/c/other", expires_at=NOW)
    assert isinstance(decisions.decide(running, other, None, NOW, 8000), Ignore)


def test_stop_after_the_final_upload_is_verified_without_a_second_release() -> None:
    stopped = task("task-stopped-exit-0.json")
    released = Lease(name="db", state=FREE, last_holder=ARN, token=3)
    action = decisions.decide(stopped, released, upload(ARN, "shutdown", NOW - 5), NOW, 8000)
    assert isinstance(action, VerifiedStop) and action.release is None


def test_verified_stop_releases_a_lease_the_agent_did_not_get_to_release() -> None:
    stopped = task("task-stopped-exit-0.json")
    action = decisions.decide(stopped, held(), upload(ARN, "shutdown", NOW - 5), NOW, 8000)
    assert isinstance(action, VerifiedStop) and action.release == ARN


def test_lease_record_proves_the_stop_when_a_newer_object_replaced_it() -> None:
    stopped = task("task-stopped-exit-0.json")
    lease = Lease(name="db", last_upload={"holder": ARN, "reason": "shutdown", "at": NOW - 9})
    newer = upload("arn:aws:ecs:r:1:task/c/next", "periodic", NOW)
    assert isinstance(decisions.decide(stopped, lease, newer, NOW, 8000), VerifiedStop)


def test_sigkill_after_a_periodic_upload_is_unsynced_with_the_window_since_it() -> None:
    stopped = task("task-stopped-exit-137.json")
    last = stopped.stopped_at - 42.5
    lease = held(last_upload={"holder": ARN, "reason": "periodic", "at": last})
    action = decisions.decide(stopped, lease, upload(ARN, "periodic", last), NOW, 8000)
    assert isinstance(action, UnsyncedStop)
    assert action.window_seconds == 42.5
    assert action.release == ARN
    assert action.record["killed"] is True
    assert action.record["exit_codes"] == {"app": 137}


def test_unsynced_window_runs_from_the_start_when_the_task_never_uploaded() -> None:
    stopped = task("task-stopped-exit-137.json")
    action = decisions.decide(stopped, held(), None, NOW, 8000)
    assert isinstance(action, UnsyncedStop)
    assert action.window_seconds == stopped.stopped_at - stopped.started_at


def test_failed_to_start_releases_its_reservation() -> None:
    failed = task("task-failed-to-start.json", startedBy="res-9")
    reserved = Lease(name="db", state=RESERVED, holder="res-9", expires_at=NOW + 60)
    action = decisions.decide(failed, reserved, None, NOW, 8000)
    assert isinstance(action, FailedToStart) and action.release == "res-9"
    assert "CannotPullContainerError" in action.reason


def test_a_task_that_never_held_the_lease_has_nothing_to_verify() -> None:
    stopped = task("task-stopped-user-initiated.json")
    other = Lease(name="db", state=HELD, holder="arn:aws:ecs:r:1:task/c/x", expires_at=NOW)
    action = decisions.decide(stopped, other, None, NOW, 8000)
    assert action == NeverHeld(ARN, None)


def test_a_task_marked_as_a_holder_is_unsynced_whatever_the_lease_says_now() -> None:
    stopped = task("task-stopped-user-initiated.json")
    other = Lease(name="db", state=HELD, holder="arn:aws:ecs:r:1:task/c/x", expires_at=NOW)
    action = decisions.decide(stopped, other, None, NOW, 8000, held=True)
    assert isinstance(action, UnsyncedStop) and action.release is None


def test_stale_versions_are_duplicates_or_late() -> None:
    running = task("task-running.json")
    assert decisions.is_stale(running, 4) and decisions.is_stale(running, 6)
    assert not decisions.is_stale(running, None) and not decisions.is_stale(running, 3)


def test_wake_answers_by_lease_state() -> None:
    assert decisions.decide_wake(Lease(name="db"), NOW).state == "start"
    own = held(endpoint="http://a:1", endpoint_task=ARN, ready_at=NOW - 1)
    assert decisions.decide_wake(own, NOW) == decisions.WakeAnswer("running", "http://a:1")
    assert decisions.decide_wake(held(), NOW).state == "starting"
    # Held with an endpoint but the app does not answer yet: still starting.
    booting = held(endpoint="http://a:1", endpoint_task=ARN)
    assert decisions.decide_wake(booting, NOW).state == "starting"
    # An endpoint left by another task is never handed out as this holder's.
    someone_elses = held(
        endpoint="http://dead:1", endpoint_task="arn:aws:ecs:r:1:task/c/old", ready_at=NOW - 1
    )
    assert decisions.decide_wake(someone_elses, NOW).state == "starting"
    expired = Lease(name="db", state=HELD, holder=ARN, expires_at=NOW - 1)
    assert decisions.decide_wake(expired, NOW).state == "start"


def test_reconciler_sweeps_stopped_tasks_until_settled_and_not_after() -> None:
    # What the reconciler reads while asleep is counted on the wire in
    # test_reconciler.py::test_a_stop_after_the_lease_was_freed_is_accounted_then_the_asleep_
    # path_is_one_read; here, the decision that allows it.
    assert not decisions.needs_sweep(Lease(name="db"))  # never used: nothing can have stopped
    released = Lease(name="db", token=3, last_holder=ARN)
    assert decisions.needs_sweep(released)  # its holder may still be stopping
    marker = {"at": NOW, "settled": decisions.settled_marker(released)}
    settled = dataclasses.replace(released, extra={"sweep": marker})
    assert not decisions.needs_sweep(settled)
    # An acquire (a new token) or a release (a new last holder) since: look again.
    assert decisions.needs_sweep(dataclasses.replace(settled, token=4))
    assert decisions.needs_sweep(dataclasses.replace(settled, last_holder="res-2"))
    assert decisions.needs_sweep(held()) and decisions.needs_tasks(held())


def test_a_sweep_looks_back_to_the_last_one_and_settles_only_when_nothing_is_alive() -> None:
    old = task("task-stopped-exit-0.json", stoppedAt=NOW - 3600)
    recent = task("task-stopped-exit-137.json", stoppedAt=NOW - 30,
                  taskArn="arn:aws:ecs:us-west-2:1:task/FargateCluster/b2")
    stopping = task("task-running.json", desiredStatus="STOPPED")
    assert decisions.stopped_since([old, recent, stopping], None) == [old, recent]
    assert decisions.stopped_since([old, recent, stopping], NOW - 60) == [recent]
    free = Lease(name="db", token=3, last_holder=ARN)
    assert decisions.is_settled(free, [], [old, recent])
    assert not decisions.is_settled(free, [], [old, stopping])  # still shutting down
    assert not decisions.is_settled(free, [task("task-running.json")], [])
    assert not decisions.is_settled(held(), [], [])


def test_reconciler_stops_and_releases_an_orphaned_reservation() -> None:
    lease = Lease(name="db", state=RESERVED, holder="res-1", expires_at=NOW - 1)
    booting = task("task-running.json", startedBy="res-1", lastStatus="PENDING")
    plan = decisions.reconcile(lease, None, [booting], NOW)
    assert plan.actions == (ReleaseReservation("res-1"), StopTask(ARN, decisions.START_TIMEOUT))


def test_reconciler_checks_a_dead_holder_and_stops_a_second_task() -> None:
    second = task("task-running.json", taskArn="arn:aws:ecs:us-west-2:1:task/FargateCluster/b2")
    plan = decisions.reconcile(held(), None, [second], NOW)
    assert isinstance(plan.actions[0], CheckDeadHolder)
    assert plan.actions[0].task.task_arn == ARN
    assert plan.actions[1] == StopTask(second.task_arn, decisions.NOT_HOLDER)
    alive = task("task-running.json")
    assert decisions.reconcile(held(), alive, [alive], NOW).actions == ()


# -- the chain layout's evidence (a chain-mode agent) ----------------------------------------

GEN = "000000000003-0badc0de"


def chain_stop(holder: str = ARN, token: int = 3) -> ChainEvidence:
    return ChainEvidence(stopped=ChainStop(holder, token, 12, NOW - 4, GEN, "ab" * 32))


def test_the_manifests_stop_record_verifies_a_stop_that_left_the_object_untouched() -> None:
    stopped = task("task-stopped-exit-0.json")
    # The current object is an earlier holder's snapshot (nothing changed since it), and the
    # lease's record of the stop is gone: the manifest alone proves it.
    earlier = upload("arn:aws:ecs:r:1:task/c/earlier", "shutdown", NOW - 600)
    action = decisions.decide(stopped, held(), earlier, NOW, 8000, held=True,
                              chain=chain_stop(), held_token=3)
    assert isinstance(action, VerifiedStop) and action.release == ARN
    assert action.upload["source"] == "manifest"
    assert (action.upload["position"], action.upload["token"]) == (12, 3)


def test_a_stop_record_of_another_holder_or_token_verifies_nothing() -> None:
    stopped = task("task-stopped-exit-137.json")
    other = chain_stop(holder="arn:aws:ecs:r:1:task/c/earlier")
    action = decisions.decide(stopped, held(), None, NOW, 8000, held=True, chain=other)
    assert isinstance(action, UnsyncedStop)
    # The same task, but the record of its earlier agent process (token 2) and not of the
    # one that held last (token 3).
    stale = chain_stop(token=2)
    assert isinstance(
        decisions.decide(stopped, held(), None, NOW, 8000, held=True, chain=stale, held_token=3),
        UnsyncedStop,
    )
    # Unknown token (the ledger has none): the holder alone decides, as for the object.
    assert isinstance(
        decisions.decide(stopped, held(), None, NOW, 8000, held=True, chain=stale),
        VerifiedStop,
    )


def test_the_unsynced_window_runs_from_the_last_segment_the_holder_shipped() -> None:
    stopped = task("task-stopped-exit-137.json")
    periodic = upload(ARN, "periodic", stopped.stopped_at - 300)  # its last snapshot
    segment = ChainSegment(GEN, 57, "segment", ARN, 3, stopped.stopped_at - 0.75)
    evidence = ChainEvidence(stopped=None, last_segment=segment)
    action = decisions.decide(stopped, held(), periodic, NOW, 8000, held=True, chain=evidence)
    assert isinstance(action, UnsyncedStop)
    assert action.window_seconds == pytest.approx(0.75)
    assert action.record["last_segment"] == {
        "generation": GEN, "position": 57, "kind": "segment", "token": 3,
        "at": segment.at,
    }
    # Another holder's segment says nothing of this task's window.
    theirs = ChainEvidence(last_segment=dataclasses.replace(segment, holder="other"))
    action = decisions.decide(stopped, held(), periodic, NOW, 8000, held=True, chain=theirs)
    assert isinstance(action, UnsyncedStop) and action.window_seconds == pytest.approx(300)
    assert "last_segment" not in action.record


def test_a_claimed_position_is_evidence_the_task_held_the_lease() -> None:
    stopped = task("task-stopped-exit-137.json")
    other = Lease(name="db", state=HELD, holder="arn:aws:ecs:r:1:task/c/x", expires_at=NOW)
    claim = ChainSegment(GEN, 5, "claim", ARN, 3, stopped.stopped_at - 2)
    action = decisions.decide(stopped, other, None, NOW, 8000,
                              chain=ChainEvidence(last_segment=claim))
    assert isinstance(action, UnsyncedStop) and action.window_seconds == pytest.approx(2)

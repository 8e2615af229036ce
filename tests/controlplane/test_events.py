"""Parsing "ECS Task State Change" events as AWS documents them."""

from __future__ import annotations

import pytest

from chalicelib.events import MalformedEvent, parse_event
from tests.controlplane.conftest import event


def test_running_event_gives_the_task_and_its_private_address() -> None:
    parsed = parse_event(event("task-running.json"))
    task = parsed.task
    assert task.last_status == "RUNNING"
    assert task.version == 4
    assert task.private_ip == "10.0.0.139"
    assert task.family == "sample-fargate"
    assert task.in_cluster("FargateCluster")
    assert task.in_cluster("arn:aws:ecs:us-west-2:111122223333:cluster/FargateCluster")
    assert not task.in_cluster("OtherCluster")
    assert task.started_at == pytest.approx(1579802278.103)


def test_stopped_events_carry_stop_code_reason_and_exit_codes() -> None:
    killed = parse_event(event("task-stopped-exit-137.json")).task
    assert killed.stop_code == "EssentialContainerExited"
    assert killed.exit_codes == {"app": 137}
    assert killed.killed
    clean = parse_event(event("task-stopped-exit-0.json")).task
    assert clean.exit_codes == {"app": 0} and not clean.killed
    user = parse_event(event("task-stopped-user-initiated.json")).task
    assert user.stop_code == "UserInitiated"
    failed = parse_event(event("task-failed-to-start.json")).task
    assert failed.failed_to_start and failed.started_at is None
    assert "CannotPullContainerError" in (failed.stopped_reason or "")


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "text",
        {"source": "aws.ec2", "detail-type": "ECS Task State Change", "detail": {}},
        {"source": "aws.ecs", "detail-type": "ECS Task State Change"},
        {"source": "aws.ecs", "detail-type": "ECS Task State Change", "detail": []},
        event("task-running.json", taskArn="not-an-arn"),
        event("task-running.json", version="four"),
        event("task-running.json", version=True),
        event("task-running.json", lastStatus=None),
        event("task-running.json", stoppedAt="yesterday"),
        event("task-running.json", containers="app"),
        event("task-running.json", containers=[{"name": "app", "exitCode": "137"}]),
        event("task-running.json", attachments={"id": 1}),
        event("task-running.json", attachments=[{"type": "eni", "details": 5}]),
        event(
            "task-running.json",
            attachments=[{"type": "eni", "details": [{"name": "privateIPv4Address",
                                                      "value": 10}]}],
        ),
        # Numbers JSON can carry but nothing downstream can use: each once crashed the
        # handler (TypeError, OverflowError, decimal.Overflow) instead of being refused.
        event("task-running.json", stoppedAt=1e400),
        event("task-running.json", stoppedAt=float("nan")),
        event("task-running.json", stoppedAt=-1e400),
        event("task-running.json", stoppedAt=1e300),
        event("task-running.json", stoppedAt=10**400),
        event("task-running.json", startedAt=-5.0),
        {**event("task-running.json"), "time": 1e400},
        {**event("task-running.json"), "time": 10**400},
        event("task-running.json", version=10**40),
        event("task-running.json", version=-1),
        event("task-running.json", version="1" * 40),
        event("task-running.json", containers=[{"name": "app", "exitCode": 10**40}]),
        event("task-running.json", containers=[{"name": "app", "exitCode": -(10**40)}]),
        event("task-running.json", containers=[{"name": "app", "lastStatus": {"a": [1]}}]),
        event("task-running.json", containers=[{"name": "app"}] * 1000),
        event("task-running.json", taskArn="arn:aws:ecs:r:1:task/c/" + "x" * 5000),
        event(
            "task-running.json",
            attachments=[{"type": "eni", "details": [{"name": "privateIPv4Address",
                                                      "value": "evil.example:1/x?"}]}],
        ),
    ],
)
def test_malformed_events_raise_a_typed_error(raw: object) -> None:
    with pytest.raises(MalformedEvent):
        parse_event(raw)


def test_free_text_is_kept_to_a_length_a_lease_record_can_hold() -> None:
    long = parse_event(event("task-stopped-exit-137.json", stoppedReason="why " * 100_000))
    assert 0 < len(long.task.stopped_reason or "") <= 2048
    assert long.task.stopped_reason.startswith("why why")

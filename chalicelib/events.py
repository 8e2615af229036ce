"""The ECS task model: "ECS Task State Change" events and DescribeTasks answers, typed.

Both carry the same task shape (camelCase keys; the event has ISO strings where DescribeTasks
has datetimes), so one parser serves the event handler and the reconciler. Anything malformed
raises ``MalformedEvent``: the handler logs it and drops it, because raising would only make
EventBridge deliver the same bad event again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import WakefulError

TASK_STATE_CHANGE = "ECS Task State Change"
ECS_SOURCE = "aws.ecs"

RUNNING = "RUNNING"
STOPPED = "STOPPED"
FAILED_TO_START = "TaskFailedToStart"

# The container exit code of a process ended by SIGKILL (128 + 9): nothing ran its shutdown.
SIGKILL_EXIT = 137


class MalformedEvent(WakefulError):
    """An event or task description that does not have the shape of an ECS task."""


@dataclass(frozen=True)
class ContainerState:
    name: str
    last_status: str | None
    exit_code: int | None
    reason: str | None


@dataclass(frozen=True)
class TaskState:
    """One ECS task as an event or DescribeTasks reports it."""

    task_arn: str
    cluster_arn: str
    task_definition_arn: str
    last_status: str
    desired_status: str | None
    version: int
    started_by: str | None = None
    created_at: float | None = None
    started_at: float | None = None
    stopped_at: float | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    private_ip: str | None = None
    containers: tuple[ContainerState, ...] = ()

    @property
    def task_id(self) -> str:
        return self.task_arn.rsplit("/", 1)[-1]

    @property
    def family(self) -> str:
        return family_of(self.task_definition_arn)

    @property
    def exit_codes(self) -> dict[str, int | None]:
        return {container.name: container.exit_code for container in self.containers}

    @property
    def killed(self) -> bool:
        """A container was ended by SIGKILL: its shutdown sync cannot have run."""
        return any(c.exit_code == SIGKILL_EXIT for c in self.containers)

    @property
    def failed_to_start(self) -> bool:
        return self.stop_code == FAILED_TO_START

    def in_cluster(self, cluster: str) -> bool:
        """``cluster`` may be a name or an ARN, as in the settings."""
        if cluster.startswith("arn:"):
            return self.cluster_arn == cluster
        return self.cluster_arn.rsplit("/", 1)[-1] == cluster

    def describe(self) -> dict[str, Any]:
        """The facts an operator reads in a log line or on the lease item."""
        return {
            "task_arn": self.task_arn,
            "last_status": self.last_status,
            "stop_code": self.stop_code,
            "stopped_reason": self.stopped_reason,
            "exit_codes": self.exit_codes,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
        }


@dataclass(frozen=True)
class TaskEvent:
    """An "ECS Task State Change" event."""

    event_id: str
    time: float | None
    task: TaskState


def family_of(task_definition: str) -> str:
    """``arn:...:task-definition/web:3``, ``web:3`` and ``web`` all name the family ``web``."""
    name = task_definition.rsplit("/", 1)[-1]
    return name.split(":", 1)[0]


def parse_event(raw: Any) -> TaskEvent:
    """An EventBridge event (the dict Lambda receives) as a ``TaskEvent``."""
    if not isinstance(raw, Mapping):
        raise MalformedEvent(f"an event must be a JSON object, got {type(raw).__name__}")
    if raw.get("source") != ECS_SOURCE or raw.get("detail-type") != TASK_STATE_CHANGE:
        raise MalformedEvent(
            f"not an {TASK_STATE_CHANGE!r} event: source={raw.get('source')!r} "
            f"detail-type={raw.get('detail-type')!r}"
        )
    detail = raw.get("detail")
    if not isinstance(detail, Mapping):
        raise MalformedEvent("event has no detail object")
    return TaskEvent(
        event_id=str(raw.get("id") or ""),
        time=_timestamp(raw.get("time"), "time"),
        task=parse_task(detail),
    )


def parse_task(detail: Mapping[str, Any]) -> TaskState:
    """A task from an event's ``detail`` or one entry of DescribeTasks' ``tasks``."""
    version = detail.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int | str):
        raise MalformedEvent(f"task version must be a number, got {version!r}")
    try:
        version = int(version)
    except ValueError:
        raise MalformedEvent(f"task version must be a number, got {version!r}") from None
    return TaskState(
        task_arn=_arn(detail, "taskArn", ":task/"),
        cluster_arn=_arn(detail, "clusterArn", ":cluster/"),
        task_definition_arn=_arn(detail, "taskDefinitionArn", ":task-definition/"),
        last_status=_text(detail, "lastStatus", required=True) or "",
        desired_status=_text(detail, "desiredStatus"),
        version=version,
        started_by=_text(detail, "startedBy"),
        created_at=_timestamp(detail.get("createdAt"), "createdAt"),
        started_at=_timestamp(detail.get("startedAt"), "startedAt"),
        stopped_at=_timestamp(detail.get("stoppedAt"), "stoppedAt"),
        stop_code=_text(detail, "stopCode"),
        stopped_reason=_text(detail, "stoppedReason"),
        private_ip=_private_ip(detail),
        containers=_containers(detail.get("containers")),
    )


def _text(detail: Mapping[str, Any], key: str, required: bool = False) -> str | None:
    value = detail.get(key)
    if value is None or value == "":
        if required:
            raise MalformedEvent(f"task has no {key}")
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"task {key} must be a string, got {value!r}")
    return value


def _arn(detail: Mapping[str, Any], key: str, marker: str) -> str:
    value = _text(detail, key, required=True) or ""
    if not value.startswith("arn:") or marker not in value:
        raise MalformedEvent(f"task {key} is not an ARN of the right kind: {value!r}")
    return value


def _timestamp(value: Any, key: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise MalformedEvent(f"{key} is not an ISO 8601 time: {value!r}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    else:
        raise MalformedEvent(f"{key} is not a time: {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _private_ip(detail: Mapping[str, Any]) -> str | None:
    """The task ENI's private IPv4 address (awsvpc mode), if it has one yet."""
    attachments = detail.get("attachments") or []
    if not isinstance(attachments, list):
        raise MalformedEvent("task attachments must be a list")
    for attachment in attachments:
        if not isinstance(attachment, Mapping):
            continue
        if str(attachment.get("type", "")).lower() not in ("eni", "elasticnetworkinterface"):
            continue
        details = attachment.get("details") or []
        if not isinstance(details, list):
            raise MalformedEvent("attachment details must be a list")
        for item in details:
            if isinstance(item, Mapping) and item.get("name") == "privateIPv4Address":
                value = item.get("value")
                if value is not None and not isinstance(value, str):
                    raise MalformedEvent(f"privateIPv4Address must be a string, got {value!r}")
                return value or None
    return None


def _containers(raw: Any) -> tuple[ContainerState, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise MalformedEvent("task containers must be a list")
    found = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise MalformedEvent("each task container must be an object")
        code = item.get("exitCode")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise MalformedEvent(f"container exitCode must be an integer, got {code!r}")
        found.append(
            ContainerState(
                name=str(item.get("name") or "?"),
                last_status=item.get("lastStatus"),
                exit_code=code,
                reason=item.get("reason"),
            )
        )
    return tuple(found)

"""The ECS task model: "ECS Task State Change" events and DescribeTasks answers, typed.

Both carry the same task shape (camelCase keys; the event has ISO strings where DescribeTasks
has datetimes), so one parser serves the event handler and the reconciler. Anything malformed
raises ``MalformedEvent``: the handler logs it and drops it, because raising would only make
EventBridge deliver the same bad event again.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
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

# What a real event can carry. Every value is checked against these before anything uses it:
# an inf, a NaN, a 1e300 or a 40-digit integer crashed the handler further down (float(),
# DynamoDB's number type), and Lambda retried and dropped the event instead of refusing it.
# A time: after the epoch and before 2106 (2**32 s), which every ECS time is.
TIME_RANGE = (0.0, float(2**32))
# ECS counts a task's changes up from 1; a 64-bit counter at most.
VERSION_MAX = 2**63 - 1
# A container exit code is a 32-bit integer, signed on some runtimes.
EXIT_CODE_RANGE = (-(2**31), 2**32 - 1)
# ARNs, names and states (ECS's own are well under this); longer is not an ECS value.
IDENTIFIER_MAX = 1600
# Reasons are free text: kept, but cut to this, so a record of them always fits an item.
TEXT_MAX = 2048
# ECS allows 10 containers in a task definition.
CONTAINERS_MAX = 100


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
    event_id = raw.get("id") or ""
    if not isinstance(event_id, str):
        raise MalformedEvent(f"event id must be a string, got {type(event_id).__name__}")
    return TaskEvent(
        event_id=event_id[:IDENTIFIER_MAX],
        time=_timestamp(raw.get("time"), "time"),
        task=parse_task(detail),
    )


def parse_task(detail: Mapping[str, Any]) -> TaskState:
    """A task from an event's ``detail`` or one entry of DescribeTasks' ``tasks``."""
    version = detail.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int | str):
        raise MalformedEvent(f"task version must be a number, got {version!r}")
    if isinstance(version, str) and len(version) > 20:
        raise MalformedEvent(f"task version is not a plausible number: {version[:40]!r}...")
    try:
        version = int(version)
    except ValueError:
        raise MalformedEvent(f"task version must be a number, got {version!r}") from None
    if not 0 <= version <= VERSION_MAX:
        raise MalformedEvent(f"task version out of range: {_short(version)}")
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
        stopped_reason=_free_text(detail, "stoppedReason"),
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
        raise MalformedEvent(f"task {key} must be a string, got {_short(value)}")
    if len(value) > IDENTIFIER_MAX:
        raise MalformedEvent(f"task {key} is {len(value)} characters long: not an ECS value")
    return value


def _free_text(detail: Mapping[str, Any], key: str) -> str | None:
    """A reason: any string, cut to ``TEXT_MAX`` characters."""
    value = detail.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"{key} must be a string, got {_short(value)}")
    return value[:TEXT_MAX]


def _short(value: Any) -> str:
    """A value for an error message: never a 400-digit number or a megabyte of text."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


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
        # Checked before float(): a 400-digit integer has no float (OverflowError).
        if not (isinstance(value, int) or math.isfinite(value)) or not (
            TIME_RANGE[0] <= value <= TIME_RANGE[1]
        ):
            raise MalformedEvent(f"{key} is not a plausible time: {_short(value)}")
        return float(value)
    else:
        raise MalformedEvent(f"{key} is not a time: {_short(value)}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    seconds = moment.timestamp()
    if not TIME_RANGE[0] <= seconds <= TIME_RANGE[1]:
        raise MalformedEvent(f"{key} is not a plausible time: {_short(value)}")
    return seconds


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
                return _ipv4(item.get("value"))
    return None


def _ipv4(value: Any) -> str | None:
    """The address clients are sent to: an IPv4 address and nothing else (no host, port or
    path a crafted event could slip into the endpoint)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"privateIPv4Address must be a string, got {_short(value)}")
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        problem = f"privateIPv4Address is not an IPv4 address: {_short(value)}"
        raise MalformedEvent(problem) from None


def _containers(raw: Any) -> tuple[ContainerState, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise MalformedEvent("task containers must be a list")
    if len(raw) > CONTAINERS_MAX:
        raise MalformedEvent(f"a task has at most {CONTAINERS_MAX} containers, got {len(raw)}")
    found = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise MalformedEvent("each task container must be an object")
        code = item.get("exitCode")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise MalformedEvent(f"container exitCode must be an integer, got {_short(code)}")
        if code is not None and not EXIT_CODE_RANGE[0] <= code <= EXIT_CODE_RANGE[1]:
            raise MalformedEvent(f"container exitCode out of range: {_short(code)}")
        found.append(
            ContainerState(
                name=_text(item, "name") or "?",
                last_status=_text(item, "lastStatus"),
                exit_code=code,
                reason=_free_text(item, "reason"),
            )
        )
    return tuple(found)

"""Task control: the ``TaskLauncher`` contract and its ECS edge.

The control plane only starts, stops and describes "the backend task"; how is the launcher's
business. ``WAKEFUL_TASK_LAUNCHER`` picks one: ``ecs`` is built in, any other is registered
from outside (``chalicelib.launchers``: the local stack's stand-in for Fargate is one), and
``launcher_for`` builds it. ``describe_tasks`` is the one DescribeTasks, for every door.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib import aws, launchers
from chalicelib.errors import TaskControlError
from chalicelib.events import MalformedEvent, TaskState, family_of, parse_task

if TYPE_CHECKING:
    from chalicelib.settings import ControlPlaneSettings

RESERVATION_ENV = "WAKEFUL_RESERVATION_ID"

# RunTask failures that a later try may not hit (capacity and throttling), as ECS names them.
_TRANSIENT_FAILURES = ("RESOURCE", "CAPACITY", "AGENT", "THROTTL", "UNAVAILABLE")
_DESCRIBE_BATCH = 100


class TaskLauncher(Protocol):
    """What the control plane needs from whatever runs the backend."""

    def start(self, reservation_id: str) -> TaskState:
        """Start one task that will acquire ``reservation_id``; ``TaskControlError`` if refused."""
        ...

    def stop(self, task_arn: str, reason: str) -> None: ...

    def describe(self, task_arns: Sequence[str]) -> dict[str, TaskState]:
        """ECS's view of each task it still knows; unknown ones are left out."""
        ...

    def running(self) -> list[TaskState]:
        """The family's tasks that are not yet stopped."""
        ...

    def stopped(self) -> list[TaskState]:
        """The family's tasks that ECS was asked to stop or that stopped (ECS keeps those for
        about an hour); some may still be shutting down."""
        ...


class EcsTaskLauncher:
    """Fargate tasks through the ECS API."""

    def __init__(self, settings: ControlPlaneSettings, client: Any | None = None) -> None:
        self.settings = settings
        region = settings.location.region
        self._ecs = client or aws.LazyClient(lambda: aws.client("ecs", region))
        self.family = family_of(settings.task_definition)

    def start(self, reservation_id: str) -> TaskState:
        s = self.settings
        request: dict[str, Any] = {
            "cluster": s.cluster,
            "taskDefinition": s.task_definition,
            "launchType": "FARGATE",
            "count": 1,
            # ECS drops a repeated RunTask with the same token; the lease reservation is what
            # makes wakes race-free, this only narrows the window of a retried request.
            "clientToken": reservation_id[:64],
            "startedBy": reservation_id[:128],
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(s.subnets),
                    "securityGroups": list(s.security_groups),
                    "assignPublicIp": "ENABLED" if s.assign_public_ip else "DISABLED",
                }
            },
            "overrides": {
                "containerOverrides": [
                    {
                        "name": s.container_name,
                        "environment": [{"name": RESERVATION_ENV, "value": reservation_id}],
                    }
                ]
            },
            "propagateTags": "TASK_DEFINITION",
        }
        if s.task_tags:
            request["tags"] = [{"key": k, "value": v} for k, v in s.task_tags]
        response = call("RunTask", self._ecs.run_task, **request)
        failures = response.get("failures") or []
        tasks = response.get("tasks") or []
        if failures or not tasks:
            reason = "; ".join(
                f"{f.get('reason', '?')}" + (f" ({f['detail']})" if f.get("detail") else "")
                for f in failures
            ) or "no task was started"
            transient = any(word in reason.upper() for word in _TRANSIENT_FAILURES)
            raise TaskControlError("RunTask", reason, retryable=transient)
        return _parse(tasks[0])

    def stop(self, task_arn: str, reason: str) -> None:
        call(
            "StopTask", self._ecs.stop_task,
            cluster=self.settings.cluster, task=task_arn, reason=reason[:255],
        )

    def describe(self, task_arns: Sequence[str]) -> dict[str, TaskState]:
        return describe_tasks(self._ecs, self.settings.cluster, task_arns)

    def running(self) -> list[TaskState]:
        return self._listed("RUNNING")

    def stopped(self) -> list[TaskState]:
        return self._listed("STOPPED")

    def _listed(self, desired_status: str) -> list[TaskState]:
        arns: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "cluster": self.settings.cluster,
                "family": self.family,
                "desiredStatus": desired_status,
            }
            if token:
                kwargs["nextToken"] = token
            response = call("ListTasks", self._ecs.list_tasks, **kwargs)
            arns.extend(response.get("taskArns") or [])
            token = response.get("nextToken")
            if not token:
                break
        return list(self.describe(arns).values()) if arns else []


def describe_tasks(ecs: Any, cluster: str, task_arns: Sequence[str]) -> dict[str, TaskState]:
    """ECS's view of each task it still knows, by ARN; unknown ones are left out.

    ``ecs`` is a boto3 ECS client. ``TaskControlError`` when ECS cannot answer, or answers
    with something that is not a task.
    """
    found: dict[str, TaskState] = {}
    arns = list(dict.fromkeys(task_arns))
    for start in range(0, len(arns), _DESCRIBE_BATCH):
        response = call(
            "DescribeTasks", ecs.describe_tasks,
            cluster=cluster, tasks=arns[start:start + _DESCRIBE_BATCH],
        )
        for raw in response.get("tasks") or []:
            task = _parse(raw)
            found[task.task_arn] = task
    return found


def call(operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
    """One ECS call; its failure as a ``TaskControlError`` that says whether to retry and
    whether the request may have taken effect all the same."""
    try:
        return method(**kwargs)
    except aws.CALL_ERRORS as exc:
        failure = aws.translate(exc)
        raise TaskControlError(
            operation, str(failure) if failure.status else failure.message or failure.code,
            retryable=failure.transient, ambiguous=failure.ambiguous,
        ) from exc


def _parse(raw: Any) -> TaskState:
    try:
        return parse_task(raw)
    except MalformedEvent as exc:
        raise TaskControlError("DescribeTasks", f"unexpected task shape: {exc}") from exc


def launcher_for(settings: ControlPlaneSettings, ecs: Any | None = None) -> TaskLauncher:
    """The launcher ``settings.launcher`` names; ``ecs`` is the ECS client to share, if any.

    ``ConfigError`` (naming ``WAKEFUL_TASK_LAUNCHER``) when no launcher has that name here, or
    its package cannot be loaded: the Lambda zip carries none but ECS's.
    """
    if settings.launcher == launchers.BUILT_IN:
        return EcsTaskLauncher(settings, client=ecs)
    factory = launchers.load(settings.launcher)
    launcher: TaskLauncher = factory(settings)
    return launcher

"""``POST /wake``: keep an awake backend awake, or reserve the lease and start a task.

Awake: one lease write (the keepalive, which returns the item). Asleep: the keepalive, the
reservation and RunTask. The reservation makes concurrent wakes start one task: whoever loses
the race to reserve answers "starting" for the winner's task.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib import decisions
from chalicelib.errors import (
    LeaseHeld,
    LeaseLost,
    LeaseUnavailable,
    StoreUnavailable,
    TaskControlError,
)
from chalicelib.lease import LeaseTable
from chalicelib.model import HELD, Lease
from chalicelib.observability import MetricSink
from chalicelib.plane.reply import RETRY_UNAVAILABLE, Reply, retry_after, starting, unavailable
from chalicelib.tasks import TaskLauncher


@dataclass(frozen=True)
class Wake:
    lease: LeaseTable
    launcher: TaskLauncher
    log: Any
    metrics: MetricSink
    start_timeout: float
    app_port: int
    clock: Callable[[], float] = time.time
    new_reservation: Callable[[], str] = lambda: str(uuid.uuid4())

    def wake(self) -> Reply:
        """Start the backend or keep it awake. Awake: one lease write. Asleep: three calls."""
        try:
            # The keepalive doubles as the read: it returns the whole item.
            lease = self.lease.touch_wake()
            answer = decisions.decide_wake(lease, self.clock())
            if answer.state == "running":
                self.metrics.emit("Wake", state="running")
                return Reply(200, {"state": "running", "endpoint": answer.endpoint,
                                   "task_arn": lease.task_arn})
            if answer.state == "starting":
                endpoint = self._endpoint_from_ecs(lease)
                if endpoint:
                    self.metrics.emit("Wake", state="running")
                    return Reply(200, {"state": "running", "endpoint": endpoint,
                                       "task_arn": lease.holder})
                self.metrics.emit("Wake", state="starting")
                return starting(lease.task_arn, lease.reservation_id)
            return self._start()
        except (LeaseUnavailable, StoreUnavailable) as exc:
            return unavailable(exc, self.log)

    def _start(self) -> Reply:
        reservation = self.new_reservation()
        try:
            self.lease.reserve(reservation, self.start_timeout)
        except LeaseHeld:
            # Another wake won the race between our read and our reservation: it is starting.
            self.metrics.emit("Wake", state="starting")
            return starting(None, None)
        try:
            task = self.launcher.start(reservation)
        except TaskControlError as exc:
            if exc.ambiguous:
                # The task may be starting: keep the reservation, or the next wake could
                # start a second one. If none comes, the reconciler frees it after the
                # start timeout.
                self.log.warning(
                    "RunTask answered ambiguously; keeping the reservation",
                    extra={"reservation_id": reservation, "reason": exc.reason},
                )
                return starting(None, reservation)
            release_reservation(self.lease, reservation, self.log)
            self.log.error(
                "Failed to start the backend task; reservation released",
                extra={"reservation_id": reservation, "reason": exc.reason,
                       "retryable": exc.retryable},
            )
            self.metrics.emit("TaskStartFailed")
            return Reply(
                503,
                {"state": "asleep", "error": "task could not be started", "reason": exc.reason,
                 "retryable": exc.retryable},
                retry_after(RETRY_UNAVAILABLE),
            )
        self.log.info(
            "Backend task started",
            extra={"task_arn": task.task_arn, "reservation_id": reservation},
        )
        self.metrics.emit("Wake", state="started")
        self.metrics.emit("TaskStarted")
        return starting(task.task_arn, reservation)

    def _endpoint_from_ecs(self, lease: Lease) -> str | None:
        """A task holds the lease but no endpoint of its own is recorded: ask ECS for it.

        Its RUNNING event may have come while the lease was still someone else's and been
        dropped; without this, wakes would answer "starting" for as long as it runs.
        """
        holder = lease.holder
        own = lease.endpoint_task == holder
        stopping = lease.extra.get("stopping") == holder
        if lease.state != HELD or not decisions.is_task_arn(holder) or own or stopping:
            return None
        try:
            task = self.launcher.describe([str(holder)]).get(str(holder))
            if (
                task is None
                or task.last_status != "RUNNING"
                or task.desired_status != "RUNNING"
                or not task.private_ip
            ):
                return None
            endpoint = f"http://{task.private_ip}:{self.app_port}"
            self.lease.record_task(str(holder), None, endpoint)
        except (TaskControlError, LeaseLost):
            return None
        return endpoint


def release_reservation(lease: LeaseTable, reservation: str, log: Any) -> bool:
    """``True`` when the reservation was still there and is now released."""
    try:
        lease.force_release(reservation)
    except LeaseLost:
        return False  # Already taken or released: nothing of ours is left on the lease.
    except LeaseUnavailable as exc:
        # It expires after the start timeout and the reconciler frees it then.
        log.error("Could not release the reservation", extra={"error": str(exc)})
        return False
    return True

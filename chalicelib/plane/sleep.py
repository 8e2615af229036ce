"""``POST /sleep``: stop the backend gracefully (ECS sends SIGTERM; the agent uploads and
releases), and stop sending wakes to it meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib import decisions
from chalicelib.errors import LeaseUnavailable, StoreUnavailable, TaskControlError
from chalicelib.lease import LeaseTable
from chalicelib.model import HELD, RESERVED, Lease
from chalicelib.observability import MetricSink
from chalicelib.plane.reply import (
    RETRY_STARTING,
    RETRY_UNAVAILABLE,
    Reply,
    retry_after,
    unavailable,
)
from chalicelib.plane.wake import release_reservation
from chalicelib.tasks import TaskLauncher


@dataclass(frozen=True)
class Sleep:
    lease: LeaseTable
    launcher: TaskLauncher
    log: Any
    metrics: MetricSink
    clock: Callable[[], float] = time.time

    def sleep(self) -> Reply:
        """Stop the backend gracefully: ECS sends SIGTERM, the agent uploads and releases."""
        now = self.clock()
        try:
            lease = self.lease.read()
            if not lease.is_live(now):
                return Reply(200, {"state": "asleep"})
            targets = self._tasks_of(lease)
            if not targets and lease.state == RESERVED and lease.holder:
                release_reservation(self.lease, lease.holder, self.log)
                return Reply(200, {"state": "asleep"})
            if not targets:
                return Reply(409, {"error": "the lease holder is not a task this control plane "
                                            "can stop", "holder": lease.holder})
            for arn in targets:
                self.launcher.stop(arn, "wakeful: sleep requested")
                # While it uploads, wakes must not be sent to an app that has stopped.
                self.lease.clear_endpoint(arn)
                self.log.info("Stop requested", extra={"task_arn": arn})
                self.metrics.emit("SleepRequested")
        except (LeaseUnavailable, StoreUnavailable) as exc:
            return unavailable(exc, self.log)
        except TaskControlError as exc:
            return Reply(503, {"error": "StopTask failed", "reason": exc.reason},
                         retry_after(RETRY_UNAVAILABLE))
        return Reply(202, {"state": "stopping", "task_arns": targets},
                     retry_after(RETRY_STARTING))

    def _tasks_of(self, lease: Lease) -> list[str]:
        if lease.state == HELD and decisions.is_task_arn(lease.holder):
            return [str(lease.holder)]
        if lease.state == RESERVED:
            if lease.task_arn:
                return [lease.task_arn]
            return [t.task_arn for t in self.launcher.running() if t.started_by == lease.holder]
        return []

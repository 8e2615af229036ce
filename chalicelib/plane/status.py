"""``GET /status``: the shared status report (``chalicelib.report``), with what the launcher
says of the holder's task (the one door that also knows what ECS wants it to become)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib import decisions, report
from chalicelib.chain_store import ChainReader
from chalicelib.errors import LeaseUnavailable, StoreUnavailable, TaskControlError
from chalicelib.lease import LeaseTable
from chalicelib.model import HELD, RESERVED, Lease
from chalicelib.plane.reply import Reply, unavailable
from chalicelib.store import DatabaseStore
from chalicelib.tasks import TaskLauncher


@dataclass(frozen=True)
class Status:
    lease: LeaseTable
    store: DatabaseStore
    launcher: TaskLauncher
    log: Any
    clock: Callable[[], float] = time.time
    chain: ChainReader | None = None

    def status(self) -> Reply:
        now = self.clock()
        try:
            facts = report.read_facts(self.lease, self.store, self.chain)
        except (LeaseUnavailable, StoreUnavailable) as exc:
            return unavailable(exc, self.log)
        if facts.chain is not None and "error" in facts.chain:
            self.log.error("Could not read the chain's manifest for the status report",
                           extra={"error": facts.chain["error"]})
        return Reply(200, report.build(facts, self.task_status(facts.lease), now))

    def task_status(self, lease: Lease) -> dict[str, Any] | None:
        """What ECS says of the task that holds (or was started for) the lease."""
        if lease.state not in (HELD, RESERVED):
            return None
        arn = lease.holder if decisions.is_task_arn(lease.holder) else lease.task_arn
        try:
            if arn:
                found = self.launcher.describe([arn]).get(arn)
            else:
                # Reserved, and the RUNNING event has not named the task yet: find it by the
                # reservation it was started with.
                started = [t for t in self.launcher.running() if t.started_by == lease.holder]
                found = started[0] if started else None
                arn = found.task_arn if found else None
        except TaskControlError as exc:
            return {"arn": arn, "status": None, "error": exc.reason}
        if arn is None:
            return None
        if found is None:
            return {"arn": arn, "status": "MISSING"}
        return {"arn": arn, "status": found.last_status, "desired_status": found.desired_status}

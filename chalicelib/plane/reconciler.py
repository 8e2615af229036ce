"""The schedule: enforce the lease rules against what ECS runs, and account every task that
stopped since the last look (its STOPPED event may have been lost).

Asleep and settled: one read, no ECS calls. Awake: two ListTasks, up to two DescribeTasks, a
ledger read per task stopped since the last sweep, one lease write. What to do is
``decisions.reconcile``; stops are accounted by ``accounting``, as their events would be.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib import decisions
from chalicelib.decisions import CheckDeadHolder, ReleaseReservation, StopTask
from chalicelib.errors import LeaseLost, LeaseUnavailable, WakefulError
from chalicelib.events import TaskState
from chalicelib.lease import COND_EXISTS, LeaseTable
from chalicelib.model import HELD, Lease
from chalicelib.observability import MetricSink
from chalicelib.plane.accounting import Accounting
from chalicelib.plane.wake import release_reservation
from chalicelib.tasks import TaskLauncher


@dataclass(frozen=True)
class Reconciler:
    lease: LeaseTable
    launcher: TaskLauncher
    accounting: Accounting
    log: Any
    metrics: MetricSink
    clock: Callable[[], float] = time.time

    def reconcile(self) -> list[str]:
        """One run of the schedule; what it did, one line per action."""
        try:
            lease = self.lease.read()
            enforce = decisions.needs_tasks(lease)
            if not enforce and not decisions.needs_sweep(lease):
                return []
            since = decisions.sweep_of(lease).at
            looked_at = self.clock()
            tasks = self.launcher.running()
            stopped = self.launcher.stopped()
            # Read again after listing: every task listed was started after its reservation
            # was written, so this read knows the reservation of each (none is taken for a
            # stray), and an agent that acquired meanwhile is seen as the holder.
            lease = self.lease.read()
            plan = decisions.Plan()
            if decisions.needs_tasks(lease):
                plan = decisions.reconcile(lease, self._holder_task(lease, tasks, stopped),
                                           tasks, self.clock())
        except WakefulError as exc:
            self.log.error("Reconciler could not read the state", extra={"error": str(exc)})
            return ["error"]
        done = self._perform(plan)
        swept, clean = self._sweep(decisions.stopped_since(stopped, since))
        done += swept
        if clean:
            settled = not plan.actions and decisions.is_settled(lease, tasks, stopped)
            self._mark_swept(looked_at, lease if settled else None)
        if plan.actions or swept:
            self.log.warning("Reconciler acted", extra={"actions": done,
                                                        "notes": list(plan.notes)})
        return done

    def _holder_task(
        self, lease: Lease, tasks: list[TaskState], stopped: list[TaskState]
    ) -> TaskState | None:
        """ECS's view of the task holding the lease, ``None`` if it has none."""
        if lease.state != HELD or not decisions.is_task_arn(lease.holder):
            return None
        arn = str(lease.holder)
        found = next((t for t in [*tasks, *stopped] if t.task_arn == arn), None)
        return found or self.launcher.describe([arn]).get(arn)

    def _perform(self, plan: decisions.Plan) -> list[str]:
        done: list[str] = []
        taken_meanwhile = False
        for action in plan.actions:
            if taken_meanwhile and isinstance(action, StopTask):
                # Its agent took the reservation after all: that task is the holder now.
                done.append(f"kept {action.task_arn}")
                continue
            done.append(self._reconcile_one(action))
            taken_meanwhile = isinstance(action, ReleaseReservation) and done[-1].startswith(
                "kept reservation"
            )
        return done

    def _sweep(self, stopped: list[TaskState]) -> tuple[list[str], bool]:
        """Account each stopped task not accounted yet; ``clean`` when none failed."""
        done: list[str] = []
        clean = True
        for task in stopped:
            try:
                # The ledger's stop claim, not the version, decides: a task's description
                # carries no event version to order by.
                outcome = self.accounting.account(task, check_order=False)
            except WakefulError as exc:
                outcome = "error"
                self.log.error("Could not account for a stopped task",
                               extra={"task_arn": task.task_arn, "error": str(exc)})
            if outcome == "stale":
                continue  # accounted already: by its event, or an earlier sweep
            clean = clean and outcome != "error"
            done.append(f"{outcome} {task.task_arn}")
            self.metrics.emit("ReconcilerAction", action="account_stopped")
        return done, clean

    def _mark_swept(self, looked_at: float, settled: Lease | None) -> None:
        """Remember the sweep: the next one looks back from here, and a settled lease is not
        swept again until it changes."""
        sweep: dict[str, Any] = {"at": looked_at}
        if settled is not None:
            sweep["settled"] = decisions.settled_marker(settled)
        try:
            self.lease.set_fields({"sweep": sweep}, condition=COND_EXISTS)
        except (LeaseLost, LeaseUnavailable) as exc:
            # The next run sweeps the same tasks again; the ledger makes that harmless.
            self.log.warning("Could not record the sweep", extra={"error": str(exc)})

    def _reconcile_one(self, action: StopTask | ReleaseReservation | CheckDeadHolder) -> str:
        try:
            if isinstance(action, StopTask):
                self.launcher.stop(action.task_arn, action.reason)
                self.metrics.emit("ReconcilerAction", action="stop_task")
                return f"stopped {action.task_arn}"
            if isinstance(action, ReleaseReservation):
                if not release_reservation(self.lease, action.reservation_id, self.log):
                    return f"kept reservation {action.reservation_id} (taken or gone)"
                self.metrics.emit("ReconcilerAction", action="release_reservation")
                return f"released {action.reservation_id}"
            self.metrics.emit("ReconcilerAction", action="dead_holder")
            task = action.task
            return f"{self.accounting.account(task, check_order=False)} {task.task_arn}"
        except WakefulError as exc:
            self.log.error("Reconciler action failed", extra={"error": str(exc)})
            return f"failed {exc}"

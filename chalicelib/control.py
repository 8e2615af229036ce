"""The control plane as ``app.py`` and the front door call it: one object per Lambda container.

It holds the collaborators and nothing else: each call is answered by one of its rooms
(``chalicelib.plane``: wake, sleep, status, accounting, the reconciler), built with only the
collaborators that room uses. Every method returns plain data
(``Reply`` for HTTP, an outcome name for events and the schedule), so ``app.py`` stays a thin
layer of decorators. ``ControlPlane.from_settings`` wires the real edges (``wiring.Edges``),
the launcher and the metric sink; tests pass their own through the constructor.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from chalicelib.chain_store import ChainReader
from chalicelib.events import TaskState, family_of
from chalicelib.lease import LeaseTable
from chalicelib.ledger import TaskLedger
from chalicelib.observability import MetricSink, PowertoolsMetrics
from chalicelib.plane.accounting import Accounting
from chalicelib.plane.reconciler import Reconciler
from chalicelib.plane.reply import Reply
from chalicelib.plane.sleep import Sleep
from chalicelib.plane.status import Status
from chalicelib.plane.wake import Wake
from chalicelib.settings import ControlPlaneSettings
from chalicelib.store import DatabaseStore
from chalicelib.tasks import TaskLauncher, launcher_for
from chalicelib.wiring import Edges

__all__ = ["ControlPlane", "Reply"]


class ControlPlane:
    def __init__(
        self,
        settings: ControlPlaneSettings,
        lease: LeaseTable,
        store: DatabaseStore,
        launcher: TaskLauncher,
        ledger: TaskLedger,
        log: Any,
        metrics: MetricSink,
        clock: Callable[[], float] = time.time,
        new_reservation: Callable[[], str] = lambda: str(uuid.uuid4()),
        chain: ChainReader | None = None,
    ) -> None:
        self.settings = settings
        self.lease = lease
        self.store = store
        self.launcher = launcher
        self.ledger = ledger
        self.log = log
        self.metrics = metrics
        self.clock = clock
        self.new_reservation = new_reservation
        # The chain beside the database object; by default read through the store's client.
        self.chain = chain
        self.family = family_of(settings.task_definition)

    # The rooms are built for each call from the attributes above, so that what a caller sets
    # here (a test's lease table on a fault proxy) is what every room uses.

    def _accounting(self) -> Accounting:
        s = self.settings
        return Accounting(self.lease, self.store, self.ledger, self.log, self.metrics,
                          s.cluster, self.family, s.app_port, self.clock, self._chain())

    def _chain(self) -> ChainReader:
        if self.chain is not None:
            return self.chain
        store = self.store
        return ChainReader(store.bucket, store.key, client=store.client)

    @classmethod
    def from_settings(
        cls, settings: ControlPlaneSettings, log: Any, metrics: MetricSink | None = None
    ) -> ControlPlane:
        edges = Edges(settings.location)
        return cls(
            settings=settings,
            lease=edges.table,
            store=edges.store(),
            launcher=launcher_for(settings, ecs=edges.client("ecs")),
            ledger=edges.ledger,
            log=log,
            metrics=metrics or PowertoolsMetrics(),
        )

    # -- HTTP ------------------------------------------------------------------------------

    def wake(self) -> Reply:
        """Start the backend or keep it awake (``POST /wake``)."""
        s = self.settings
        return Wake(self.lease, self.launcher, self.log, self.metrics, s.start_timeout,
                    s.app_port, self.clock, self.new_reservation).wake()

    def status(self) -> Reply:
        """The status report (``GET /status``)."""
        return Status(self.lease, self.store, self.launcher, self.log, self.clock,
                      self._chain()).status()

    def sleep(self) -> Reply:
        """Stop the backend gracefully (``POST /sleep``)."""
        return Sleep(self.lease, self.launcher, self.log, self.metrics, self.clock).sleep()

    # -- EventBridge -----------------------------------------------------------------------

    def handle_event(self, raw: Any) -> str:
        """Account for one "ECS Task State Change"; the outcome's name."""
        return self._accounting().handle_event(raw)

    def account(self, task: TaskState, check_order: bool = True) -> str:
        """Apply one observed task state (a stop is accounted once, whoever sees it first)."""
        return self._accounting().account(task, check_order)

    # -- schedule --------------------------------------------------------------------------

    def reconcile(self) -> list[str]:
        """One run of the reconciler; what it did."""
        return Reconciler(self.lease, self.launcher, self._accounting(), self.log, self.metrics,
                          self.clock).reconcile()

"""The control plane service: reads the facts, asks ``decisions``, performs the answer.

Every public method returns plain data (``Reply`` for HTTP, an outcome name for events and the
schedule) so ``app.py`` stays a thin layer of decorators. Dependencies come in through the
constructor; ``ControlPlane.from_settings`` wires the real ones.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib import decisions
from chalicelib.decisions import (
    CheckDeadHolder,
    FailedToStart,
    Ignore,
    NeverHeld,
    RecordRunning,
    ReleaseReservation,
    StopTask,
    TaskAction,
    UnsyncedStop,
    VerifiedStop,
)
from chalicelib.errors import (
    LeaseHeld,
    LeaseLost,
    LeaseUnavailable,
    StoreUnavailable,
    TaskControlError,
    WakefulError,
)
from chalicelib.events import STOPPED, MalformedEvent, TaskState, family_of, parse_event
from chalicelib.lease import COND_EXISTS, HELD, RESERVED, Lease, LeaseTable
from chalicelib.ledger import TaskLedger
from chalicelib.settings import ControlPlaneSettings
from chalicelib.store import DatabaseStore, ObjectInfo
from chalicelib.tasks import TaskLauncher, launcher_for

# How long a client should wait before asking again, by situation (seconds).
RETRY_STARTING = 5
RETRY_UNAVAILABLE = 30


# How far back a stop's proof is looked for: later holders add a version per sync, and a
# STOPPED event is handled within minutes of the stop.
PROOF_VERSIONS = 20


class MetricSink(Protocol):
    def emit(self, name: str, value: float = 1, unit: str = "Count", **properties: Any) -> None:
        ...


class PowertoolsMetrics:
    """EMF metrics through Powertools, flushed as they happen."""

    def __init__(self, service: str = "control-plane") -> None:
        from chalicelib import observability

        self._observability = observability
        self._sink = observability.metrics(service)

    def emit(self, name: str, value: float = 1, unit: str = "Count", **properties: Any) -> None:
        self._observability.emit(self._sink, name, value, unit, **properties)


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status code, JSON body, extra headers."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def _retry_after(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(seconds)}


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
        self.family = family_of(settings.task_definition)

    @classmethod
    def from_settings(
        cls, settings: ControlPlaneSettings, log: Any, metrics: MetricSink | None = None
    ) -> ControlPlane:
        from chalicelib import aws

        location = settings.location
        # One DynamoDB client for the lease and the ledger: each client costs cold-start time.
        # Endpoints are left to boto3, which honours AWS_ENDPOINT_URL and the per-service
        # AWS_ENDPOINT_URL_<SERVICE> variables.
        dynamodb = aws.client("dynamodb", location.region)
        return cls(
            settings=settings,
            lease=LeaseTable(location.lease_table, location.lease_name, client=dynamodb),
            store=DatabaseStore(
                location.bucket, location.key, backup_retention=location.backup_retention,
                region=location.region,
            ),
            launcher=launcher_for(settings),
            ledger=TaskLedger(location.lease_table, location.lease_name, client=dynamodb),
            log=log,
            metrics=metrics or PowertoolsMetrics(),
        )

    # -- HTTP ------------------------------------------------------------------------------

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
                return self._starting(lease.task_arn, lease.reservation_id)
            return self._start()
        except (LeaseUnavailable, StoreUnavailable) as exc:
            return self._unavailable(exc)

    def _start(self) -> Reply:
        reservation = self.new_reservation()
        try:
            self.lease.reserve(reservation, self.settings.start_timeout)
        except LeaseHeld:
            # Another wake won the race between our read and our reservation: it is starting.
            self.metrics.emit("Wake", state="starting")
            return self._starting(None, None)
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
                return self._starting(None, reservation)
            self._release_reservation(reservation)
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
                _retry_after(RETRY_UNAVAILABLE),
            )
        self.log.info(
            "Backend task started",
            extra={"task_arn": task.task_arn, "reservation_id": reservation},
        )
        self.metrics.emit("Wake", state="started")
        self.metrics.emit("TaskStarted")
        return self._starting(task.task_arn, reservation)

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
            endpoint = f"http://{task.private_ip}:{self.settings.app_port}"
            self.lease.record_task(str(holder), None, endpoint)
        except (TaskControlError, LeaseLost):
            return None
        return endpoint

    def _starting(self, task_arn: str | None, reservation: str | None) -> Reply:
        body: dict[str, Any] = {"state": "starting"}
        if task_arn:
            body["task_arn"] = task_arn
        if reservation:
            body["reservation_id"] = reservation
        return Reply(202, body, _retry_after(RETRY_STARTING))

    def _release_reservation(self, reservation: str) -> bool:
        """``True`` when the reservation was still there and is now released."""
        try:
            self.lease.force_release(reservation)
        except LeaseLost:
            return False  # Already taken or released: nothing of ours is left on the lease.
        except LeaseUnavailable as exc:
            # It expires after the start timeout and the reconciler frees it then.
            self.log.error("Could not release the reservation", extra={"error": str(exc)})
            return False
        return True

    def status(self) -> Reply:
        now = self.clock()
        try:
            lease = self.lease.read()
            current = self.store.head()
            backups = len(self.store.backups())
        except (LeaseUnavailable, StoreUnavailable) as exc:
            return self._unavailable(exc)
        task = self._task_status(lease)
        answer = decisions.decide_wake(lease, now)
        state = {"start": "asleep"}.get(answer.state, answer.state)
        last_upload = dict(lease.last_upload) if lease.last_upload else None
        if last_upload is None and current is not None:
            last_upload = current.describe()
        return Reply(
            200,
            {
                "state": state,
                "endpoint": answer.endpoint,
                "lease": {
                    "name": lease.name,
                    "state": lease.state,
                    "holder": lease.holder,
                    "token": lease.token,
                    "expires_at": lease.expires_at,
                    "last_wake": lease.last_wake,
                    "last_holder": lease.last_holder,
                },
                "task": task,
                "last_upload": _upload_summary(last_upload),
                "current_object": _upload_summary(current.describe() if current else None),
                "last_unsynced_stop": lease.last_unsynced_stop,
                "last_start_failure": lease.extra.get("last_start_failure"),
                "backups": backups,
            },
        )

    def _task_status(self, lease: Lease) -> dict[str, Any] | None:
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

    def sleep(self) -> Reply:
        """Stop the backend gracefully: ECS sends SIGTERM, the agent uploads and releases."""
        now = self.clock()
        try:
            lease = self.lease.read()
            if not lease.is_live(now):
                return Reply(200, {"state": "asleep"})
            targets = self._tasks_of(lease)
            if not targets and lease.state == RESERVED and lease.holder:
                self._release_reservation(lease.holder)
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
            return self._unavailable(exc)
        except TaskControlError as exc:
            return Reply(503, {"error": "StopTask failed", "reason": exc.reason},
                         _retry_after(RETRY_UNAVAILABLE))
        return Reply(202, {"state": "stopping", "task_arns": targets},
                     _retry_after(RETRY_STARTING))

    def _tasks_of(self, lease: Lease) -> list[str]:
        if lease.state == HELD and decisions.is_task_arn(lease.holder):
            return [str(lease.holder)]
        if lease.state == RESERVED:
            if lease.task_arn:
                return [lease.task_arn]
            return [t.task_arn for t in self.launcher.running() if t.started_by == lease.holder]
        return []

    def _unavailable(self, exc: WakefulError) -> Reply:
        self.log.error("A dependency is unavailable", extra={"error": str(exc)})
        return Reply(503, {"error": "a dependency is unavailable", "reason": str(exc)},
                     _retry_after(RETRY_UNAVAILABLE))

    # -- EventBridge -----------------------------------------------------------------------

    def handle_event(self, raw: Any) -> str:
        """Account for one "ECS Task State Change". Returns the outcome's name.

        Only a transient AWS failure is raised (Lambda retries an event twice, then drops it;
        the reconciler catches up). Everything else is logged and answered with an outcome.
        """
        try:
            event = parse_event(raw)
        except MalformedEvent as exc:
            self.log.warning("Dropped a malformed task event", extra={"error": str(exc)})
            self.metrics.emit("MalformedEvent")
            return "malformed"
        task = event.task
        if not task.in_cluster(self.settings.cluster) or task.family != self.family:
            self.log.debug(
                "Event for another cluster or family",
                extra={"task_arn": task.task_arn, "cluster": task.cluster_arn},
            )
            return "other"
        return self.account(task)

    def account(self, task: TaskState, check_order: bool = True) -> str:
        """Apply one observed task state; duplicates and late versions are dropped.

        A stop is accounted exactly once, whoever sees it first (its event, a duplicate of
        it, the reconciler): the ledger's stop claim decides.
        """
        try:
            entry = self.ledger.entry(task.task_arn)
            if entry.stop_outcome is not None or (
                check_order and decisions.is_stale(task, entry.version)
            ):
                return self._stale(task)
            if task.last_status == STOPPED:
                return self._account_stop(task, entry.held)
            outcome = self._decide_and_execute(task, held=entry.held)
            # Not a stop: what was done (noting a task, an endpoint) is idempotent, so a
            # concurrent duplicate that recorded a newer version first changes nothing.
            self.ledger.record(task.task_arn, task.version, task.last_status, outcome)
        except WakefulError as exc:
            return self._account_failed(task, exc)
        return outcome

    def _account_stop(self, task: TaskState, held: bool) -> str:
        claimed_at = self.ledger.claim_stop(task.task_arn)
        if claimed_at is None:
            return self._stale(task)
        try:
            outcome = self._decide_and_execute(task, held=held)
        except WakefulError:
            # Let the next attempt (Lambda's retry, the reconciler) account it.
            try:
                self.ledger.release_stop(task.task_arn, claimed_at)
            except WakefulError as exc:
                self.log.warning("Could not give up the stop claim; it goes stale",
                                 extra={"task_arn": task.task_arn, "error": str(exc)})
            raise
        if not self.ledger.record_stop(task.task_arn, task.version, outcome, claimed_at):
            self.log.warning("The stop claim was taken over before its outcome was recorded",
                             extra={"task_arn": task.task_arn, "outcome": outcome})
        return outcome

    def _decide_and_execute(self, task: TaskState, held: bool) -> str:
        lease = self.lease.read()
        upload = self.store.head() if task.last_status == STOPPED else None
        port = self.settings.app_port
        action = decisions.decide(task, lease, upload, self.clock(), port, held)
        if isinstance(action, UnsyncedStop | NeverHeld):
            # A later holder's uploads may hide this task's final one: look further back.
            proof = self._shutdown_version_of(task.task_arn)
            if proof is not None:
                action = decisions.decide(task, lease, proof, self.clock(), port, held)
        return self._execute(action, task)

    def _stale(self, task: TaskState) -> str:
        self.log.info(
            "Dropped a duplicate or out-of-order task event",
            extra={"task_arn": task.task_arn, "version": task.version,
                   "status": task.last_status},
        )
        return "stale"

    def _account_failed(self, task: TaskState, exc: WakefulError) -> str:
        if exc.retryable:
            raise exc
        self.log.error(
            "Could not account for a task event",
            extra={"task_arn": task.task_arn, "error": str(exc)},
        )
        return "error"

    def _shutdown_version_of(self, task_arn: str) -> ObjectInfo | None:
        """This task's final upload among the newest versions, if it is there."""
        for version in self.store.versions()[:PROOF_VERSIONS]:
            info = self.store.head(version_id=version.version_id)
            if info is not None and info.holder == task_arn and info.reason == "shutdown":
                return info
        return None

    def _execute(self, action: TaskAction, task: TaskState) -> str:
        keys = {"task_arn": task.task_arn, "version": task.version}
        if isinstance(action, Ignore):
            self.log.debug("Nothing to do", extra={**keys, "reason": action.reason})
            return "ignored"
        if isinstance(action, RecordRunning):
            try:
                self.lease.record_task(action.task_arn, action.reservation_id, action.endpoint)
            except LeaseLost:
                return "ignored"
            self.log.info("Backend task running", extra={**keys, "endpoint": action.endpoint})
            self.metrics.emit("TaskRunning")
            return "running"
        if isinstance(action, VerifiedStop):
            self._force_release(action.release)
            self.log.info(
                "Verified stop: the final upload is in S3",
                extra={**keys, "upload": dict(action.upload)},
            )
            self.metrics.emit("VerifiedStop")
            self.metrics.emit("TaskStopped", outcome="verified")
            return "verified"
        if isinstance(action, UnsyncedStop):
            self.lease.set_fields({"last_unsynced_stop": dict(action.record)})
            self._force_release(action.release)
            self.log.error(
                "Unsynced stop: the task stopped without its final upload; writes since its "
                "last upload may be lost",
                extra={**keys, **action.record},
            )
            self.metrics.emit("UnsyncedStop", task_arn=action.task_arn)
            if action.window_seconds is not None:
                self.metrics.emit("UnsyncedWindow", action.window_seconds, "Seconds")
            self.metrics.emit("TaskStopped", outcome="unsynced")
            return "unsynced"
        if isinstance(action, FailedToStart):
            self.lease.set_fields({"last_start_failure": dict(action.record)})
            self._force_release(action.release)
            self.log.error("Backend task failed to start",
                           extra={**keys, "reason": action.reason})
            self.metrics.emit("TaskFailedToStart")
            return "failed_to_start"
        if isinstance(action, NeverHeld):
            self._force_release(action.release)
            self.log.info("Task stopped without holding the lease; nothing to verify",
                          extra={**keys, **task.describe()})
            self.metrics.emit("TaskStopped", outcome="never_held")
            return "never_held"
        raise AssertionError(f"unhandled action {action!r}")

    def _force_release(self, holder: str | None) -> None:
        if not holder:
            return
        try:
            self.lease.force_release(holder)
            self.log.info("Lease released for a stopped holder", extra={"holder": holder})
        except LeaseLost:
            pass  # Someone (the agent, a wake) moved it on first: nothing to release.

    # -- schedule --------------------------------------------------------------------------

    def reconcile(self) -> list[str]:
        """Enforce the lease rules against what ECS runs, and account every task that stopped
        since the last look (its STOPPED event may have been lost).

        Asleep and settled: one read, no ECS calls. Awake: two ListTasks, up to two
        DescribeTasks, a ledger read per task stopped since the last sweep, one lease write.
        """
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
                outcome = self.account(task, check_order=False)
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
                if not self._release_reservation(action.reservation_id):
                    return f"kept reservation {action.reservation_id} (taken or gone)"
                self.metrics.emit("ReconcilerAction", action="release_reservation")
                return f"released {action.reservation_id}"
            self.metrics.emit("ReconcilerAction", action="dead_holder")
            return f"{self.account(action.task, check_order=False)} {action.task.task_arn}"
        except WakefulError as exc:
            self.log.error("Reconciler action failed", extra={"error": str(exc)})
            return f"failed {exc}"


def _upload_summary(upload: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not upload:
        return None
    return {key: upload.get(key) for key in
            ("at", "size", "reason", "token", "holder", "version_id", "sha256")}

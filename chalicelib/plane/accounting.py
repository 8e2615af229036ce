"""Task state changes: what each "ECS Task State Change" means for the lease and the database.

A RUNNING task's endpoint is noted on the lease; a STOPPED task is accounted exactly once,
whoever sees it first (its event, a duplicate of it, the reconciler): its final upload is
proven from S3 (the current object's metadata, the chain manifest's stop record, or the
lease's record of it), or an *unsynced stop* is recorded and alarmed, with its loss window
measured from the last segment the task shipped when it ran the chain, and a lease the dead
task still holds is released. The decision is ``decisions.decide``; what is here reads the
facts and performs the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib import decisions
from chalicelib.chain import ChainManifest
from chalicelib.chain_store import ChainReader
from chalicelib.decisions import (
    FailedToStart,
    Ignore,
    NeverHeld,
    RecordRunning,
    TaskAction,
    UnsyncedStop,
    VerifiedStop,
)
from chalicelib.errors import LeaseLost, MalformedManifest, StoreUnavailable, WakefulError
from chalicelib.events import STOPPED, MalformedEvent, TaskState, parse_event
from chalicelib.lease import LeaseTable
from chalicelib.ledger import LedgerEntry, TaskLedger
from chalicelib.model import ChainEvidence, ChainSegment, ObjectInfo
from chalicelib.observability import MetricSink
from chalicelib.store import DatabaseStore

# How far back a stop's proof is looked for: later holders add a version per sync, and a
# STOPPED event is handled within minutes of the stop.
PROOF_VERSIONS = 20


@dataclass(frozen=True)
class Accounting:
    lease: LeaseTable
    store: DatabaseStore
    ledger: TaskLedger
    log: Any
    metrics: MetricSink
    cluster: str
    family: str
    app_port: int
    clock: Callable[[], float] = time.time
    # The chain beside the current object (a chain-mode agent's segments and manifest); none:
    # stops are proven from the current object and the lease alone.
    chain: ChainReader | None = None

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
        if not task.in_cluster(self.cluster) or task.family != self.family:
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
                return self._account_stop(task, entry)
            outcome = self._decide_and_execute(task, entry)
            # Not a stop: what was done (noting a task, an endpoint) is idempotent, so a
            # concurrent duplicate that recorded a newer version first changes nothing.
            self.ledger.record(task.task_arn, task.version, task.last_status, outcome)
        except WakefulError as exc:
            return self._account_failed(task, exc)
        return outcome

    def _account_stop(self, task: TaskState, entry: LedgerEntry) -> str:
        claimed_at = self.ledger.claim_stop(task.task_arn)
        if claimed_at is None:
            return self._stale(task)
        try:
            outcome = self._decide_and_execute(task, entry)
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

    def _decide_and_execute(self, task: TaskState, entry: LedgerEntry) -> str:
        lease = self.lease.read()
        stopped = task.last_status == STOPPED
        upload = self.store.head() if stopped else None
        manifest = self._manifest() if stopped else None
        evidence = ChainEvidence(stopped=manifest.stopped) if manifest else None

        def decide(upload: ObjectInfo | None, chain: ChainEvidence | None) -> TaskAction:
            return decisions.decide(task, lease, upload, self.clock(), self.app_port,
                                    entry.held, chain, entry.held_token)

        action = decide(upload, evidence)
        if isinstance(action, UnsyncedStop | NeverHeld):
            # A later holder's uploads may hide this task's final one: look further back.
            proof = self._shutdown_version_of(task.task_arn)
            if proof is not None:
                upload = proof
                action = decide(upload, evidence)
        if manifest is not None and isinstance(action, UnsyncedStop | NeverHeld):
            # A chain-mode holder's writes since its last snapshot are in its segments: the
            # loss window runs from the last one it shipped.
            segment = self._last_segment_of(task, manifest, entry)
            if segment is not None:
                action = decide(upload, ChainEvidence(manifest.stopped, segment))
        return self._execute(action, task)

    def _manifest(self) -> ChainManifest | None:
        """The chain's manifest, ``None`` when there is none or it cannot be read (logged:
        the stop is then proven from the current object and the lease alone, as for an
        agent of the whole-file layout). A transient S3 failure is raised (retried)."""
        if self.chain is None:
            return None
        try:
            return self.chain.manifest()
        except MalformedManifest as exc:
            self.log.error(
                "The chain's manifest is malformed: this stop is accounted without it",
                extra={"manifest": exc.where, "error": exc.reason},
            )
            self.metrics.emit("MalformedManifest")
        except StoreUnavailable as exc:
            if exc.retryable:
                raise
            self.log.error(
                "Could not read the chain's manifest: this stop is accounted without it",
                extra={"manifest": self.chain.manifest_url, "error": str(exc)},
            )
        return None

    def _last_segment_of(
        self, task: TaskState, manifest: ChainManifest, entry: LedgerEntry
    ) -> ChainSegment | None:
        """The last segment the task's holder wrote, found by HEADs past the manifest."""
        assert self.chain is not None
        token = entry.held_token
        if token is None and manifest.holder == task.task_arn:
            token = manifest.token
        try:
            return self.chain.last_segment_of(manifest, task.task_arn, token)
        except StoreUnavailable as exc:
            if exc.retryable:
                raise
            self.log.error(
                "Could not probe the chain for the task's last segment",
                extra={"task_arn": task.task_arn, "error": str(exc)},
            )
        return None

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

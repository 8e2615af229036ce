"""Pure decisions of the control plane: what to do, given what was read. No I/O here.

Each function takes the facts (a task's state, the lease, the current S3 object, the time) and
returns an action; the control plane's rooms (``chalicelib.plane``) perform it. Keeping them
apart lets every branch be tested without AWS, and keeps the effects small enough to read at a
glance. Only records come in (``model``, ``events``): deciding loads neither boto3 nor SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chalicelib.events import RUNNING, STOPPED, TaskState
from chalicelib.model import (
    HELD,
    RESERVED,
    ChainEvidence,
    ChainSegment,
    ChainStop,
    Lease,
    ObjectInfo,
)

SHUTDOWN = "shutdown"
NOT_HOLDER = "wakeful: not the lease holder (one task at a time)"
START_TIMEOUT = "wakeful: start timeout, no agent took the reservation"

# -- task state changes --------------------------------------------------------------------


@dataclass(frozen=True)
class Ignore:
    """Nothing to do; ``reason`` is logged so an operator can see why."""

    reason: str


@dataclass(frozen=True)
class RecordRunning:
    """Note the task and its endpoint on the lease it holds or was reserved for."""

    task_arn: str
    reservation_id: str | None
    endpoint: str | None


@dataclass(frozen=True)
class VerifiedStop:
    """The task's final upload is in S3. ``release`` names a holder still on the lease."""

    task_arn: str
    upload: Mapping[str, Any]
    release: str | None


@dataclass(frozen=True)
class UnsyncedStop:
    """The task stopped without a final upload: writes since ``last_upload_at`` may be lost."""

    task_arn: str
    window_seconds: float | None
    record: Mapping[str, Any]
    release: str | None


@dataclass(frozen=True)
class FailedToStart:
    """ECS could not start the task; its reservation (if still on the lease) is released."""

    task_arn: str
    reason: str
    record: Mapping[str, Any]
    release: str | None


@dataclass(frozen=True)
class NeverHeld:
    """The task stopped without ever holding the lease: it never ran the app, nothing to lose."""

    task_arn: str
    release: str | None


TaskAction = Ignore | RecordRunning | VerifiedStop | UnsyncedStop | FailedToStart | NeverHeld


def is_stale(task: TaskState, seen_version: int | None) -> bool:
    """An event no newer than one already handled for this task (a duplicate or a late one)."""
    return seen_version is not None and task.version <= seen_version


def decide(
    task: TaskState,
    lease: Lease,
    upload: ObjectInfo | None,
    now: float,
    app_port: int,
    held: bool = False,
    chain: ChainEvidence | None = None,
    held_token: int | None = None,
) -> TaskAction:
    """What a task state change means for the lease and the database.

    ``held``: the task's agent marked itself a holder (the task ledger), whatever the lease
    item says now; ``held_token``: the fencing token it marked, when known. ``chain``: what
    the chain's manifest and segments say of the stop (a chain-mode agent's proof).
    """
    if task.last_status == RUNNING:
        return _running(task, lease, app_port)
    if task.last_status == STOPPED:
        return decide_stop(task, lease, upload, now, held, chain, held_token)
    return Ignore(f"status {task.last_status} needs nothing")


def _running(task: TaskState, lease: Lease, app_port: int) -> TaskAction:
    if not (_held_by(task, lease) or _reserved_for(task, lease)):
        return Ignore("the lease is neither held by this task nor reserved for it")
    endpoint = f"http://{task.private_ip}:{app_port}" if task.private_ip else None
    if (
        lease.task_arn == task.task_arn
        and lease.endpoint == endpoint
        and lease.endpoint_task == task.task_arn
    ):
        return Ignore("task and endpoint already recorded")
    return RecordRunning(task.task_arn, task.started_by, endpoint)


def decide_stop(
    task: TaskState, lease: Lease, upload: ObjectInfo | None, now: float, held: bool = False,
    chain: ChainEvidence | None = None, held_token: int | None = None,
) -> TaskAction:
    """Account for a stopped task: verified, unsynced, failed to start, or never a holder."""
    if _held_by(task, lease):
        release: str | None = task.task_arn
    elif _reserved_for(task, lease):
        release = task.started_by
    else:
        release = None
    if task.failed_to_start:
        reason = task.stopped_reason or "TaskFailedToStart"
        record = {**task.describe(), "reason": reason, "detected_at": now}
        return FailedToStart(task.task_arn, reason, record, release)
    proof = shutdown_upload(task.task_arn, lease, upload, chain, held_token)
    if proof is not None:
        # An agent that uploaded but died before releasing leaves the lease to us.
        held = release if release == task.task_arn else None
        return VerifiedStop(task.task_arn, proof, held)
    if not held and not _ever_held(task.task_arn, lease, upload, chain):
        return NeverHeld(task.task_arn, release)
    last_at = last_upload_at(task, lease, upload, chain)
    end = task.stopped_at or now
    window = max(0.0, end - last_at) if last_at is not None else None
    record = {
        **task.describe(),
        "window_seconds": window,
        "last_upload_at": last_at,
        "killed": task.killed,
        "detected_at": now,
    }
    segment = _own_segment(task.task_arn, chain)
    if segment is not None:
        record["last_segment"] = segment.describe()
    return UnsyncedStop(task.task_arn, window, record, release)


def shutdown_upload(
    task_arn: str, lease: Lease, upload: ObjectInfo | None,
    chain: ChainEvidence | None = None, held_token: int | None = None,
) -> Mapping[str, Any] | None:
    """The proof that ``task_arn`` made its final upload, or ``None``.

    The current object's metadata is the primary proof. A chain-mode agent's is the stop
    record in the chain's manifest, which it writes whether or not its stop rewrote the
    object (nothing changed since the last snapshot: it does not). The lease's
    ``last_upload`` (written by the agent right after the upload) is accepted too, so a later
    writer's object does not hide an earlier task's good stop.
    """
    if upload is not None and upload.holder == task_arn and upload.reason == SHUTDOWN:
        return upload.describe()
    stop = chain.stopped if chain is not None else None
    if stop is not None and stopped_by(stop, task_arn, held_token):
        return stop.describe()
    recorded = lease.last_upload or {}
    if recorded.get("holder") == task_arn and recorded.get("reason") == SHUTDOWN:
        return dict(recorded)
    return None


def stopped_by(stop: ChainStop, task_arn: str, held_token: int | None) -> bool:
    """The manifest's stop record is this task's: its holder, and the token the task last
    acquired with when that is known (a second agent process in the same task holds under a
    new token, and its predecessor's clean stop says nothing of its own)."""
    return stop.holder == task_arn and (held_token is None or stop.token == held_token)


def last_upload_at(
    task: TaskState, lease: Lease, upload: ObjectInfo | None, chain: ChainEvidence | None = None
) -> float | None:
    """When this task last put the database (or a segment of it) in S3; its start time if it
    never did."""
    recorded = lease.last_upload or {}
    times = []
    if recorded.get("holder") == task.task_arn and recorded.get("at") is not None:
        times.append(float(recorded["at"]))
    if upload is not None and upload.holder == task.task_arn:
        times.append(upload.last_modified.timestamp())
    segment = _own_segment(task.task_arn, chain)
    if segment is not None:
        times.append(segment.at)
    if times:
        return max(times)
    return task.started_at or task.created_at


def _own_segment(task_arn: str, chain: ChainEvidence | None) -> ChainSegment | None:
    segment = chain.last_segment if chain is not None else None
    return segment if segment is not None and segment.holder == task_arn else None


def _held_by(task: TaskState, lease: Lease) -> bool:
    return lease.state in (HELD, RESERVED) and lease.holder == task.task_arn


def _reserved_for(task: TaskState, lease: Lease) -> bool:
    return (
        lease.state == RESERVED
        and task.started_by is not None
        and lease.holder == task.started_by
    )


def _ever_held(
    task_arn: str, lease: Lease, upload: ObjectInfo | None, chain: ChainEvidence | None = None
) -> bool:
    """Evidence that the task held the lease (and so may have run the app and written)."""
    if lease.state == HELD and lease.holder == task_arn:
        return True
    if lease.last_holder == task_arn:
        return True
    if upload is not None and upload.holder == task_arn:
        return True
    if _own_segment(task_arn, chain) is not None:
        return True  # it claimed a position: only a holder does, before its app starts
    return (lease.last_upload or {}).get("holder") == task_arn


# -- wake ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WakeAnswer:
    """``running`` (200), ``starting`` (202), or ``start`` (reserve and run a task)."""

    state: str
    endpoint: str | None = None


def decide_wake(lease: Lease, now: float) -> WakeAnswer:
    if not lease.is_live(now):
        return WakeAnswer("start")
    endpoint = lease.serving_endpoint()
    if endpoint:
        return WakeAnswer("running", endpoint)
    return WakeAnswer("starting")


# -- reconciler ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StopTask:
    task_arn: str
    reason: str


@dataclass(frozen=True)
class ReleaseReservation:
    reservation_id: str


@dataclass(frozen=True)
class CheckDeadHolder:
    """The holder is stopped or gone: account for it as a stop (which releases the lease)."""

    task: TaskState


@dataclass(frozen=True)
class Plan:
    actions: tuple[StopTask | ReleaseReservation | CheckDeadHolder, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


def needs_tasks(lease: Lease) -> bool:
    """Held or reserved: the reconciler enforces the lease rules against what ECS runs."""
    return lease.state in (HELD, RESERVED)


# -- the sweep of stopped tasks --------------------------------------------------------------
#
# A STOPPED event can be lost (its handler failed three times), so the reconciler also lists
# the family's stopped tasks (ECS lists them for about an hour) and accounts each one that
# stopped since it last looked. Once the lease is free and no task of the family is left
# alive, the sweep is "settled": its marker names the lease's token and last holder, and
# until one of them changes (an acquire, a release) the asleep path is one read again.

# Stopped tasks are looked at again this long after the last sweep: ECS's list may show a
# task a little after its stoppedAt. Re-reading one costs a ledger read; missing one, a stop.
SWEEP_OVERLAP = 600.0


@dataclass(frozen=True)
class Sweep:
    """What the reconciler last swept: when, and the lease it found settled (if it did)."""

    at: float | None = None
    settled: str | None = None


def settled_marker(lease: Lease) -> str:
    """Names the lease's last change: a new acquire changes the token, a release the holder."""
    return f"{lease.token}|{lease.last_holder or ''}"


def sweep_of(lease: Lease) -> Sweep:
    raw = lease.extra.get("sweep")
    if not isinstance(raw, Mapping):
        return Sweep()
    at = raw.get("at")
    settled = raw.get("settled")
    return Sweep(
        at=float(at) if isinstance(at, int | float) else None,
        settled=settled if isinstance(settled, str) else None,
    )


def needs_sweep(lease: Lease) -> bool:
    """Whether a task may have stopped unaccounted since the last sweep.

    Asleep and settled (nothing changed since a sweep found every task stopped and accounted),
    or never used at all: no. Then the reconciler reads nothing but the lease.
    """
    if needs_tasks(lease):
        return True
    if lease.token == 0 and not lease.last_holder:
        return False  # nothing ever held or reserved it: there is nothing to account
    return sweep_of(lease).settled != settled_marker(lease)


def stopped_since(tasks: Iterable[TaskState], since: float | None) -> list[TaskState]:
    """The stopped tasks the last sweep may not have seen (all of them, the first time)."""
    found = [t for t in tasks if t.last_status == STOPPED]
    if since is None:
        return found
    return [t for t in found if t.stopped_at is None or t.stopped_at >= since - SWEEP_OVERLAP]


def is_settled(lease: Lease, running: Sequence[TaskState], stopped: Sequence[TaskState]) -> bool:
    """Free, and no task of the family is left that could still stop unaccounted."""
    if needs_tasks(lease) or running:
        return False
    return all(t.last_status == STOPPED for t in stopped)


def is_task_arn(holder: str | None) -> bool:
    return bool(holder) and str(holder).startswith("arn:") and ":task/" in str(holder)


def reconcile(
    lease: Lease, holder_task: TaskState | None, tasks: Sequence[TaskState], now: float
) -> Plan:
    """Restore the rules: a reservation is taken in time, a dead holder is released, one task.

    ``holder_task`` is ECS's view of the holder (``None`` when ECS does not know it);
    ``tasks`` are the family's tasks that ECS still wants running.
    """
    actions: list[StopTask | ReleaseReservation | CheckDeadHolder] = []
    notes: list[str] = []
    live = _alive(tasks)
    if lease.state == RESERVED and lease.holder and lease.expires_at < now:
        # Release first: if its agent takes it at the last moment the release fails, and its
        # task (the new holder) must then not be stopped.
        actions.append(ReleaseReservation(lease.holder))
        for task in live:
            if task.started_by == lease.holder:
                actions.append(StopTask(task.task_arn, START_TIMEOUT))
        notes.append("reservation not taken within the start timeout")
        keep = {t.task_arn for t in live if t.started_by == lease.holder}
    elif lease.state == HELD and is_task_arn(lease.holder):
        keep = {str(lease.holder)}
        if holder_task is None or holder_task.last_status == STOPPED:
            actions.append(CheckDeadHolder(holder_task or _missing(str(lease.holder), now)))
            notes.append("holder is stopped or unknown to ECS")
            keep = set()
    else:
        keep = {str(lease.holder)} if lease.holder else set()
    for task in live:
        if task.task_arn in keep or (task.started_by and task.started_by in keep):
            continue
        if any(a.task_arn == task.task_arn for a in actions if isinstance(a, StopTask)):
            continue
        actions.append(StopTask(task.task_arn, NOT_HOLDER))
    return Plan(tuple(actions), tuple(notes))


def _alive(tasks: Iterable[TaskState]) -> list[TaskState]:
    return [t for t in tasks if t.last_status != STOPPED and t.desired_status != STOPPED]


def _missing(task_arn: str, now: float) -> TaskState:
    """What we know of a holder ECS no longer describes: only that it is gone."""
    return TaskState(
        task_arn=task_arn,
        cluster_arn="",
        task_definition_arn="",
        last_status=STOPPED,
        desired_status=STOPPED,
        version=0,
        stopped_at=now,
        stopped_reason="ECS no longer knows this task",
    )

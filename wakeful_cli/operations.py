"""What the commands do, apart from parsing and printing: the direct status report, the
lease-release check and the restore under the lease."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from chalicelib import decisions
from chalicelib.errors import LeaseHeld, TaskControlError, WakefulError
from chalicelib.lease import HELD, RESERVED, Lease, LeaseTable
from chalicelib.snapshot import Snapshot
from chalicelib.store import DatabaseStore, ObjectInfo, UploadIntent
from container.commands import parse_time
from container.heartbeat import LeaseKeeper
from wakeful_cli import render
from wakeful_cli.session import AwsSession

UPLOAD_FIELDS = ("at", "size", "reason", "token", "holder", "version_id", "sha256")


class Refused(WakefulError):
    """The operation would break an invariant (one writer, no lost lease); nothing was done."""


def operator_holder() -> str:
    """Who takes the lease for an operator's restore: distinct from every agent and task."""
    return f"operator@{socket.gethostname()}:{os.getpid()}"


# -- status ----------------------------------------------------------------------------------


def upload_summary(upload: Any) -> dict[str, Any] | None:
    if not upload:
        return None
    return {key: upload.get(key) for key in UPLOAD_FIELDS}


def lease_fields(lease: Lease) -> dict[str, Any]:
    return {
        "name": lease.name,
        "state": lease.state,
        "holder": lease.holder,
        "token": lease.token,
        "expires_at": lease.expires_at,
        "last_wake": lease.last_wake,
        "last_holder": lease.last_holder,
    }


def holder_task_arn(lease: Lease) -> str | None:
    """The ECS task that holds (or was started for) the lease, if it is one."""
    if decisions.is_task_arn(lease.holder):
        return str(lease.holder)
    return lease.task_arn if lease.state in (HELD, RESERVED) else None


def cluster_of(task_arn: str, configured: str | None) -> str | None:
    """The configured cluster, else the one a long-format task ARN names (``task/CLUSTER/ID``)."""
    if configured:
        return configured
    parts = task_arn.split(":task/", 1)[-1].split("/")
    return parts[0] if len(parts) == 2 else None


def direct_status(
    table: LeaseTable, store: DatabaseStore, session: AwsSession | None, cluster: str | None,
    now: float,
) -> dict[str, Any]:
    """The same report as the API's GET /status, read straight from DynamoDB, S3 and ECS."""
    lease = table.read()
    current = store.head()
    backups = len(store.backups())
    answer = decisions.decide_wake(lease, now)
    last_upload = dict(lease.last_upload) if lease.last_upload else None
    if last_upload is None and current is not None:
        last_upload = current.describe()
    return {
        "state": {"start": "asleep"}.get(answer.state, answer.state),
        "endpoint": answer.endpoint,
        "lease": lease_fields(lease),
        "task": _task(lease, session, cluster),
        "last_upload": upload_summary(last_upload),
        "current_object": upload_summary(current.describe() if current else None),
        "last_unsynced_stop": lease.last_unsynced_stop,
        "last_start_failure": lease.extra.get("last_start_failure"),
        "backups": backups,
    }


def _task(lease: Lease, session: AwsSession | None, cluster: str | None) -> dict[str, Any] | None:
    if lease.state not in (HELD, RESERVED):
        return None
    arn = holder_task_arn(lease)
    if arn is None:
        return None
    where = cluster_of(arn, cluster)
    if session is None or where is None:
        return {"arn": arn, "status": None}
    try:
        status = session.task_status(where, arn)
    except TaskControlError as exc:
        return {"arn": arn, "status": None, "error": exc.reason}
    return {"arn": arn, "status": status or "MISSING"}


# -- lease release ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseCheck:
    """Whether the lease's holder may be force-released, and why."""

    allowed: bool
    reason: str


def check_release(
    lease: Lease, session: AwsSession, cluster: str | None, now: float
) -> ReleaseCheck:
    """Only a dead holder's lease may be freed: ECS must say it STOPPED, or it must have expired.

    Anything ECS reports that is not STOPPED (PROVISIONING, RUNNING, DEPROVISIONING, ...) counts
    as running: the agent may still be uploading.
    """
    expired = lease.expires_at < now
    arn = holder_task_arn(lease)
    if arn is not None:
        where = cluster_of(arn, cluster)
        if where is None:
            raise Refused(
                f"cannot ask ECS about {arn}: no cluster (set WAKEFUL_CLUSTER or pass --cluster)"
            )
        status = session.task_status(where, arn)
        if status == "STOPPED":
            return ReleaseCheck(True, f"ECS says task {arn} is STOPPED")
        if status is not None:
            return ReleaseCheck(False, f"ECS says the holder task {arn} is {status}")
        if expired:
            return ReleaseCheck(True, f"ECS does not know task {arn} and the lease has expired")
        return ReleaseCheck(
            False, f"ECS does not know task {arn} in cluster {where!r} and the lease has not "
            f"expired (expires {render.expires_in(lease.expires_at, now)})",
        )
    if expired:
        return ReleaseCheck(True, f"holder {lease.holder} is not an ECS task and its lease expired")
    return ReleaseCheck(
        False, f"holder {lease.holder} is not an ECS task and its lease has not expired "
        f"(expires {render.expires_in(lease.expires_at, now)})",
    )


# -- restore ---------------------------------------------------------------------------------


def resolve_source(
    store: DatabaseStore, backup: str | None, version_id: str | None, at: str | None
) -> ObjectInfo:
    if backup:
        return store.find_backup(backup)
    if version_id:
        return store.find_version(version_id)
    if at is None:
        raise ValueError("restore needs --backup, --version or --at")
    return store.find_at(parse_time(at))


def label(info: ObjectInfo) -> str:
    if ".backup." in info.key:
        return f"backup {info.key.rsplit('.backup.', 1)[1]}"
    return f"version {info.version_id}" if info.version_id else info.key


def restore(
    table: LeaseTable,
    store: DatabaseStore,
    source: ObjectInfo,
    stream: TextIO,
    holder: str | None = None,
    ttl: float = 300.0,
    clock: Callable[[], float] = time.time,
) -> ObjectInfo:
    """Make ``source`` the current database under the lease, as the agent's restore does.

    ``Refused`` when a task (or anyone) holds the lease; the new current object otherwise.
    """
    holder = holder or operator_holder()
    try:
        lease = table.acquire(holder, ttl)
    except LeaseHeld as exc:
        raise Refused(
            f"restore refused: the lease is {exc.state} by {exc.holder} "
            f"(expires {render.expires_in(exc.expires_at, clock())}); a running backend owns "
            "the database: run `wakeful sleep` and wait for it to stop first"
        ) from exc
    keeper = LeaseKeeper(table, lease, ttl)
    try:
        return _swap(store, keeper, source, stream)
    finally:
        try:
            keeper.release()
        except WakefulError as exc:
            stream.write(f"warning: could not release the lease: {exc}\n")


def _swap(
    store: DatabaseStore, keeper: LeaseKeeper, source: ObjectInfo, stream: TextIO
) -> ObjectInfo:
    with tempfile.TemporaryDirectory(prefix="wakeful-restore-") as scratch:
        path = os.path.join(scratch, "restore.sqlite3")
        bar = render.ProgressBar(stream, f"download {label(source)}", source.size)
        digest = store.fetch(source, path, progress=bar, full_check=True)
        bar.finish()
        current = store.head()
        snapshot = Snapshot(path=path, sha256=digest, size=os.path.getsize(path))
        keeper.renew()
        bar = render.ProgressBar(stream, f"upload to {store.url}", snapshot.size)
        info = store.upload(
            snapshot,
            current.etag if current else None,
            UploadIntent(keeper.holder, keeper.token, "restore"),
            progress=bar,
        )
        bar.finish()
        keeper.record_upload(info.describe())
        store.create_backup(info)
        store.prune_backups()
    return info

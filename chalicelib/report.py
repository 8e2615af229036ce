"""The status report: what ``GET /status``, ``wakeful status`` and ``wakeful-agent status`` say.

``read_facts`` reads the lease, the current object, the backup count and the chain's manifest
(its position and last clean stop; one GET); ``build`` turns them, with what ECS says of the
holder's task, into the report (pure). Each door supplies the task lookup it can make: the
control plane asks its launcher, the CLI asks ECS directly, the agent knows only the task's ARN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib import decisions
from chalicelib.chain_store import ChainReader
from chalicelib.errors import MalformedManifest, StoreUnavailable
from chalicelib.model import HELD, RESERVED, Lease

if TYPE_CHECKING:
    from chalicelib.lease import LeaseTable
    from chalicelib.model import ObjectInfo
    from chalicelib.store import DatabaseStore

# What the report shows of an upload record (the lease's or the current object's metadata).
UPLOAD_FIELDS = ("at", "size", "reason", "token", "holder", "version_id", "sha256")

# The holder's task as a door sees it: ``{"arn", "status", ...}``, or ``None`` when no task
# holds or was started for the lease.
TaskLookup = Callable[[Lease], dict[str, Any] | None]


@dataclass(frozen=True)
class Facts:
    """What the report is made of, read in one go."""

    lease: Lease
    current: ObjectInfo | None
    backups: int
    # The chain's manifest summarised (``chain.ChainManifest.summary``), ``{"error": …}`` when
    # it cannot be read, ``None`` without a chain (the whole-file layout).
    chain: Mapping[str, Any] | None = None


def read_facts(
    table: LeaseTable, store: DatabaseStore, chain: ChainReader | None = None
) -> Facts:
    """The lease, then the current object, the backups and the chain's manifest
    (``LeaseUnavailable`` or ``StoreUnavailable`` when one cannot be read for now). The
    chain is read beside ``store``, on its client, unless ``chain`` is given."""
    lease = table.read()
    current = store.head()
    backups = len(store.backups())
    reader = chain or ChainReader(store.bucket, store.key, client=store.client)
    return Facts(lease, current, backups, read_chain(reader))


def read_chain(reader: ChainReader) -> dict[str, Any] | None:
    """The manifest's summary; one that is malformed or refused is reported, not raised (the
    rest of the report still holds). A transient S3 failure is raised."""
    try:
        manifest = reader.manifest()
    except MalformedManifest as exc:
        return {"error": str(exc)}
    except StoreUnavailable as exc:
        if exc.retryable:
            raise
        return {"error": str(exc)}
    return manifest.summary() if manifest is not None else None


def read(
    table: LeaseTable, store: DatabaseStore, task_of: TaskLookup, now: float
) -> dict[str, Any]:
    """The report, read now: the facts first, then the task lookup for the lease they show."""
    facts = read_facts(table, store)
    return build(facts, task_of(facts.lease), now)


def build(facts: Facts, task: Mapping[str, Any] | None, now: float) -> dict[str, Any]:
    """The report as JSON-friendly data."""
    lease, current = facts.lease, facts.current
    answer = decisions.decide_wake(lease, now)
    last_upload = dict(lease.last_upload) if lease.last_upload else None
    if last_upload is None and current is not None:
        last_upload = current.describe()
    return {
        # A sleeping backend reads as "asleep", not as the wake it would take to start it.
        "state": {"start": "asleep"}.get(answer.state, answer.state),
        "endpoint": answer.endpoint,
        "lease": lease_fields(lease),
        "task": dict(task) if task is not None else None,
        "last_upload": upload_summary(last_upload),
        "current_object": upload_summary(current.describe() if current else None),
        "last_unsynced_stop": lease.last_unsynced_stop,
        "last_start_failure": lease.extra.get("last_start_failure"),
        "backups": facts.backups,
        "chain": dict(facts.chain) if facts.chain is not None else None,
    }


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


def upload_summary(upload: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not upload:
        return None
    return {key: upload.get(key) for key in UPLOAD_FIELDS}


def holder_task_arn(lease: Lease) -> str | None:
    """The ECS task that holds (or was started for) the lease, if it is one."""
    if decisions.is_task_arn(lease.holder):
        return str(lease.holder)
    return lease.task_arn if lease.state in (HELD, RESERVED) else None


def task_arn_only(lease: Lease) -> dict[str, Any] | None:
    """The lookup of a door that cannot ask ECS: the holder's task, its status unknown."""
    if lease.state not in (HELD, RESERVED):
        return None
    arn = holder_task_arn(lease)
    return {"arn": arn, "status": None} if arn else None

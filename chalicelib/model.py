"""The domain's records: the lease as read, what S3 says of an object, uploads and backups.

Plain data with the standard library only, so that what decides (``decisions``), what reports
(``report``) and both sides' edges share one shape without loading boto3 or SQLite for it. The
edges build these: ``lease.LeaseTable`` from DynamoDB items, ``objects`` and ``store`` from S3
answers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

# -- lease states --------------------------------------------------------------------------

FREE = "FREE"
RESERVED = "RESERVED"  # by a wake, for the task it starts
HELD = "HELD"  # by an agent (or a manual operation) that acquired it

# -- the metadata every upload carries (S3 user metadata, without the x-amz-meta- prefix) ----

META_SHA256 = "wakeful-sha256"
META_HOLDER = "wakeful-holder"
META_TOKEN = "wakeful-token"
META_REASON = "wakeful-reason"
META_UPLOADED_AT = "wakeful-uploaded-at"

REASONS = ("periodic", "shutdown", "manual", "restore")


@dataclass(frozen=True)
class Lease:
    """A snapshot of the lease item as last read or written."""

    name: str
    state: str = FREE
    holder: str | None = None
    token: int = 0
    expires_at: float = 0.0
    reservation_id: str | None = None
    task_arn: str | None = None
    endpoint: str | None = None
    endpoint_task: str | None = None
    acquired_at: float | None = None
    reserved_at: float | None = None
    last_wake: float | None = None
    last_upload: Mapping[str, Any] | None = None
    last_unsynced_stop: Mapping[str, Any] | None = None
    last_holder: str | None = None
    # Which process of the holder took it: a holder id (the task) can outlive one agent
    # process, and a restarted or duplicated one must be another holder.
    holder_boot: str | None = None
    # When the holder's app first answered on its port: only then is the backend running.
    ready_at: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KNOWN = frozenset(
        {
            "pk", "state", "holder", "token", "expires_at", "reservation_id", "task_arn",
            "endpoint", "endpoint_task", "acquired_at", "reserved_at", "last_wake", "last_upload",
            "last_unsynced_stop", "last_holder", "holder_boot", "ready_at",
        }
    )

    @classmethod
    def from_item(cls, name: str, item: Mapping[str, Any] | None) -> Lease:
        """The lease from a DynamoDB item in the wire format (``{"S": ...}``, ``{"N": ...}``)."""
        if not item:
            return cls(name=name)
        data = {k: from_attribute(v) for k, v in item.items()}
        return cls(
            name=name,
            state=data.get("state", FREE),
            holder=data.get("holder"),
            token=int(data.get("token", 0)),
            expires_at=float(data.get("expires_at", 0)),
            reservation_id=data.get("reservation_id"),
            task_arn=data.get("task_arn"),
            endpoint=data.get("endpoint"),
            endpoint_task=data.get("endpoint_task"),
            acquired_at=data.get("acquired_at"),
            reserved_at=data.get("reserved_at"),
            last_wake=data.get("last_wake"),
            last_upload=data.get("last_upload"),
            last_unsynced_stop=data.get("last_unsynced_stop"),
            last_holder=data.get("last_holder"),
            holder_boot=data.get("holder_boot"),
            ready_at=data.get("ready_at"),
            extra={k: v for k, v in data.items() if k not in cls._KNOWN},
        )

    def is_live(self, now: float) -> bool:
        """Held or reserved by someone whose time has not run out."""
        return self.state in (HELD, RESERVED) and self.expires_at >= now

    def serving_endpoint(self) -> str | None:
        """Where clients may be sent: the holder's own endpoint, once its app answers, and
        never while it is stopping. The one answer to "is it running?" for every door."""
        if self.state != HELD or not self.endpoint or self.endpoint_task != self.holder:
            return None
        if self.ready_at is None or self.extra.get("stopping") == self.holder:
            return None
        return self.endpoint


def from_attribute(value: Mapping[str, Any]) -> Any:
    """Plain Python from one DynamoDB attribute value: numbers as ``int`` when whole, else
    ``float``; maps and lists all the way down."""
    kind, raw = next(iter(value.items()))
    if kind == "S":
        return raw
    if kind == "N":
        return _number(raw)
    if kind == "BOOL":
        return bool(raw)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attribute(v) for k, v in raw.items()}
    if kind == "L":
        return [from_attribute(v) for v in raw]
    if kind == "SS":
        return set(raw)
    if kind == "NS":
        return {_number(n) for n in raw}
    if kind == "B":
        return bytes(raw)
    if kind == "BS":
        return {bytes(b) for b in raw}
    raise ValueError(f"not a DynamoDB attribute value: {kind!r}")


def _number(raw: str) -> int | float:
    number = Decimal(raw)
    return int(number) if number == number.to_integral_value() else float(number)


@dataclass(frozen=True)
class ObjectInfo:
    """What S3 says of one version of an object."""

    key: str
    etag: str
    version_id: str | None
    size: int
    last_modified: dt.datetime
    metadata: dict[str, str] = field(default_factory=dict)
    is_latest: bool = True

    @property
    def sha256(self) -> str | None:
        return self.metadata.get(META_SHA256)

    @property
    def holder(self) -> str | None:
        return self.metadata.get(META_HOLDER)

    @property
    def token(self) -> int | None:
        raw = self.metadata.get(META_TOKEN)
        return int(raw) if raw and raw.isdigit() else None

    @property
    def reason(self) -> str | None:
        return self.metadata.get(META_REASON)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly record (what the lease keeps as ``last_upload``)."""
        return {
            "key": self.key,
            "etag": self.etag,
            "version_id": self.version_id,
            "size": self.size,
            "sha256": self.sha256,
            "holder": self.holder,
            "token": self.token,
            "reason": self.reason,
            "at": self.last_modified.timestamp(),
        }


class Hashed(Protocol):
    """A file ready to upload: what an upload's metadata says of it (a ``Snapshot``)."""

    @property
    def sha256(self) -> str: ...


@dataclass(frozen=True)
class UploadIntent:
    """Who uploads, under which fencing token, and why."""

    holder: str
    token: int
    reason: str

    def metadata(self, snapshot: Hashed, now: float) -> dict[str, str]:
        return {
            META_SHA256: snapshot.sha256,
            META_HOLDER: self.holder,
            META_TOKEN: str(self.token),
            META_REASON: self.reason,
            META_UPLOADED_AT: f"{now:.3f}",
        }


@dataclass(frozen=True)
class ChainStop:
    """A clean stop recorded in the chain's manifest (docs/replication.md §3.4): ``holder``
    with ``token`` shipped everything up to ``position`` of ``generation`` by ``at``."""

    holder: str
    token: int
    position: int
    at: float
    generation: str
    snapshot_sha256: str | None = None

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly record of the proof, in the shape of an upload record."""
        return {
            "source": "manifest",
            "holder": self.holder,
            "token": self.token,
            "reason": "shutdown",
            "generation": self.generation,
            "position": self.position,
            "sha256": self.snapshot_sha256,
            "at": self.at,
        }


@dataclass(frozen=True)
class ChainSegment:
    """One position of the chain as a HEAD (and its LTX header) shows it."""

    generation: str
    position: int
    kind: str
    holder: str | None
    token: int | None
    at: float  # when it was captured (its LTX timestamp), else when it landed
    next_generation: str | None = None  # an ``end`` record names where the chain goes on

    def describe(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "position": self.position,
            "kind": self.kind,
            "token": self.token,
            "at": self.at,
        }


@dataclass(frozen=True)
class ChainEvidence:
    """What the chain says of one stopped task: the manifest's stop record (whoever it
    names), and the last segment the task's holder wrote, when it was looked for."""

    stopped: ChainStop | None = None
    last_segment: ChainSegment | None = None


@dataclass(frozen=True)
class Backup:
    name: str
    key: str
    size: int
    last_modified: dt.datetime

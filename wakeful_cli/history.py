"""``wakeful history``: the timeline of wakes, stops and uploads, newest first.

Nothing new is recorded for it: the task ledger (one item per task, beside the lease) says
when each task took the lease and how its stop was accounted; the lease item keeps the details
of the last unsynced stop and the last failed start; every S3 version carries the reason,
holder and fencing token of its upload. ``timeline`` merges them (pure); ``run`` reads them.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from chalicelib import listing, text
from chalicelib.exits import EXIT_OK
from chalicelib.lease import Lease
from chalicelib.store import META_UPLOADED_AT, ObjectInfo
from wakeful_cli.config import Target
from wakeful_cli.terminal import Io

# How a stop was accounted (the ledger's stop_outcome) -> the event an operator reads.
STOP_EVENTS = {
    "verified": "stop verified",
    "unsynced": "stop UNSYNCED",
    "failed_to_start": "failed to start",
    "never_held": "stop (never ran)",
}


@dataclass(frozen=True)
class Event:
    at: float
    event: str
    who: str | None
    token: int | None = None
    detail: str | None = None
    version_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "time": dt.datetime.fromtimestamp(self.at, dt.UTC).isoformat()}


def timeline(
    tasks: Iterable[Mapping[str, Any]],
    lease: Lease,
    versions: Iterable[ObjectInfo],
    limit: int,
) -> list[Event]:
    """The newest ``limit`` events, newest first."""
    found: list[Event] = []
    for item in tasks:
        found.extend(_task_events(item, lease))
    for version in versions:
        found.append(_upload(version))
    found.sort(key=lambda event: event.at, reverse=True)
    return found[:limit]


def _task_events(item: Mapping[str, Any], lease: Lease) -> list[Event]:
    task = item.get("task_arn")
    events: list[Event] = []
    if isinstance(item.get("held_at"), int | float):
        events.append(Event(float(item["held_at"]), "wake", task, item.get("held_token"),
                            "the task took the lease and ran the app"))
    outcome = item.get("stop_outcome")
    stopped_at = item.get("updated_at") or item.get("stop_claimed_at")
    if outcome and isinstance(stopped_at, int | float):
        events.append(Event(float(stopped_at), STOP_EVENTS.get(outcome, f"stop {outcome}"),
                            task, item.get("held_token"), _stop_detail(outcome, task, lease)))
    return events


def _stop_detail(outcome: str, task: Any, lease: Lease) -> str | None:
    if outcome == "verified":
        return "its final upload is in S3"
    if outcome == "unsynced":
        record = lease.last_unsynced_stop or {}
        if record.get("task_arn") == task and record.get("window_seconds") is not None:
            return (f"no final upload: writes of its last "
                    f"{text.duration(record['window_seconds'])} may be lost")
        return "no final upload: writes since its last upload may be lost"
    if outcome == "failed_to_start":
        failure = lease.extra.get("last_start_failure") or {}
        if failure.get("task_arn") == task and failure.get("reason"):
            return str(failure["reason"])
    return None


def _upload(version: ObjectInfo) -> Event:
    reason = version.reason or "not by wakeful"
    parts = [reason, text.size(version.size)]
    if version.is_latest:
        parts.append("current")
    return Event(_uploaded_at(version), "upload", version.holder, version.token,
                 ", ".join(parts), version.version_id)


def _uploaded_at(version: ObjectInfo) -> float:
    """When the upload was made: the uploader's own record (to the millisecond) when there is
    one; S3's LastModified is to the second, too coarse to order an upload and a wake."""
    try:
        return float(version.metadata[META_UPLOADED_AT])
    except (KeyError, ValueError):
        return version.last_modified.timestamp()


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    events = timeline(target.ledger.tasks(), target.table.read(),
                      listing.detailed_versions(target.store, args.limit), args.limit)
    if args.json:
        io.json([event.as_json() for event in events])
        return EXIT_OK
    now = io.clock()
    io.print(f"History of {target.store.url}, lease {target.location.lease_name!r} "
             f"({len(events)} newest first)")
    if events:
        io.print(text.table(
            [(text.moment(e.at, now), e.event, _short(e.who), e.token,
              _with_version(e)) for e in events],
            header=("TIME", "EVENT", "WHO", "TOKEN", "DETAIL"),
        ))
    return EXIT_OK


def _short(who: str | None) -> str | None:
    """A task ARN by its id (the ARN is in ``--json``); other holders as they are."""
    if who and ":task/" in who:
        return "task " + who.rsplit("/", 1)[-1]
    return who


def _with_version(event: Event) -> str | None:
    if event.version_id:
        return f"{event.detail}, version {event.version_id}"
    return event.detail

"""``wakeful status``: the shared status report, through the API or read straight from AWS."""

from __future__ import annotations

import argparse
from typing import Any

from chalicelib import report
from chalicelib.errors import ConfigError, TaskControlError
from chalicelib.exits import EXIT_OK
from chalicelib.lease import HELD, RESERVED, Lease
from wakeful_cli import render
from wakeful_cli.config import Target
from wakeful_cli.session import AwsSession, cluster_of
from wakeful_cli.terminal import Io
from wakeful_replica import summary


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    if target.api_url and not args.direct:
        api = target.api("status")
        answer = api.status()
        if answer.status != 200:
            return io.fail(answer.failure("status"))
        data = dict(answer.body)
        source = f"API {api.url}"
    else:
        session, cluster = target.session, target.cluster
        data = report.read(target.table, target.store,
                           lambda lease: task_of(lease, session, cluster), io.clock())
        source = f"{target.store.url}, lease {target.location.lease_name!r}"
    chain = _chain(target)
    if chain is not None:  # a bucket without a chain reports what it always did
        data["chain"] = chain
    if args.json:
        io.json({**data, "source": source})
        return EXIT_OK
    io.print(f"wakeful status (from {source})")
    io.print(render.table(rows(data, io.clock())))
    return EXIT_OK


def _chain(target: Target) -> dict[str, Any] | None:
    """The chain's part of the report, read from S3 (the control plane's report has none): when
    the bucket is known and holds a chain."""
    try:
        chain = target.chain
    except ConfigError:
        return None  # only an API URL: the report is the control plane's alone
    found = summary.read(chain)
    return found.as_json() if found else None


def task_of(lease: Lease, session: AwsSession | None, cluster: str | None) -> dict[str, Any] | None:
    """What ECS says of the lease's task, asked directly (``status: None`` when it cannot be)."""
    found = report.task_arn_only(lease)
    if found is None:
        return None
    arn = found["arn"]
    where = cluster_of(arn, cluster)
    if session is None or where is None:
        return found
    try:
        status = session.task_status(where, arn)
    except TaskControlError as exc:
        return {"arn": arn, "status": None, "error": exc.reason}
    return {"arn": arn, "status": status or "MISSING"}


def rows(data: dict[str, Any], now: float) -> list[tuple[str, Any]]:
    lease = data.get("lease") or {}
    unsynced = data.get("last_unsynced_stop")
    live = lease.get("state") in (HELD, RESERVED)
    table: list[tuple[str, Any]] = [
        ("state", data.get("state")),
        ("lease", lease.get("state")),
        ("holder", lease.get("holder") or (f"(last: {lease['last_holder']})"
                                          if lease.get("last_holder") else None)),
        ("token", lease.get("token")),
        ("expires", render.expires_in(lease.get("expires_at"), now) if live else None),
        ("task", _task_cell(data.get("task"))),
        ("endpoint", data.get("endpoint")),
        ("last upload", render.upload_cell(data.get("last_upload"), now)),
        ("backups", data.get("backups")),
        ("unsynced stop", _unsynced_cell(unsynced, now) if unsynced else "none"),
    ]
    chain = data.get("chain")
    if chain:
        table.extend(summary.status_rows(chain, now))
    failure = data.get("last_start_failure")
    if failure:
        table.append(("start failure", f"{failure.get('reason', '?')} "
                                       f"({failure.get('task_arn', '?')})"))
    return table


def _task_cell(task: dict[str, Any] | None) -> str | None:
    if not task:
        return None
    status = task.get("status") or "status unknown"
    if task.get("error"):
        status += f": {task['error']}"
    return f"{task.get('arn')} ({status})"


def _unsynced_cell(record: dict[str, Any], now: float) -> str:
    when = record.get("stopped_at") or record.get("detected_at")
    window = record.get("window_seconds")
    lost = f"window {render.duration(window)}" if window is not None else "window unknown"
    killed = ", killed" if record.get("killed") else ""
    return f"{render.moment(when, now)}, {lost}{killed} ({record.get('task_arn', '?')})"

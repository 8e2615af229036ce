"""``wakeful lease show`` and ``wakeful lease release --force``: only a dead holder's lease is
ever freed."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import LeaseLost
from chalicelib.exits import EXIT_OK
from chalicelib.lease import HELD, RESERVED, Lease
from chalicelib.report import holder_task_arn
from wakeful_cli import render
from wakeful_cli.config import Target
from wakeful_cli.session import AwsSession, cluster_of
from wakeful_cli.terminal import Io, Refused


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    if args.lease_command == "show":
        return show(args, target, io)
    return release(args, target, io)


def show(args: argparse.Namespace, target: Target, io: Io) -> int:
    lease = target.table.read()
    if args.json:
        io.json({"table": target.location.lease_table, **dataclasses.asdict(lease)})
        return EXIT_OK
    now = io.clock()
    live = lease.state in (HELD, RESERVED)
    rows: list[tuple[str, Any]] = [
        ("name", lease.name),
        ("table", target.location.lease_table),
        ("state", lease.state),
        ("holder", lease.holder),
        ("token", lease.token),
        ("expires", render.expires_in(lease.expires_at, now) if live else None),
        ("task", lease.task_arn),
        ("endpoint", lease.endpoint),
        ("reservation", lease.reservation_id),
        ("acquired", render.moment(lease.acquired_at, now) if lease.acquired_at else None),
        ("last wake", render.moment(lease.last_wake, now) if lease.last_wake else None),
        ("last holder", lease.last_holder),
        ("last upload", render.upload_cell(
            dict(lease.last_upload) if lease.last_upload else None, now)),
    ]
    io.print(render.table(rows))
    return EXIT_OK


def release(args: argparse.Namespace, target: Target, io: Io) -> int:
    table = target.table
    lease = table.read()
    if lease.state not in (HELD, RESERVED) or not lease.holder:
        io.print(f"lease {lease.name!r} is {lease.state}: nothing to release")
        return EXIT_OK
    check = check_release(lease, target.session, target.cluster, io.clock())
    if not check.allowed:
        raise Refused(f"release refused: {check.reason}; a live holder may still be writing")
    if not args.force:
        raise Refused(
            f"release refused without --force: {check.reason}; releasing lets the next wake "
            f"start a new writer. If the holder is gone, run `wakeful lease release --force`"
        )
    try:
        released = table.force_release(lease.holder)
    except LeaseLost as exc:
        raise Refused(f"release refused: the lease changed meanwhile ({exc})") from exc
    io.print(f"released lease {lease.name!r} from {lease.holder} ({check.reason}); "
             f"token stays {released.token}")
    return EXIT_OK


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

"""``wakeful`` / ``python -m wakeful_cli``: watch and drive a wakeful backend.

Exit codes: 0 done, 1 failed, 2 usage or configuration, 3 refused (nothing was changed).
Errors are one line on stderr; ``--json`` gives scripts the data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

from chalicelib.errors import ConfigError, LeaseLost, WakefulError
from chalicelib.lease import HELD, RESERVED
from wakeful_cli import operations, render
from wakeful_cli.api import Answer
from wakeful_cli.config import Target
from wakeful_cli.operations import Refused

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3

EXAMPLES = """\
examples:
  wakeful status                          lease, task, endpoint, last upload, backups
  wakeful wake --wait                     start the backend and print its endpoint
  wakeful restore --at 2026-11-28T14:30:00Z
  wakeful lease release --force           free the lease of a holder ECS reports STOPPED

configuration (flags override the environment):
  DB_S3_BUCKET, DB_S3_KEY, WAKEFUL_LEASE_TABLE, WAKEFUL_LEASE_NAME   the database and its lease
  WAKEFUL_API_URL, WAKEFUL_API_KEY                                  the control plane API
  WAKEFUL_CLUSTER                                                   the ECS cluster
  AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL                         AWS (or a local stand-in)
"""


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line instead of usage text and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _add_target_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # On sub-commands the defaults are suppressed, so `wakeful --region X status` and
    # `wakeful status --region X` both work and neither overrides the other with None.
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("target")
    group.add_argument("--bucket", default=default, help="S3 bucket (DB_S3_BUCKET)")
    group.add_argument("--key", default=default, help="database object key (DB_S3_KEY)")
    group.add_argument("--table", default=default, help="lease table (WAKEFUL_LEASE_TABLE)")
    group.add_argument("--lease-name", default=default, help="lease name (WAKEFUL_LEASE_NAME)")
    group.add_argument("--profile", default=default, help="AWS profile (AWS_PROFILE)")
    group.add_argument("--region", default=default, help="AWS region (AWS_REGION)")
    group.add_argument("--endpoint-url", default=default,
                       help="AWS endpoint, e.g. a local stand-in (AWS_ENDPOINT_URL)")
    group.add_argument("--api-url", default=default,
                       help="control plane API base URL (WAKEFUL_API_URL)")
    group.add_argument("--api-key", default=default, help="control plane API key (WAKEFUL_API_KEY)")
    group.add_argument("--cluster", default=default, help="ECS cluster (WAKEFUL_CLUSTER)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wakeful",
        description="Watch and drive a wakeful backend: its lease, task, database and backups.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_target_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    def command(name: str, help_text: str, json_flag: bool = True) -> argparse.ArgumentParser:
        child = sub.add_parser(name, help=help_text, description=help_text)
        _add_target_options(child, suppress=True)
        if json_flag:
            child.add_argument("--json", action="store_true", help="print JSON for scripts")
        return child

    status = command("status", "lease, task, endpoint, last upload, backups, unsynced stops")
    status.add_argument("--direct", action="store_true",
                        help="read DynamoDB/S3/ECS even when an API URL is configured")
    wake = command("wake", "start the backend (or keep it awake)")
    wake.add_argument("--wait", action="store_true", help="wait until it runs; print its endpoint")
    wake.add_argument("--timeout", type=_seconds, default=300.0, metavar="S",
                      help="give up waiting after S seconds (default 300)")
    wake.add_argument("--interval", type=_seconds, default=2.0, metavar="S",
                      help="poll every S seconds (default 2)")
    command("sleep", "stop the backend: it uploads, then releases the lease")
    backups = command("backups", "list timestamped backups (and S3 versions)")
    backups.add_argument("--versions", action="store_true", help="also list S3 versions")
    restore = command("restore", "make a backup or an older version the current database")
    source = restore.add_mutually_exclusive_group(required=True)
    source.add_argument("--backup", metavar="NAME", help="YYYYMMDD_HHMMSS or the full key")
    source.add_argument("--version", dest="version_id", metavar="ID", help="an S3 version id")
    source.add_argument("--at", metavar="TIME",
                        help="the newest version at or before TIME (ISO 8601, stamp or epoch)")
    lease = command("lease", "show or release the lease", json_flag=False)
    lease_sub = lease.add_subparsers(dest="lease_command", required=True, metavar="ACTION",
                                     parser_class=_Parser)
    show = lease_sub.add_parser("show", help="the lease item")
    _add_target_options(show, suppress=True)
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    release = lease_sub.add_parser(
        "release", help="free the lease of a dead holder (ECS says STOPPED, or it expired)"
    )
    _add_target_options(release, suppress=True)
    release.add_argument("--force", action="store_true",
                         help="required: you confirm the holder is gone")
    return parser


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {raw!r}")
    return value


@dataclasses.dataclass
class Io:
    out: TextIO
    err: TextIO
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()

    def json(self, data: Any) -> None:
        self.print(json.dumps(data, indent=2, default=str))


def main(
    argv: Sequence[str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    env: dict[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run one command; returns the exit code. Streams, environment and ``sleep`` (between
    polls) are injectable for embedding and tests."""
    io = Io(stdout or sys.stdout, stderr or sys.stderr, sleep=sleep)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        io.note(f"wakeful: usage error: {exc}")
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    target = Target(args, env)
    try:
        return COMMANDS[args.command](args, target, io)
    except ConfigError as exc:
        io.note(f"wakeful: configuration error: {_one_line(exc)}")
        return EXIT_USAGE
    except Refused as exc:
        io.note(f"wakeful: {_one_line(exc)}")
        return EXIT_REFUSED
    except ValueError as exc:
        io.note(f"wakeful: usage error: {_one_line(exc)}")
        return EXIT_USAGE
    except WakefulError as exc:
        io.note(f"wakeful: error: {_one_line(exc)}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        io.note("wakeful: interrupted")
        return 130


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# -- status ----------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, target: Target, io: Io) -> int:
    if target.api_url and not args.direct:
        api = target.api("status")
        answer = api.status()
        if answer.status != 200:
            return _api_failure("status", answer, io)
        report = dict(answer.body)
        source = f"API {api.url}"
    else:
        report = operations.direct_status(
            target.table, target.store, target.session, target.cluster, io.clock()
        )
        source = f"{target.store.url}, lease {target.location.lease_name!r}"
    if args.json:
        io.json({**report, "source": source})
        return EXIT_OK
    io.print(f"wakeful status (from {source})")
    io.print(render.table(status_rows(report, io.clock())))
    return EXIT_OK


def status_rows(report: dict[str, Any], now: float) -> list[tuple[str, Any]]:
    lease = report.get("lease") or {}
    task = report.get("task")
    upload = report.get("last_upload")
    unsynced = report.get("last_unsynced_stop")
    live = lease.get("state") in (HELD, RESERVED)
    rows: list[tuple[str, Any]] = [
        ("state", report.get("state")),
        ("lease", lease.get("state")),
        ("holder", lease.get("holder") or (f"(last: {lease['last_holder']})"
                                          if lease.get("last_holder") else None)),
        ("token", lease.get("token")),
        ("expires", render.expires_in(lease.get("expires_at"), now) if live else None),
        ("task", _task_cell(task)),
        ("endpoint", report.get("endpoint")),
        ("last upload", _upload_cell(upload, now)),
        ("backups", report.get("backups")),
        ("unsynced stop", _unsynced_cell(unsynced, now) if unsynced else "none"),
    ]
    failure = report.get("last_start_failure")
    if failure:
        rows.append(("start failure", f"{failure.get('reason', '?')} "
                                      f"({failure.get('task_arn', '?')})"))
    return rows


def _task_cell(task: dict[str, Any] | None) -> str | None:
    if not task:
        return None
    status = task.get("status") or "status unknown"
    if task.get("error"):
        status += f": {task['error']}"
    return f"{task.get('arn')} ({status})"


def _upload_cell(upload: dict[str, Any] | None, now: float) -> str | None:
    if not upload:
        return None
    token = upload.get("token")
    parts = [
        render.moment(upload.get("at"), now),
        render.size(upload.get("size")),
        upload.get("reason") or "unknown reason",
        f"token {token}" if token is not None else "no token",
    ]
    return ", ".join(str(part) for part in parts)


def _unsynced_cell(record: dict[str, Any], now: float) -> str:
    when = record.get("stopped_at") or record.get("detected_at")
    window = record.get("window_seconds")
    lost = f"window {render.duration(window)}" if window is not None else "window unknown"
    killed = ", killed" if record.get("killed") else ""
    return f"{render.moment(when, now)}, {lost}{killed} ({record.get('task_arn', '?')})"


# -- wake / sleep ----------------------------------------------------------------------------


def cmd_wake(args: argparse.Namespace, target: Target, io: Io) -> int:
    api = target.api("wake")
    answer = api.wake()
    if answer.status not in (200, 202):
        return _api_failure("wake", answer, io)
    body = answer.body
    if body.get("state") == "running":
        return _running(body, args, io)
    if not args.wait:
        if args.json:
            io.json(body)
        else:
            task = f" (task {body['task_arn']})" if body.get("task_arn") else ""
            io.print(f"starting{task}; `wakeful wake --wait` waits for the endpoint")
        return EXIT_OK
    return _wait_running(api, args, io)


def _wait_running(api: Any, args: argparse.Namespace, io: Io) -> int:
    spinner = render.Spinner(io.err)
    deadline = time.monotonic() + args.timeout
    state = "starting"
    try:
        while True:
            answer = api.status()
            if answer.status != 200:
                spinner.done()
                return _api_failure("status", answer, io)
            body = answer.body
            state = str(body.get("state"))
            if state == "running" and body.get("endpoint"):
                spinner.done()
                return _running(body, args, io)
            if state == "asleep":
                spinner.done()
                failure = body.get("last_start_failure") or {}
                reason = failure.get("reason") or "the lease is free again"
                io.note(f"wakeful: error: the backend did not start: {reason}")
                return EXIT_FAILED
            task = body.get("task") or {}
            spinner.update(f"{state}: task {task.get('status') or 'pending'}")
            if time.monotonic() >= deadline:
                break
            io.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
    finally:
        spinner.done()
    io.note(f"wakeful: error: timed out after {render.duration(args.timeout)} waiting for "
            f"the backend (still {state}); `wakeful status` shows where it is")
    return EXIT_FAILED


def _running(body: dict[str, Any], args: argparse.Namespace, io: Io) -> int:
    if args.json:
        io.json({"state": "running", "endpoint": body.get("endpoint"),
                 "task_arn": body.get("task_arn") or (body.get("task") or {}).get("arn")})
    else:
        io.print(str(body.get("endpoint")))
    return EXIT_OK


def cmd_sleep(args: argparse.Namespace, target: Target, io: Io) -> int:
    answer = target.api("sleep").sleep()
    if answer.status not in (200, 202):
        return _api_failure("sleep", answer, io)
    if args.json:
        io.json(answer.body)
    elif answer.body.get("state") == "stopping":
        tasks = ", ".join(answer.body.get("task_arns") or [])
        io.print(f"stopping {tasks}: the agent uploads, then releases the lease")
    else:
        io.print(str(answer.body.get("state", "asleep")))
    return EXIT_OK


def _api_failure(what: str, answer: Answer, io: Io) -> int:
    hint = ""
    if answer.status in (401, 403):
        hint = " (check WAKEFUL_API_KEY / --api-key)"
    retry = answer.headers.get("Retry-After") or answer.headers.get("retry-after")
    if retry:
        hint += f"; retry after {retry}s"
    io.note(f"wakeful: error: {what} failed with HTTP {answer.status}: {answer.reason}{hint}")
    return EXIT_FAILED


# -- backups / restore -----------------------------------------------------------------------


def cmd_backups(args: argparse.Namespace, target: Target, io: Io) -> int:
    store = target.store
    found = store.backups()
    versions = store.versions() if args.versions else []
    if args.json:
        io.json({
            "backups": [{"name": b.name, "key": b.key, "size": b.size,
                         "last_modified": b.last_modified.isoformat()} for b in found],
            "versions": [{"version_id": v.version_id, "size": v.size, "is_latest": v.is_latest,
                          "last_modified": v.last_modified.isoformat()} for v in versions],
        })
        return EXIT_OK
    now = io.clock()
    io.print(f"Backups of {store.url} ({len(found)}, newest first)")
    if found:
        io.print(render.table(
            [(b.name, render.size(b.size), render.moment(b.last_modified.timestamp(), now))
             for b in found],
            header=("NAME", "SIZE", "CREATED"),
        ))
    if args.versions:
        io.print(f"\nVersions of {store.url} ({len(versions)}, newest first)")
        if versions:
            io.print(render.table(
                [(v.version_id, render.size(v.size),
                  render.moment(v.last_modified.timestamp(), now),
                  "current" if v.is_latest else "") for v in versions],
                header=("VERSION", "SIZE", "STORED", ""),
            ))
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, target: Target, io: Io) -> int:
    store = target.store
    source = operations.resolve_source(store, args.backup, args.version_id, args.at)
    try:
        info = operations.restore(target.table, store, source, io.err, clock=io.clock)
    except LeaseLost as exc:
        raise Refused(f"restore refused: the lease was taken over meanwhile: {exc}") from exc
    if args.json:
        io.json({"restored": operations.label(source), "current": info.describe()})
    else:
        io.print(f"restored {operations.label(source)} as {store.url} "
                 f"(new version {info.version_id}, {render.size(info.size)})")
    return EXIT_OK


# -- lease -----------------------------------------------------------------------------------


def cmd_lease(args: argparse.Namespace, target: Target, io: Io) -> int:
    if args.lease_command == "show":
        return _lease_show(args, target, io)
    return _lease_release(args, target, io)


def _lease_show(args: argparse.Namespace, target: Target, io: Io) -> int:
    lease = target.table.read()
    data = dataclasses.asdict(lease)
    if args.json:
        io.json({"table": target.location.lease_table, **data})
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
        ("last upload", _upload_cell(dict(lease.last_upload) if lease.last_upload else None,
                                     now)),
    ]
    io.print(render.table(rows))
    return EXIT_OK


def _lease_release(args: argparse.Namespace, target: Target, io: Io) -> int:
    table = target.table
    lease = table.read()
    if lease.state not in (HELD, RESERVED) or not lease.holder:
        io.print(f"lease {lease.name!r} is {lease.state}: nothing to release")
        return EXIT_OK
    now = io.clock()
    check = operations.check_release(lease, target.session, target.cluster, now)
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


COMMANDS: dict[str, Callable[[argparse.Namespace, Target, Io], int]] = {
    "status": cmd_status,
    "wake": cmd_wake,
    "sleep": cmd_sleep,
    "backups": cmd_backups,
    "restore": cmd_restore,
    "lease": cmd_lease,
}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""``wakeful`` / ``python -m wakeful_cli``: watch and drive a wakeful backend.

Exit codes: 0 done, 1 failed, 2 usage or configuration, 3 refused (nothing was changed).
Errors are one line on stderr; ``--json`` gives scripts the data.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from chalicelib.errors import ConfigError, WakefulError
from chalicelib.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_REFUSED, EXIT_USAGE
from wakeful_cli import backups, lease, restore, sleep, status, wake
from wakeful_cli.config import Target
from wakeful_cli.terminal import Io, Refused

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

    status_parser = command("status", "lease, task, endpoint, last upload, backups, "
                                      "unsynced stops")
    status_parser.add_argument("--direct", action="store_true",
                               help="read DynamoDB/S3/ECS even when an API URL is configured")
    wake_parser = command("wake", "start the backend (or keep it awake)")
    wake_parser.add_argument("--wait", action="store_true",
                             help="wait until it runs; print its endpoint")
    wake_parser.add_argument("--timeout", type=_seconds, default=300.0, metavar="S",
                             help="give up waiting after S seconds (default 300)")
    wake_parser.add_argument("--interval", type=_seconds, default=2.0, metavar="S",
                             help="poll every S seconds (default 2)")
    command("sleep", "stop the backend: it uploads, then releases the lease")
    backups_parser = command("backups", "list timestamped backups (and S3 versions)")
    backups_parser.add_argument("--versions", action="store_true", help="also list S3 versions")
    restore_parser = command("restore", "make a backup or an older version the current database")
    source = restore_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--backup", metavar="NAME", help="YYYYMMDD_HHMMSS or the full key")
    source.add_argument("--version", dest="version_id", metavar="ID", help="an S3 version id")
    source.add_argument("--at", metavar="TIME",
                        help="the newest version at or before TIME (ISO 8601, stamp or epoch)")
    lease_parser = command("lease", "show or release the lease", json_flag=False)
    lease_sub = lease_parser.add_subparsers(dest="lease_command", required=True,
                                            metavar="ACTION", parser_class=_Parser)
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
        return EXIT_INTERRUPTED


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# Each command is a module of its own with ``run(args, target, io) -> exit code``.
COMMANDS: dict[str, Callable[[argparse.Namespace, Target, Io], int]] = {
    "status": status.run,
    "wake": wake.run,
    "sleep": sleep.run,
    "backups": backups.run,
    "restore": restore.run,
    "lease": lease.run,
}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""``wakeful`` / ``python -m wakeful_cli``: watch and drive a wakeful backend.

Exit codes: 0 done, 1 failed, 2 usage or configuration, 3 refused (nothing was changed).
Errors are one line on stderr; ``--json`` gives scripts the data.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any, NoReturn, TextIO

from chalicelib.errors import ConfigError, WakefulError
from chalicelib.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_REFUSED, EXIT_USAGE
from wakeful_cli import backups, history, lease, logs, restore, sleep, status, verify, wake
from wakeful_cli.config import AUTH_MODES, Target
from wakeful_cli.terminal import Io, Refused

EXAMPLES = """\
examples:
  wakeful status                          lease, task, endpoint, last upload, backups
  wakeful wake --wait                     start the backend and print its endpoint
  wakeful sleep --wait                    stop it; return once its final upload is verified
  wakeful history --limit 10              wakes, stops and uploads, newest first
  wakeful logs --follow --since 30m       the agent's and the control plane's logs
  wakeful restore --at 2026-11-28T14:30:00Z --dry-run
  wakeful restore --txid 120 --generation 000000000007-1a2b3c4d
  wakeful verify                          walk the whole chain's checksums
  wakeful lease release --force           free the lease of a holder ECS reports STOPPED

configuration (flags > environment > profile file):
  a profile file: ./wakeful.toml or ~/.config/wakeful/config.toml with [profile.NAME]
  tables (write one with: terraform -chdir=infra output -raw wakeful_profile > wakeful.toml);
  --profile-name / WAKEFUL_PROFILE picks one, --config / WAKEFUL_CONFIG names another file.
  DB_S3_BUCKET, DB_S3_KEY, WAKEFUL_LEASE_TABLE, WAKEFUL_LEASE_NAME   the database and its lease
  WAKEFUL_API_URL, WAKEFUL_API_KEY (or WAKEFUL_API_KEY_ID), WAKEFUL_AUTH   the control plane API
  WAKEFUL_CLUSTER                                                   the ECS cluster
  WAKEFUL_AGENT_LOG_GROUP, WAKEFUL_CONTROL_PLANE_LOG_GROUPS         where `wakeful logs` reads
  AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL                         AWS (or a local stand-in)
"""


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that matches options exactly (``--wai`` is not ``--wait``) and reports a usage
    error as one line instead of usage text and exiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _add_global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # On sub-commands the defaults are suppressed, so `wakeful --region X status` and
    # `wakeful status --region X` both work and neither overrides the other with None.
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("target")
    group.add_argument("--profile-name", default=default, metavar="NAME",
                       help="the [profile.NAME] of the profile file to use (WAKEFUL_PROFILE)")
    group.add_argument("--config", default=default, metavar="FILE",
                       help="the profile file (WAKEFUL_CONFIG; default ./wakeful.toml, "
                            "then ~/.config/wakeful/config.toml)")
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
    group.add_argument("--auth", default=default, choices=AUTH_MODES,
                       help="how API requests are authorised: api_key (x-api-key header, the "
                            "default) or iam (SigV4-signed with your AWS credentials) "
                            "(WAKEFUL_AUTH)")
    group.add_argument("--cluster", default=default, help="ECS cluster (WAKEFUL_CLUSTER)")
    parser.add_argument("--json", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="print JSON for scripts")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wakeful",
        description="Watch and drive a wakeful backend: its lease, task, database and backups.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wakeful {_version()}",
                        help="print the installed version and exit")
    _add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    def command(name: str, help_text: str, parent: Any = sub) -> argparse.ArgumentParser:
        child = parent.add_parser(name, help=help_text, description=help_text)
        _add_global_options(child, suppress=True)
        return child

    status_parser = command("status", "lease, task, endpoint, last upload, backups, "
                                      "unsynced stops")
    status_parser.add_argument("--direct", action="store_true",
                               help="read DynamoDB/S3/ECS even when an API URL is configured")
    wake_parser = command("wake", "start the backend (or keep it awake)")
    wake_parser.add_argument("--wait", action="store_true",
                             help="wait until it runs (waking it again if it was stopping); "
                                  "print its endpoint")
    _add_wait_options(wake_parser)
    sleep_parser = command("sleep", "stop the backend: it uploads, then releases the lease")
    sleep_parser.add_argument("--wait", action="store_true",
                              help="wait until it is asleep: the lease FREE and its stop "
                                   "verified by the control plane")
    _add_wait_options(sleep_parser)
    backups_parser = command("backups", "list timestamped backups (and S3 versions), each "
                                        "with the reason, holder and token of its upload")
    backups_parser.add_argument("--versions", action="store_true", help="also list S3 versions")
    backups_parser.add_argument("--limit", type=_count, metavar="N",
                                help="only the newest N backups (and versions)")
    restore_parser = command("restore", "make a backup, an older version or a point of the "
                                        "chain the current database")
    source = restore_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--backup", metavar="NAME", help="YYYYMMDD_HHMMSS or the full key")
    source.add_argument("--version", dest="version_id", metavar="ID", help="an S3 version id")
    source.add_argument("--at", metavar="TIME",
                        help="the state as of TIME (ISO 8601, stamp or epoch): with a chain, "
                             "the last sync captured by then; without one, the newest version "
                             "stored by then")
    source.add_argument("--txid", type=_count, metavar="N",
                        help="the chain's state at position N (of --generation, default the "
                             "current one)")
    restore_parser.add_argument("--generation", metavar="G",
                                help="with --txid: the generation N is in (see `wakeful "
                                     "backups`)")
    restore_parser.add_argument("--dry-run", action="store_true",
                                help="check the source and the lease, say what would happen, "
                                     "change nothing")
    verify_parser = command("verify", "check what the database would be restored from: "
                                      "the whole chain, or one backup or version")
    which = verify_parser.add_mutually_exclusive_group()
    which.add_argument("--backup", metavar="NAME", help="a backup instead of the chain or the "
                                                        "current object")
    which.add_argument("--version", dest="version_id", metavar="ID",
                       help="an S3 version instead of the chain or the current object")
    verify_parser.add_argument("--quick", action="store_true",
                               help="quick_check instead of integrity_check (one object)")
    history_parser = command("history", "the timeline: wakes, verified and unsynced stops, "
                                        "uploads, newest first")
    history_parser.add_argument("--limit", type=_count, default=20, metavar="N",
                                help="the newest N events (default 20)")
    logs_parser = command("logs", "the agent's and the control plane's CloudWatch logs, "
                                  "merged by time")
    logs_parser.add_argument("--follow", "-f", action="store_true",
                             help="keep printing new lines until Ctrl-C")
    logs_parser.add_argument("--since", type=_since, default=600.0, metavar="AGE",
                             help="from AGE ago: 90s, 10m, 2h, 1d (default 10m)")
    logs_parser.add_argument("--source", choices=("agent", "control-plane", "all"),
                             default="all", help="whose logs (default all)")
    logs_parser.add_argument("--agent-log-group", default=argparse.SUPPRESS, metavar="GROUP",
                             help="the task's log group (WAKEFUL_AGENT_LOG_GROUP)")
    logs_parser.add_argument("--control-plane-log-group", action="append",
                             default=argparse.SUPPRESS, metavar="GROUP",
                             help="a control plane Lambda's log group; repeatable "
                                  "(WAKEFUL_CONTROL_PLANE_LOG_GROUPS, comma-separated)")
    logs_parser.add_argument("--interval", type=_seconds, default=2.0, metavar="S",
                             help="with --follow, poll every S seconds (default 2)")
    lease_parser = command("lease", "show or release the lease")
    lease_sub = lease_parser.add_subparsers(dest="lease_command", required=True,
                                            metavar="ACTION", parser_class=_Parser)
    command("show", "the lease item", parent=lease_sub)
    release = command("release", "free the lease of a dead holder (ECS says STOPPED, or it "
                                 "expired)", parent=lease_sub)
    release.add_argument("--force", action="store_true",
                         help="required: you confirm the holder is gone")
    return parser


def _add_wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=_seconds, default=300.0, metavar="S",
                        help="with --wait, give up after S seconds (default 300)")
    parser.add_argument("--interval", type=_seconds, default=2.0, metavar="S",
                        help="with --wait, poll every S seconds (default 2)")


def _version() -> str:
    try:
        return metadata.version("wakeful")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _count(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {raw!r}")
    return value


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(raw: str) -> float:
    """``90s``, ``10m``, ``2h``, ``1d`` or plain seconds."""
    text = raw.strip().lower()
    unit = _AGE_UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit else text
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an age: {raw!r} (use e.g. 90s, 10m, 2h, 1d)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {raw!r}")
    return value


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
    cwd: str | None = None,
) -> int:
    """Run one command; returns the exit code. Streams, environment, working folder (where
    ``wakeful.toml`` is looked for) and ``sleep`` (between polls) are injectable for embedding
    and tests."""
    io = Io(stdout or sys.stdout, stderr or sys.stderr, sleep=sleep)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        io.note(f"wakeful: usage error: {exc}")
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        target = Target(args, env, cwd)
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
    "verify": verify.run,
    "lease": lease.run,
    "history": history.run,
    "logs": logs.run,
}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

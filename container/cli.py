"""``wakeful-agent`` / ``python -m container``: the container entrypoint and manual verbs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from chalicelib.errors import ConfigError, WakefulError
from chalicelib.exits import EXIT_FAILED, EXIT_USAGE
from chalicelib.settings import AgentSettings
from container import commands
from container.agent import Agent
from container.process import ProcessGroup
from container.wiring import Wiring, wire

USAGE_EXAMPLES = """\
examples:
  wakeful-agent run -- gunicorn app:app       the container entrypoint (supervises the app)
  wakeful-agent startup / shutdown            the seed's two calls, for your own entrypoint
  wakeful-agent upload                        sync now (asks the running agent when there is one)
  wakeful-agent restore --at 2026-11-28T14:30:00Z
  wakeful-agent restore --txid 120 --dry-run
"""


class _Parser(argparse.ArgumentParser):
    """Options are matched exactly: ``backups --version`` is not ``--versions``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wakeful-agent",
        description="Keeps one fenced, verified copy of a SQLite database in S3.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wakeful-agent {_version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    run = sub.add_parser("run", help="acquire, download, run CMD, sync, upload on stop, release")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="CMD",
                     help="the app's command, after `--`")
    # What `startup` starts in the background; not for people, so not listed in the help
    # (a sub-command added without help= is left out of the list).
    serve = sub.add_parser("serve")
    serve.add_argument("--writer-group", type=int, metavar="PGID",
                       help="the process group to stop when the lease is lost")
    sub.add_parser("startup", help="start a background agent (download, then sync periodically)")
    sub.add_parser("shutdown", help="stop the background agent: final upload, then release")
    down = sub.add_parser("download", help="download and verify the current database")
    down.add_argument("--output", metavar="PATH",
                      help="write a copy here instead of DB_LOCAL_PATH")
    down.add_argument("--version", dest="version_id", metavar="ID",
                      help="a specific S3 version id instead of the current object")
    up = sub.add_parser("upload", help="upload the local database now")
    up.add_argument("--force", action="store_true",
                    help="replace a current object that changed since the local download")
    lst = sub.add_parser("backups", help="list timestamped backups (and versions), and the "
                                        "chain's restore points")
    lst.add_argument("--versions", action="store_true", help="also list S3 versions")
    lst.add_argument("--json", action="store_true", help="print JSON for scripts")
    restore = sub.add_parser("restore", help="make a backup, an older version or a point of "
                                             "the chain current")
    add_restore_sources(restore)
    restore.add_argument("--dry-run", action="store_true",
                         help="check the source and the lease, say what would happen, "
                              "change nothing")
    ver = sub.add_parser("verify", help="walk the whole chain, or check a stored database, "
                                       "without touching the local one")
    which = ver.add_mutually_exclusive_group()
    which.add_argument("--backup", metavar="NAME",
                       help="a backup instead of the chain or the current object")
    which.add_argument("--version", dest="version_id", metavar="ID",
                       help="an S3 version instead of the chain or the current object")
    ver.add_argument("--quick", action="store_true", help="quick_check instead of integrity_check")
    st = sub.add_parser("status", help="lease, current object, backups, chain, local agent")
    st.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parser


def add_restore_sources(parser: argparse.ArgumentParser) -> None:
    """What ``restore`` can make current: the same flags as ``wakeful restore``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--backup", metavar="NAME", help="YYYYMMDD_HHMMSS or the full key")
    source.add_argument("--version", dest="version_id", metavar="ID", help="an S3 version id")
    source.add_argument("--at", metavar="TIME",
                        help="the state as of TIME (ISO 8601, stamp or epoch): with a chain, "
                             "the last sync captured by then; without one, the newest version "
                             "stored by then")
    source.add_argument("--txid", type=_txid, metavar="N",
                        help="the chain's state at position N (of --generation, default the "
                             "current one)")
    parser.add_argument("--generation", metavar="G",
                        help="with --txid: the generation N is in (see `backups`)")


def _txid(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {raw!r}")
    return value


def _version() -> str:
    try:
        return metadata.version("wakeful")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = AgentSettings.from_env()
    except ConfigError as exc:
        print(f"wakeful-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    supervising = args.command in ("run", "serve")
    try:
        if supervising:
            app = list(getattr(args, "argv", []) or [])
            if app and app[0] == "--":
                app = app[1:]
            if args.command == "run" and not app:
                print("wakeful-agent: run needs the app's command: run -- CMD...",
                      file=sys.stderr)
                return EXIT_USAGE
            group = getattr(args, "writer_group", None)
            agent = Agent(
                wire(settings, Wiring, supervising=True),
                writer_group=ProcessGroup(group) if group is not None else None,
            )
            return agent.run(app or None)
        return _manual(args, wire(settings, commands.Context))
    except (WakefulError, ValueError) as exc:
        print(f"wakeful-agent: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _manual(args: argparse.Namespace, ctx: commands.Context) -> int:
    command = args.command
    if command == "startup":
        return commands.startup(ctx)
    if command == "shutdown":
        return commands.shutdown(ctx)
    if command == "download":
        return commands.download(ctx, args.output, args.version_id)
    if command == "upload":
        return commands.upload(ctx, force=args.force)
    if command == "backups":
        return commands.backups(ctx, args.versions, args.json)
    if command == "restore":
        if args.generation and args.txid is None:
            print("wakeful-agent: --generation goes with --txid", file=sys.stderr)
            return EXIT_USAGE
        return commands.restore(ctx, args.backup, args.version_id, args.at,
                                dry_run=args.dry_run, txid=args.txid,
                                generation=args.generation)
    if command == "verify":
        return commands.verify(ctx, args.backup, args.version_id, full=not args.quick)
    if command == "status":
        return commands.status(ctx, args.json)
    raise ValueError(f"unknown command {command!r}")


def console() -> None:
    """The console script: run, flush, and exit without tearing the interpreter down.

    By now the upload is done, the lease released and the state file written; the usual
    interpreter teardown of boto3 would only add half a second to every container stop.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    console()

"""``wakeful restore --backup NAME | --version ID | --at TIME``: the kernel's restore, with
progress bars, under a lease held by this operator."""

from __future__ import annotations

import argparse
import os
import socket

from chalicelib import restore as restoring
from chalicelib import sources
from chalicelib.errors import LeaseHeld, LeaseLost, WakefulError
from chalicelib.exits import EXIT_OK
from chalicelib.store import ObjectInfo
from wakeful_cli import render
from wakeful_cli.config import Target
from wakeful_cli.terminal import Io, Refused


def operator_holder() -> str:
    """Who takes the lease for an operator's restore: distinct from every agent and task."""
    return f"operator@{socket.gethostname()}:{os.getpid()}"


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    store = target.store
    source = sources.resolve(store, args.backup, args.version_id, args.at)
    if args.dry_run:
        return _dry_run(target, source, args, io)

    def progress(kind: str, what: str, size: int) -> render.ProgressBar:
        label = f"download {what}" if kind == "download" else f"upload to {what}"
        return render.ProgressBar(io.err, label, size)

    def warn(exc: WakefulError) -> None:
        io.note(f"warning: could not release the lease: {exc}")

    try:
        info = restoring.restore(target.table, store, source, operator_holder(),
                                 watch=progress, on_release_failure=warn)
    except LeaseHeld as exc:
        raise Refused(f"restore refused: {held(exc, io.clock())}") from exc
    except LeaseLost as exc:
        raise Refused(f"restore refused: the lease was taken over meanwhile: {exc}") from exc
    label = sources.label(source)
    if args.json:
        io.json({"restored": label, "current": info.describe()})
    else:
        io.print(f"restored {label} as {store.url} "
                 f"(new version {info.version_id}, {render.size(info.size)})")
    return EXIT_OK


def held(exc: LeaseHeld, now: float) -> str:
    return (f"the lease is {exc.state} by {exc.holder} (expires "
            f"{render.expires_in(exc.expires_at, now)}); a running backend owns the database: "
            "run `wakeful sleep --wait` first")


def _dry_run(target: Target, source: ObjectInfo, args: argparse.Namespace, io: Io) -> int:
    def progress(kind: str, what: str, size: int) -> render.ProgressBar:
        return render.ProgressBar(io.err, f"download {what} (to check it)", size)

    seen = restoring.preview(target.table, target.store, source, watch=progress,
                             clock=io.clock)
    if args.json:
        io.json(seen.as_json())
    else:
        for line in seen.lines(target.store.url):
            io.print(line)
    refusal = seen.refusal
    if refusal is not None:
        raise Refused(f"restore would be refused: {held(refusal, seen.now)}")
    return EXIT_OK

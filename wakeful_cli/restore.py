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
from wakeful_cli import render
from wakeful_cli.config import Target
from wakeful_cli.terminal import Io, Refused


def operator_holder() -> str:
    """Who takes the lease for an operator's restore: distinct from every agent and task."""
    return f"operator@{socket.gethostname()}:{os.getpid()}"


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    store = target.store
    source = sources.resolve(store, args.backup, args.version_id, args.at)

    def progress(kind: str, what: str, size: int) -> render.ProgressBar:
        label = f"download {what}" if kind == "download" else f"upload to {what}"
        return render.ProgressBar(io.err, label, size)

    def warn(exc: WakefulError) -> None:
        io.note(f"warning: could not release the lease: {exc}")

    try:
        info = restoring.restore(target.table, store, source, operator_holder(),
                                 watch=progress, on_release_failure=warn)
    except LeaseHeld as exc:
        raise Refused(
            f"restore refused: the lease is {exc.state} by {exc.holder} "
            f"(expires {render.expires_in(exc.expires_at, io.clock())}); a running backend "
            "owns the database: run `wakeful sleep` and wait for it to stop first"
        ) from exc
    except LeaseLost as exc:
        raise Refused(f"restore refused: the lease was taken over meanwhile: {exc}") from exc
    label = sources.label(source)
    if args.json:
        io.json({"restored": label, "current": info.describe()})
    else:
        io.print(f"restored {label} as {store.url} "
                 f"(new version {info.version_id}, {render.size(info.size)})")
    return EXIT_OK

"""``wakeful restore --backup NAME | --version ID | --at TIME | --txid N [--generation G]``:
under a lease held by this operator, the kernel's restore (a bucket of the whole-file layout,
with progress bars), or on a chain bucket ``wakeful_replica.reinstate``: the point rebuilt,
checked, made a new generation of the chain and written to the current object."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Callable

from chalicelib import restore as restoring
from chalicelib import sources
from chalicelib.errors import LeaseHeld, LeaseLost, WakefulError
from chalicelib.exits import EXIT_FAILED, EXIT_OK
from chalicelib.store import ObjectInfo
from wakeful_cli import render
from wakeful_cli.config import Target
from wakeful_cli.terminal import Io, Refused
from wakeful_replica import reinstate
from wakeful_replica.errors import ChainBroken, Fenced, NothingToRestore, Superseded
from wakeful_replica.store import ChainStore


def operator_holder() -> str:
    """Who takes the lease for an operator's restore: distinct from every agent and task."""
    return f"operator@{socket.gethostname()}:{os.getpid()}"


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    if args.generation and args.txid is None:
        raise ValueError("--generation goes with --txid")
    store = target.store
    chain = target.chain
    if chain.read_manifest() is not None:
        point = reinstate.point_of(store, args.backup, args.version_id, args.at, args.txid,
                                   args.generation)
        return _run_chain(args, target, chain, point, io)
    if args.txid is not None:
        return io.fail(f"no chain at {store.url} (a bucket of the whole-file layout): --txid "
                       "needs one; restore a --backup, a --version or --at a time instead")
    source = sources.resolve(store, args.backup, args.version_id, args.at)
    if args.dry_run:
        return _dry_run(target, source, args, io)

    def progress(kind: str, what: str, size: int) -> render.ProgressBar:
        label = f"download {what}" if kind == "download" else f"upload to {what}"
        return render.ProgressBar(io.err, label, size)

    try:
        info = restoring.restore(target.table, store, source, operator_holder(),
                                 watch=progress, on_release_failure=_warn(io))
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


def _warn(io: Io) -> Callable[[WakefulError], None]:
    def warn(exc: WakefulError) -> None:
        io.note(f"warning: could not release the lease: {exc}")
    return warn


def _run_chain(
    args: argparse.Namespace, target: Target, chain: ChainStore, point: reinstate.Point, io: Io
) -> int:
    store = target.store
    try:
        if args.dry_run:
            return _chain_dry_run(target, chain, point, args, io)
        done = reinstate.reinstate(target.table, chain, store, point, operator_holder(),
                                   on_release_failure=_warn(io))
    except LeaseHeld as exc:
        raise Refused(f"restore refused: {held(exc, io.clock())}") from exc
    except (LeaseLost, Fenced, Superseded) as exc:
        raise Refused(f"restore refused: the lease was taken over meanwhile: {exc}") from exc
    except ChainBroken as exc:
        io.note(f"wakeful: error: {point.label()} cannot be restored: {exc}; nothing was "
                "changed (`wakeful verify` lists every problem of the chain)")
        return EXIT_FAILED
    except NothingToRestore as exc:
        io.note(f"wakeful: error: nothing to restore: {exc}; nothing was changed "
                "(`wakeful backups` shows the restorable window)")
        return EXIT_FAILED
    for warning in done.warnings:
        io.note(f"wakeful: warning: {warning}")
    if args.json:
        io.json({"restored": point.label(), **done.as_json()})
    else:
        io.print(f"restored {point.label()} as generation {done.generation} of the chain "
                 f"(position {done.position}; the old chain is kept) and as {store.url} "
                 f"(new version {done.current.version_id}, {render.size(done.current.size)})")
    return EXIT_OK


def _chain_dry_run(
    target: Target, chain: ChainStore, point: reinstate.Point, args: argparse.Namespace, io: Io
) -> int:
    seen = reinstate.preview(target.table, chain, target.store, point, clock=io.clock)
    if args.json:
        io.json(seen.as_json())
    else:
        for line in seen.lines(target.store.url):
            io.print(line)
    if seen.refusal is not None:
        raise Refused(f"restore would be refused: {held(seen.refusal, seen.now)}")
    return EXIT_OK


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

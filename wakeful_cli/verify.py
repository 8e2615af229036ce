"""``wakeful verify [--backup NAME | --version ID] [--quick]``: check what the database would be
restored from, changing nothing. On a chain bucket (nothing named) every retained position of
every generation and every base (``ChainStore.verify``); otherwise, or for a named backup or
version, that one object by its checksum and SQLite's check. Exit 1 on any problem, as
``wakeful-agent verify``."""

from __future__ import annotations

import argparse
import os
import tempfile

from chalicelib import sources
from chalicelib.errors import CorruptDatabase
from chalicelib.exits import EXIT_FAILED, EXIT_OK
from chalicelib.integrity import fetch_verified
from wakeful_cli import render
from wakeful_cli.config import Target
from wakeful_cli.terminal import Io
from wakeful_replica import gaps


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    store = target.store
    if args.backup is None and args.version_id is None:
        chain = target.chain
        if chain.read_manifest() is not None:
            with tempfile.TemporaryDirectory(prefix="wakeful-verify-") as scratch:
                report = gaps.verify(chain, scratch)
            if args.json:
                io.json({"ok": report.ok, "problems": report.problems,
                         "generations": report.generations, "positions": report.positions,
                         "bases": report.bases,
                         "end": {"generation": report.end[0], "txid": report.end[1]}
                         if report.end else None})
            else:
                for problem in report.problems:
                    io.note(f"wakeful: problem: {problem}")
                walked = (f"{report.positions} positions of {len(report.generations)} "
                          f"generation(s), {report.bases} base(s)")
                end = (f", end at txid {report.end[1]} of {report.end[0]}"
                       if report.end else "")
                verdict = "whole" if report.ok else f"broken ({len(report.problems)} problem(s))"
                io.print(f"the chain of {store.url} is {verdict}: walked {walked}{end}")
            return EXIT_OK if report.ok else EXIT_FAILED
    info = sources.resolve(store, args.backup, args.version_id)
    label = sources.label(info)
    with tempfile.TemporaryDirectory(prefix="wakeful-verify-") as scratch:
        try:
            digest = fetch_verified(store, info, os.path.join(scratch, "verify.sqlite3"),
                                    full=not args.quick)
        except CorruptDatabase as exc:
            return io.fail(f"{label} is corrupt: {exc.reason}")
    check = "quick_check" if args.quick else "integrity_check"
    if args.json:
        io.json({"ok": True, "source": label, "size": info.size, "sha256": digest,
                 "sha256_recorded": bool(info.sha256), "check": check})
    else:
        recorded = "matches" if info.sha256 else "not recorded (uploaded by another tool)"
        io.print(f"{label} is a good database: {render.size(info.size)}, sha256 {digest} "
                 f"({recorded}), {check} ok")
    return EXIT_OK

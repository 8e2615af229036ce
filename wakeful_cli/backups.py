"""``wakeful backups [--versions]``: what the database can be restored from, with the reason,
holder and token each upload recorded (the kernel's listing, the same table
``wakeful-agent backups`` prints), and on a chain bucket the chain's restorable window: its
generations, their positions and bases (``wakeful_replica.summary``)."""

from __future__ import annotations

import argparse

from chalicelib import listing
from chalicelib.exits import EXIT_OK
from wakeful_cli.config import Target
from wakeful_cli.terminal import Io
from wakeful_replica import summary


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    found = listing.read(target.store, args.versions, limit=args.limit)
    chain = summary.read(target.chain)
    if args.json:
        # A bucket without a chain lists what it always did.
        io.json({**found.as_json(), **({"chain": chain.as_json()} if chain else {})})
        return EXIT_OK
    now = io.clock()
    for line in found.lines(now):
        io.print(line)
    if chain is not None:
        io.print("")
        for line in summary.backup_lines(chain.as_json(), target.store.url, now):
            io.print(line)
    return EXIT_OK

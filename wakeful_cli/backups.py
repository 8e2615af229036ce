"""``wakeful backups [--versions]``: what the database can be restored from, with the reason,
holder and token each upload recorded (the kernel's listing, the same table
``wakeful-agent backups`` prints)."""

from __future__ import annotations

import argparse

from chalicelib import listing
from chalicelib.exits import EXIT_OK
from wakeful_cli.config import Target
from wakeful_cli.terminal import Io


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    found = listing.read(target.store, args.versions, limit=args.limit)
    if args.json:
        io.json(found.as_json())
        return EXIT_OK
    for line in found.lines(io.clock()):
        io.print(line)
    return EXIT_OK

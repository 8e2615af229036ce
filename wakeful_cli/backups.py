"""``wakeful backups [--versions]``: what the database can be restored from."""

from __future__ import annotations

import argparse

from chalicelib import listing
from chalicelib.exits import EXIT_OK
from wakeful_cli import render
from wakeful_cli.config import Target
from wakeful_cli.terminal import Io


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    found = listing.read(target.store, args.versions)
    if args.json:
        io.json(found.as_json())
        return EXIT_OK
    now = io.clock()
    io.print(f"Backups of {found.url} ({len(found.backups)}, newest first)")
    if found.backups:
        io.print(render.table(
            [(b.name, render.size(b.size), render.moment(b.last_modified.timestamp(), now))
             for b in found.backups],
            header=("NAME", "SIZE", "CREATED"),
        ))
    if args.versions:
        io.print(f"\nVersions of {found.url} ({len(found.versions)}, newest first)")
        if found.versions:
            io.print(render.table(
                [(v.version_id, render.size(v.size),
                  render.moment(v.last_modified.timestamp(), now),
                  "current" if v.is_latest else "") for v in found.versions],
                header=("VERSION", "SIZE", "STORED", ""),
            ))
    return EXIT_OK

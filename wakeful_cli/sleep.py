"""``wakeful sleep``: stop the backend through the API; its agent uploads, then releases."""

from __future__ import annotations

import argparse

from chalicelib.exits import EXIT_OK
from wakeful_cli.config import Target
from wakeful_cli.terminal import Io


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    answer = target.api("sleep").sleep()
    if answer.status not in (200, 202):
        return io.fail(answer.failure("sleep"))
    if args.json:
        io.json(answer.body)
    elif answer.body.get("state") == "stopping":
        tasks = ", ".join(answer.body.get("task_arns") or [])
        io.print(f"stopping {tasks}: the agent uploads, then releases the lease")
    else:
        io.print(str(answer.body.get("state", "asleep")))
    return EXIT_OK

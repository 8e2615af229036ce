"""``wakeful sleep [--wait]``: stop the backend through the API; its agent uploads, then releases.

``--wait`` returns once the backend is asleep in the sense that matters: the lease is free (or
someone else's) and the control plane has accounted for each stopped task — verified its final
upload in S3, or recorded an unsynced stop, which fails the command. It reads the lease and
the task ledger directly, so it needs the lease table as well as the API.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from chalicelib.exits import EXIT_FAILED, EXIT_OK
from chalicelib.lease import HELD, RESERVED, Lease
from wakeful_cli import render
from wakeful_cli.config import Target
from wakeful_cli.terminal import Io

# Stop outcomes (chalicelib.control / decisions) after which nothing acknowledged was lost.
CLEAN_STOPS = ("verified", "never_held", "failed_to_start")


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    api = target.api("sleep")
    # Checked before anything is stopped: the wait reads the lease and the ledger.
    ledger, table = (target.ledger, target.table) if args.wait else (None, None)
    answer = api.sleep()
    if answer.status not in (200, 202):
        return io.fail(answer.failure("sleep"))
    tasks = [str(arn) for arn in answer.body.get("task_arns") or []]
    if args.wait and answer.body.get("state") == "stopping" and tasks:
        return _wait_asleep(tasks, ledger, table, args, io)
    if args.json:
        io.json(answer.body)
    elif answer.body.get("state") == "stopping":
        io.print(f"stopping {', '.join(tasks)}: the agent uploads, then releases the lease")
    else:
        io.print(str(answer.body.get("state", "asleep")))
    return EXIT_OK


def _wait_asleep(tasks: list[str], ledger: Any, table: Any, args: argparse.Namespace,
                 io: Io) -> int:
    spinner = render.Spinner(io.err)
    deadline = time.monotonic() + args.timeout
    outcomes: dict[str, str | None] = {}
    lease = table.read()
    try:
        while True:
            lease = table.read()
            outcomes = {task: ledger.entry(task).stop_outcome for task in tasks}
            if not _still_holds(lease, tasks) and all(outcomes.values()):
                break
            spinner.update(_progress(lease, tasks, outcomes))
            if time.monotonic() >= deadline:
                spinner.done()
                return io.fail(
                    f"timed out after {render.duration(args.timeout)} waiting for the backend "
                    f"to sleep ({_progress(lease, tasks, outcomes)}); `wakeful status` shows "
                    "where it is"
                )
            io.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
    finally:
        spinner.done()
    return _report(tasks, outcomes, lease, args, io)


def _still_holds(lease: Lease, tasks: list[str]) -> bool:
    return lease.state in (HELD, RESERVED) and lease.holder in tasks


def _progress(lease: Lease, tasks: list[str], outcomes: dict[str, str | None]) -> str:
    if _still_holds(lease, tasks):
        return f"stopping: {lease.holder} still holds the lease (its final upload)"
    waiting = [task for task in tasks if not outcomes.get(task)]
    return f"stopped: waiting for the control plane to verify the stop of {', '.join(waiting)}"


def _report(tasks: list[str], outcomes: dict[str, str | None], lease: Lease,
            args: argparse.Namespace, io: Io) -> int:
    unsynced = [task for task in tasks if outcomes.get(task) not in CLEAN_STOPS]
    if args.json:
        io.json({"state": "asleep" if not unsynced else "asleep, unsynced",
                 "stops": outcomes, "lease": {"state": lease.state, "token": lease.token},
                 "last_upload": lease.last_upload, "last_unsynced_stop": lease.last_unsynced_stop})
    for task in tasks:
        if task in unsynced:
            record = lease.last_unsynced_stop or {}
            window = record.get("window_seconds") if record.get("task_arn") == task else None
            lost = (f"writes of its last {render.duration(window)} may be lost"
                    if window is not None else "writes since its last upload may be lost")
            io.note(f"wakeful: error: {task} stopped without its final upload ({outcomes[task]}): "
                    f"{lost}; `wakeful status` shows the unsynced stop")
        elif not args.json:
            io.print(f"asleep: {task} stopped; {_upload_note(task, outcomes[task], lease)}")
    return EXIT_FAILED if unsynced else EXIT_OK


def _upload_note(task: str, outcome: str | None, lease: Lease) -> str:
    upload = dict(lease.last_upload or {})
    if outcome == "verified" and upload.get("holder") == task:
        return (f"its final upload (version {upload.get('version_id')}, token "
                f"{upload.get('token')}) is verified")
    if outcome == "verified":
        return "its final upload is verified"
    return f"it never ran the app ({outcome}), so it had nothing to upload"

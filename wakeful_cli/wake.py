"""``wakeful wake [--wait]``: start the backend (or keep it awake) through the API."""

from __future__ import annotations

import argparse
import time
from typing import Any

from chalicelib.exits import EXIT_OK
from wakeful_cli import render
from wakeful_cli.api import ControlPlaneApi
from wakeful_cli.config import Target
from wakeful_cli.terminal import Io


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    api = target.api("wake")
    answer = api.wake()
    if answer.status not in (200, 202):
        return io.fail(answer.failure("wake"))
    body = answer.body
    if body.get("state") == "running":
        return _running(body, args, io)
    if not args.wait:
        if args.json:
            io.json(body)
        else:
            task = f" (task {body['task_arn']})" if body.get("task_arn") else ""
            io.print(f"starting{task}; `wakeful wake --wait` waits for the endpoint")
        return EXIT_OK
    return _wait_running(api, args, io)


def _wait_running(api: ControlPlaneApi, args: argparse.Namespace, io: Io) -> int:
    spinner = render.Spinner(io.err)
    deadline = time.monotonic() + args.timeout
    state = "starting"
    try:
        while True:
            answer = api.status()
            if answer.status != 200:
                spinner.done()
                return io.fail(answer.failure("status"))
            body = answer.body
            state = str(body.get("state"))
            if state == "running" and body.get("endpoint"):
                spinner.done()
                return _running(body, args, io)
            if state == "asleep":
                spinner.done()
                failure = body.get("last_start_failure") or {}
                reason = failure.get("reason") or "the lease is free again"
                return io.fail(f"the backend did not start: {reason}")
            task = body.get("task") or {}
            spinner.update(f"{state}: task {task.get('status') or 'pending'}")
            if time.monotonic() >= deadline:
                break
            io.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
    finally:
        spinner.done()
    return io.fail(f"timed out after {render.duration(args.timeout)} waiting for the backend "
                   f"(still {state}); `wakeful status` shows where it is")


def _running(body: dict[str, Any], args: argparse.Namespace, io: Io) -> int:
    if args.json:
        io.json({"state": "running", "endpoint": body.get("endpoint"),
                 "task_arn": body.get("task_arn") or (body.get("task") or {}).get("arn")})
    else:
        io.print(str(body.get("endpoint")))
    return EXIT_OK

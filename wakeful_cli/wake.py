"""``wakeful wake [--wait]``: start the backend (or keep it awake) through the API.

``--wait`` ends with the backend running, or with a clear failure or timeout. A wake that finds
the backend stopping (right after ``wakeful sleep``) is answered "starting" for the task that is
on its way out; once that task has uploaded and the lease is free again, the wait wakes the
backend again instead of taking "asleep" for a failed start. Only a task this wait started
itself can fail to start.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

from chalicelib.exits import EXIT_OK
from wakeful_cli import render
from wakeful_cli.api import Answer, ControlPlaneApi
from wakeful_cli.config import Target
from wakeful_cli.terminal import Io

# A backend that stops under a waiting wake this many times in a row is not going to run.
MAX_WAKES = 4


def run(args: argparse.Namespace, target: Target, io: Io) -> int:
    api = target.api("wake")
    # Who holds the lease before the wake: a task that is already there (stopping, or still
    # starting) is not one this wake started, whatever the wake answers.
    before = _holder_task(api.status()) if args.wait else None
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
    waiting = Waiting(found=before)
    waiting.woke(body)
    return _wait_running(api, waiting, args, io)


@dataclass
class Waiting:
    """What the wait knows: which tasks its own wakes started, how often it woke."""

    found: str | None = None
    started: set[str] = field(default_factory=set)
    wakes: int = 0
    latest: str | None = None

    def woke(self, body: dict[str, Any]) -> None:
        self.wakes += 1
        task = body.get("task_arn")
        if task:
            self.latest = str(task)
            if task != self.found:
                self.started.add(str(task))

    def failure_of_ours(self, body: dict[str, Any]) -> str | None:
        """Why a task this wait started did not run, once the lease is free again; ``None``
        when the task that went away was not ours (it was stopping when we came)."""
        failure = body.get("last_start_failure") or {}
        if failure.get("task_arn") and failure["task_arn"] in self.started:
            return str(failure.get("reason") or "it failed to start")
        if self.latest in self.started:
            return f"task {self.latest} stopped before it ran (the lease is free again)"
        return None


def _wait_running(api: ControlPlaneApi, waiting: Waiting, args: argparse.Namespace,
                  io: Io) -> int:
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
                problem = waiting.failure_of_ours(body)
                if problem is None and waiting.wakes >= MAX_WAKES:
                    problem = f"it went back to sleep {waiting.wakes} times while starting"
                if problem is not None:
                    spinner.done()
                    return io.fail(f"the backend did not start: {problem}")
                # The task we found on its way out is gone: wake the backend again.
                again = api.wake()
                if again.status not in (200, 202):
                    spinner.done()
                    return io.fail(again.failure("wake"))
                waiting.woke(again.body)
                if again.body.get("state") == "running":
                    spinner.done()
                    return _running(again.body, args, io)
                spinner.update("asleep: woken again")
            else:
                spinner.update(_progress(state, body))
            if time.monotonic() >= deadline:
                break
            io.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
    finally:
        spinner.done()
    return io.fail(f"timed out after {render.duration(args.timeout)} waiting for the backend "
                   f"(still {state}); `wakeful status` shows where it is")


def _progress(state: str, body: dict[str, Any]) -> str:
    task = body.get("task") or {}
    if task.get("desired_status") == "STOPPED":
        # The lease is still the old task's while it uploads; the wait wakes it after.
        return (f"stopping: task {task.get('status') or 'pending'} uploads its database, "
                "then the backend is woken again")
    return f"{state}: task {task.get('status') or 'pending'}"


def _holder_task(answer: Answer) -> str | None:
    """The task on the lease before the wake (the holder, or the task it reserved for)."""
    if answer.status != 200:
        return None
    lease = answer.body.get("lease") or {}
    if lease.get("state") not in ("HELD", "RESERVED"):
        return None
    task = answer.body.get("task") or {}
    holder = str(lease.get("holder") or "")
    return str(task.get("arn") or "") or (holder if ":task/" in holder else None)


def _running(body: dict[str, Any], args: argparse.Namespace, io: Io) -> int:
    if args.json:
        io.json({"state": "running", "endpoint": body.get("endpoint"),
                 "task_arn": body.get("task_arn") or (body.get("task") or {}).get("arn")})
    else:
        io.print(str(body.get("endpoint")))
    return EXIT_OK

"""Starting a detached agent (``wakeful-agent startup``, the seed's first call) until it runs."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from container import state

# The agent without an app of its own: it downloads, then keeps the database synced.
SERVE = (sys.executable, "-m", "container", "serve")


@dataclass(frozen=True)
class Started:
    """How a background agent's start ended: running, exited (with its code), or neither in time."""

    pid: int
    running: bool
    exit_code: int | None = None


def start_background_agent(
    local_path: str,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    argv: Sequence[str] = SERVE,
) -> Started:
    """Start an agent in a session of its own (it outlives this process) and wait until its
    state file says it runs."""
    process = subprocess.Popen(list(argv), start_new_session=True)
    deadline = monotonic() + timeout
    while monotonic() < deadline:
        answer = state.read(local_path)
        if answer.get("pid") == process.pid and answer.get("state") == "running":
            return Started(process.pid, running=True)
        code = process.poll()
        if code is not None:
            return Started(process.pid, running=False, exit_code=code)
        sleep(0.05)
    return Started(process.pid, running=False)

"""The agent running beside a manual verb, reached through its state file and two signals.

``docker exec <container> wakeful-agent upload`` must not race the agent that runs there: it asks
that agent to sync (SIGUSR1, answered in the state file) instead of writing S3 on its own, and
``shutdown`` asks it to stop (SIGTERM) and waits for its final upload.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from container import state

# What the agent answers when the sync it was asked for has left S3 up to date.
SYNCED = ("uploaded", "unchanged")

Sleep = Callable[[float], None]
Clock = Callable[[], float]


def ask_to_sync(
    local_path: str,
    pid: int,
    timeout: float,
    sleep: Sleep = time.sleep,
    monotonic: Clock = time.monotonic,
) -> str | None:
    """Ask the agent ``pid`` to sync now and wait for it: ``None`` once it has, else why not."""
    request = state.next_sync_request(local_path)
    os.kill(pid, signal.SIGUSR1)
    deadline = monotonic() + timeout
    while monotonic() < deadline:
        answer = state.read(local_path)
        if int(answer.get("sync_done", 0) or 0) >= request:
            if answer.get("sync_outcome") in SYNCED:
                return None
            return str(answer.get("sync_detail"))
        if not state.pid_alive(pid):
            break
        sleep(0.1)
    return "the agent did not answer in time"


def stop(
    local_path: str,
    pid: int,
    timeout: float,
    sleep: Sleep = time.sleep,
    monotonic: Clock = time.monotonic,
) -> int | None:
    """Stop the agent ``pid`` (it uploads, then releases): its exit code, or ``None`` when it
    did not finish its shutdown within ``timeout``."""
    os.kill(pid, signal.SIGTERM)
    deadline = monotonic() + timeout
    while monotonic() < deadline and state.pid_alive(pid):
        sleep(0.05)
    answer = state.read(local_path)
    if state.pid_alive(pid) or answer.get("state") != "exited":
        return None
    return int(answer.get("exit_code") or 0)

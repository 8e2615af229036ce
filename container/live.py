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
from dataclasses import dataclass

from container import state

# What the agent answers when the sync it was asked for has left S3 up to date.
SYNCED = ("uploaded", "unchanged")


@dataclass(frozen=True)
class LiveAgent:
    """The agent ``pid`` that runs on ``local_path`` (``state.live_agent`` found it)."""

    local_path: str
    pid: int
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic

    def ask_to_sync(self, timeout: float) -> str | None:
        """Ask it to sync now and wait for its answer: ``None`` once it has, else why not."""
        request = state.next_sync_request(self.local_path)
        os.kill(self.pid, signal.SIGUSR1)
        deadline = self.monotonic() + timeout
        while self.monotonic() < deadline:
            answer = state.read(self.local_path)
            if int(answer.get("sync_done", 0) or 0) >= request:
                if answer.get("sync_outcome") in SYNCED:
                    return None
                return str(answer.get("sync_detail"))
            if not state.pid_alive(self.pid):
                break
            self.sleep(0.1)
        return "the agent did not answer in time"

    def stop(self, timeout: float) -> int | None:
        """Stop it (it uploads, then releases): its exit code, or ``None`` when it did not
        finish its shutdown within ``timeout``."""
        os.kill(self.pid, signal.SIGTERM)
        deadline = self.monotonic() + timeout
        while self.monotonic() < deadline and state.pid_alive(self.pid):
            self.sleep(0.05)
        answer = state.read(self.local_path)
        if state.pid_alive(self.pid) or answer.get("state") != "exited":
            return None
        return int(answer.get("exit_code") or 0)

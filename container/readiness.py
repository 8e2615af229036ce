"""Is the app answering yet? The agent's probe of the app's own port.

A backend counts as running (for ``/wake``, ``/status``, the CLI and the front door) only once
its app answers, not when the agent took the lease: a large download or a slow Django boot
must not hand clients an address that refuses them. The probe is a TCP connect to
``WAKEFUL_APP_PORT``, or with ``WAKEFUL_READY_PATH`` an HTTP GET that any answer below 500
passes (a 404 or a login redirect still means the app serves).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

POLL = 0.2
# Said once, loudly: an app that never listens is a misconfiguration an operator must see.
SLOW_APP_WARNING = 60.0


@dataclass(frozen=True)
class Probe:
    port: int
    path: str | None = None
    host: str = "127.0.0.1"
    timeout: float = 2.0

    def answers(self) -> bool:
        try:
            if not self.path:
                with socket.create_connection((self.host, self.port), timeout=self.timeout):
                    return True
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                connection.request("GET", self.path, headers={"User-Agent": "wakeful-agent"})
                return connection.getresponse().status < 500
            finally:
                connection.close()
        except (OSError, http.client.HTTPException):
            return False


def wait_until_ready(
    probe: Probe,
    keep_trying: Callable[[], bool],
    stop: threading.Event,
    warn: Callable[[str], None],
    monotonic: Callable[[], float] = time.monotonic,
) -> float | None:
    """Probe until the app answers; the seconds it took, or ``None`` when told to give up
    (the app exited, the agent is stopping)."""
    started = monotonic()
    warned = False
    while keep_trying() and not stop.is_set():
        if probe.answers():
            return monotonic() - started
        if not warned and monotonic() - started > SLOW_APP_WARNING:
            warned = True
            where = f"{probe.host}:{probe.port}{probe.path or ''}"
            warn(f"The app does not answer on {where} after {SLOW_APP_WARNING:g} s; "
                 "clients are told it is still starting")
        stop.wait(POLL)
    return None

"""The watchdog: the app is stopped before its lease can be taken over, on a thread of its own.

The thread that syncs may be blocked in a call to S3 or DynamoDB, the heartbeat in a renewal
that hangs; neither may decide when the app stops. The watchdog reads only the keeper (a
refused renewal, or a lease not renewed in time) and the clock, and stops the app in time:
SIGTERM while there is a little trust left, SIGKILL when it runs out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from chalicelib.keeper import LeaseKeeper
from container.inbox import Inbox

NOT_RENEWED = "the lease was not renewed in time; another agent may take it over"

# The longest the watchdog sleeps between looks at a lease that is not running out: a renewal
# moves the deadline, a refusal wakes it at once.
NAP = 0.5

# Stops the app within the given number of seconds (SIGTERM, then SIGKILL when they are up).
Halt = Callable[[str, float], None]


class Watchdog(threading.Thread):
    def __init__(
        self,
        keeper: LeaseKeeper,
        halt: Halt,
        inbox: Inbox,
        kill_grace: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="wakeful-watchdog", daemon=True)
        self.keeper = keeper
        self.halt = halt
        self.inbox = inbox
        self.kill_grace = kill_grace
        self._clock = clock
        self._done = threading.Event()
        self.fired: str | None = None

    def stop(self) -> None:
        self._done.set()

    def run(self) -> None:
        while not self._done.is_set():
            reason = self.keeper.lost
            left = self.keeper.trusted_for()
            if reason is None and left <= self.kill_grace:
                reason = NOT_RENEWED
                self.keeper.lose(reason)
            if reason is not None:
                self.fired = reason
                # Whatever is left of the trust is the app's grace; none left: SIGKILL now.
                self.halt(reason, max(0.0, min(left, self.kill_grace)))
                self.inbox.post("lost", reason)
                return
            self.keeper.wait_lost(min(left - self.kill_grace, NAP))

"""The agent's heartbeat: the kernel's renewer (``chalicelib.keeper``), which also tells the
agent when no wake came within the idle timeout; and the lease as a deadline for calls."""

from __future__ import annotations

import time
from collections.abc import Callable

from chalicelib.errors import LeaseLost
from chalicelib.keeper import LeaseKeeper, Renewer, trusted_until
from chalicelib.lease import Lease
from container.inbox import Inbox

__all__ = ["Heartbeat", "LeaseKeeper", "LeaseTrust", "trusted_until"]


class LeaseTrust:
    """The deadline of a lease: a call is waited on only while the lease can be trusted."""

    def __init__(self, keeper: LeaseKeeper) -> None:
        self.keeper = keeper

    def remaining(self) -> float:
        return self.keeper.trusted_for()

    def exceeded(self, what: str) -> BaseException:
        keeper = self.keeper
        reason = keeper.lost or "the lease was not renewed in time; another agent may take it over"
        return LeaseLost(
            keeper.table.name, keeper.holder, keeper.token, f"{reason} (while waiting on {what})"
        )


class Heartbeat(Renewer):
    """Renews every ``ttl/3``, and soon again after a failure; posts ``idle`` to the inbox.

    A refused renewal marks the keeper lost; the watchdog then stops the app. A renewal that
    fails or hangs is retried while the lease is still trusted; when it no longer is, the
    watchdog acts on its own, whatever this thread is blocked on.
    """

    def __init__(
        self,
        keeper: LeaseKeeper,
        inbox: Inbox,
        idle_timeout: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(keeper, name="wakeful-heartbeat")
        self.inbox = inbox
        self.idle_timeout = idle_timeout
        self._clock = clock

    def renewed(self, lease: Lease) -> None:
        if self._idle(lease):
            self.inbox.post("idle", "no wake within the idle timeout")

    def _idle(self, lease: Lease) -> bool:
        if self.idle_timeout <= 0:
            return False
        last_activity = max(lease.last_wake or 0.0, lease.acquired_at or 0.0)
        return self._clock() - last_activity >= self.idle_timeout

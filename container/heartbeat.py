"""Keeps the lease alive from a background thread, and says how long it can still be trusted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from chalicelib.errors import LeaseLost, LeaseUnavailable
from chalicelib.lease import Lease, LeaseTable
from container.inbox import Inbox

# The share of the TTL this process keeps in hand for clock-rate differences with the hosts
# that judge expiry: it stops trusting the lease that long before its own reckoning runs out.
CLOCK_MARGIN = 0.1


def trusted_until(lease: Lease, ttl: float, sent: float, sent_wall: float) -> float:
    """Until when (monotonic) a lease returned by a request sent at ``sent`` can be counted on.

    A fresh acquisition expires ``ttl`` after it was sent, however late its answer came. An
    acquire that found our own earlier attempt's item (that answer was lost) returns the expiry
    the earlier attempt wrote, sooner still: whichever ends first.
    """
    return sent + min(ttl, lease.expires_at - sent_wall)


class LeaseKeeper:
    """Owns the agent's view of its lease: holder, token, and until when it can be trusted."""

    def __init__(
        self,
        table: LeaseTable,
        lease: Lease,
        ttl: float,
        monotonic: Callable[[], float] = time.monotonic,
        valid_until: float | None = None,
    ) -> None:
        self.table = table
        self.ttl = ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._lease = lease
        # Until when this process may count on the lease, by its own clock: a renewal counts
        # from when it was sent, so a slow answer never stretches it.
        self.valid_until = monotonic() + ttl if valid_until is None else valid_until
        self.margin = CLOCK_MARGIN * ttl
        self._lost: str | None = None
        self._lost_event = threading.Event()

    @property
    def lease(self) -> Lease:
        with self._lock:
            return self._lease

    @property
    def holder(self) -> str:
        return str(self.lease.holder)

    @property
    def token(self) -> int:
        return self.lease.token

    @property
    def lost(self) -> str | None:
        """Why the lease is no longer ours, once that is known or can no longer be ruled out."""
        return self._lost

    def lose(self, reason: str) -> None:
        """From now on the lease is not trusted, whatever a late renewal answers."""
        with self._lock:
            if self._lost is None:
                self._lost = reason
        self._lost_event.set()

    def wait_lost(self, timeout: float) -> bool:
        return self._lost_event.wait(max(0.0, timeout))

    def trusted_for(self) -> float:
        """Seconds left before another agent could take the lease over (less the margin)."""
        if self._lost is not None:
            return 0.0
        return self.valid_until - self.margin - self._monotonic()

    def renew(self) -> Lease:
        """Renew now; ``LeaseLost`` if it is no longer ours."""
        current = self.lease
        if self._lost is not None:
            raise LeaseLost(self.table.name, self.holder, current.token, self._lost)
        sent = self._monotonic()
        renewed = self.table.renew(str(current.holder), current.token, self.ttl)
        with self._lock:
            if self._lost is None:
                self._lease = renewed
                self.valid_until = max(self.valid_until, sent + self.ttl)
        return renewed

    def record_upload(self, upload: dict) -> None:
        current = self.lease
        updated = self.table.record_upload(str(current.holder), current.token, upload)
        with self._lock:
            self._lease = updated

    def release(self) -> None:
        current = self.lease
        self.table.release(str(current.holder), current.token)


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


class Heartbeat(threading.Thread):
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
        super().__init__(name="wakeful-heartbeat", daemon=True)
        self.keeper = keeper
        self.inbox = inbox
        self.idle_timeout = idle_timeout
        self.interval = max(0.2, keeper.ttl / 3)
        self.retry_interval = self.interval / 5
        self._clock = clock
        self._halt = threading.Event()

    @property
    def lost(self) -> str | None:
        return self.keeper.lost

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        wait = self.interval
        while not self._halt.wait(wait) and self.keeper.lost is None:
            wait = self.retry_interval
            try:
                lease = self.keeper.renew()
            except LeaseLost as exc:
                self.keeper.lose(str(exc))
                return
            except LeaseUnavailable:
                continue  # still trusted for a while: try again soon
            except Exception as exc:  # the watchdog judges the lease by its trust
                self.inbox.post("heartbeat-error", str(exc))
                continue
            wait = self.interval
            if self._idle(lease):
                self.inbox.post("idle", "no wake within the idle timeout")

    def _idle(self, lease: Lease) -> bool:
        if self.idle_timeout <= 0:
            return False
        last_activity = max(lease.last_wake or 0.0, lease.acquired_at or 0.0)
        return self._clock() - last_activity >= self.idle_timeout

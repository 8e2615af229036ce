"""A lease kept by its holder: holder and token, until when it can be counted on, and the
thread that renews it. The agent's heartbeat and a bounded operation's hold (``hold.py``) both
keep their lease with these.

Trust is counted on the holder's own monotonic clock from when each request was *sent*, so a
slow answer never stretches it, and less a margin for clock-rate differences with the hosts
that judge expiry. Once lost, a lease is never trusted again, whatever a late renewal answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.errors import LeaseLost
from chalicelib.lease import Lease, LeaseTable

# The share of the TTL this process keeps in hand for clock-rate differences with the hosts
# that judge expiry: it stops trusting the lease that long before its own reckoning runs out.
CLOCK_MARGIN = 0.1

MIN_RENEW_INTERVAL = 0.2  # seconds: a tiny TTL must not turn the renewer into a busy loop


def trusted_until(lease: Lease, ttl: float, sent: float, sent_wall: float) -> float:
    """Until when (monotonic) a lease returned by a request sent at ``sent`` can be counted on.

    A fresh acquisition expires ``ttl`` after it was sent, however late its answer came. An
    acquire that found our own earlier attempt's item (that answer was lost) returns the expiry
    the earlier attempt wrote, sooner still: whichever ends first.
    """
    return sent + min(ttl, lease.expires_at - sent_wall)


class LeaseKeeper:
    """Owns one holder's view of its lease: holder, token, and until when it can be trusted."""

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
        self._refusal: LeaseLost | None = None
        self._lost_event = threading.Event()

    @classmethod
    def acquire(
        cls,
        table: LeaseTable,
        holder: str,
        ttl: float,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        **options: Any,
    ) -> LeaseKeeper:
        """Acquire (``LeaseHeld`` when someone else is live on it) and keep what was acquired.

        ``options`` go to ``LeaseTable.acquire`` (the reservation, task and boot of an agent).
        """
        sent, sent_wall = monotonic(), wall()
        lease = table.acquire(holder, ttl, **options)
        return cls(
            table, lease, ttl, monotonic, valid_until=trusted_until(lease, ttl, sent, sent_wall)
        )

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

    def lose(self, reason: str, refusal: LeaseLost | None = None) -> None:
        """From now on the lease is not trusted, whatever a late renewal answers.

        ``refusal``: the table's own refusal, when that is how the loss was learnt; later
        renewals raise it again as it was.
        """
        with self._lock:
            if self._lost is None:
                self._lost = reason
                self._refusal = refusal
        self._lost_event.set()

    def wait_lost(self, timeout: float) -> bool:
        return self._lost_event.wait(max(0.0, timeout))

    def trusted_for(self) -> float:
        """Seconds left before another holder could take the lease over (less the margin)."""
        if self._lost is not None:
            return 0.0
        return self.valid_until - self.margin - self._monotonic()

    def renew(self) -> Lease:
        """Renew now; ``LeaseLost`` if it is no longer ours."""
        current = self.lease
        if self._lost is not None:
            raise self._refusal or LeaseLost(
                self.table.name, self.holder, current.token, self._lost
            )
        sent = self._monotonic()
        renewed = self.table.renew(str(current.holder), current.token, self.ttl)
        with self._lock:
            if self._lost is None:
                self._lease = renewed
                self.valid_until = max(self.valid_until, sent + self.ttl)
        return renewed

    def record_upload(self, upload: Mapping[str, Any]) -> None:
        """Put a verified upload on the lease (fenced by holder and token)."""
        current = self.lease
        updated = self.table.record_upload(str(current.holder), current.token, upload)
        with self._lock:
            self._lease = updated

    def release(self) -> None:
        current = self.lease
        self.table.release(str(current.holder), current.token)


class Renewer(threading.Thread):
    """Renews a kept lease every third of its TTL, and soon again after a failure.

    A refused renewal marks the keeper lost and ends the thread. A renewal that fails (DynamoDB
    unreachable or throttling) is tried again at a fifth of the interval; when the lease stops
    being trusted meanwhile is for others to act on (the agent's watchdog, whatever this thread
    is blocked on; a hold's next write is fenced anyway).
    """

    def __init__(self, keeper: LeaseKeeper, name: str = "wakeful-renewer") -> None:
        super().__init__(name=name, daemon=True)
        self.keeper = keeper
        self.interval = max(MIN_RENEW_INTERVAL, keeper.ttl / 3)
        self.retry_interval = self.interval / 5
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        wait = self.interval
        while not self._halt.wait(wait) and self.keeper.lost is None:
            wait = self.retry_interval
            try:
                lease = self.keeper.renew()
            except LeaseLost as exc:
                self.keeper.lose(str(exc), refusal=exc)
                return
            except Exception:  # unavailable, or anything else: still trusted for a while
                continue
            wait = self.interval
            self.renewed(lease)

    def renewed(self, lease: Lease) -> None:
        """Called after each renewal, on this thread (the heartbeat looks for idleness here)."""

"""Keeps the lease alive from a background thread; reports loss and idleness to the agent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from chalicelib.errors import LeaseLost, LeaseUnavailable
from chalicelib.lease import Lease, LeaseTable
from container.inbox import Inbox


class LeaseKeeper:
    """Owns the agent's view of its lease: holder, token, and when it expires."""

    def __init__(
        self,
        table: LeaseTable,
        lease: Lease,
        ttl: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.ttl = ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._lease = lease
        # Until when this process may count on the lease, by its own clock: a renewal counts
        # from when it was sent, so a slow answer never stretches it.
        self.valid_until = monotonic() + ttl

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

    def renew(self) -> Lease:
        """Renew now; ``LeaseLost`` if it is no longer ours."""
        current = self.lease
        sent = self._monotonic()
        renewed = self.table.renew(str(current.holder), current.token, self.ttl)
        with self._lock:
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


class Heartbeat(threading.Thread):
    """Renews every ``ttl/3``; posts ``lost`` or ``idle`` to the agent's inbox."""

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
        self._clock = clock
        self._halt = threading.Event()
        self.lost: str | None = None

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                lease = self.keeper.renew()
            except LeaseLost as exc:
                self._lose(str(exc))
                return
            except LeaseUnavailable as exc:
                # We cannot prove we still hold it; past expiry someone else may.
                if self._clock() >= self.keeper.lease.expires_at - self.interval:
                    self._lose(f"could not renew before expiry: {exc}")
                    return
                continue
            except Exception as exc:  # the agent's watchdog judges the lease by valid_until
                self.inbox.post("heartbeat-error", str(exc))
                continue
            if self._idle(lease):
                self.inbox.post("idle", "no wake within the idle timeout")

    def _lose(self, reason: str) -> None:
        self.lost = reason
        self.inbox.post("lost", reason)

    def _idle(self, lease: Lease) -> bool:
        if self.idle_timeout <= 0:
            return False
        last_activity = max(lease.last_wake or 0.0, lease.acquired_at or 0.0)
        return self._clock() - last_activity >= self.idle_timeout

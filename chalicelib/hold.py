"""A lease held for one bounded operation (a restore, a manual upload), renewed while it runs.

The agent's own lease is kept by its heartbeat for as long as the app runs; an operation run
by hand needs the same protection for minutes: acquired on entry (``LeaseHeld`` when someone
else is live on it), renewed every third of its TTL by a background thread, released on exit.
A renewal refused means another holder took over: from then on ``renew`` raises ``LeaseLost``,
so the operation stops before its next write (which S3's compare-and-swap fences anyway).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from chalicelib.errors import LeaseLost, WakefulError
from chalicelib.lease import Lease, LeaseTable

MIN_RENEW_INTERVAL = 0.2  # seconds: a tiny TTL must not turn the renewer into a busy loop


def _ignore(_error: WakefulError) -> None:
    pass


class LeaseHold:
    """``with LeaseHold(table, holder, ttl) as hold:`` ... ``hold.token`` fences the writes."""

    def __init__(
        self,
        table: LeaseTable,
        holder: str,
        ttl: float,
        on_release_failure: Callable[[WakefulError], None] = _ignore,
    ) -> None:
        self.table = table
        self.holder = holder
        self.ttl = ttl
        self.interval = max(MIN_RENEW_INTERVAL, ttl / 3)
        self._on_release_failure = on_release_failure
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._lease: Lease | None = None
        self._lost: LeaseLost | None = None
        self._renewer = threading.Thread(target=self._keep, name="wakeful-hold", daemon=True)

    @property
    def lease(self) -> Lease:
        with self._lock:
            if self._lease is None:
                raise RuntimeError("the lease is not held yet: use LeaseHold as a context manager")
            return self._lease

    @property
    def token(self) -> int:
        return self.lease.token

    def __enter__(self) -> LeaseHold:
        self._lease = self.table.acquire(self.holder, self.ttl)
        self._renewer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._halt.set()
        self._renewer.join()
        try:
            self.table.release(self.holder, self.token)
        except WakefulError as exc:  # it expires on its own; the operation's outcome stands
            self._on_release_failure(exc)

    def renew(self) -> Lease:
        """Renew now (before a write); ``LeaseLost`` if another holder took over."""
        if self._lost is not None:
            raise self._lost
        return self._store(self.table.renew(self.holder, self.token, self.ttl))

    def record_upload(self, upload: Mapping[str, Any]) -> None:
        """Put a verified upload on the lease (fenced by holder and token)."""
        self._store(self.table.record_upload(self.holder, self.token, upload))

    def _store(self, lease: Lease) -> Lease:
        with self._lock:
            self._lease = lease
        return lease

    def _keep(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                self.renew()
            except LeaseLost as exc:
                self._lost = exc
                return
            except WakefulError:
                # DynamoDB unreachable or throttled: the next beat tries again, and the TTL
                # leaves room for two more before anyone may take the lease.
                continue

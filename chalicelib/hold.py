"""A lease held for one bounded operation (a restore, a manual upload), renewed while it runs.

The agent's own lease is kept by its heartbeat for as long as the app runs; an operation run
by hand needs the same protection for minutes: acquired on entry (``LeaseHeld`` when someone
else is live on it), renewed every third of its TTL by a background thread, released on exit.
Both keep their lease with ``chalicelib.keeper``. A renewal refused means another holder took
over: from then on ``renew`` raises ``LeaseLost``, so the operation stops before its next write
(which S3's compare-and-swap fences anyway).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from chalicelib.errors import LeaseHeld, WakefulError
from chalicelib.keeper import LeaseKeeper, Renewer
from chalicelib.lease import Lease, LeaseTable


def refusal(lease: Lease, now: float) -> LeaseHeld | None:
    """The refusal a hold of ``lease`` would meet at ``now``: someone is live on it."""
    if not lease.is_live(now):
        return None
    return LeaseHeld(lease.name, lease.holder, lease.state, lease.expires_at)


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
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.holder = holder
        self.ttl = ttl
        self._on_release_failure = on_release_failure
        self._monotonic = monotonic
        self._wall = wall
        self._keeper: LeaseKeeper | None = None
        self._renewer: Renewer | None = None

    @property
    def keeper(self) -> LeaseKeeper:
        if self._keeper is None:
            raise RuntimeError("the lease is not held yet: use LeaseHold as a context manager")
        return self._keeper

    @property
    def lease(self) -> Lease:
        return self.keeper.lease

    @property
    def token(self) -> int:
        return self.keeper.token

    def __enter__(self) -> LeaseHold:
        self._keeper = LeaseKeeper.acquire(
            self.table, self.holder, self.ttl, self._monotonic, self._wall
        )
        self._renewer = Renewer(self._keeper, name="wakeful-hold")
        self._renewer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._renewer is not None:
            self._renewer.stop()
            self._renewer.join()
        try:
            self.keeper.release()
        except WakefulError as exc:  # it expires on its own; the operation's outcome stands
            self._on_release_failure(exc)

    def renew(self) -> Lease:
        """Renew now (before a write); ``LeaseLost`` if another holder took over."""
        return self.keeper.renew()

    def record_upload(self, upload: Mapping[str, Any]) -> None:
        """Put a verified upload on the lease (fenced by holder and token)."""
        self.keeper.record_upload(upload)

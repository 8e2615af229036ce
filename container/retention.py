"""The agent's retention pass: while awake, after a snapshot, let go of what the window no
longer needs.

docs/replication.md §9. ``retention.plan`` decides, pure, on the manifest the writer already
holds (no request); only when it names positions does ``retention.apply`` delete them and move
the manifest's history past them, through the agent's ``call`` (bounded by the lease's trust).

The pass is due once after boot (a run too short for a periodic snapshot still trims what the
runs before it left) and after each snapshot published; never on a schedule, so an idle or a
sleeping backend costs no request (asleep, only the bucket's lifecycle rules act). A failure
never fails the sync: a WARN log and a metric, and the pass is due again after the next
snapshot. A newer holder or a lost lease is no failure of retention: it propagates, as it does
from every other call of the sync.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chalicelib.errors import FencingError, LeaseLost, StoreError, WakefulError
from chalicelib.observability import emit
from container.sync import Caller
from wakeful_replica import retention
from wakeful_replica.cadence import DAY
from wakeful_replica.errors import Fenced, PositionTaken, Superseded
from wakeful_replica.manifest import Manifest
from wakeful_replica.store import ChainStore

# Not retention's to swallow: the agent stops the app and keeps its file aside.
PROPAGATED = (LeaseLost, FencingError, Fenced, Superseded, PositionTaken)


class Retention:
    def __init__(
        self, store: ChainStore, log: Any, metrics: Any, call: Caller,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.window_s = store.retention_days * DAY
        self.log = log
        self.metrics = metrics
        self._call = call
        self._wall = wall
        self.due = True  # the first pass of a run, on the manifest it booted from

    def after_snapshot(self) -> None:
        self.due = True

    def run(self, manifest: Manifest) -> Manifest | None:
        """Apply the plan for ``manifest`` when one is due; the manifest it left, if it ran."""
        if not self.due:
            return None
        self.due = False
        chosen = retention.plan(manifest, int(self._wall() * 1000), int(self.window_s * 1000))
        if chosen is None:
            return None
        store = self.store
        try:
            applied = self._call(lambda: retention.apply(store, chosen), "apply retention")
        except PROPAGATED:
            raise
        except (StoreError, WakefulError, OSError) as exc:
            # Nothing is lost: what was not deleted is still in the manifest's plan next time.
            self.log.warning(
                f"Retention failed: {exc}; it is tried again after the next snapshot",
                extra={"positions": chosen.positions},
            )
            emit(self.metrics, "RetentionFailed")
            return None
        keep = chosen.keep_from
        self.log.info(
            f"Retention removed {chosen.positions} positions before the base at "
            f"{keep.generation}@{keep.txid}",
            extra={"positions": chosen.positions, "generation": keep.generation,
                   "position": keep.txid, "window_s": self.window_s},
        )
        emit(self.metrics, "RetentionRemoved", chosen.positions)
        return applied


__all__ = ["DAY", "Retention"]

"""A lost position past the manifest: the one gap the restore's probe cannot see.

Past the position the manifest names, a restore takes the first missing position for the end
of the chain (docs/replication.md §6): the manifest is only a hint, so nothing tells it a
segment was there. Positions are written in order, each after the one before it landed (§10.1),
and retention deletes only below the oldest base (§9), so a position present *after* a missing
one means the missing one was lost (deleted by hand, a bucket rule gone wrong). The operator's
tools look for that before trusting an end: ``verify`` reports it, ``restore`` refuses to make
the older state current. A few HEADs, on those operator paths only; never on a boot.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from wakeful_replica.errors import ChainBroken
from wakeful_replica.restore import VerifyReport
from wakeful_replica.store import ChainStore

# How far past an end the operator's tools look for a position written after a lost one.
LOOK_AHEAD = 32


def written_after_gap(
    store: ChainStore, generation: str, end: int, look_ahead: int = LOOK_AHEAD
) -> int | None:
    """The first position present in ``end + 2 .. end + 1 + look_ahead`` when ``end + 1`` is
    missing: proof that ``end + 1`` was lost. ``None`` when ``end`` is the end."""
    if store.head_segment(generation, end + 1) is not None:
        return None  # not an end at all: the caller stopped there on purpose
    window = range(end + 2, end + 2 + look_ahead)
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(lambda txid: store.head_segment(generation, txid), window))
    return next((txid for txid, item in zip(window, found, strict=True) if item is not None),
                None)


def check_end(store: ChainStore, generation: str, end: int) -> None:
    """``ChainBroken`` when the chain goes on past a lost position after ``end``."""
    later = written_after_gap(store, generation, end)
    if later is not None:
        raise ChainBroken(
            store.segment_key(generation, end + 1),
            f"position {end + 1} is missing, yet position {later} was written after it",
            end,
        )


def verify(store: ChainStore, scratch: str) -> VerifyReport:
    """``ChainStore.verify``, and the lost position past the end that it cannot see."""
    report = store.verify(scratch)
    if report.end is not None:
        generation, end = report.end
        try:
            check_end(store, generation, end)
        except ChainBroken as exc:
            report.problems.append(f"generation {generation}: {exc}")
    return report


__all__ = ["LOOK_AHEAD", "check_end", "verify", "written_after_gap"]

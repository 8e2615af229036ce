"""Retention: keep every restore point inside the window, and let the rest go.

A restore point at time ``t`` needs the newest base at or before ``t`` and every position after
it. So with a window ``R``, the oldest base still needed is ``S*``, the newest base captured at
or before ``now - R``: positions before it (and whole generations before its own) can go
(docs/replication.md §9). ``plan`` is that decision, pure; ``apply`` deletes those segments
(their versions stay as noncurrent ones until the lifecycle expires them) and then moves the
manifest's history and lineage forward. The agent runs it while awake (after a snapshot):
asleep, only S3 lifecycle rules act, and ``lifecycle_rules`` is that rule set as data.

Deleting positions below ``S*`` frees their keys. A stale holder that writes there is invisible:
restore and verify never read below the manifest's oldest base, and the manifest only moves
forward, so such a write changes no state anyone rebuilds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from wakeful_replica.compaction import SPANS, aligned
from wakeful_replica.manifest import SEGMENT, Base, Generation, Manifest
from wakeful_replica.store import ChainStore

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Plan:
    keep_from: Base  # S*: the oldest base a restore point inside the window can need
    delete: tuple[tuple[str, int, int], ...]  # (generation, first, last) positions, inclusive
    # (generation, first, last) of the compactions that may exist inside ``delete``
    compactions: tuple[tuple[str, int, int], ...] = ()

    @property
    def positions(self) -> int:
        return sum(last - first + 1 for _, first, last in self.delete)


def plan(
    manifest: Manifest, now_ms: int, window_ms: int, spans: Sequence[int] = SPANS
) -> Plan | None:
    """What may go, or ``None`` when every base is still inside the window.

    ``spans`` are the compaction levels the writers used (``cadence.Policy``).
    """
    epochs = {item.id: item.epoch for item in manifest.lineage}
    epochs.setdefault(manifest.generation, manifest.epoch)
    order = {
        (base.generation, base.txid): (epochs.get(base.generation, 0), base.txid)
        for base in manifest.history
    }
    old = [base for base in manifest.history if base.at_ms <= now_ms - window_ms]
    if not old:
        return None
    keep = max(old, key=lambda base: order[(base.generation, base.txid)])
    keep_epoch = epochs.get(keep.generation, 0)
    delete: list[tuple[str, int, int]] = []
    for generation in manifest.lineage:
        first = manifest.retained.get(generation.id, 1)
        if generation.epoch < keep_epoch and generation.end is not None and (
            first <= generation.end
        ):
            delete.append((generation.id, first, generation.end))
    first = manifest.retained.get(keep.generation, 1)
    last = keep.txid - 1 if keep.source != SEGMENT else 0
    if last >= first:
        delete.append((keep.generation, first, last))
    if not delete and len(manifest.history) == len(_kept(manifest, keep, order)):
        return None
    compactions = tuple(
        (generation, a, b) for generation, first, last in delete
        for a, b in aligned([1, *(item.txid for item in manifest.history
                                  if item.generation == generation),
                             *manifest.restarts.get(generation, ())], first, last, spans)
    )
    return Plan(keep, tuple(delete), compactions)


def _kept(
    manifest: Manifest, keep: Base, order: dict[tuple[str, int], tuple[int, int]]
) -> tuple[Base, ...]:
    floor = order[(keep.generation, keep.txid)]
    return tuple(base for base in manifest.history
                 if order[(base.generation, base.txid)] >= floor)


def apply(store: ChainStore, chosen: Plan) -> Manifest:
    """Delete what ``chosen`` names, then move the manifest's history past it."""
    keys = [
        store.segment_key(generation, position)
        for generation, first, last in chosen.delete
        for position in range(first, last + 1)
    ]
    keys += [store.compactions.key(generation, first, last)
             for generation, first, last in chosen.compactions]
    store.objects.delete(keys)
    keep = chosen.keep_from

    def change(seen: Manifest | None) -> Manifest:
        assert seen is not None
        epochs = {item.id: item.epoch for item in seen.lineage}
        epochs.setdefault(seen.generation, seen.epoch)
        order = {(base.generation, base.txid): (epochs.get(base.generation, 0), base.txid)
                 for base in seen.history}
        order.setdefault((keep.generation, keep.txid),
                         (epochs.get(keep.generation, 0), keep.txid))
        floor = epochs.get(keep.generation, 0)
        lineage: tuple[Generation, ...] = tuple(
            item for item in seen.lineage if item.epoch >= floor
        )
        retained = {generation: first for generation, first in seen.retained.items()
                    if epochs.get(generation, 0) >= floor}
        restarts = {generation: points for generation, points in seen.restarts.items()
                    if epochs.get(generation, 0) >= floor}
        if keep.txid > 1:
            retained[keep.generation] = max(retained.get(keep.generation, 1), keep.txid)
        return dataclasses.replace(
            seen, history=_kept(seen, keep, order), lineage=lineage, retained=retained,
            restarts=restarts,
        )

    return store.manifests.update(change)


def lifecycle_rules(
    key: str, retention_days: int = 7, backup_days: int = 90, multipart_days: int = 1
) -> dict[str, list[dict[str, object]]]:
    """The bucket's lifecycle configuration (``put_bucket_lifecycle_configuration``'s shape).

    - every noncurrent version (old snapshots of ``K``, old manifests, deleted segments)
      expires ``retention_days + 1`` days after it was superseded: a snapshot is superseded
      only by a newer one, so every base a restore point inside the window needs outlives it;
    - delete markers left once their versions are gone are removed;
    - timestamped backups expire after ``backup_days``;
    - incomplete multipart uploads (a killed upload of ``K``) are aborted.

    Current segments are never expired by age: the tail after the newest snapshot must
    survive any sleep; the agent's ``retention.apply`` removes the old ones while awake.
    """
    return {"Rules": [
        {
            "ID": "wakeful-expire-noncurrent-versions", "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "NoncurrentVersionExpiration": {"NoncurrentDays": retention_days + 1},
        },
        {
            "ID": "wakeful-expire-delete-markers", "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "Expiration": {"ExpiredObjectDeleteMarker": True},
        },
        {
            "ID": "wakeful-expire-backups", "Status": "Enabled",
            "Filter": {"Prefix": f"{key}.backup."},
            "Expiration": {"Days": backup_days},
        },
        {
            "ID": "wakeful-abort-incomplete-multipart-uploads", "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": multipart_days},
        },
    ]}


__all__ = ["Plan", "apply", "lifecycle_rules", "plan"]

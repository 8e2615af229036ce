"""When to write a snapshot and when to move the manifest: pure decisions, no I/O.

A snapshot is due when the segments since the last one grow past a fraction of the database
size (so a restore never reads much more than the database), or when the last one is older
than half the retention window (so every restore point inside it keeps a base), and only if
something changed. The manifest moves every so many positions or seconds, which bounds how far
a restore probes past it; segments themselves never wait for it.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
DAY = 86400.0
RETENTION_DAYS = 7


@dataclass(frozen=True)
class Policy:
    fraction: float = 0.5
    min_bytes: int = 1 * MiB  # below this a snapshot costs more requests than it saves reads
    max_age_s: float = RETENTION_DAYS * DAY / 2
    manifest_every_positions: int = 64
    manifest_every_s: float = 60.0
    # Compaction levels, in positions (compaction.SPANS); () writes none.
    compaction_spans: tuple[int, ...] = (8, 64, 512)


@dataclass(frozen=True)
class Since:
    """The chain since the last snapshot: segment bytes, positions, seconds, pages changed."""

    bytes: int = 0
    positions: int = 0
    seconds: float = 0.0
    changed: bool = False


def snapshot_due(policy: Policy, since: Since, database_size: int) -> bool:
    if not since.changed:
        return False
    if since.seconds >= policy.max_age_s:
        return True
    return since.bytes >= max(policy.min_bytes, policy.fraction * database_size)


def manifest_due(policy: Policy, positions: int, seconds: float) -> bool:
    """Whether the manifest should move now, ``positions``/``seconds`` since it last did."""
    if positions <= 0:
        return False
    return positions >= policy.manifest_every_positions or seconds >= policy.manifest_every_s


__all__ = ["Policy", "Since", "manifest_due", "snapshot_due"]

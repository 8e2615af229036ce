"""The listing of what a database can be restored from: its timestamped backups and S3 versions.

One read, one JSON shape and one table for ``wakeful-agent backups`` and ``wakeful backups``:
each object shows the metadata its upload recorded (why, by whom, under which fencing token),
so an operator can tell a shutdown upload from a periodic one before restoring it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib import text

if TYPE_CHECKING:
    from chalicelib.store import DatabaseStore, ObjectInfo

# Listings read each object's metadata with a HEAD of its own; these run side by side.
HEAD_CONCURRENCY = 8


@dataclass(frozen=True)
class Listing:
    """Backups and (when asked for) versions, newest first, each with its upload metadata."""

    url: str
    backups: list[ObjectInfo]
    versions: list[ObjectInfo]
    with_versions: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "backups": [{"name": backup_name(b), "key": b.key, **_facts(b)}
                        for b in self.backups],
            "versions": [{"version_id": v.version_id, "is_latest": v.is_latest, **_facts(v)}
                         for v in self.versions],
        }

    def lines(self, now: float) -> list[str]:
        """The listing as both doors print it."""
        out = [f"Backups of {self.url} ({len(self.backups)}, newest first)"]
        if self.backups:
            out.append(text.table(
                [(backup_name(b), *_cells(b, now)) for b in self.backups],
                header=("NAME", "SIZE", "CREATED", "REASON", "HOLDER", "TOKEN"),
            ))
        if self.with_versions:
            out.append("")
            out.append(f"Versions of {self.url} ({len(self.versions)}, newest first)")
            if self.versions:
                out.append(text.table(
                    [(v.version_id, *_cells(v, now), "current" if v.is_latest else "")
                     for v in self.versions],
                    header=("VERSION", "SIZE", "STORED", "REASON", "HOLDER", "TOKEN", ""),
                ))
        return out


def backup_name(info: ObjectInfo) -> str:
    """``20261128_143000`` of ``db.sqlite3.backup.20261128_143000``."""
    return info.key.rsplit(".backup.", 1)[-1]


def _facts(info: ObjectInfo) -> dict[str, Any]:
    return {
        "size": info.size,
        "last_modified": info.last_modified.isoformat(),
        "reason": info.reason,
        "holder": info.holder,
        "token": info.token,
        "sha256": info.sha256,
    }


def _cells(info: ObjectInfo, now: float) -> tuple[Any, ...]:
    # An object written by another tool (the seed's `aws s3 cp`) has no metadata: dashes.
    return (text.size(info.size), text.moment(info.last_modified.timestamp(), now),
            info.reason, info.holder, info.token)


def read(store: DatabaseStore, versions: bool = False, limit: int | None = None) -> Listing:
    """List the backups, and the versions of the current key too when ``versions`` (the
    newest ``limit`` of each when given), with the metadata of each."""
    backups = [
        head for head in _heads(store, [
            (None, b.key) for b in store.backups()[:limit]
        ]) if head is not None
    ]
    return Listing(store.url, backups, detailed_versions(store, limit) if versions else [],
                   with_versions=versions)


def detailed_versions(store: DatabaseStore, limit: int | None = None) -> list[ObjectInfo]:
    """The newest ``limit`` versions of the current key, each with its upload metadata."""
    found = store.versions()[:limit]
    detailed = _heads(store, [(v.version_id, v.key) for v in found])
    return [dataclasses.replace(head, is_latest=listed.is_latest) if head is not None else listed
            for listed, head in zip(found, detailed, strict=True)]


def _heads(
    store: DatabaseStore, wanted: Iterable[tuple[str | None, str]]
) -> list[ObjectInfo | None]:
    """HEAD each (version id, key), in order; ``None`` for one that vanished meanwhile."""
    calls: list[Callable[[], ObjectInfo | None]] = [
        (lambda version_id=version_id, key=key: store.head(version_id=version_id, key=key))
        for version_id, key in wanted
    ]
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=HEAD_CONCURRENCY) as pool:
        return list(pool.map(lambda call: call(), calls))

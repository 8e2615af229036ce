"""The listing of what a database can be restored from: its timestamped backups and S3 versions.

One read and one JSON shape for ``wakeful-agent backups`` and ``wakeful backups``; each door
draws its own table from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalicelib.model import Backup, ObjectInfo
    from chalicelib.objects import ObjectReads


@dataclass(frozen=True)
class Listing:
    """Backups and (when asked for) versions, newest first."""

    url: str
    backups: list[Backup]
    versions: list[ObjectInfo]

    def as_json(self) -> dict[str, Any]:
        return {
            "backups": [
                {"name": b.name, "key": b.key, "size": b.size,
                 "last_modified": b.last_modified.isoformat()} for b in self.backups
            ],
            "versions": [
                {"version_id": v.version_id, "size": v.size, "is_latest": v.is_latest,
                 "last_modified": v.last_modified.isoformat()} for v in self.versions
            ],
        }


def read(store: ObjectReads, versions: bool = False) -> Listing:
    """List the backups, and the versions of the current key too when ``versions``."""
    return Listing(store.url, store.backups(), store.versions() if versions else [])

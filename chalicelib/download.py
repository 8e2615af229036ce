"""The boot's download: the current database, or, when it does not verify, the newest older
version that does (loudly: the caller logs and counts every version it skipped)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from chalicelib.errors import CorruptDatabase, NoGoodVersion, NotFound
from chalicelib.integrity import fetch_verified
from chalicelib.store import DatabaseStore, ObjectInfo, Progress


@dataclass(frozen=True)
class Download:
    """The outcome of a verified download."""

    current: ObjectInfo
    used: ObjectInfo
    sha256: str
    skipped: tuple[tuple[ObjectInfo, str], ...] = ()

    @property
    def fell_back(self) -> bool:
        return self.used.version_id != self.current.version_id or bool(self.skipped)


def download_newest_good(
    store: DatabaseStore, destination: str, progress: Progress | None = None
) -> Download | None:
    """Download the current database, or the newest older version that verifies.

    ``None`` when there is no database at all (a fresh start). ``NoGoodVersion`` when there is
    one but no version of it verifies.
    """
    current = store.head()
    if current is None:
        return None
    skipped: list[tuple[ObjectInfo, str]] = []
    for candidate in _candidates(store, current):
        try:
            digest = fetch_verified(store, candidate, destination, progress)
        except (CorruptDatabase, NotFound) as exc:
            skipped.append((candidate, str(exc)))
            continue
        return Download(current=current, used=candidate, sha256=digest, skipped=tuple(skipped))
    reasons = "; ".join(reason for _, reason in skipped[:5])
    raise NoGoodVersion(f"no version of {store.url} verifies: {reasons}")


def _candidates(store: DatabaseStore, current: ObjectInfo) -> Iterator[ObjectInfo]:
    yield current
    for older in store.versions():
        if older.version_id == current.version_id or older.version_id is None:
            continue
        info = store.head(version_id=older.version_id)
        if info is not None:
            yield info

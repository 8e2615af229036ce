"""An operator's restore on a chain bucket: rebuild a state, make it current, write it to ``K``.

The one restore both doors run when the bucket holds a chain (``wakeful-agent restore`` and
``wakeful restore``; ``chalicelib.restore`` stays the restore of a bucket without one). Under
the lease (``LeaseHold``: refused while a backend is awake), in this order:

1. rebuild the point into a scratch file: a chain position (``--txid``), the state as of a time
   (``--at``), or a stored version or backup of ``K``; then ``integrity_check`` it;
2. make it the current state: a new generation from it, origin ``restore``, the old chain ended
   and kept for point-in-time restore (``boot.start_from_file``);
3. write it to ``K`` as the new generation's first snapshot (``ChainWriter.snapshot``: the
   marker, ``K`` with that exact state, the manifest naming it and accounting for that version
   of ``K``), so the seed's ``aws s3 cp s3://…/K`` gives the restored state and the next boot
   resumes it instead of taking it for an upload from outside wakeful;
4. record the clean stop (everything is in the chain and in ``K``), and the upload on the lease.

Each step is a fenced write of the chain, so a crash between two leaves a chain a boot resumes:
after 2 the restored generation (``K`` lags it, accounted for); after 3's ``K`` but before its
manifest update, a snapshot whose marker confirms it (docs/replication.md §7).

Nothing is written before the point is rebuilt and checked, and ``preview`` (the dry run)
writes nothing at all. A point outside the chain is ``NothingToRestore``, a chain that cannot
be read there ``ChainBroken``.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apsw

from chalicelib import sources, text
from chalicelib.errors import LeaseHeld, WakefulError
from chalicelib.files import sha256_file
from chalicelib.hold import LeaseHold, refusal
from chalicelib.integrity import check, fetch_verified
from chalicelib.lease import Lease, LeaseTable
from chalicelib.sources import label as object_label
from chalicelib.store import DatabaseStore, ObjectInfo
from wakeful_replica import gaps, summary
from wakeful_replica.boot import RESTORE, start_from_file
from wakeful_replica.chain import Writer
from wakeful_replica.errors import ChainBroken, NothingToRestore
from wakeful_replica.manifest import Base, Manifest
from wakeful_replica.objects import Stored
from wakeful_replica.store import ChainStore
from wakeful_replica.writer import ChainWriter

# How long a restore whose process died keeps others out; renewed every third of it meanwhile.
RESTORE_TTL = 30.0
# The restore's own stop record: nothing is queued, so it only waits on S3's answers.
STOP_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Point:
    """What to restore: one of a chain position, a time, or a stored object of ``K``."""

    txid: int | None = None
    generation: str | None = None
    at: dt.datetime | None = None
    source: ObjectInfo | None = None
    file: str | None = None  # a local database file (``upload``: the operator's own copy)

    def label(self) -> str:
        if self.file is not None:
            return self.file
        if self.source is not None:
            return object_label(self.source)
        if self.txid is not None:
            of = f" of generation {self.generation}" if self.generation else ""
            return f"txid {self.txid}{of}"
        if self.at is not None:
            return f"the state as of {self.at.isoformat()}"
        return "the end of the chain"


def point_of(
    store: DatabaseStore, backup: str | None = None, version_id: str | None = None,
    at: str | None = None, txid: int | None = None, generation: str | None = None,
) -> Point:
    """What the restore flags name on a chain bucket, the same for both doors (``NotFound``
    for a missing backup or version, ``ValueError`` for a time that is not one)."""
    if backup or version_id:
        return Point(source=sources.resolve(store, backup, version_id))
    if txid is not None:
        return Point(txid=txid, generation=generation)
    if at:
        return Point(at=sources.parse_time(at))
    return Point()


@dataclass(frozen=True)
class Rebuilt:
    """A point rebuilt into ``path`` and checked: where it came from in the chain, if it did."""

    path: str
    sha256: str
    size: int
    generation: str | None
    txid: int | None
    captured_ms: int | None

    def as_json(self) -> dict[str, Any]:
        return {"generation": self.generation, "txid": self.txid,
                "captured_at": _iso(self.captured_ms), "size": self.size,
                "sha256": self.sha256}


def rebuild(chain: ChainStore, store: DatabaseStore, point: Point, path: str) -> Rebuilt:
    """Rebuild ``point`` into ``path`` and check it (``integrity_check``)."""
    if point.file is not None:
        _copy_database(point.file, path)
        check(path, full=True)
        return Rebuilt(path, sha256_file(path), os.path.getsize(path), None, None,
                       int(os.path.getmtime(point.file) * 1000))
    if point.source is not None:
        digest = fetch_verified(store, point.source, path, full=True)
        return Rebuilt(path, digest, os.path.getsize(path), None, None,
                       int(point.source.last_modified.timestamp() * 1000))
    try:
        restored = chain.restore(path, txid=point.txid, at=point.at,
                                 generation=point.generation)
    except NothingToRestore as exc:
        if point.at is None:
            raise
        raise NothingToRestore(_outside_the_window(chain, point.at)) from exc
    if point.txid is None:
        # The end, or a time: a lost position right after where the rebuild stopped would
        # make it older than asked. A txid is exactly what was asked for.
        gaps.check_end(chain, restored.generation, restored.txid)
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        raise NothingToRestore(
            f"{point.label()} is the empty database (txid {restored.txid} of generation "
            f"{restored.generation}): nothing to restore"
        )
    check(path, full=True)
    return Rebuilt(path, sha256_file(path), os.path.getsize(path), restored.generation,
                   restored.txid, restored.timestamp_ms)


def _copy_database(source: str, destination: str) -> None:
    """A consistent copy of a database at rest, its WAL included (SQLite's backup API, through
    APSW's fixed SQLite: never a second connection with the WAL-reset bug)."""
    if not os.path.exists(source):
        raise NothingToRestore(f"no database at {source}")
    src = apsw.Connection(source, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        dst = apsw.Connection(destination)
        try:
            with dst.backup("main", src, "main") as backup:
                backup.step()
        finally:
            dst.close()
    finally:
        src.close()


def _outside_the_window(chain: ChainStore, at: dt.datetime) -> str:
    found = summary.read(chain)
    window = found.as_json()["window"] if found else {}
    held = (f"it holds {window['oldest']} .. {window['newest']}"
            if window.get("oldest") and window.get("newest") else "it holds no window")
    return (f"the chain has no state at {at.isoformat()}: {held}; states older than the "
            "chain are among the current object's versions and backups (`backups --versions`, "
            "then `restore --version ID`)")


@dataclass(frozen=True)
class Reinstated:
    """The restore done: the new generation, and ``K``'s new version holding that state."""

    rebuilt: Rebuilt
    generation: str
    position: int
    current: Base
    warnings: tuple[str, ...] = ()  # the old chain was damaged: left as it is, kept

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.rebuilt.as_json(), "warnings": list(self.warnings),
            "generation": self.generation, "position": self.position,
            "current": {"version_id": self.current.version_id, "size": self.current.size,
                        "sha256": self.current.sha256},
        }


def _ignore(_error: WakefulError) -> None:
    pass


def reinstate(
    table: LeaseTable, chain: ChainStore, store: DatabaseStore, point: Point, holder: str,
    ttl: float = RESTORE_TTL, scratch: str | None = None, reason: str = "restore",
    on_release_failure: Callable[[WakefulError], None] = _ignore,
) -> Reinstated:
    """Make ``point`` the current state of the chain and of ``K``, under the lease.

    Raises ``LeaseHeld`` (someone is live on the lease: nothing was done), ``LeaseLost`` or
    ``Fenced`` (another writer came in meanwhile), ``NothingToRestore``, ``ChainBroken``,
    ``CorruptDatabase`` (the rebuilt state fails its check: nothing was written) or
    ``StoreUnavailable``.
    """
    with LeaseHold(table, holder, ttl, on_release_failure) as hold, tempfile.TemporaryDirectory(
        dir=scratch, prefix="wakeful-restore-"
    ) as folder:
        rebuilt = rebuild(chain, store, point, os.path.join(folder, "restore.sqlite3"))
        hold.renew()
        writer = Writer(holder, hold.token)
        warnings: list[str] = []
        try:
            _check_the_end(chain)
        except ChainBroken as exc:
            # A damaged chain is what an operator restores from: never a reason to refuse a
            # good point, but said, and the damaged generation is kept as it is.
            warnings.append(f"the chain before this restore is damaged: {exc}")
        booted = start_from_file(chain, writer, rebuilt.path,
                                 os.path.join(folder, "current.sqlite3"), origin=RESTORE)
        run = ChainWriter(chain, writer, booted, os.path.join(folder, "replica"))
        hold.renew()
        base = run.snapshot(reason=reason, backup=True)
        stopped = run.stop(STOP_DEADLINE_S)
        hold.record_upload(_upload_record(chain, holder, hold.token, base, stopped.position,
                                          reason))
        store.prune_backups()
    return Reinstated(rebuilt, booted.generation, stopped.position, base,
                      (*warnings, *booted.warnings))


def _check_the_end(chain: ChainStore) -> None:
    """``ChainBroken`` when the chain goes on past a lost position: the old generation would
    be ended at the gap, cutting off what was written after it."""
    manifest = chain.read_manifest()
    if manifest is not None:
        end = summary.probe_end(chain, manifest)
        gaps.check_end(chain, end.generation, end.position)


def _upload_record(
    chain: ChainStore, holder: str, token: int, base: Base, position: int, reason: str
) -> dict[str, Any]:
    """What the lease keeps as its last upload: today's fields, and the chain position."""
    return {
        "key": chain.key, "etag": base.etag, "version_id": base.version_id, "size": base.size,
        "sha256": base.sha256, "holder": holder, "token": token, "reason": reason,
        "at": time.time(), "generation": base.generation, "position": position,
    }


# -- the dry run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """What a restore of ``point`` would do, found out without changing anything."""

    point: Point
    rebuilt: Rebuilt
    rows: dict[str, int]
    manifest: Manifest
    end: summary.End
    current: Stored | None
    lease: Lease
    now: float

    @property
    def refusal(self) -> LeaseHeld | None:
        return refusal(self.lease, self.now)

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "source": {"label": self.point.label(), **self.rebuilt.as_json()},
            "chain": {"generation": self.end.generation, "position": self.end.position,
                      "epoch": self.manifest.epoch},
            "current": {"version_id": self.current.version_id, "size": self.current.size}
            if self.current else None,
            "check": {"ok": True, "rows": dict(self.rows), "size": self.rebuilt.size,
                      "sha256": self.rebuilt.sha256},
            "lease": {"state": self.lease.state, "holder": self.lease.holder,
                      "would_take": self.refusal is None},
        }

    def lines(self, url: str) -> list[str]:
        """What both doors print for a dry run."""
        rebuilt, lease = self.rebuilt, self.lease
        where = (f"txid {rebuilt.txid} of generation {rebuilt.generation}, captured "
                 f"{_iso(rebuilt.captured_ms)}" if rebuilt.txid is not None
                 else f"stored {_iso(rebuilt.captured_ms)}")
        total = sum(self.rows.values())
        tables = ", ".join(f"{name} {count}" for name, count in self.rows.items()) or "no tables"
        if self.refusal is None:
            taking = (f"the restore would take the lease {lease.name!r} (now {lease.state}, "
                      f"token {lease.token} -> {lease.token + 1}) for as long as it runs")
        else:
            taking = (f"the lease {lease.name!r} is {lease.state} by {lease.holder}: "
                      "the restore would be refused")
        return [
            f"would restore {self.point.label()} ({where})",
            f"  as a new generation after {self.end.generation} (now at position "
            f"{self.end.position}; the old chain is kept), and as {url}",
            f"check: {text.size(rebuilt.size)}, sha256 {rebuilt.sha256[:12]}…, "
            f"integrity_check ok, {total} rows ({tables})",
            taking,
            "nothing was changed (dry run)",
        ]


def preview(
    table: LeaseTable, chain: ChainStore, store: DatabaseStore, point: Point,
    scratch: str | None = None, clock: Callable[[], float] = time.time,
) -> Preview:
    """The dry run of ``reinstate``: the point is rebuilt and checked exactly as the restore
    would do it, its rows counted, the lease read, not taken. Nothing is written."""
    manifest = chain.read_manifest()
    if manifest is None:
        raise NothingToRestore(f"no chain at s3://{chain.bucket}/{chain.manifest_key}")
    with tempfile.TemporaryDirectory(dir=scratch, prefix="wakeful-restore-") as folder:
        rebuilt = rebuild(chain, store, point, os.path.join(folder, "restore.sqlite3"))
        rows = count_rows(rebuilt.path)
    end = summary.probe_end(chain, manifest)
    return Preview(point, rebuilt, rows, manifest, end, chain.current.head(), table.read(),
                   clock())


# "Every table of the schema that SQLite did not make for itself."
USER_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"


def count_rows(path: str) -> dict[str, int]:
    """Rows per table of a checked database file, opened read-only (and immutable: a file in
    WAL mode with no ``-wal`` beside it)."""
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        names = [row[0] for row in db.execute(USER_TABLES + " ORDER BY name")]
        return {
            name: int(db.execute(f'SELECT count(*) FROM "{name.replace(chr(34), chr(34) * 2)}"')
                      .fetchone()[0])
            for name in names
        }
    finally:
        db.close()


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


__all__ = [
    "Point", "Preview", "Rebuilt", "Reinstated", "point_of", "preview", "rebuild", "reinstate",
]

"""The current object ``K``: a plain, verified SQLite file holding a state that is in the chain.

wakeful writes ``K`` only as a snapshot (docs/replication.md §5): after the snapshot marker at
position ``p`` landed, the exact state at ``p`` is PUT with ``IfMatch`` on the ETag this holder
last saw. A refusal is decided by what is there now (``resolve``): our own retry, a stale
holder's snapshot (smaller token: overwritten, its version kept), a newer holder's
(``Superseded``), or an upload from outside wakeful (``OutOfBandUpload``: never overwritten).
Its metadata keeps today's names (sha256, holder, token, reason, uploaded-at), so the control
plane's verified stop and ``aws s3 cp`` keep working, and adds the chain position it holds.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import CorruptDatabase, FencingError
from chalicelib.files import Snapshot, remove_file
from chalicelib.integrity import check
from chalicelib.store import DatabaseStore, UploadIntent
from wakeful_replica.chain import (
    META_GENERATION,
    META_HOLDER,
    META_KIND,
    META_SHA256,
    META_SNAPSHOT_SHA256,
    META_TOKEN,
    META_TXID,
    SNAPSHOT,
    Segments,
    Writer,
)
from wakeful_replica.errors import OutOfBandUpload, Superseded
from wakeful_replica.manifest import Accounted
from wakeful_replica.objects import Objects, Stored

OVERWRITE_ATTEMPTS = 5

# What a refused snapshot PUT found at K (``resolve``).
OURS, OVERWRITE, MISSING, SUPERSEDED, FOREIGN = (
    "ours", "overwrite", "missing", "superseded", "foreign",
)
# What a boot found at K (``classify``).
ACCOUNTED, WAKEFUL = "accounted", "wakeful"


@dataclass(frozen=True)
class SnapshotIntent(UploadIntent):
    """Today's upload metadata, plus the chain position whose exact state the file holds."""

    generation: str = ""
    txid: int = 0

    def metadata(self, snapshot: Snapshot, now: float) -> dict[str, str]:
        return {
            **super().metadata(snapshot, now), META_KIND: SNAPSHOT,
            META_GENERATION: self.generation, META_TXID: str(self.txid),
        }


def token_of(metadata: dict[str, str]) -> int | None:
    raw = metadata.get(META_TOKEN, "")
    return int(raw) if raw.isdigit() else None


def is_wakeful_snapshot(metadata: dict[str, str]) -> bool:
    """Written by this version of wakeful: it names the chain position it holds."""
    return (
        token_of(metadata) is not None and bool(metadata.get(META_SHA256))
        and bool(metadata.get(META_GENERATION)) and metadata.get(META_TXID, "").isdigit()
    )


def resolve(there: Stored | None, writer: Writer, sha256: str) -> str:
    """What to do after a snapshot PUT of K was refused, by what K holds now."""
    if there is None:
        return MISSING
    metadata = there.metadata
    if not is_wakeful_snapshot(metadata):
        return FOREIGN  # an operator's upload, db-sync.sh, or an agent of the old layout
    token = token_of(metadata)
    assert token is not None
    if token > writer.token:
        return SUPERSEDED
    if token < writer.token:
        return OVERWRITE  # a stale holder's snapshot: its state is behind the chain
    if metadata.get(META_HOLDER) != writer.holder:
        return FOREIGN  # one token is one holding: this is not a write of ours
    return OURS if metadata.get(META_SHA256) == sha256 else OVERWRITE


def classify(there: Stored | None, accounted: list[Accounted]) -> str:
    """What a boot found at K: ``missing``, ``accounted`` (a version the chain knows),
    ``wakeful`` (a snapshot naming a position: check its marker) or ``foreign``."""
    if there is None:
        return MISSING
    if any(item.matches(there.version_id, there.etag) for item in accounted):
        return ACCOUNTED
    return WAKEFUL if is_wakeful_snapshot(there.metadata) else FOREIGN


class CurrentObject:
    """``K`` in one bucket: heads, verified downloads, and snapshot writes by the rules above."""

    def __init__(
        self, objects: Objects, key: str, client: Any, database: DatabaseStore | None = None
    ) -> None:
        self.objects = objects
        self.key = key
        # Today's store does the upload itself (one PUT, multipart above its threshold, the
        # conditions on both) and the timestamped backups: the agent's, configured, if given.
        self.database = database or DatabaseStore(objects.bucket, key, client=client)

    def head(self) -> Stored | None:
        return self.objects.head(self.key)

    def marker_confirms(self, there: Stored, segments: Segments) -> bool:
        """K is a wakeful snapshot: the marker its metadata names exists and names its bytes."""
        metadata = there.metadata
        marker = segments.head(metadata[META_GENERATION], int(metadata[META_TXID]))
        return (
            marker is not None and marker.kind == SNAPSHOT
            and marker.token == token_of(metadata)
            and marker.metadata.get(META_SNAPSHOT_SHA256) == metadata.get(META_SHA256)
        )

    def write(
        self, snapshot: Snapshot, writer: Writer, generation: str, txid: int,
        expected_etag: str | None, reason: str = "periodic",
    ) -> Stored:
        """PUT ``snapshot`` (the exact state at ``(generation, txid)``) as K, by the rules."""
        intent = SnapshotIntent(writer.holder, writer.token, reason, generation, txid)
        etag = expected_etag
        for _ in range(OVERWRITE_ATTEMPTS):
            try:
                info = self.database.upload(snapshot, etag, intent)
                return Stored(self.key, info.etag, info.version_id, info.size,
                              dict(info.metadata))
            except FencingError as exc:
                there = self.head()
                decision = resolve(there, writer, snapshot.sha256)
                if decision == OURS:
                    assert there is not None
                    return there
                if decision == SUPERSEDED:
                    assert there is not None
                    raise Superseded(self.key, writer.token, token_of(there.metadata)) from exc
                if decision == FOREIGN:
                    assert there is not None
                    raise OutOfBandUpload(
                        self.key, there.version_id, "the snapshot was not written over it"
                    ) from exc
                etag = there.etag if there is not None else None
        raise Superseded(self.key, writer.token, None)

    def fetch(self, there: Stored, destination: str) -> str:
        """Download exactly ``there`` and check it (sha256 when it names one, integrity_check).

        Returns its sha256; ``CorruptDatabase`` (the file removed) when it fails.
        """
        remove_file(destination)
        with open(destination, "wb") as out:
            got = self.objects.download(self.key, out, there.version_id)
        where = f"s3://{self.objects.bucket}/{self.key} version {there.version_id}"
        if got is None:
            remove_file(destination)
            raise CorruptDatabase(where, "vanished while being read")
        _, digest = got
        expected = there.metadata.get(META_SHA256)
        try:
            if expected and expected != digest:
                raise CorruptDatabase(where, f"sha256 mismatch: expected {expected}")
            check(destination, full=True)
        except CorruptDatabase:
            remove_file(destination)
            raise
        return digest

    def backup(self, written: Stored) -> str:
        """A timestamped backup ``K.backup.YYYYMMDD_HHMMSS`` of a version we wrote."""
        info = self.database.head(version_id=written.version_id) if written.version_id else (
            self.database.head())
        if info is None:
            raise CorruptDatabase(self.key, "the version to back up is gone")
        return self.database.create_backup(info).key


def file_snapshot(path: str, sha256: str) -> Snapshot:
    return Snapshot(path=path, sha256=sha256, size=os.path.getsize(path))


def accounted(stored: Stored) -> Accounted:
    return Accounted(stored.version_id, stored.etag)


__all__ = [
    "CurrentObject", "SnapshotIntent", "accounted", "classify", "dataclasses", "resolve",
]

"""``ChainStore``: one database's replica in S3, the object the agent and the operator CLI hold.

It ties the parts together (segments, the manifest, the current object, restore) over one S3
client and one bucket; each part is its own module with its own contract:
``chain`` (position-keyed segments, claims, generation records), ``manifest``, ``current``
(``K``), ``restore`` (restore, PITR, verify). ``boot`` and ``writer`` drive a holder's run on
top of it; ``retention`` keeps the window.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from chalicelib import aws
from chalicelib.store import DatabaseStore
from wakeful_replica import cadence
from wakeful_replica.chain import Claimed, Found, SegmentInfo, Segments, Writer, now_ms
from wakeful_replica.compaction import Compactions
from wakeful_replica.current import CurrentObject
from wakeful_replica.manifest import Manifest, Manifests
from wakeful_replica.objects import Objects
from wakeful_replica.restore import Restored, Restorer, VerifyReport


class ChainStore:
    """One database's chain in ``bucket``: ``KEY`` (the current object) and ``KEY.wakeful/``."""

    def __init__(
        self, bucket: str, key: str, client: Any | None = None, concurrency: int = 8,
        region: str | None = None, endpoint_url: str | None = None,
        retention_days: float = cadence.RETENTION_DAYS,
        database: DatabaseStore | None = None,
    ) -> None:
        self.bucket = bucket
        self.key = key
        self.prefix = f"{key}.wakeful/"
        self.retention_days = retention_days
        self.client = client or aws.client("s3", region, endpoint_url)
        self.objects = Objects(bucket, self.client)
        self.segments = Segments(self.objects, self.prefix)
        self.compactions = Compactions(self.objects, self.prefix)
        self.manifests = Manifests(self.objects, self.prefix + "manifest.json")
        self.current = CurrentObject(self.objects, key, self.client, database)
        self.restorer = Restorer(self.objects, self.segments, self.manifests, key,
                                 concurrency=concurrency)

    # -- keys -------------------------------------------------------------------------------

    @property
    def manifest_key(self) -> str:
        return self.manifests.key

    def segment_key(self, generation: str, txid: int) -> str:
        return self.segments.key(generation, txid)

    # -- segments and the manifest ----------------------------------------------------------

    def write_segment(
        self, generation: str, body: bytes, writer: Writer, kind: str = "segment",
        extra: dict[str, str] | None = None,
    ) -> SegmentInfo:
        return self.segments.write(generation, body, writer, kind, extra)

    def head_segment(self, generation: str, txid: int) -> SegmentInfo | None:
        return self.segments.head(generation, txid)

    def get_segment(self, generation: str, txid: int) -> Found | None:
        return self.segments.get(generation, txid)

    def claim(
        self, generation: str, after: int, writer: Writer, page_size: int, commit: int
    ) -> Claimed:
        return self.segments.claim(generation, after, writer, page_size, commit, now_ms)

    def read_manifest(self) -> Manifest | None:
        return self.manifests.read()

    def advance_manifest(self, seen: Manifest | None, new: Manifest) -> Manifest:
        return self.manifests.put(seen, new)

    # -- restore ----------------------------------------------------------------------------

    def restore(
        self, destination: str, txid: int | None = None, at: dt.datetime | None = None,
        generation: str | None = None,
    ) -> Restored:
        """Rebuild into ``destination`` the current state, the state at ``txid`` (of
        ``generation``, default the current one), or the state as of ``at``."""
        if txid is not None and at is not None:
            raise ValueError("restore to a txid or to a time, not both")
        if txid is not None:
            return self.restorer.to_txid(destination, txid, generation)
        if at is not None:
            return self.restorer.to_time(destination, int(at.timestamp() * 1000))
        return self.restorer.current(destination)

    def verify(self, scratch: str) -> VerifyReport:
        return self.restorer.verify(scratch)


__all__ = ["ChainStore"]

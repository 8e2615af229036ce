"""The S3 side of the chain (docs/replication.md): segments, the claim, the manifest, restore.

Segments are written once, to a key fixed by (generation, position), with ``IfNoneMatch: *``;
the manifest is a compare-and-swap hint; restore is one GET of the manifest, parallel GETs of
the segments it names, then a probe forward. No LIST anywhere. AWS errors are translated here
into typed errors (``chalicelib.errors`` and ``wakeful_replica.errors``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from chalicelib import aws
from chalicelib.errors import StoreUnavailable
from wakeful_replica import ltx
from wakeful_replica.errors import (
    ChainBroken,
    CorruptSegment,
    ManifestConflict,
    NothingToRestore,
    PositionTaken,
    Superseded,
)

META_TOKEN = "wakeful-token"
META_HOLDER = "wakeful-holder"
META_SHA256 = "wakeful-sha256"
META_KIND = "wakeful-kind"
META_GENERATION = "wakeful-generation"
META_TXID = "wakeful-txid"
KINDS = ("claim", "segment", "snapshot", "end")
MANIFEST_VERSION = 2
PROBE_LIMIT = 100_000


@dataclass(frozen=True)
class Writer:
    """Who writes: the lease holder's id and fencing token."""

    holder: str
    token: int


@dataclass(frozen=True)
class SegmentInfo:
    generation: str
    txid: int
    kind: str
    token: int | None
    holder: str | None
    sha256: str | None


@dataclass(frozen=True)
class Manifest:
    generation: str
    position: int
    token: int
    holder: str
    etag: str | None = None

    def body(self) -> bytes:
        return json.dumps({
            "version": MANIFEST_VERSION, "generation": self.generation,
            "position": self.position, "token": self.token, "holder": self.holder,
            "updated_at": time.time(),
        }, sort_keys=True).encode()


@dataclass(frozen=True)
class Claimed:
    """A landed claim: its position, and the segments of stale holders adopted on the way."""

    position: int
    adopted: tuple[bytes, ...]


@dataclass(frozen=True)
class Restored:
    path: str
    generation: str
    txid: int
    segments: int


def generation_id(token: int, nonce: str) -> str:
    return f"{token:012d}-{nonce}"


class ChainStore:
    """One database's chain in ``bucket`` under ``KEY.wakeful/``."""

    def __init__(
        self, bucket: str, key: str, client: Any | None = None, concurrency: int = 8,
        region: str | None = None, endpoint_url: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.key = key
        self.prefix = f"{key}.wakeful/"
        self.concurrency = concurrency
        self._s3 = client or aws.client("s3", region, endpoint_url)

    # -- keys -------------------------------------------------------------------------------

    @property
    def manifest_key(self) -> str:
        return self.prefix + "manifest.json"

    def segment_key(self, generation: str, txid: int) -> str:
        return f"{self.prefix}g/{generation}/{txid:016x}.ltx"

    # -- segments ---------------------------------------------------------------------------

    def write_segment(
        self, generation: str, body: bytes, writer: Writer, kind: str = "segment",
        extra: dict[str, str] | None = None,
    ) -> SegmentInfo:
        """Write ``body`` (an LTX file) at the position its header names, never over another.

        Raises ``PositionTaken`` (carrying who holds it) when the position is taken by anyone
        but this very writer (whose earlier attempt may have landed with its answer lost).
        """
        header = ltx.decode(body).header
        txid = header.max_txid
        key = self.segment_key(generation, txid)
        digest = hashlib.sha256(body).hexdigest()
        metadata = {
            META_TOKEN: str(writer.token), META_HOLDER: writer.holder, META_SHA256: digest,
            META_KIND: kind, META_GENERATION: generation, META_TXID: str(txid), **(extra or {}),
        }
        try:
            self._s3.put_object(
                Bucket=self.bucket, Key=key, Body=body, Metadata=metadata, IfNoneMatch="*",
                ContentType="application/vnd.litestream.ltx",
            )
        except aws.ClientError as exc:
            if not _refused(exc):
                raise _unavailable(f"put {key}", exc) from exc
            there = self.head_segment(generation, txid)
            if there is not None and there.token == writer.token and (
                there.holder == writer.holder and there.sha256 == digest
            ):
                return there
            raise PositionTaken(
                key, writer.token, there.holder if there else None,
                there.token if there else None,
            ) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise _unavailable(f"put {key}", exc) from exc
        return SegmentInfo(generation, txid, kind, writer.token, writer.holder, digest)

    def head_segment(self, generation: str, txid: int) -> SegmentInfo | None:
        key = self.segment_key(generation, txid)
        try:
            response = self._s3.head_object(Bucket=self.bucket, Key=key)
        except aws.ClientError as exc:
            if aws.http_status(exc) == 404:
                return None
            raise _unavailable(f"head {key}", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise _unavailable(f"head {key}", exc) from exc
        return _info(generation, txid, response.get("Metadata") or {})

    def get_segment(self, generation: str, txid: int) -> tuple[SegmentInfo, ltx.Segment] | None:
        """The verified segment at a position, ``None`` when there is none.

        Raises ``CorruptSegment`` when its bytes fail their sha256, the LTX checks, or do not
        sit at the position their header names.
        """
        key = self.segment_key(generation, txid)
        where = f"s3://{self.bucket}/{key}"
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key)
            body = response["Body"].read()
        except aws.ClientError as exc:
            if aws.http_status(exc) == 404:
                return None
            raise _unavailable(f"get {key}", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise _unavailable(f"get {key}", exc) from exc
        info = _info(generation, txid, response.get("Metadata") or {})
        if info.sha256 and hashlib.sha256(body).hexdigest() != info.sha256:
            raise CorruptSegment(where, "sha256 mismatch")
        segment = ltx.decode(body, where=where)
        if segment.header.max_txid != txid:
            raise CorruptSegment(where, f"holds txid {segment.header.max_txid}, not {txid}")
        return info, segment

    def probe(self, generation: str, after: int) -> int:
        """The last position of ``generation`` at or after ``after`` (HEADs forward, no LIST)."""
        position = after
        while position - after < PROBE_LIMIT:
            if self.head_segment(generation, position + 1) is None:
                return position
            position += 1
        raise ChainBroken(generation, "probe limit reached", position)

    # -- the claim --------------------------------------------------------------------------

    def claim(
        self, generation: str, after: int, writer: Writer, page_size: int, commit: int,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> Claimed:
        """Take the first free position past ``after`` (the end the holder restored).

        Each position found taken holds a segment an older holder landed first (acknowledged
        to its app): it is returned in ``adopted``, in order, to be applied before the app
        starts. A position taken by a *newer* token means this writer is stale.
        """
        adopted: list[bytes] = []
        position = after + 1
        while True:
            body = ltx.encode(ltx.Header(page_size, commit, position, position, now_ms()), [])
            try:
                self.write_segment(generation, body, writer, kind="claim")
                return Claimed(position, tuple(adopted))
            except PositionTaken as taken:
                if taken.token is not None and taken.token > writer.token:
                    raise Superseded(taken.key, writer.token, taken.token) from taken
                found = self._raw_segment(generation, position)
                adopted.append(found)
                commit = ltx.decode(found).header.commit
                position += 1

    def _raw_segment(self, generation: str, txid: int) -> bytes:
        key = self.segment_key(generation, txid)
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except aws.ClientError as exc:
            raise _unavailable(f"get {key}", exc) from exc
        ltx.decode(body, where=f"s3://{self.bucket}/{key}")
        return bytes(body)

    # -- the manifest -----------------------------------------------------------------------

    def read_manifest(self) -> Manifest | None:
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=self.manifest_key)
            raw = json.loads(response["Body"].read())
        except aws.ClientError as exc:
            if aws.http_status(exc) == 404:
                return None
            raise _unavailable("get manifest", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise _unavailable("get manifest", exc) from exc
        return Manifest(
            generation=str(raw["generation"]), position=int(raw["position"]),
            token=int(raw["token"]), holder=str(raw["holder"]), etag=response["ETag"],
        )

    def advance_manifest(self, seen: Manifest | None, new: Manifest) -> Manifest:
        """Compare-and-swap ``seen`` → ``new``, only forward and only by a token ≥ the seen one.

        ``Superseded`` when the manifest belongs to a newer token; ``ManifestConflict`` when
        it changed since ``seen`` (re-read and try again).
        """
        if seen is not None:
            if seen.token > new.token:
                raise Superseded(self.manifest_key, new.token, seen.token)
            if seen.generation == new.generation and seen.position >= new.position:
                return seen  # never backwards; nothing to do
        condition = {"IfMatch": seen.etag} if seen and seen.etag else {"IfNoneMatch": "*"}
        try:
            response = self._s3.put_object(
                Bucket=self.bucket, Key=self.manifest_key, Body=new.body(),
                ContentType="application/json", **condition,
            )
        except aws.ClientError as exc:
            if _refused(exc) or aws.http_status(exc) == 404:
                raise ManifestConflict(self.manifest_key, seen.etag if seen else None) from exc
            raise _unavailable("put manifest", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise _unavailable("put manifest", exc) from exc
        return Manifest(new.generation, new.position, new.token, new.holder, response["ETag"])

    # -- restore ----------------------------------------------------------------------------

    def restore(self, destination: str, txid: int | None = None) -> Restored:
        """Rebuild the database at the end of the chain (or at ``txid``) into ``destination``.

        One GET of the manifest, parallel GETs of positions 1..manifest, then a probe forward.
        A position missing below the manifest's, or failing verification, stops the restore:
        ``ChainBroken`` with the database as of the last good position at ``partial``.
        """
        manifest = self.read_manifest()
        if manifest is None:
            raise NothingToRestore(f"no chain at s3://{self.bucket}/{self.manifest_key}")
        generation = manifest.generation
        known = manifest.position if txid is None else min(manifest.position, txid)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            fetched = list(pool.map(
                lambda n: self._fetch(generation, n), range(1, known + 1)
            ))
        partial = destination + ".partial"
        good = 0
        count = 0
        with open(partial, "w+b") as out:
            for number, item in enumerate(fetched, start=1):
                if isinstance(item, Exception) or item is None:
                    self._broken(partial, generation, number, item, good)
                ltx.apply(item[1], out)
                good, count = number, count + 1
            while txid is None or good < txid:
                try:
                    item = self.get_segment(generation, good + 1)
                except CorruptSegment as exc:
                    self._broken(partial, generation, good + 1, exc, good)
                if item is None:
                    break  # past the manifest, the first free position is the end
                ltx.apply(item[1], out)
                good, count = good + 1, count + 1
        if txid is not None and good < txid:
            raise NothingToRestore(f"txid {txid} is past the end of the chain ({good})")
        os.replace(partial, destination)
        return Restored(destination, generation, good, count)

    def _fetch(self, generation: str, txid: int) -> Any:
        try:
            return self.get_segment(generation, txid)
        except CorruptSegment as exc:
            return exc

    def _broken(
        self, partial: str, generation: str, number: int, problem: Any, good: int
    ) -> None:
        reason = str(problem) if problem is not None else f"position {number} is missing"
        raise ChainBroken(
            self.segment_key(generation, number), reason, good,
            partial=partial if good else None,
        )


def _info(generation: str, txid: int, metadata: dict[str, str]) -> SegmentInfo:
    raw = metadata.get(META_TOKEN, "")
    return SegmentInfo(
        generation, txid, metadata.get(META_KIND, "segment"),
        int(raw) if raw.isdigit() else None, metadata.get(META_HOLDER),
        metadata.get(META_SHA256),
    )


def _refused(exc: aws.ClientError) -> bool:
    """A conditional write lost: the key exists (or changed) since the writer looked."""
    return aws.http_status(exc) in (409, 412) or aws.error_code(exc) in (
        "PreconditionFailed", "ConditionalRequestConflict",
    )


def _unavailable(what: str, exc: BaseException) -> StoreUnavailable:
    error = StoreUnavailable(f"S3 {what} failed: {exc}")
    error.retryable = aws.is_transient(exc)
    return error


__all__ = ["ChainStore", "Claimed", "Manifest", "Restored", "SegmentInfo", "Writer"]

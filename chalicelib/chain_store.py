"""The S3 edge for reading the chain beside ``K``: the manifest, a position's HEAD, a header.

Reads only, and never a LIST (docs/replication.md §6): one GET of the manifest, HEADs of
position keys, and a ranged GET of the 100-byte LTX header of the one segment whose capture
time is wanted. What the bytes mean is ``chalicelib.chain``'s to say.
"""

from __future__ import annotations

from typing import Any

from chalicelib import aws, chain
from chalicelib.errors import StoreUnavailable
from chalicelib.model import ChainSegment

_MISSING = ("404", "NoSuchKey")


class ChainReader:
    """The chain of one database object ``key`` in ``bucket``, read-only."""

    def __init__(
        self, bucket: str, key: str, client: Any | None = None, region: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.key = key
        self._s3 = client or aws.LazyClient(lambda: aws.client("s3", region, endpoint_url))

    @property
    def manifest_url(self) -> str:
        return self.url(chain.manifest_key(self.key))

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def manifest(self) -> chain.ChainManifest | None:
        """The manifest, ``None`` when there is none (a bucket of the whole-file layout).

        Raises ``MalformedManifest`` when it cannot be read, ``StoreUnavailable`` when S3
        does not answer (``retryable``) or refuses (an IAM policy without ``K.wakeful/*``).
        """
        key = chain.manifest_key(self.key)
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key)
            data = response["Body"].read()
        except aws.CALL_ERRORS as exc:
            if _missing(exc):
                return None
            raise _unavailable(f"get {key}", exc, chain.prefix(self.key)) from exc
        return chain.parse_manifest(data, self.url(key))

    def head(self, generation: str, position: int) -> ChainSegment | None:
        """The segment at a position as its HEAD shows it, ``None`` when the position is free."""
        key = chain.segment_key(self.key, generation, position)
        try:
            response = self._s3.head_object(Bucket=self.bucket, Key=key)
        except aws.CALL_ERRORS as exc:
            if _missing(exc):
                return None
            raise _unavailable(f"head {key}", exc, chain.prefix(self.key)) from exc
        return chain.segment_of(
            generation, position, response.get("Metadata") or {},
            response["LastModified"].timestamp(),
        )

    def captured_at(self, segment: ChainSegment) -> ChainSegment:
        """``segment`` with ``at`` its capture time, read from its LTX header: commits after
        it are not in the segment. Left as when it landed if the header cannot be read."""
        key = chain.segment_key(self.key, segment.generation, segment.position)
        try:
            response = self._s3.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes=0-{chain.LTX_HEADER_SIZE - 1}"
            )
            header = response["Body"].read()
        except aws.CALL_ERRORS as exc:
            if _missing(exc):
                return segment  # retention removed it since its HEAD: keep what that said
            raise _unavailable(f"get the header of {key}", exc,
                               chain.prefix(self.key)) from exc
        at = chain.ltx_timestamp(header, segment.position)
        if at is None:
            return segment
        return ChainSegment(
            segment.generation, segment.position, segment.kind, segment.holder, segment.token,
            at, segment.next_generation,
        )

    def last_segment_of(
        self, manifest: chain.ChainManifest, holder: str, token: int | None
    ) -> ChainSegment | None:
        """The last segment ``holder`` wrote past the manifest's position, with its capture
        time: at most ``chain.MAX_PROBES`` HEADs and one ranged GET."""
        found = chain.last_segment_of(
            self.head, manifest.generation, manifest.position, holder, token
        )
        return self.captured_at(found) if found is not None else None


def _missing(exc: BaseException) -> bool:
    if not isinstance(exc, aws.ClientError):
        return False
    return aws.http_status(exc) == 404 or aws.error_code(exc) in _MISSING


def _unavailable(what: str, exc: BaseException, prefix: str) -> StoreUnavailable:
    failure = aws.translate(exc)
    hint = ""
    if failure.status == 403:
        # Without ListBucket on the prefix, S3 answers a missing key with 403 too.
        hint = (f" (403: the control plane needs s3:GetObject on {prefix}* and s3:ListBucket "
                f"with that prefix)")
    error = StoreUnavailable(f"S3 {what} failed: {exc}{hint}")
    error.retryable = failure.transient
    return error

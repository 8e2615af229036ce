"""The S3 edge of replication: conditional PUTs, GETs, HEADs and batch deletes, typed errors.

Everything in ``wakeful_replica`` that talks to S3 goes through ``Objects``; botocore's errors
stop here and become ``ConditionFailed`` (a conditional write lost) or ``StoreUnavailable``
(S3 could not answer; ``retryable`` says whether the same call may succeed). No LIST here: the
chain is found by keys it can compute.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from chalicelib import aws
from chalicelib.errors import StoreUnavailable
from wakeful_replica.errors import ConditionFailed

# IfNoneMatch "*": write only if no object exists at the key (a position taken once).
ONLY_IF_ABSENT = {"IfNoneMatch": "*"}
DELETE_BATCH = 1000  # DeleteObjects' own limit
_CHUNK = 1024 * 1024


def only_if_unchanged(etag: str) -> dict[str, str]:
    """IfMatch ETAG: write only if the key still holds the version this writer last saw."""
    return {"IfMatch": etag}


@dataclass(frozen=True)
class Stored:
    """What S3 says of one version of one object."""

    key: str
    etag: str
    version_id: str | None
    size: int
    metadata: dict[str, str] = field(default_factory=dict)
    last_modified: dt.datetime | None = None


@dataclass(frozen=True)
class Fetched:
    stored: Stored
    body: bytes


class Objects:
    """One bucket's objects, through one boto3 S3 client."""

    def __init__(self, bucket: str, client: Any) -> None:
        self.bucket = bucket
        self.client = client

    def put(
        self, key: str, body: bytes | BinaryIO, metadata: dict[str, str],
        condition: dict[str, str], content_type: str = "application/octet-stream",
    ) -> Stored:
        """PUT under ``condition``; ``ConditionFailed`` when S3 refuses it."""
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, Metadata=metadata,
                ContentType=content_type, **condition,
            )
        except aws.ClientError as exc:
            # IfMatch on a key someone deleted answers 404: the object is not what we saw.
            if refused(exc) or (condition.get("IfMatch") and missing(exc)):
                raise ConditionFailed(key, _describe(condition)) from exc
            raise unavailable(f"put {key}", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise unavailable(f"put {key}", exc) from exc
        size = len(body) if isinstance(body, bytes | bytearray) else 0
        return Stored(key, response["ETag"], version(response.get("VersionId")), size,
                      dict(metadata))

    def head(self, key: str, version_id: str | None = None) -> Stored | None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            response = self.client.head_object(**kwargs)
        except aws.ClientError as exc:
            if missing(exc) or (version_id and aws.http_status(exc) in (400, 405)):
                return None
            raise unavailable(f"head {key}", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise unavailable(f"head {key}", exc) from exc
        return _stored(key, response)

    def deleted(self, key: str) -> bool:
        """Whether ``key``'s current version is a delete marker (a versioned bucket keeps what
        was there before): one HEAD, where listing the versions would be a LIST."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except aws.ClientError as exc:
            if not missing(exc):
                raise unavailable(f"head {key}", exc) from exc
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            return str(headers.get("x-amz-delete-marker", "")).lower() == "true"
        except aws.TRANSPORT_ERRORS as exc:
            raise unavailable(f"head {key}", exc) from exc
        return False

    def get(self, key: str, version_id: str | None = None) -> Fetched | None:
        """The object's bytes and what S3 says of them; ``None`` when there is none."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            response = self.client.get_object(**kwargs)
            body = response["Body"].read()
        except aws.ClientError as exc:
            if missing(exc) or (version_id and aws.http_status(exc) in (400, 405)):
                return None
            raise unavailable(f"get {key}", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise unavailable(f"get {key}", exc) from exc
        return Fetched(_stored(key, response), body)

    def download(
        self, key: str, out: BinaryIO, version_id: str | None = None
    ) -> tuple[Stored, str] | None:
        """Stream one version into ``out``; returns what S3 says of it and the body's sha256."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        digest = hashlib.sha256()
        try:
            response = self.client.get_object(**kwargs)
            for chunk in response["Body"].iter_chunks(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        except aws.ClientError as exc:
            if missing(exc) or (version_id and aws.http_status(exc) in (400, 405)):
                return None
            raise unavailable(f"get {key}", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise unavailable(f"get {key}", exc) from exc
        return _stored(key, response), digest.hexdigest()

    def delete(self, keys: Iterable[str]) -> int:
        """Delete ``keys`` (current versions; the bucket keeps them as noncurrent ones)."""
        pending = list(keys)
        for start in range(0, len(pending), DELETE_BATCH):
            batch = [{"Key": key} for key in pending[start:start + DELETE_BATCH]]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except aws.ClientError as exc:
                raise unavailable("delete objects", exc) from exc
            except aws.TRANSPORT_ERRORS as exc:
                raise unavailable("delete objects", exc) from exc
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                error = StoreUnavailable(
                    f"S3 delete of {first.get('Key')} failed: {first.get('Code')}"
                )
                error.retryable = True
                raise error
        return len(pending)


def _stored(key: str, response: dict[str, Any]) -> Stored:
    return Stored(
        key=key, etag=response["ETag"], version_id=version(response.get("VersionId")),
        size=int(response.get("ContentLength", 0)),
        metadata=dict(response.get("Metadata") or {}),
        last_modified=response.get("LastModified"),
    )


def _describe(condition: dict[str, str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in condition.items())


def refused(exc: aws.ClientError) -> bool:
    """A conditional write lost: the key exists (or changed) since the writer looked."""
    return aws.http_status(exc) in (409, 412) or aws.error_code(exc) in (
        "PreconditionFailed", "ConditionalRequestConflict",
    )


def missing(exc: aws.ClientError) -> bool:
    return aws.http_status(exc) == 404 or aws.error_code(exc) in (
        "404", "NoSuchKey", "NoSuchVersion",
    )


def version(raw: str | None) -> str | None:
    return None if raw in (None, "", "null") else raw


def unavailable(what: str, exc: BaseException) -> StoreUnavailable:
    error = StoreUnavailable(f"S3 {what} failed: {exc}")
    error.retryable = aws.is_transient(exc)
    return error


__all__ = ["ONLY_IF_ABSENT", "Fetched", "Objects", "Stored", "only_if_unchanged"]

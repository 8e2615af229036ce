"""The S3 reads of one database object: its current version, its versions and its backups.

What the control plane needs of S3, and no more: it proves stops from object metadata and
reports the current object and the backups, but never downloads or uploads a database, so it
needs neither the transfers nor the SQLite checks of ``store`` (the agent's and the CLI's).
``S3Objects`` reads the same layout (``KEY``, ``KEY.backup.YYYYMMDD_HHMMSS``, bucket versions)
with the same answers as ``store.DatabaseStore``, which any ``ObjectReads`` may be.
"""

from __future__ import annotations

from typing import Any, Protocol

from chalicelib import aws
from chalicelib.errors import StoreUnavailable
from chalicelib.model import Backup, ObjectInfo

# What S3 answers for a key or a version that is not there.
_MISSING = ("404", "NoSuchKey", "NoSuchVersion")


class ObjectReads(Protocol):
    """The reads the control plane and the shared report make."""

    @property
    def url(self) -> str: ...

    def head(self, version_id: str | None = None, key: str | None = None) -> ObjectInfo | None:
        ...

    def versions(self) -> list[ObjectInfo]: ...

    def backups(self) -> list[Backup]: ...


class S3Objects:
    """S3 reads of ``s3://bucket/key``; ``StoreUnavailable`` when S3 cannot answer them."""

    def __init__(
        self,
        bucket: str,
        key: str,
        client: Any | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.key = key
        self._s3 = client or aws.LazyClient(lambda: aws.client("s3", region, endpoint_url))

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def backup_prefix(self) -> str:
        return f"{self.key}.backup."

    def head(self, version_id: str | None = None, key: str | None = None) -> ObjectInfo | None:
        """The current object (or a version, or another key); ``None`` when it does not exist."""
        key = key or self.key
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            response = self._s3.head_object(**kwargs)
        except aws.CALL_ERRORS as exc:
            failure = aws.translate(exc)
            if failure.status == 404 or failure.code in _MISSING:
                return None
            if version_id and failure.status in (400, 405):
                # A delete marker or a malformed version id: nothing to read there.
                return None
            raise unavailable(f"head {key}", exc) from exc
        return ObjectInfo(
            key=key,
            etag=response["ETag"],
            version_id=version_of(response.get("VersionId")),
            size=int(response.get("ContentLength", 0)),
            last_modified=response["LastModified"],
            metadata=dict(response.get("Metadata") or {}),
        )

    def versions(self) -> list[ObjectInfo]:
        """Every stored version of the current key, newest first (delete markers left out)."""
        found: list[ObjectInfo] = []
        try:
            paginator = self._s3.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key):
                for item in page.get("Versions", []):
                    if item["Key"] != self.key:
                        continue
                    found.append(
                        ObjectInfo(
                            key=self.key,
                            etag=item["ETag"],
                            version_id=version_of(item.get("VersionId")),
                            size=int(item.get("Size", 0)),
                            last_modified=item["LastModified"],
                            is_latest=bool(item.get("IsLatest")),
                        )
                    )
        except aws.CALL_ERRORS as exc:
            raise unavailable("list versions", exc) from exc
        found.sort(key=lambda info: (info.last_modified, info.is_latest), reverse=True)
        return found

    def backups(self) -> list[Backup]:
        """Timestamped backups, newest first."""
        found: list[Backup] = []
        prefix = self.backup_prefix
        try:
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    found.append(
                        Backup(
                            name=item["Key"][len(prefix):],
                            key=item["Key"],
                            size=int(item.get("Size", 0)),
                            last_modified=item["LastModified"],
                        )
                    )
        except aws.CALL_ERRORS as exc:
            raise unavailable("list backups", exc) from exc
        found.sort(key=lambda backup: backup.name, reverse=True)
        return found


def version_of(raw: str | None) -> str | None:
    """S3's version id, ``None`` for an object written before versioning ("null")."""
    return None if raw in (None, "", "null") else raw


def unavailable(what: str, exc: BaseException) -> StoreUnavailable:
    """The typed error of a failed S3 call: retryable when the failure is transient."""
    error = StoreUnavailable(f"S3 {what} failed: {exc}")
    error.retryable = aws.translate(exc).transient
    return error

"""The database store: the S3 edge for the current object, its versions and its backups.

Layout (compatible with the ``db-sync.sh`` it replaces):

- ``s3://BUCKET/KEY`` is the current database, a plain SQLite file;
- ``KEY.backup.YYYYMMDD_HHMMSS`` are timestamped backups, pruned to a retention count;
- bucket versioning keeps every earlier current object.

Every upload is a compare-and-swap: ``IfMatch`` on the ETag this writer last saw, or
``IfNoneMatch='*'`` when it saw no object. A refused swap raises ``FencingError``.

S3 only: a download comes back as the bytes S3 holds (their length checked); whether they are
the database that was uploaded and a good one is ``chalicelib.integrity``'s to say, and which
object a restore names is ``chalicelib.sources``'.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from boto3.s3.transfer import TransferConfig

from chalicelib import aws
from chalicelib.errors import CorruptDatabase, FencingError, NotFound, StoreUnavailable
from chalicelib.files import Snapshot, remove_file
from chalicelib.model import Backup, ObjectInfo, UploadIntent
from chalicelib.stamps import stamp

META_SHA256 = "wakeful-sha256"
META_HOLDER = "wakeful-holder"
META_TOKEN = "wakeful-token"
META_REASON = "wakeful-reason"
META_UPLOADED_AT = "wakeful-uploaded-at"

REASONS = ("periodic", "shutdown", "manual", "restore")
MiB = 1024 * 1024
SINGLE_COPY_LIMIT = 5 * 1024 * MiB  # CopyObject's own limit
# Tries of one upload: after S3's 409 (a conditional write raced ours: try again), or after
# finding our own earlier upload current (swap against its ETag instead).
UPLOAD_TRIES = 3
CONFLICT_PAUSE = 0.2
_MISSING = ("404", "NoSuchKey", "NoSuchVersion")
# S3 hashed what it received and it was not what the writer hashed: the bytes changed on the way.
_BAD_DIGEST = ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch")

# Progress callbacks receive the number of bytes moved since the previous call.
Progress = Callable[[int], None]


class DatabaseStore:
    """S3 edge for one database object. Nothing here knows about leases or processes."""

    def __init__(
        self,
        bucket: str,
        key: str,
        client: Any | None = None,
        clock: Callable[[], float] = time.time,
        backup_retention: int = 30,
        multipart_threshold: int = 128 * MiB,
        part_size: int = 16 * MiB,
        concurrency: int = 8,
        region: str | None = None,
        endpoint_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bucket = bucket
        self.key = key
        self._s3 = client or aws.client("s3", region, endpoint_url)
        self._clock = clock
        self._sleep = sleep
        self.backup_retention = backup_retention
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.concurrency = concurrency

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def client(self) -> Any:
        """The S3 client this store calls: edges beside it in the bucket share it."""
        return self._s3

    @property
    def backup_prefix(self) -> str:
        return f"{self.key}.backup."

    # -- reads -----------------------------------------------------------------------------

    def head(self, version_id: str | None = None, key: str | None = None) -> ObjectInfo | None:
        """The current object (or a version, or another key); ``None`` when it does not exist."""
        key = key or self.key
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            response = self._s3.head_object(**kwargs)
        except aws.ClientError as exc:
            if _missing(exc):
                return None
            if version_id and aws.http_status(exc) in (400, 405):
                # A delete marker or a malformed version id: nothing to read there.
                return None
            raise _unavailable(f"head {key}", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise _unavailable(f"head {key}", exc) from exc
        return ObjectInfo(
            key=key,
            etag=response["ETag"],
            version_id=_version(response.get("VersionId")),
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
                            version_id=_version(item.get("VersionId")),
                            size=int(item.get("Size", 0)),
                            last_modified=item["LastModified"],
                            is_latest=bool(item.get("IsLatest")),
                        )
                    )
        except aws.ClientError as exc:
            raise _unavailable("list versions", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise _unavailable("list versions", exc) from exc
        found.sort(key=lambda info: (info.last_modified, info.is_latest), reverse=True)
        return found

    def backups(self) -> list[Backup]:
        """Timestamped backups, newest first."""
        found: list[Backup] = []
        try:
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.backup_prefix):
                for item in page.get("Contents", []):
                    found.append(
                        Backup(
                            name=item["Key"][len(self.backup_prefix):],
                            key=item["Key"],
                            size=int(item.get("Size", 0)),
                            last_modified=item["LastModified"],
                        )
                    )
        except aws.ClientError as exc:
            raise _unavailable("list backups", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise _unavailable("list backups", exc) from exc
        found.sort(key=lambda backup: backup.name, reverse=True)
        return found

    # -- downloads -------------------------------------------------------------------------

    def fetch(self, info: ObjectInfo, destination: str, progress: Progress | None = None) -> None:
        """Download exactly ``info``'s version to ``destination``.

        Raises ``NotFound`` when that version vanished, ``CorruptDatabase`` (the file is
        removed) when fewer bytes arrived than S3 said it holds. Checking what arrived is the
        caller's: ``chalicelib.integrity.fetch_verified``.
        """
        extra: dict[str, Any] = {}
        if info.version_id:
            extra["VersionId"] = info.version_id
        remove_file(destination)
        try:
            self._s3.download_file(
                self.bucket, info.key, destination, ExtraArgs=extra or None,
                Callback=progress, Config=self._transfer_config(),
            )
        except aws.ClientError as exc:
            remove_file(destination)
            if aws.http_status(exc) == 404:
                raise NotFound(
                    f"s3://{self.bucket}/{info.key} ({info.version_id}) vanished"
                ) from exc
            raise _unavailable(f"download {info.key}", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            remove_file(destination)
            raise _unavailable(f"download {info.key}", exc) from exc
        received = os.path.getsize(destination)
        if received != info.size:
            remove_file(destination)
            raise CorruptDatabase(
                self.where(info), f"truncated: {received} of {info.size} bytes"
            )

    def where(self, info: ObjectInfo) -> str:
        """How errors name one stored object: its URL, and its version when it has one."""
        return f"s3://{self.bucket}/{info.key}" + (
            f" version {info.version_id}" if info.version_id else ""
        )

    # -- uploads ---------------------------------------------------------------------------

    def upload(
        self,
        snapshot: Snapshot,
        expected_etag: str | None,
        intent: UploadIntent,
        progress: Progress | None = None,
    ) -> ObjectInfo:
        """Replace the current object with ``snapshot`` if it is still ``expected_etag``.

        The current object is also ours to replace when its metadata names this holder and
        token, whatever its content: only this holding writes under them, so it is one of our
        own uploads whose answer was lost. Raises ``FencingError`` when someone else wrote it.
        """
        metadata = intent.metadata(snapshot, self._clock())
        for attempt in range(1, UPLOAD_TRIES + 1):
            try:
                response = self._swap(snapshot, metadata, expected_etag, progress)
            except _Conflict as conflict:
                if attempt == UPLOAD_TRIES:
                    error = _unavailable(f"upload {self.key}", conflict.__cause__ or conflict)
                    error.retryable = True
                    raise error from conflict
                self._sleep(CONFLICT_PAUSE * attempt)
                continue
            except _Refused as refused:
                current = self.head()
                if not _names(current, intent):
                    raise FencingError(self.bucket, self.key, expected_etag) from refused.__cause__
                assert current is not None
                if current.sha256 == snapshot.sha256:
                    return current  # this very upload: a retry's condition failed on it
                expected_etag = current.etag
                continue
            return self._stored(snapshot, metadata, response)
        raise StoreUnavailable(
            f"S3 upload {self.key}: the current object kept changing under this holder's own "
            f"uploads ({UPLOAD_TRIES} tries)"
        )

    def _swap(
        self,
        snapshot: Snapshot,
        metadata: dict[str, str],
        expected_etag: str | None,
        progress: Progress | None,
    ) -> dict[str, Any]:
        """One conditional write; ``_Refused`` when the condition failed, ``_Conflict`` on 409."""
        condition = {"IfMatch": expected_etag} if expected_etag else {"IfNoneMatch": "*"}
        try:
            if snapshot.size >= self.multipart_threshold:
                return self._multipart(snapshot, metadata, condition, progress)
            with open(snapshot.path, "rb") as body:
                # The sha256 of the snapshot as it was checked: S3 refuses bytes that differ.
                response = self._s3.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=body,
                    Metadata=metadata,
                    ContentType="application/vnd.sqlite3",
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(snapshot.sha256)).decode(),
                    **condition,
                )
            if progress:
                progress(snapshot.size)
            return response
        except aws.ClientError as exc:
            if aws.error_code(exc) in _BAD_DIGEST:
                raise CorruptDatabase(
                    self.url, f"S3 refused the upload: the bytes it received do not match their "
                    f"checksum ({aws.error_code(exc)}); a new snapshot is needed",
                ) from exc
            if _conflict(exc):
                raise _Conflict() from exc
            # IfMatch on an object someone deleted answers 404, a retried completion of a
            # multipart upload NoSuchUpload: the swap lost, unless it was our own that won.
            if _refused(exc) or _missing(exc):
                raise _Refused() from exc
            raise _unavailable(f"upload {self.key}", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise _unavailable(f"upload {self.key}", exc) from exc

    def _stored(
        self, snapshot: Snapshot, metadata: dict[str, str], response: dict[str, Any]
    ) -> ObjectInfo:
        return ObjectInfo(
            key=self.key,
            etag=response["ETag"],
            version_id=_version(response.get("VersionId")),
            size=snapshot.size,
            last_modified=dt.datetime.fromtimestamp(self._clock(), dt.UTC),
            metadata=metadata,
        )

    def _multipart(
        self,
        snapshot: Snapshot,
        metadata: dict[str, str],
        condition: dict[str, str],
        progress: Progress | None,
    ) -> dict[str, Any]:
        # S3 enforces IfMatch/IfNoneMatch on CompleteMultipartUpload; a local stand-in may not,
        # so check early too: it refuses a stale writer before it spends the transfer.
        self._precheck(condition)
        upload_id = self._s3.create_multipart_upload(
            Bucket=self.bucket, Key=self.key, Metadata=metadata,
            ContentType="application/vnd.sqlite3", ChecksumAlgorithm="SHA256",
        )["UploadId"]
        try:
            parts = self._upload_parts(snapshot, upload_id, progress)
            return self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **condition,
            )
        except BaseException:
            # The original error is the one to report; parts left by a failed abort are
            # cleaned up by the bucket's lifecycle rule.
            with contextlib.suppress(Exception):
                self._s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=upload_id
                )
            raise

    def _precheck(self, condition: dict[str, str]) -> None:
        current = self.head()
        expected = condition.get("IfMatch")
        if (expected is None and current is not None) or (
            expected is not None and (current is None or current.etag != expected)
        ):
            raise _Refused()

    def _upload_parts(
        self, snapshot: Snapshot, upload_id: str, progress: Progress | None
    ) -> list[dict[str, Any]]:
        offsets = list(range(0, snapshot.size, self.part_size))
        lock = threading.Lock()

        def send(number: int, offset: int) -> dict[str, Any]:
            with open(snapshot.path, "rb") as handle:
                handle.seek(offset)
                body = handle.read(self.part_size)
            checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
            response = self._s3.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=upload_id,
                PartNumber=number, Body=body, ChecksumAlgorithm="SHA256", ChecksumSHA256=checksum,
            )
            if progress:
                with lock:
                    progress(len(body))
            return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum}

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [
                pool.submit(send, number, offset)
                for number, offset in enumerate(offsets, start=1)
            ]
            return [future.result() for future in futures]

    # -- backups ---------------------------------------------------------------------------

    def create_backup(self, source: ObjectInfo, when: float | None = None) -> Backup:
        """Copy ``source`` (a version of the current key) to ``KEY.backup.<time>``.

        ``when`` names the backup (default: now); a backup of an object being replaced is
        named by when that object was written, so it never collides with the new one's.
        """
        name = stamp(self._clock() if when is None else when)
        key = self.backup_prefix + name
        copy_source: dict[str, str] = {"Bucket": self.bucket, "Key": source.key}
        if source.version_id:
            copy_source["VersionId"] = source.version_id
        try:
            if source.size < SINGLE_COPY_LIMIT:
                # One server-side request, metadata (sha256, holder, token) copied with it.
                self._s3.copy_object(
                    CopySource=copy_source, Bucket=self.bucket, Key=key,
                    MetadataDirective="COPY",
                )
            else:
                # A part-wise copy drops the metadata unless it is given again.
                self._s3.copy(
                    copy_source, self.bucket, key, Config=self._transfer_config(),
                    ExtraArgs={"Metadata": dict(source.metadata), "MetadataDirective": "REPLACE"},
                )
        except aws.ClientError as exc:
            raise _unavailable(f"backup to {key}", exc) from exc
        except aws.TRANSPORT_ERRORS as exc:
            raise _unavailable(f"backup to {key}", exc) from exc
        return Backup(name=name, key=key, size=source.size,
                      last_modified=dt.datetime.fromtimestamp(self._clock(), dt.UTC))

    def newest_backup(self) -> ObjectInfo | None:
        """What the newest timestamped backup holds (metadata included), if there is one."""
        found = self.backups()
        return self.head(key=found[0].key) if found else None

    def prune_backups(self) -> list[str]:
        """Delete backups beyond the retention count, oldest first; returns their names."""
        doomed = self.backups()[self.backup_retention:]
        for backup in doomed:
            try:
                self._s3.delete_object(Bucket=self.bucket, Key=backup.key)
            except aws.ClientError as exc:
                raise _unavailable(f"delete {backup.key}", exc) from exc
            except aws.TRANSPORT_ERRORS as exc:
                raise _unavailable(f"delete {backup.key}", exc) from exc
        return [backup.name for backup in doomed]

    def _transfer_config(self) -> TransferConfig:
        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.part_size,
            max_concurrency=self.concurrency,
        )


def _refused(exc: aws.ClientError) -> bool:
    """A conditional write lost: the object is not what the writer last saw."""
    return aws.http_status(exc) == 412 or aws.error_code(exc) == "PreconditionFailed"


def _conflict(exc: aws.ClientError) -> bool:
    """S3's 409 on a conditional write: another one to the key was in flight. Nothing was
    decided against us; the same write may be tried again."""
    return aws.http_status(exc) == 409 or aws.error_code(exc) == "ConditionalRequestConflict"


def _names(current: ObjectInfo | None, intent: UploadIntent) -> bool:
    """The object was written under this very lease holding (holder and fencing token)."""
    return (
        current is not None
        and current.holder == intent.holder
        and current.token == intent.token
    )


class _Refused(Exception):
    """The write's condition did not hold."""


class _Conflict(Exception):
    """S3 answered 409: retry."""


def _missing(exc: aws.ClientError) -> bool:
    return aws.http_status(exc) == 404 or aws.error_code(exc) in _MISSING


def _version(raw: str | None) -> str | None:
    return None if raw in (None, "", "null") else raw


def _unavailable(what: str, exc: BaseException) -> StoreUnavailable:
    error = StoreUnavailable(f"S3 {what} failed: {exc}")
    error.retryable = aws.is_transient(exc)
    return error

"""Typed errors of replication, in the family of ``chalicelib.errors``.

Each carries the data a caller (the agent, the operator CLI) needs to log the refusal or decide
what to do next, and says whether the same call may succeed if tried again.
"""

from __future__ import annotations

from chalicelib.errors import StoreError, WakefulError


class CorruptSegment(StoreError):
    """An LTX segment failed to decode: bad framing, bad checksum, or not what its key says."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class SqliteTooOld(WakefulError):
    """The agent's own SQLite has the WAL-reset bug (3.7.0 to 3.51.2); it must not open the file."""

    def __init__(self, found: str, required: str) -> None:
        super().__init__(
            f"the agent's SQLite is {found}; {required} or newer is required "
            "(WAL-reset bug, sqlite.org/wal.html#walresetbug)"
        )
        self.found = found
        self.required = required


class NotADatabase(WakefulError):
    """The file to capture is missing, empty or not a SQLite database."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class PositionTaken(StoreError):
    """A chain position this writer meant to take is already written by someone.

    ``holder``/``token`` name who wrote it when that could be read (``None`` otherwise).
    """

    def __init__(
        self, key: str, our_token: int, holder: str | None, token: int | None
    ) -> None:
        who = f"holder {holder!r} token {token}" if token is not None else "another writer"
        super().__init__(f"{key} is already written by {who} (our token {our_token})")
        self.key = key
        self.our_token = our_token
        self.holder = holder
        self.token = token


class Superseded(StoreError):
    """A newer holder has claimed the chain: this writer is stale and must stop writing."""

    def __init__(self, what: str, our_token: int, their_token: int | None) -> None:
        super().__init__(
            f"{what}: superseded by token {their_token} (our token {our_token})"
        )
        self.what = what
        self.our_token = our_token
        self.their_token = their_token


class ManifestConflict(StoreError):
    """A compare-and-swap of the manifest lost: it changed since this writer read it."""

    retryable = True

    def __init__(self, key: str, expected_etag: str | None) -> None:
        seen = f"ETag {expected_etag}" if expected_etag else "no manifest"
        super().__init__(f"manifest {key} changed: it is no longer {seen}")
        self.key = key
        self.expected_etag = expected_etag


class ChainBroken(StoreError):
    """A restore or verify could not read the chain past ``reached`` (a missing or bad segment).

    ``reached`` is the last good transaction id; ``partial`` the path of the database restored
    up to it, when one was kept. Never to be used as the current database without an operator.
    """

    def __init__(
        self, where: str, reason: str, reached: int, partial: str | None = None
    ) -> None:
        super().__init__(f"{where}: {reason}; the chain is good up to txid {reached}")
        self.where = where
        self.reason = reason
        self.reached = reached
        self.partial = partial


class NothingToRestore(StoreError):
    """The bucket holds no chain and no database for this key (or none at the asked point)."""


class ConditionFailed(StoreError):
    """A conditional S3 write found the key not as its condition required (taken, or changed)."""

    def __init__(self, key: str, condition: str) -> None:
        super().__init__(f"{key}: condition {condition} failed")
        self.key = key
        self.condition = condition


class OutOfBandUpload(StoreError):
    """The current object was written outside wakeful (an operator's restore): never overwritten.

    The running holder keeps shipping segments; the next boot starts a new generation from it.
    """

    def __init__(self, key: str, version_id: str | None, detail: str = "") -> None:
        message = f"{key} (version {version_id}) was uploaded outside wakeful"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.key = key
        self.version_id = version_id


class QueueFull(StoreError):
    """The local segment queue reached its bound: the chain continues with a full snapshot."""

    def __init__(self, queued: int, queued_bytes: int, limit_bytes: int) -> None:
        super().__init__(
            f"segment queue full: {queued} segments, {queued_bytes} of {limit_bytes} bytes"
        )
        self.queued = queued
        self.queued_bytes = queued_bytes
        self.limit_bytes = limit_bytes


class Fenced(StoreError):
    """This writer was refused by the chain (superseded, or its position taken): it must stop.

    Every later write through the same writer raises this too, so nothing is written after the
    first refusal.
    """

    def __init__(self, cause: StoreError) -> None:
        super().__init__(f"writer fenced: {cause}")
        self.cause = cause

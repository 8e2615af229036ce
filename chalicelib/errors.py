"""Typed errors of the wakeful domain.

AWS errors are translated into these at the edge (``lease``, ``store``, ``tasks``), so nothing
above the edge needs botocore. Each error says whether retrying the same call may help.
"""

from __future__ import annotations


class WakefulError(Exception):
    """Base of every error the domain raises."""

    retryable: bool = False


class ConfigError(WakefulError):
    """A setting is missing or invalid; ``str()`` is one line naming the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class LeaseError(WakefulError):
    """Base of lease failures."""


class LeaseHeld(LeaseError):
    """Someone else holds (or has reserved) the lease and it has not expired."""

    retryable = True

    def __init__(self, name: str, holder: str | None, state: str, expires_at: float) -> None:
        super().__init__(
            f"lease {name!r} is {state} by {holder!r} until {expires_at:.3f}"
        )
        self.name = name
        self.holder = holder
        self.state = state
        self.expires_at = expires_at


class LeaseLost(LeaseError):
    """A conditional lease write was refused: this holder no longer owns the lease."""

    def __init__(self, name: str, holder: str, token: int, detail: str = "") -> None:
        message = f"lease {name!r} is no longer held by {holder!r} with token {token}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.name = name
        self.holder = holder
        self.token = token


class LeaseUnavailable(LeaseError):
    """DynamoDB could not be reached or throttled the call; the lease state is unknown."""

    retryable = True


class StoreError(WakefulError):
    """Base of S3 store failures."""


class StoreUnavailable(StoreError):
    """S3 could not be reached or answered with a transient error."""

    retryable = True


class FencingError(StoreError):
    """A compare-and-swap upload was refused: the current object is not the one we last saw."""

    def __init__(self, bucket: str, key: str, expected_etag: str | None) -> None:
        seen = f"ETag {expected_etag}" if expected_etag else "no object"
        super().__init__(
            f"upload to s3://{bucket}/{key} refused: the current object is no longer {seen}"
        )
        self.bucket = bucket
        self.key = key
        self.expected_etag = expected_etag


class CorruptDatabase(StoreError):
    """A database file failed its checksum or SQLite integrity check."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class MalformedManifest(StoreError):
    """The chain's manifest (``K.wakeful/manifest.json``) is not one this code can read."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: malformed manifest: {reason}")
        self.where = where
        self.reason = reason


class NoGoodVersion(StoreError):
    """The current object is corrupt and no older version passes verification."""


class NotFound(StoreError):
    """A named backup, version or object does not exist."""


class TaskControlError(WakefulError):
    """ECS refused or failed a task operation (RunTask, StopTask, ...)."""

    def __init__(
        self, operation: str, reason: str, retryable: bool = False, ambiguous: bool = False
    ) -> None:
        super().__init__(f"{operation} failed: {reason}")
        self.operation = operation
        self.reason = reason
        self.retryable = retryable
        # The request may have taken effect (no answer, or a server error): ECS may have
        # started the task all the same.
        self.ambiguous = ambiguous

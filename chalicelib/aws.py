"""The AWS edge: client construction and the one reading of a failed call.

Only edge modules (``lease``, ``ledger``, ``store``, ``objects``, ``tasks``) import this. Each
catches ``CALL_ERRORS`` around a call, reads it with ``translate`` (what failed, and whether the
same call may succeed later) and raises the typed error of ``chalicelib.errors`` that says so,
chained to the botocore exception.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

# Short connect timeouts: a stop budget of ~100 s must leave room for several retries.
_CONFIG = Config(
    connect_timeout=3,
    read_timeout=30,
    retries={"max_attempts": 3, "mode": "standard"},
)

TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "503",
        "500",
    }
)

TRANSPORT_ERRORS = (
    EndpointConnectionError,
    ConnectionClosedError,
    ReadTimeoutError,
    BotoCoreError,
)

# What a botocore call raises when it fails: AWS answered with an error, or no answer came.
CALL_ERRORS = (ClientError, *TRANSPORT_ERRORS)

# Failures of the request before it was sent that sending it again cannot mend.
_NEVER_SENT = (NoCredentialsError, PartialCredentialsError, NoRegionError, ParamValidationError)


_CLIENT_LOCK = threading.Lock()


@dataclass(frozen=True)
class CallTimeouts:
    """How long one call may take: per-attempt connect and read timeouts, and attempts in all.

    A caller that must act by a deadline (the agent, whose lease runs out) sizes these so that a
    call that hangs gives up in time, instead of botocore's default of minutes.
    """

    connect: float
    read: float
    attempts: int

    def config(self) -> Config:
        return Config(
            connect_timeout=self.connect,
            read_timeout=self.read,
            retries={"total_max_attempts": self.attempts, "mode": "standard"},
        )


@functools.lru_cache(maxsize=1)
def _session() -> boto3.session.Session:
    # One session per process: each new session reloads the endpoint and service models,
    # which dominates a Lambda cold start.
    return boto3.session.Session()


def client(
    service: str,
    region: str | None = None,
    endpoint_url: str | None = None,
    timeouts: CallTimeouts | None = None,
) -> Any:
    """A boto3 client; ``endpoint_url`` (or ``AWS_ENDPOINT_URL``) points it at a local stand-in."""
    config = timeouts.config() if timeouts is not None else _CONFIG
    # Creating clients from one session is not thread-safe; using them is.
    with _CLIENT_LOCK:
        return _session().client(
            service, region_name=region, endpoint_url=endpoint_url, config=config
        )


@dataclass(frozen=True)
class Failure:
    """What a failed AWS call means, read once at the edge."""

    code: str  # AWS's error code ("AccessDeniedException"), or the transport error's name
    message: str
    status: int  # the HTTP status of the answer; 0 when none came
    transient: bool  # the same call may succeed later: throttled, a server error, no answer

    @property
    def permanent(self) -> bool:
        """Trying again will not help: access denied, a missing table, a request refused."""
        return not self.transient

    @property
    def ambiguous(self) -> bool:
        """The request may have taken effect: no answer came, or the server failed on it."""
        return self.status == 0 or self.status >= 500

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


def translate(exc: BaseException) -> Failure:
    """Read a botocore exception (one of ``CALL_ERRORS``).

    Transient: a throttling or server-side code, any 5xx, and a request that got no answer.
    Everything else AWS answers (AccessDenied, a missing table or bucket, a validation error)
    is permanent, and so is a request botocore could not even sign or build.
    """
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = http_status(exc)
        message = str(exc.response.get("Error", {}).get("Message") or "")
        return Failure(code, message, status, code in TRANSIENT_CODES or status >= 500)
    transient = isinstance(exc, TRANSPORT_ERRORS) and not isinstance(exc, _NEVER_SENT)
    return Failure(type(exc).__name__, str(exc), 0, transient)


class LazyClient:
    """A boto3 client made on first use: a cold start pays only for the clients it calls.

    Creating a client loads its service model (tens of milliseconds); an awake wake needs only
    DynamoDB, a task event DynamoDB and S3. Anything the client would raise while being made
    (no region, say) is raised by the first call instead, where the edge translates it.
    """

    def __init__(self, create: Callable[[], Any]) -> None:
        self._create = create
        self._client: Any = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._create()
                client = self._client
        return getattr(client, name)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def is_transient(exc: BaseException) -> bool:
    """True when the same call may succeed if tried again (``translate(exc).transient``)."""
    return translate(exc).transient


__all__ = [
    "CALL_ERRORS",
    "CallTimeouts",
    "ClientError",
    "Failure",
    "LazyClient",
    "client",
    "error_code",
    "http_status",
    "is_transient",
    "translate",
]

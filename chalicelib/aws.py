"""The AWS edge: client construction and error classification.

Only edge modules (``lease``, ``store``, ``tasks``) import this; they translate what it classifies
into the typed errors of ``chalicelib.errors``.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
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


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def is_transient(exc: BaseException) -> bool:
    """True when the same call may succeed if tried again."""
    if isinstance(exc, ClientError):
        return error_code(exc) in TRANSIENT_CODES or http_status(exc) >= 500
    return isinstance(exc, TRANSPORT_ERRORS)


__all__ = ["CallTimeouts", "ClientError", "client", "error_code", "http_status", "is_transient"]

"""What the HTTP verbs answer: a status, a JSON body, and when to ask again.

A dependency that may answer later (throttled, a server error, no answer) is a 503 with
``Retry-After``; one that refused the call for good (access denied, a missing table or bucket)
is a 500 without it, because asking again cannot help and a client told to retry would only
keep asking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.errors import WakefulError

# How long a client should wait before asking again, by situation (seconds).
RETRY_STARTING = 5
RETRY_UNAVAILABLE = 30


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status code, JSON body, extra headers."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def retry_after(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(seconds)}


def starting(task_arn: str | None, reservation: str | None) -> Reply:
    """202: the backend is starting; ask again in a few seconds."""
    body: dict[str, Any] = {"state": "starting"}
    if task_arn:
        body["task_arn"] = task_arn
    if reservation:
        body["reservation_id"] = reservation
    return Reply(202, body, retry_after(RETRY_STARTING))


def unavailable(exc: WakefulError, log: Any) -> Reply:
    """The answer when the lease or the store could not be read or written."""
    if exc.retryable:
        log.error("A dependency is unavailable", extra={"error": str(exc)})
        return Reply(503, {"error": "a dependency is unavailable", "reason": str(exc)},
                     retry_after(RETRY_UNAVAILABLE))
    log.error("A dependency refused the call", extra={"error": str(exc)})
    return Reply(500, {"error": "a dependency refused the call", "reason": str(exc)})

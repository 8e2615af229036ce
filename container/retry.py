"""Retrying a step of the stop (the final upload, the release) inside the stop budget."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

FIRST_DELAY = 0.5
MAX_DELAY = 8.0


# The least time an attempt is assumed to need, however fast the last one failed.
MIN_ATTEMPT = 0.5


def next_pause(delay: float, remaining: float, attempt: float) -> float | None:
    """How long to wait before the next attempt; ``None`` when none fits in what is left.

    The backoff is cut to what is left, less the time an attempt takes (as long as the last
    one, at least ``MIN_ATTEMPT``): a service that recovers in the budget's last seconds is
    still tried then, and an attempt is never started only to be cut off by the deadline.
    """
    latest = remaining - max(attempt, MIN_ATTEMPT)
    if latest <= 0:
        return None
    return min(delay, latest)


def within_budget(
    action: Callable[[], T],
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    retryable: tuple[type[BaseException], ...],
    on_failure: Callable[[BaseException], None],
    keep_trying: Callable[[], bool] = lambda: True,
) -> T:
    """``action()``'s result, retried with backoff on ``retryable`` errors until ``deadline``
    (monotonic); the last error is raised when no attempt is left."""
    delay = FIRST_DELAY
    while True:
        started = clock()
        try:
            return action()
        except retryable as exc:
            on_failure(exc)
            now = clock()
            pause = next_pause(delay, deadline - now, now - started)
            if pause is None or not keep_trying():
                raise
            sleep(pause)
            delay = min(delay * 2, MAX_DELAY)

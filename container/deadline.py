"""Waiting on a call for no longer than the agent may: its lease's trust, or the stop budget.

botocore's timeouts bound each attempt of a call, but not what the agent can afford to wait:
an upload started with the lease trusted for 20 s must not be waited on for 21. So every AWS
call the agent makes runs on a worker thread, and the caller stops waiting when its deadline
passes. A call given up on may still land (the network may deliver it later): that is what
the fencing conditions are for. Until then the orphan is bounded by the client's own timeouts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# How often a wait looks again at a deadline that can move (a renewal extends the lease's trust,
# a lost lease ends it at once).
RECHECK = 0.1


class Deadline(Protocol):
    def remaining(self) -> float:
        """Seconds left; zero or less once the caller must stop waiting."""

    def exceeded(self, what: str) -> BaseException:
        """The error that says why ``what`` was given up on."""


@dataclass(frozen=True)
class Budget:
    """A fixed end on the monotonic clock (the stop budget)."""

    end: float
    clock: Callable[[], float] = time.monotonic

    def remaining(self) -> float:
        return self.end - self.clock()

    def exceeded(self, what: str) -> BaseException:
        # A TimeoutError is an OSError: callers already treat those as a failed attempt.
        return TimeoutError(f"{what} did not finish within the stop budget")


class Earliest:
    """Whichever of several deadlines comes first."""

    def __init__(self, *deadlines: Deadline) -> None:
        self.deadlines = deadlines

    def remaining(self) -> float:
        return min(deadline.remaining() for deadline in self.deadlines)

    def exceeded(self, what: str) -> BaseException:
        first = min(self.deadlines, key=lambda deadline: deadline.remaining())
        return first.exceeded(what)


def call_within(fn: Callable[[], T], deadline: Deadline, what: str) -> T:
    """``fn()``'s result, or ``deadline.exceeded(what)`` raised once the deadline has passed."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the waiting caller as it is
            outcome["error"] = exc
        finally:
            done.set()

    # A daemon thread, not an executor: an orphaned call must never hold up the process's exit.
    threading.Thread(target=work, name=f"wakeful-call:{what}", daemon=True).start()
    while not done.wait(max(0.0, min(deadline.remaining(), RECHECK))):
        if deadline.remaining() <= 0:
            raise deadline.exceeded(what)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]

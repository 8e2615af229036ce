"""Stop signals for the local stack's commands.

One handler for the whole command, so no signal ever meets Python's default action in between:
while the stack starts, a signal aborts the start (``Interrupted``); once it is up, a signal asks
for a clean stop; while it stops (the backend's final upload), further signals are ignored.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """A stop signal arrived while the stack was still starting."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name} during start-up")
        self.signum = signum


class StopSignals:
    def __init__(self) -> None:
        self._mode = "abort"
        self._received = threading.Event()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self._mode == "abort":
            self._mode = "ignore"  # one abort; the clean-up that follows must not be cut short
            raise Interrupted(signum)
        if self._mode == "wait":
            self._received.set()

    def wait(self) -> None:
        """From now on a signal asks for a stop; block until one has."""
        self._mode = "wait"
        while not self._received.wait(0.5):
            pass

    @contextmanager
    def ignored(self) -> Iterator[None]:
        """Signals during the block are ignored: let the backend finish its upload."""
        self._mode = "ignore"
        yield

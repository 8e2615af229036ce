"""Stop signals for the local stack's commands.

One handler for the whole command, so no signal ever meets Python's default action in between:
while the stack starts, a signal cancels the start (``cancelled`` is set and the start-up checks
it between steps: raising from a handler could land inside a half-made child process or a
buffered write); once it is up, a signal asks for a clean stop; while it stops (the backend's
final upload), further signals are ignored.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    def __init__(self) -> None:
        self._mode = "abort"
        self.cancelled = threading.Event()
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
            self.cancelled.set()
        elif self._mode == "wait":
            self._received.set()

    def started(self) -> None:
        """The stack is up: from now on a signal asks for a clean stop instead of aborting."""
        if self._mode == "abort":
            self._mode = "wait"

    def wait(self) -> None:
        """Block until a signal has asked for a stop."""
        self.started()
        while not self._received.wait(0.5):
            pass

    @contextmanager
    def ignored(self) -> Iterator[None]:
        """Signals during the block are ignored: let the backend finish its upload."""
        self._mode = "ignore"
        yield

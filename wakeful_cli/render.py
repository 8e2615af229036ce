"""Terminal output: tables, human sizes and times, a spinner and a progress bar.

Animations are drawn only on a terminal; piped output gets plain, line-by-line progress so logs
and scripts stay readable. Tables, sizes and times are the kernel's (``chalicelib.text``), the
same shapes ``wakeful-agent`` prints.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from chalicelib.text import duration, expires_in, moment, size, stamp, table

__all__ = ["ProgressBar", "Spinner", "duration", "expires_in", "is_tty", "moment", "size",
           "stamp", "table", "upload_cell"]

SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def upload_cell(upload: dict[str, Any] | None, now: float) -> str | None:
    """``2026-11-28 14:30:00 UTC (3m12s ago), 8.0 KiB, periodic, token 4``."""
    if not upload:
        return None
    token = upload.get("token")
    parts = [
        moment(upload.get("at"), now),
        size(upload.get("size")),
        upload.get("reason") or "unknown reason",
        f"token {token}" if token is not None else "no token",
    ]
    return ", ".join(str(part) for part in parts)


class Spinner:
    """``⠋ waiting for the backend… 3.2s`` redrawn in place; plain lines when not on a TTY."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.animate = is_tty(stream)
        self._clock = clock
        self._start = clock()
        self._frames = itertools.cycle(SPINNER_FRAMES)
        self._last_plain: str | None = None

    def update(self, message: str) -> None:
        elapsed = duration(self._clock() - self._start)
        if self.animate:
            self.stream.write(f"\r\x1b[2K{next(self._frames)} {message} {elapsed}")
            self.stream.flush()
        elif message != self._last_plain:
            # One line per change, not per poll: a log of a two-minute wait stays short.
            self.stream.write(f"{message} ({elapsed})\n")
            self.stream.flush()
            self._last_plain = message

    def done(self) -> None:
        if self.animate:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


class ProgressBar:
    """A byte-count progress bar fed by S3 transfer callbacks (which run on worker threads)."""

    WIDTH = 30

    def __init__(self, stream: TextIO, label: str, total: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.label = label
        self.total = max(0, int(total))
        self.done_bytes = 0
        self.animate = is_tty(stream)
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._drawn = -1.0
        if not self.animate:
            self.stream.write(f"{label}: {size(self.total)}...\n")
            self.stream.flush()

    def __call__(self, moved: int) -> None:
        with self._lock:
            self.done_bytes += int(moved)
            if self.animate:
                now = self._clock()
                if now - self._drawn >= 0.05 or self.done_bytes >= self.total:
                    self._drawn = now
                    self._draw()

    def _draw(self) -> None:
        fraction = min(1.0, self.done_bytes / self.total) if self.total else 1.0
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(
            f"\r\x1b[2K{self.label} [{bar}] {fraction * 100:5.1f}% "
            f"{size(self.done_bytes)}/{size(self.total)}"
        )
        self.stream.flush()

    def finish(self) -> None:
        elapsed = self._clock() - self._start
        with self._lock:
            if self.animate:
                self._draw()
                self.stream.write(f" {duration(elapsed)}\n")
            else:
                self.stream.write(
                    f"{self.label}: {size(self.done_bytes)} of {size(self.total)} "
                    f"in {duration(elapsed)}\n"
                )
            self.stream.flush()

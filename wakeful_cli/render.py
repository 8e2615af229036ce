"""Terminal output: tables, human sizes and times, a spinner and a progress bar.

Animations are drawn only on a terminal; piped output gets plain, line-by-line progress so logs
and scripts stay readable.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    """Columns padded to their widest cell; ``None`` shows as ``-``."""
    cells = [[_cell(value) for value in row] for row in rows]
    if header:
        cells.insert(0, list(header))
    if not cells:
        return ""
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(cells[0]))]
    lines = []
    for index, row in enumerate(cells):
        line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        lines.append(line)
        if header and index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def size(count: int | float | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def moment(epoch: float | None, now: float) -> str:
    """``2026-11-28 14:30:00 UTC (3m12s ago)``."""
    if epoch is None:
        return "-"
    stamp = dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = now - epoch
    relative = f"{duration(delta)} ago" if delta >= 0 else f"in {duration(delta)}"
    return f"{stamp} ({relative})"


def expires_in(expires_at: float | None, now: float) -> str:
    if not expires_at:
        return "-"
    left = expires_at - now
    return f"in {duration(left)}" if left >= 0 else f"expired {duration(left)} ago"


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

"""Plain-text shapes both doors print: padded tables, human sizes, durations and moments.

Pure formatting, shared by ``wakeful`` and ``wakeful-agent`` so that the same facts read the
same way whichever door shows them (the agent and the operator CLI do not import each other).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any


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


def stamp(epoch: float) -> str:
    """``2026-11-28 14:30:00 UTC``."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def moment(epoch: float | None, now: float) -> str:
    """``2026-11-28 14:30:00 UTC (3m12s ago)``."""
    if epoch is None:
        return "-"
    delta = now - epoch
    relative = f"{duration(delta)} ago" if delta >= 0 else f"in {duration(delta)}"
    return f"{stamp(epoch)} ({relative})"


def expires_in(expires_at: float | None, now: float) -> str:
    if not expires_at:
        return "-"
    left = expires_at - now
    return f"in {duration(left)}" if left >= 0 else f"expired {duration(left)} ago"

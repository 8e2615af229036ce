"""EMF metrics for the front door, safe to emit from many threads (the local server's)."""

from __future__ import annotations

import threading
from typing import Any


class LockedMetrics:
    """The Lambdas' Powertools sink, one emit at a time (its buffer is shared)."""

    def __init__(self, service: str = "front-door") -> None:
        from chalicelib.observability import PowertoolsMetrics

        self._sink = PowertoolsMetrics(service)
        self._lock = threading.Lock()

    def emit(self, name: str, value: float = 1, unit: str = "Count", **properties: Any) -> None:
        with self._lock:
            self._sink.emit(name, value, unit, **properties)

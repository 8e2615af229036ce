"""The streams a command talks through: results on stdout, notes and progress on stderr."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any, TextIO

from chalicelib.errors import WakefulError
from chalicelib.exits import EXIT_FAILED


class Refused(WakefulError):
    """The operation would break an invariant (one writer, no lost lease); nothing was done."""


@dataclasses.dataclass
class Io:
    out: TextIO
    err: TextIO
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()

    def json(self, data: Any) -> None:
        self.print(json.dumps(data, indent=2, default=str))

    def fail(self, problem: str) -> int:
        """Say what went wrong in one line on stderr; the exit code of a failure."""
        self.note(f"wakeful: error: {problem}")
        return EXIT_FAILED

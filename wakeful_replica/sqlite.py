"""The agent's own SQLite: APSW, whose bundled library has the WAL-reset fix (3.51.3 and later).

The agent is a second connection on the app's database file. SQLite 3.7.0 to 3.51.2 can corrupt
a WAL database when two connections write or checkpoint it at once
(sqlite.org/wal.html#walresetbug), so the agent refuses to open the file with an older library.
The stdlib's ``sqlite3`` (3.40.1 on Debian 12) is never used on the app's file by replication;
its version is reported beside APSW's for the boot log, since the app may well be using it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import apsw

from wakeful_replica.errors import SqliteTooOld

MINIMUM = (3, 51, 3)
BUSY_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class Versions:
    """What the boot log reports: the agent's SQLite, the stdlib's, and APSW's own version."""

    agent: str
    stdlib: str
    apsw: str

    @property
    def agent_fixed(self) -> bool:
        return parse(self.agent) >= MINIMUM

    @property
    def stdlib_fixed(self) -> bool:
        return parse(self.stdlib) >= MINIMUM

    def describe(self) -> dict[str, object]:
        return {
            "agent_sqlite": self.agent,
            "agent_sqlite_fixed": self.agent_fixed,
            "stdlib_sqlite": self.stdlib,
            "stdlib_sqlite_fixed": self.stdlib_fixed,
            "apsw": self.apsw,
        }


def parse(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def versions() -> Versions:
    return Versions(
        agent=apsw.sqlite_lib_version(), stdlib=sqlite3.sqlite_version, apsw=apsw.apsw_version()
    )


def require_fixed(found: str | None = None) -> str:
    """The agent's SQLite version, or ``SqliteTooOld`` when it has the WAL-reset bug."""
    found = found or apsw.sqlite_lib_version()
    if parse(found) < MINIMUM:
        raise SqliteTooOld(found, ".".join(map(str, MINIMUM)))
    return found


def connect(path: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> apsw.Connection:
    """Open an existing database read-write (a WAL reader needs the -shm) without creating one."""
    require_fixed()
    connection = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_URI)
    connection.set_busy_timeout(busy_timeout_ms)
    return connection

"""Whether the database has had commits since the last sync: idle databases cost nothing."""

from __future__ import annotations

import os
import sqlite3

from container.snapshot import open_existing


class ChangeWatcher:
    """Tells whether the database has had commits since the last call to ``mark``.

    ``PRAGMA data_version`` on a long-lived connection changes whenever another connection
    commits, so idle databases cost no snapshot and no upload. The connection stays on the
    file it opened, so the file's identity is watched too: an app that replaces its database
    file (an import, a reset) is a change, and the watch moves to the new file.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None
        self._seen: tuple[tuple[int, int], int] | None = None

    def _state(self) -> tuple[tuple[int, int], int] | None:
        try:
            stat = os.stat(self._path)
        except FileNotFoundError:
            self.close()
            return None
        identity = (stat.st_dev, stat.st_ino)
        if self._connection is not None and identity != self._file:
            self.close()
        try:
            if self._connection is None:
                self._connection = open_existing(self._path, check_same_thread=False)
                self._file = identity
            return identity, int(self._connection.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.DatabaseError:
            self.close()
            return None

    def changed(self) -> bool:
        state = self._state()
        return state is None or state != self._seen

    def mark(self) -> None:
        self._seen = self._state()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

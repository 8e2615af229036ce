"""Give Django a SQLite with the WAL-reset fix (3.51.3 or newer).

SQLite 3.7.0 to 3.51.2 can corrupt a WAL-mode database when two connections write or checkpoint
the same file at once (sqlite.org/wal.html#walresetbug). Under wakeful there are always two: the
app's and the agent's. Many Python builds link an older SQLite (Debian 12's Python: 3.40.1), so
this module puts the `pysqlite3` wheel (which bundles a current SQLite) in place of the standard
library's `sqlite3` before Django loads its SQLite backend. Import it first in settings.py.
"""

from __future__ import annotations

import sys

MINIMUM = (3, 51, 3)


def install() -> str:
    """Swap in pysqlite3 when it is installed; return the SQLite version Django will use."""
    try:
        import pysqlite3  # type: ignore[import-not-found]
    except ImportError:
        import sqlite3

        return sqlite3.sqlite_version
    sys.modules["sqlite3"] = pysqlite3
    sys.modules["sqlite3.dbapi2"] = pysqlite3.dbapi2
    return str(pysqlite3.sqlite_version)


def is_fixed(version: str) -> bool:
    return tuple(int(part) for part in version.split(".")[:3]) >= MINIMUM

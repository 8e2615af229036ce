"""A test app: commits one numbered row at a time and logs each id once it is committed.

argv: DB_PATH LOG_PATH [INTERVAL_SECONDS] [MODE]
MODE is ``wal`` (default), ``delete`` (rollback journal), ``wal-hard-exit`` (on SIGTERM it
exits without closing the database, leaving its commits in an uncheckpointed WAL) or
``wal-autocheckpoint`` (SQLite's own checkpoints left on, as most apps have them).
Otherwise SIGTERM stops it cleanly.
The log holds only ids whose COMMIT returned, so a test knows exactly what was acknowledged,
each with the wall-clock time its COMMIT returned (``ID TIME`` lines).
"""

import os
import signal
import sqlite3
import sys
import time

db_path, log_path = sys.argv[1], sys.argv[2]
interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.02
mode = sys.argv[4] if len(sys.argv) > 4 else "wal"
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
hard_exit = mode == "wal-hard-exit"
autocheckpoint = mode == "wal-autocheckpoint"
mode = "wal" if hard_exit or autocheckpoint else mode
db.execute(f"PRAGMA journal_mode={mode}")
if mode == "wal" and not autocheckpoint:
    # Keep writes in the WAL: the agent's snapshot must include uncheckpointed pages.
    db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, pid INTEGER, body TEXT)")
start = db.execute("SELECT coalesce(max(id), 0) FROM rows").fetchone()[0]
with open(log_path, "a", buffering=1) as log:
    n = start
    while not stop:
        n += 1
        db.execute("INSERT INTO rows (id, pid, body) VALUES (?, ?, ?)", (n, os.getpid(), "x" * 100))
        log.write(f"{n} {time.time():.6f}\n")
        time.sleep(interval)
if hard_exit:
    os._exit(0)
db.close()

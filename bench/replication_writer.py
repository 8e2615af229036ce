"""The replication bench's app: commits ROWS_PER_S rows of BODY_BYTES random bytes a second.

argv: DB_PATH LOG_PATH PAUSE_FLAG [ROWS_PER_S] [BODY_BYTES]

Each commit is one row in ``rows``; once its COMMIT returns the app logs ``ID ACK_TIME
LATENCY`` (wall time, seconds), so the bench knows what was acknowledged and when, and how long
each commit took. While PAUSE_FLAG exists the app commits nothing (the bench's idle window).
SQLite's own settings are left as most apps have them (WAL, autocheckpoint on), the same under
either replicator. SIGTERM stops it cleanly.
"""

import os
import signal
import sqlite3
import sys
import time

db_path, log_path, pause_flag = sys.argv[1], sys.argv[2], sys.argv[3]
rate = float(sys.argv[4]) if len(sys.argv) > 4 else 50.0
body_bytes = int(sys.argv[5]) if len(sys.argv) > 5 else 1024
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, at REAL, body BLOB)")
n = db.execute("SELECT coalesce(max(id), 0) FROM rows").fetchone()[0]
period = 1.0 / rate
next_at = time.monotonic()
with open(log_path, "a", buffering=1) as log:
    while not stop:
        if os.path.exists(pause_flag):
            time.sleep(0.05)
            next_at = time.monotonic()
            continue
        n += 1
        began = time.perf_counter()
        db.execute("INSERT INTO rows (id, at, body) VALUES (?, ?, ?)",
                   (n, time.time(), os.urandom(body_bytes)))
        latency = time.perf_counter() - began
        log.write(f"{n} {time.time():.6f} {latency:.6f}\n")
        # A fixed pace, not a fixed sleep, so slow commits do not lower the rate.
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
db.close()

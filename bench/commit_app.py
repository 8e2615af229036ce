"""The benchmark's app: a small SQLite writer run by the agent as its child.

argv: MARKER_PATH MODE [COMMITS PACE_SECONDS LATENCY_PATH]
The database is ``$DB_LOCAL_PATH`` (the agent sets it for its app).

- ``MARKER_PATH`` gets the wall-clock time at which the app started: the end of the agent's boot.
- ``idle``: commit one row, then wait for SIGTERM (the boot and shutdown runs).
- ``commits``: time ``COMMITS`` small transactions, ``PACE_SECONDS`` apart; write one line per
  commit (wall-clock start, latency in seconds) to ``LATENCY_PATH``; exit 0, so the agent makes
  its final upload.

WAL mode with ``synchronous=NORMAL`` is what WAL-mode web apps usually run with; it keeps
commits off fsync, so anything else on the machine that slows a commit shows in its latency.
"""

import os
import signal
import sqlite3
import sys
import time

started = time.time()
marker, mode = sys.argv[1], sys.argv[2]
with open(marker, "w", encoding="ascii") as handle:
    handle.write(f"{started:.6f}\n")

stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
db = sqlite3.connect(os.environ["DB_LOCAL_PATH"], isolation_level=None, timeout=30)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=NORMAL")
db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at REAL, body TEXT)")


def commit() -> tuple[float, float]:
    at = time.time()
    begin = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO events (at, body) VALUES (?, ?)", (at, "x" * 200))
    db.execute("COMMIT")
    return at, time.perf_counter() - begin


if mode == "idle":
    commit()
    while not stop:
        time.sleep(0.01)
elif mode == "commits":
    count, pace, latency_path = int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    latencies = []
    for _ in range(count):
        if stop:
            break
        latencies.append(commit())
        time.sleep(pace)
    with open(latency_path, "w", encoding="ascii") as handle:
        handle.writelines(f"{at:.6f} {value:.9f}\n" for at, value in latencies)
else:
    sys.exit(f"unknown mode {mode!r}")
db.close()

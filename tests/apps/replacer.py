"""A test app that replaces its own database file while it runs (a restore by hand, ``cp``).

argv: DB_PATH LOG_PATH GO_PATH
Commits numbered rows in WAL mode until GO_PATH exists; then closes, builds a new database
beside it (rows from 1000), moves it over DB_PATH and drops the old WAL and shared memory,
reopens it and commits a few more rows; then idles until SIGTERM. The log holds each id once
its COMMIT returned, and ``replaced`` when the new file is in place.
"""

import os
import signal
import sqlite3
import sys
import time

db_path, log_path, go_path = sys.argv[1], sys.argv[2], sys.argv[3]
stop = False


def on_term(*_):
    global stop
    stop = True


def open_db():
    db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=wal")
    db.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, pid INTEGER, body TEXT)")
    return db


def insert(db, n, log):
    db.execute("INSERT INTO rows (id, pid, body) VALUES (?, ?, ?)", (n, os.getpid(), "x" * 100))
    log.write(f"{n} {time.time():.6f}\n")


signal.signal(signal.SIGTERM, on_term)
with open(log_path, "a", buffering=1) as log:
    db = open_db()
    n = 0
    while not os.path.exists(go_path) and not stop:
        n += 1
        insert(db, n, log)
        time.sleep(0.02)
    db.close()
    fresh = db_path + ".new"
    new = sqlite3.connect(fresh, isolation_level=None)
    new.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, pid INTEGER, body TEXT)")
    new.executemany("INSERT INTO rows VALUES (?, ?, ?)",
                    [(i, os.getpid(), "new") for i in range(1000, 1005)])
    new.close()
    os.replace(fresh, db_path)
    for stale in (db_path + "-wal", db_path + "-shm"):
        if os.path.exists(stale):
            os.remove(stale)
    log.write("replaced\n")
    db = open_db()
    for n in range(1005, 1011):
        insert(db, n, log)
    while not stop:
        time.sleep(0.05)
    db.close()

"""A test app in its own process, driven line by line on stdin; it answers ``ok ...`` on stdout.

Commands: ``insert N`` (N one-row transactions), ``bulk N`` (one transaction of N rows),
``delete``, ``vacuum``, ``autocheckpoint N``, ``checkpoint MODE`` (answers busy, log,
checkpointed), ``replace PATH`` (closes, moves the database at PATH over its own file,
reopens), ``run N [PAUSE_MS]`` (inserts in the background, N rows per transaction, until
``stop``), ``stop``, ``count``, ``quit``.

argv: DB_PATH [JOURNAL_MODE]
"""

import os
import sqlite3
import sys
import threading
import time

path = sys.argv[1]
mode = sys.argv[2] if len(sys.argv) > 2 else "wal"
lock = threading.Lock()
running = threading.Event()


def connect() -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    db.execute(f"PRAGMA journal_mode={mode}")
    db.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body BLOB)")
    return db


db = connect()


def insert(count: int, per_tx: int = 1) -> None:
    for _ in range(count):
        with lock:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO rows (body) VALUES (?)",
                           [(os.urandom(300),) for _ in range(per_tx)])
            db.execute("COMMIT")


def background(per_tx: int, pause: float) -> None:
    while running.is_set():
        insert(1, per_tx)
        time.sleep(pause)


worker = None
for line in sys.stdin:
    command, *args = line.split()
    reply = ""
    if command == "insert":
        insert(int(args[0]))
    elif command == "bulk":
        insert(1, int(args[0]))
    elif command == "delete":
        with lock:
            db.execute("DELETE FROM rows WHERE id % 2 = 0")
    elif command == "vacuum":
        with lock:
            db.execute("VACUUM")
    elif command == "autocheckpoint":
        with lock:
            db.execute(f"PRAGMA wal_autocheckpoint={int(args[0])}")
    elif command == "checkpoint":
        with lock:
            # A reader's pin makes RESTART/TRUNCATE wait for the busy timeout: keep it short.
            db.execute("PRAGMA busy_timeout=100")
            row = db.execute(f"PRAGMA wal_checkpoint({args[0]})").fetchone()
            db.execute("PRAGMA busy_timeout=30000")
        reply = " ".join(map(str, row))
    elif command == "replace":
        with lock:
            db.close()
            for suffix in ("-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
            os.replace(args[0], path)
            db = connect()
    elif command == "run":
        running.set()
        pause = float(args[1]) / 1000 if len(args) > 1 else 0.0
        worker = threading.Thread(target=background, args=(int(args[0]), pause), daemon=True)
        worker.start()
    elif command == "stop":
        running.clear()
        if worker is not None:
            worker.join()
    elif command == "count":
        with lock:
            reply = str(db.execute("SELECT count(*) FROM rows").fetchone()[0])
    elif command == "quit":
        db.close()
        print("ok", flush=True)
        break
    print(f"ok {reply}".strip(), flush=True)

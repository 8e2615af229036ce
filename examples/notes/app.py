"""A small notes API on SQLite: the app wakeful runs in its demo and tests.

    POST /notes {"text": "..."}  -> 201 {"id": 1, "text": "..."}
    GET  /notes                  -> 200 [{"id": 1, "text": "..."}, ...]
    GET  /health                 -> 200 {"ok": true, "notes": N}

Run: ``python examples/notes/app.py`` (``DB_LOCAL_PATH``, ``PORT``; WAL mode like a tuned Django).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DB_PATH = os.environ.get("DB_LOCAL_PATH", "db.sqlite3")
PORT = int(os.environ.get("PORT", os.environ.get("WAKEFUL_APP_PORT", "8000")))
_local = threading.local()


def connection() -> sqlite3.Connection:
    if getattr(_local, "db", None) is None:
        db = sqlite3.connect(DB_PATH, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        _local.db = db
    return _local.db


def migrate() -> None:
    connection().execute(
        "CREATE TABLE IF NOT EXISTS notes ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT, text TEXT NOT NULL,"
        " created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
    )


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            count = connection().execute("SELECT count(*) FROM notes").fetchone()[0]
            self._send(200, {"ok": True, "notes": count})
        elif self.path == "/notes":
            rows = connection().execute("SELECT id, text FROM notes ORDER BY id").fetchall()
            self._send(200, [{"id": i, "text": t} for i, t in rows])
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/notes":
            self._send(404, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            text = str(json.loads(self.rfile.read(length) or b"{}")["text"])
        except (ValueError, KeyError, TypeError):
            self._send(400, {"error": 'body must be JSON {"text": "..."}'})
            return
        cursor = connection().execute("INSERT INTO notes (text) VALUES (?)", (text,))
        self._send(201, {"id": cursor.lastrowid, "text": text})

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"notes: {format % args}\n")


def main() -> None:
    migrate()
    host = os.environ.get("NOTES_HOST", "0.0.0.0")
    server = ThreadingHTTPServer((host, PORT), Handler)
    # SIGTERM from the agent: finish the request in hand, then exit 0.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"notes: serving on port {PORT} with {DB_PATH}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

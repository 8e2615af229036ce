"""An app that takes a while to answer: it listens only after DELAY seconds, and its /ready
path answers 503 for the first NOT_READY requests (a Django that is still warming up).

    python slow_http.py PORT DELAY [NOT_READY]
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, DELAY = int(sys.argv[1]), float(sys.argv[2])
NOT_READY = int(sys.argv[3]) if len(sys.argv) > 3 else 0
_asked = 0
_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's naming
        global _asked
        with _lock:
            _asked += 1
            warming = self.path == "/ready" and _asked <= NOT_READY
        status = 503 if warming else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(DELAY)
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()

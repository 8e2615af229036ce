"""A small HTTP app for the front door tests: it says what it received, or answers as asked.

argv: PORT (0: any free port). Prints ``listening on PORT`` once it accepts connections.

GET|POST|... /echo...        200 JSON: method, target, headers (in order), body sha256/base64
/status/CODE                 CODE with a small text body
/redirect                    302 to /elsewhere (a front door must not follow it)
/cookies                     200 with two Set-Cookie headers
/binary?size=N               N bytes of 0..255 repeated, application/octet-stream
/gzip                        a gzip-encoded JSON body (Content-Encoding: gzip)
/hang                        never answers (until the app is stopped)
/__seen                      how many requests reached the app (this one not counted)
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

seen = 0
seen_lock = threading.Lock()


class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def __getattr__(self, name: str):  # every method
        if name.startswith("do_"):
            return self.serve
        raise AttributeError(name)

    def serve(self) -> None:
        global seen
        parts = urlsplit(self.path)
        if parts.path != "/__seen":
            with seen_lock:
                seen += 1
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = parts.path
        if path == "/__seen":
            return self.send(200, json.dumps({"seen": seen}).encode(), "application/json")
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            return self.send(code, f"status {code} from the app".encode(), "text/plain")
        if path == "/redirect":
            return self.send(302, b"", None, [("Location", "/elsewhere")])
        if path == "/cookies":
            cookies = [("Set-Cookie", "session=abc; Path=/; HttpOnly"),
                       ("Set-Cookie", "theme=dark; Path=/")]
            return self.send(200, b"two cookies", "text/plain", cookies)
        if path == "/binary":
            size = int(parse_qs(parts.query).get("size", ["1024"])[0])
            data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
            return self.send(200, data, "application/octet-stream")
        if path == "/gzip":
            data = gzip.compress(json.dumps({"compressed": True}).encode())
            return self.send(200, data, "application/json", [("Content-Encoding", "gzip")])
        if path == "/hang":
            threading.Event().wait()
        answer = {
            "method": self.command,
            "target": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_b64": base64.b64encode(body).decode(),
        }
        self.send(200, json.dumps(answer).encode(), "application/json")

    def send(self, code, body, content_type, extra=()) -> None:
        self.send_response(code)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), App)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

"""The front door on loopback: each real HTTP request becomes a function URL event.

What a function URL does in AWS is done here, so the local stack runs the very handler the
Lambda runs: the request is read whole (``Content-Length`` or chunked, up to Lambda's 6 MB),
``Cookie`` headers become the event's ``cookies``, the body travels as base64, and the
handler's answer is written back with one ``Set-Cookie`` line per cookie.

    server = serve(handler, port=8080)      # started, in a thread of its own
    print(server.url)
    ...
    server.stop()

``python -m frontdoor`` serves ``frontdoor.handler.handler`` this way until SIGTERM.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import email.utils
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from frontdoor.settings import LAMBDA_PAYLOAD_LIMIT

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

LOOPBACK = "127.0.0.1"


class _BadBody(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class FrontDoorServer:
    """A loopback HTTP server in front of a function URL handler."""

    def __init__(
        self,
        handler: Handler,
        host: str = LOOPBACK,
        port: int = 0,
        max_body_bytes: int = LAMBDA_PAYLOAD_LIMIT,
    ) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self._server = ThreadingHTTPServer((host, port), _request_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host}:{self.port}"

    def start(self) -> FrontDoorServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="front-door", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting requests; those in flight finish on their own threads."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FrontDoorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    handler: Handler | None = None, host: str = LOOPBACK, port: int = 0
) -> FrontDoorServer:
    """A started server; ``handler`` defaults to the Lambda's own, built from the environment."""
    if handler is None:
        from frontdoor.handler import handler as lambda_handler

        handler = lambda_handler
    return FrontDoorServer(handler, host, port).start()


def event_for(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    client_ip: str,
    server_port: int,
    protocol: str = "HTTP/1.1",
) -> dict[str, Any]:
    """The function URL event (payload format 2.0) for one HTTP request."""
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    path, _, query = target.partition("?")
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
        elif key in merged:
            merged[key] = f"{merged[key]},{value}"
        else:
            merged[key] = value
    # This server is the edge: it says who connected and how, whatever the client claimed.
    chain = merged.get("x-forwarded-for")
    merged["x-forwarded-for"] = f"{chain}, {client_ip}" if chain else client_ip
    merged["x-forwarded-proto"] = "http"
    merged["x-forwarded-port"] = str(server_port)
    host = merged.get("host") or f"{LOOPBACK}:{server_port}"
    merged["host"] = host
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path or "/",
        "rawQueryString": query,
        "headers": merged,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "http": {
                "method": method,
                "path": path or "/",
                "protocol": protocol,
                "sourceIp": client_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": dt.datetime.fromtimestamp(now, dt.UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now * 1000),
        },
        "body": base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": True,
    }
    if cookies:
        event["cookies"] = cookies
    return event


def write_result(request: BaseHTTPRequestHandler, result: dict[str, Any]) -> None:
    """Write a function URL result as an HTTP response."""
    status = int(result.get("statusCode", 200))
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode("utf-8")
    headers = result.get("headers") or {}
    request.send_response_only(status)
    if not any(k.lower() == "date" for k in headers):
        request.send_header("Date", email.utils.formatdate(usegmt=True))
    for name, value in headers.items():
        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
            request.send_header(name, str(value))
    for cookie in result.get("cookies") or []:
        request.send_header("Set-Cookie", cookie)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    if request.command != "HEAD" and status not in (204, 304) and status >= 200:
        request.wfile.write(body)


def _request_handler(owner: FrontDoorServer) -> type[BaseHTTPRequestHandler]:
    class FrontDoorRequest(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Errors about an unreadable request line still get a status line (an HTTP/0.9
        # answer has none, and a client could not tell it from a broken connection).
        default_request_version = "HTTP/1.1"
        server_version = "wakeful-front-door"

        def __getattr__(self, name: str) -> Any:
            # Every method goes to the handler, as at a function URL (PROPFIND included).
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def _serve(self) -> None:
            try:
                body = self._read_body()
            except _BadBody as exc:
                self.close_connection = True
                self.send_error(exc.status, exc.reason)
                return
            event = event_for(
                self.command, self.path, list(self.headers.items()), body,
                self.client_address[0], owner.port, self.request_version,
            )
            try:
                result = owner.handler(event, None)
            except Exception as exc:  # the handler never raises; if it did, say so
                self.close_connection = True
                self.send_error(500, "front door handler failed", f"{type(exc).__name__}")
                return
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                write_result(self, result)

        def _read_body(self) -> bytes:
            encoding = (self.headers.get("Transfer-Encoding") or "").strip().lower()
            if encoding:
                if encoding != "chunked":
                    raise _BadBody(501, f"transfer-encoding {encoding} is not supported")
                return self._read_chunked()
            raw = self.headers.get("Content-Length")
            if raw is None:
                return b""
            if not raw.strip().isdigit():
                raise _BadBody(400, "invalid Content-Length")
            length = int(raw)
            if length > owner.max_body_bytes:
                raise _BadBody(413, f"the body is larger than {owner.max_body_bytes} bytes")
            body = self.rfile.read(length)
            if len(body) != length:
                raise _BadBody(400, "the body is shorter than its Content-Length")
            return body

        def _read_chunked(self) -> bytes:
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(1026)
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise _BadBody(400, "invalid chunked body") from None
                if size == 0:
                    break
                total += size
                if total > owner.max_body_bytes:
                    raise _BadBody(413, f"the body is larger than {owner.max_body_bytes} bytes")
                chunk = self.rfile.read(size)
                if len(chunk) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    raise _BadBody(400, "invalid chunked body")
                chunks.append(chunk)
            while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers: nothing to forward them to
            return b"".join(chunks)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the handler logs what matters

    return FrontDoorRequest


__all__ = ["FrontDoorServer", "event_for", "serve", "write_result"]

"""An HTTP proxy between boto3 and moto that injects the faults a network edge really has.

Point one service at it (``AWS_ENDPOINT_URL_S3=proxy.url`` or ``AWS_ENDPOINT_URL_DYNAMODB``), or
everything (``AWS_ENDPOINT_URL``). Each request is matched against the installed faults, first
match wins; unmatched requests pass through untouched. Faults:

- ``hang``: accept the request and never answer (a black hole) until ``heal``/``close``.
- ``delay``: forward, then hold the answer for some seconds.
- ``lose_answer``: forward (the write lands), then drop the connection without answering.
- ``fail``: answer an error status with the service's error body, without forwarding.
- ``hold``: keep the request unforwarded until ``release``, then forward and answer it (a
  sender paused with its request in flight).

A fault is limited by a count of requests, a duration, or both, and can be removed. Every request
is logged in ``requests`` so a test can assert, say, that no LIST was sent.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    }
)
_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


@dataclass(frozen=True)
class Request:
    """What a fault matches on."""

    method: str
    path: str
    service: str  # from the SigV4 credential scope: "s3", "dynamodb", "ecs", …
    target: str  # X-Amz-Target without its version prefix, e.g. "UpdateItem"; "" for S3
    headers: dict[str, str]
    at: float

    @property
    def query(self) -> str:
        return urlsplit(self.path).query

    @property
    def is_list(self) -> bool:
        """An S3 LIST of objects or versions: a GET on a bucket, not a key, not a config read."""
        if self.service != "s3" or self.method != "GET":
            return False
        parts = urlsplit(self.path)
        if parts.path.strip("/").count("/"):
            return False  # a key
        names = {item.partition("=")[0] for item in parts.query.split("&") if item}
        return not names or bool(names & _LIST_PARAMETERS)


_LIST_PARAMETERS = frozenset({"list-type", "versions", "prefix", "delimiter", "marker", "uploads"})


Matcher = Callable[[Request], bool]


def anything(_request: Request) -> bool:
    return True


def service(name: str, target: str | None = None, method: str | None = None) -> Matcher:
    """Match one service, optionally one DynamoDB target (``"UpdateItem"``) or HTTP method."""

    def match(request: Request) -> bool:
        return (
            request.service == name
            and (target is None or request.target == target)
            and (method is None or request.method == method)
        )

    return match


def s3_put(key_contains: str = "") -> Matcher:
    """An S3 PUT whose path contains ``key_contains`` (object writes, parts, copies)."""

    def match(request: Request) -> bool:
        return request.service == "s3" and request.method == "PUT" and key_contains in request.path

    return match


@dataclass
class Fault:
    kind: str
    match: Matcher
    remaining: int | None = None  # requests still to hit; None = unlimited
    until: float | None = None  # monotonic end; None = until removed
    seconds: float = 0.0  # for delay
    status: int = 503
    code: str | None = None  # for fail: the error code in the body; None = one for the status
    hits: int = 0
    answered: int = 0  # requests it matched that were forwarded and answered
    released: threading.Event = field(default_factory=threading.Event)  # for hold

    def active(self, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        return self.remaining is None or self.remaining > 0


@dataclass
class _State:
    faults: list[Fault] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    healed: threading.Event = field(default_factory=threading.Event)


class FaultProxy:
    """A threaded HTTP/1.1 proxy on loopback in front of ``target`` (e.g. the moto server)."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._state = _State()
        handler = _handler(self._target, self._state)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # -- faults ----------------------------------------------------------------------------

    def hang(
        self, match: Matcher = anything, *, count: int | None = None, seconds: float | None = None
    ) -> Fault:
        """Answer nothing to matching requests (the connection stays open)."""
        return self._add(Fault("hang", match, count, self._until(seconds)))

    def delay(
        self,
        delay: float,
        match: Matcher = anything,
        *,
        count: int | None = None,
        seconds: float | None = None,
    ) -> Fault:
        """Forward matching requests, then hold each answer ``delay`` seconds."""
        return self._add(Fault("delay", match, count, self._until(seconds), seconds=delay))

    def lose_answer(
        self, match: Matcher = anything, *, count: int | None = 1, seconds: float | None = None
    ) -> Fault:
        """Forward matching requests (they take effect), then drop the connection unanswered."""
        return self._add(Fault("lose", match, count, self._until(seconds)))

    def fail(
        self,
        status: int = 503,
        match: Matcher = anything,
        *,
        count: int | None = None,
        seconds: float | None = None,
        code: str | None = None,
    ) -> Fault:
        """Answer matching requests with ``status`` and the service's error body (``code``,
        e.g. ``"ConditionalRequestConflict"``, or a usual one for the status)."""
        return self._add(
            Fault("fail", match, count, self._until(seconds), status=status, code=code)
        )

    def hold(self, match: Matcher = anything, *, count: int | None = 1) -> Fault:
        """Keep matching requests unforwarded until ``release(fault)``; then they go through."""
        return self._add(Fault("hold", match, count, None))

    def release(self, fault: Fault) -> None:
        """Forward the requests ``fault`` holds (and let later matches through at once)."""
        fault.released.set()

    def remove(self, fault: Fault) -> None:
        with self._state.lock:
            if fault in self._state.faults:
                self._state.faults.remove(fault)

    def heal(self) -> None:
        """Remove every fault and let hanging requests go (their connections are dropped;
        held ones are forwarded)."""
        with self._state.lock:
            for fault in self._state.faults:
                fault.released.set()
            self._state.faults.clear()
            self._state.healed.set()
            self._state.healed = threading.Event()

    # -- observation -----------------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        with self._state.lock:
            return list(self._state.requests)

    def clear_log(self) -> None:
        with self._state.lock:
            self._state.requests.clear()

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self.heal()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _add(self, fault: Fault) -> Fault:
        with self._state.lock:
            self._state.faults.append(fault)
        return fault

    @staticmethod
    def _until(seconds: float | None) -> float | None:
        return None if seconds is None else time.monotonic() + seconds


@contextlib.contextmanager
def fault_proxy(target_url: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(target_url)
    try:
        yield proxy
    finally:
        proxy.close()


def _handler(target: tuple[str, int], state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:  # quiet: tests read ``requests``
            pass

        def do_GET(self) -> None:
            self._proxy()

        do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_GET

        def _proxy(self) -> None:
            body = self._read_body()
            request = self._describe()
            fault = self._claim(request)
            if fault is not None and fault.kind == "hang":
                # Held until healed or the proxy closes; then dropped, never answered.
                state.healed.wait()
                self.close_connection = True
                return
            if fault is not None and fault.kind == "fail":
                self._answer_error(request, fault.status, fault.code)
                return
            if fault is not None and fault.kind == "hold":
                fault.released.wait()
            status, headers, payload = self._forward(body)
            if fault is not None and fault.kind == "lose":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            if fault is not None and fault.kind == "delay":
                state.healed.wait(fault.seconds)
            self._answer(status, headers, payload)
            if fault is not None:
                with state.lock:
                    fault.answered += 1

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked_raw()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _read_chunked_raw(self) -> bytes:
            """The chunked body as sent (framing kept), forwarded with the same header."""
            raw = bytearray()
            while True:
                line = self.rfile.readline()
                raw += line
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers, then the blank line
                        trailer = self.rfile.readline()
                        raw += trailer
                        if trailer in (b"\r\n", b"\n", b""):
                            return bytes(raw)
                raw += self.rfile.read(size + 2)

        def _describe(self) -> Request:
            auth = self.headers.get("Authorization", "")
            scope = _SCOPE.search(auth)
            amz_target = self.headers.get("X-Amz-Target", "")
            return Request(
                method=self.command,
                path=self.path,
                service=scope.group(1) if scope else "",
                target=amz_target.rpartition(".")[2],
                headers={k: v for k, v in self.headers.items()},
                at=time.monotonic(),
            )

        def _claim(self, request: Request) -> Fault | None:
            now = time.monotonic()
            with state.lock:
                state.requests.append(request)
                for fault in state.faults:
                    if fault.active(now) and fault.match(request):
                        fault.hits += 1
                        if fault.remaining is not None:
                            fault.remaining -= 1
                        return fault
            return None

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            upstream = http.client.HTTPConnection(*target, timeout=300)
            try:
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("connection", "keep-alive", "proxy-connection")
                }
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                # A HEAD answer has no body: its Content-Length is the object's, kept as is.
                kept = [
                    (k, v)
                    for k, v in response.getheaders()
                    if k.lower() not in HOP_BY_HOP
                    and (k.lower() != "content-length" or self.command == "HEAD")
                ]
                return response.status, kept, payload
            finally:
                upstream.close()

        def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            if not any(key.lower() == "content-length" for key, _ in headers):
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _answer_error(self, request: Request, status: int, code: str | None) -> None:
            if request.service == "s3" or not request.target:
                code = code or {503: "SlowDown", 500: "InternalError"}.get(
                    status, f"Status{status}"
                )
                payload = (
                    f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                    "<Message>injected by the fault proxy</Message></Error>"
                ).encode()
                kind = "application/xml"
            else:
                code = code or ("ThrottlingException" if status == 400 else "ServiceUnavailable")
                payload = json.dumps(
                    {
                        "__type": f"com.amazonaws.dynamodb.v20120810#{code}",
                        "message": "injected by the fault proxy",
                    }
                ).encode()
                kind = "application/x-amz-json-1.0"
            self._answer(status, [("Content-Type", kind)], payload)

    return Handler


__all__ = [
    "Fault",
    "FaultProxy",
    "Request",
    "anything",
    "fault_proxy",
    "s3_put",
    "service",
]

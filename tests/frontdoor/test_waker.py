"""The wake through a control plane's HTTP API (the local stack's front door uses it): the key
is sent, the API's answer is the wake's answer, and an unreachable or refusing API is a clear
503, never a request held for nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from frontdoor.door import FrontDoor
from frontdoor.settings import FrontDoorSettings
from frontdoor.upstream import HttpTransport
from frontdoor.waker import ApiWaker
from tests.frontdoor.conftest import Log, RecordingMetrics, json_of, url_event
from tests.moto_server import free_port


class Api:
    """An HTTP server answering ``POST /wake`` with a chosen status and body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body
        self.seen: list[tuple[str, str, str | None]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                api.seen.append((self.command, self.path, self.headers.get("x-api-key")))
                data = json.dumps(api.body).encode()
                self.send_response(api.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Retry-After", "7")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api(202, {"state": "starting", "reservation_id": "r-1"})
    yield server
    server.close()


def test_the_key_is_sent_and_the_answer_returned(api):
    reply = ApiWaker(api.url + "/", "secret")()
    assert (reply.status, reply.body["state"]) == (202, "starting")
    assert reply.headers["Retry-After"] == "7"
    assert api.seen == [("POST", "/wake", "secret")]


def test_an_unreachable_api_is_a_503_reply():
    reply = ApiWaker(f"http://127.0.0.1:{free_port()}", "k")()
    assert reply.status == 503 and reply.body["error"] == "control plane unreachable"


def test_a_refused_wake_is_a_503_at_once_with_an_error_log(table):
    api = Api(403, {"message": "Forbidden"})
    try:
        log = Log()
        door = FrontDoor(FrontDoorSettings(), table, ApiWaker(api.url, "wrong"), HttpTransport(),
                         log, RecordingMetrics(), sleep=_no_sleep)
        result = door.handle(url_event("GET", "/"))
        assert result["statusCode"] == 503
        assert "could not be started" in json_of(result)["message"]
        assert [m for m, _ in log.at("ERROR")] == ["The wake failed"]
        assert len(api.seen) == 1  # asked once, not again and again while holding
    finally:
        api.close()


def _no_sleep(seconds: float) -> None:
    raise AssertionError("a refused wake must not hold the request")

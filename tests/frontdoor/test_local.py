"""``frontdoor.local``: real HTTP on loopback, turned into function URL events for the same
handler, and ``python -m frontdoor`` as the local stack will run it."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from frontdoor.local import FrontDoorServer, serve
from tests.conftest import ROOT
from tests.frontdoor.conftest import Agent, control_env

TASK = "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/running"


@pytest.fixture
def front(door, table, app) -> Iterator[FrontDoorServer]:
    Agent(table, TASK).acquire().running_at(app.url)
    server = serve(door)
    try:
        yield server
    finally:
        server.stop()


def connect(front: FrontDoorServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", front.port, timeout=30)


def raw(front: FrontDoorServer, data: bytes) -> tuple[int, bytes]:
    """Send bytes as they are; the status line and body of the answer."""
    with socket.create_connection(("127.0.0.1", front.port), timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer


def test_binary_post_and_several_set_cookie_lines_on_the_wire(front):
    conn = connect(front)
    upload = bytes(range(256)) * 1000
    conn.request("POST", "/echo/up?x=1", body=upload,
                 headers={"Content-Type": "application/octet-stream",
                          "Cookie": "a=1; b=2"})
    answer = conn.getresponse()
    seen = json.loads(answer.read())
    assert answer.status == 200
    assert seen["body_sha256"] == hashlib.sha256(upload).hexdigest()
    assert seen["target"] == "/echo/up?x=1"
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert headers["cookie"] == "a=1; b=2"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["host"] == f"127.0.0.1:{front.port}"
    # Same connection, next request (keep-alive), and two Set-Cookie lines come back.
    conn.request("GET", "/cookies")
    answer = conn.getresponse()
    assert answer.read() == b"two cookies"
    cookies = [v for k, v in answer.getheaders() if k.lower() == "set-cookie"]
    assert cookies == ["session=abc; Path=/; HttpOnly", "theme=dark; Path=/"]
    conn.close()


def test_chunked_upload_head_and_redirect(front, app):
    conn = connect(front)
    conn.request("PUT", "/echo/chunked", body=iter([b"hello ", b"chunked ", b"world"]),
                 encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    answer = conn.getresponse()
    assert json.loads(answer.read())["body_b64"] == "aGVsbG8gY2h1bmtlZCB3b3JsZA=="
    conn.request("HEAD", "/echo")
    answer = conn.getresponse()
    assert answer.status == 200 and answer.read() == b""
    conn.request("GET", "/redirect")
    answer = conn.getresponse()
    assert (answer.status, answer.getheader("Location")) == (302, "/elsewhere")
    answer.read()
    conn.close()


MALFORMED_WIRE = {
    "bad percent-encoding": (b"GET /notes/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "bad percent-encoding in the query": (b"GET /?q=%G1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "a header line over 64 KiB": (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    "headers adding up over 32 KiB": (
        b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 1000) for i in range(40)) + b"\r\n", 431),
    "more than 100 headers": (
        b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431),
    "a request line over 64 KiB": (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
    "not HTTP": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    "an invalid Content-Length": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n", 400),
    "a broken chunked body": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    "a body over 6 MB": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 7000000\r\n\r\n", 413),
}


@pytest.mark.parametrize("name", sorted(MALFORMED_WIRE))
def test_malformed_requests_on_the_wire_are_4xx(name, front, app):
    before = app.seen()
    data, status = MALFORMED_WIRE[name]
    got, answer = raw(front, data)
    assert got == status, (name, answer[:300])
    assert app.seen() == before


def test_python_m_frontdoor_serves_until_sigterm(resources, table, app, tmp_path):
    Agent(table, TASK).acquire().running_at(app.url)
    env = {**control_env(resources.url), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "WAKEFUL_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "-m", "frontdoor", "--port", "0"], cwd=str(tmp_path), env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("export WAKEFUL_FRONT_DOOR_URL=http://127.0.0.1:"), (
            line, process.stderr.read() if process.poll() is not None else "")
        url = line.strip().split("=", 1)[1]
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
        conn.request("GET", "/echo/through-the-cli")
        answer = conn.getresponse()
        assert answer.status == 200
        assert json.loads(answer.read())["target"] == "/echo/through-the-cli"
        conn.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_python_m_frontdoor_names_a_bad_setting_and_exits_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAKEFUL_", "DB_"))}
    env.update({"PYTHONPATH": str(ROOT), "WAKEFUL_FRONT_DOOR_HOLD": "soon"})
    result = subprocess.run(
        [sys.executable, "-m", "frontdoor"], cwd=str(tmp_path), env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "frontdoor: configuration error: WAKEFUL_FRONT_DOOR_HOLD: must be a number of "
        "seconds, got 'soon'"
    )
    assert result.stdout == ""

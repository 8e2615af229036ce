"""``wakeful --auth iam``: requests to an IAM-protected API are signed with SigV4.

The API here is a small local HTTP server that checks each request's signature the way API
Gateway does: it recomputes it with botocore from the headers the client says it signed and
the credentials it knows, and answers 403 when they differ or when there is none.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.cli.conftest import run_script

ACCESS_KEY = "AKIDOPERATOR"
SECRET_KEY = "operator-secret"
SESSION_TOKEN = "operator-session"
REGION = "eu-west-1"

AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[^,]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass
class Verdicts:
    """What the server decided for each request: (method, path, ok, why)."""

    seen: list[tuple[str, str, bool, str]] = field(default_factory=list)


def check_signature(method: str, url: str, headers: dict[str, str], body: bytes) -> str | None:
    """Why the request is not signed by ``ACCESS_KEY`` for execute-api, or ``None`` if it is."""
    header = headers.get("authorization")
    if not header:
        return "Missing Authentication Token"
    match = AUTHORIZATION.match(header)
    if not match:
        return f"malformed Authorization header {header!r}"
    if match["key"] != ACCESS_KEY:
        return f"unknown access key {match['key']}"
    if match["service"] != "execute-api" or match["region"] != REGION:
        return f"signed for {match['service']} in {match['region']}"
    if headers.get("x-amz-security-token") != SESSION_TOKEN:
        return "missing or wrong session token"
    signed = match["signed"].split(";")
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: headers[name] for name in signed if name in headers})
    request.context["timestamp"] = headers.get("x-amz-date", "")
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN), "execute-api",
                       REGION)
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    if expected != match["signature"]:
        return "The request signature we calculated does not match the signature you provided"
    return None


@pytest.fixture
def iam_api() -> Iterator[tuple[str, Verdicts]]:
    verdicts = Verdicts()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            url = f"http://{headers['host']}{self.path}"
            problem = check_signature(self.command, url, headers, body)
            verdicts.seen.append((self.command, self.path, problem is None, problem or ""))
            if problem:
                self._answer(403, {"message": problem})
            elif self.path.endswith("/sleep"):
                self._answer(200, {"state": "asleep"})
            else:
                self._answer(200, {"state": "asleep", "lease": {"state": "FREE", "token": 4}})

        do_GET = _handle
        do_POST = _handle

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api", verdicts
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def operator(store_env: dict[str, str], iam_api: tuple[str, Verdicts]) -> dict[str, str]:
    url, _ = iam_api
    return {**store_env, "WAKEFUL_API_URL": url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_SESSION_TOKEN": SESSION_TOKEN,
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}


def test_auth_iam_signs_every_request_with_sigv4(operator, iam_api):
    _, verdicts = iam_api
    status = run_script(operator, "--auth", "iam", "status", "--json")
    assert status.code == 0, status.err
    assert json.loads(status.out)["lease"] == {"state": "FREE", "token": 4}
    asleep = run_script({**operator, "WAKEFUL_AUTH": "iam"}, "sleep")
    assert asleep.code == 0, asleep.err
    assert asleep.out == "asleep\n"
    assert verdicts.seen == [("GET", "/api/status", True, ""), ("POST", "/api/sleep", True, "")]


def test_an_unsigned_request_is_refused_with_advice(operator, iam_api):
    _, verdicts = iam_api
    result = run_script(operator, "status")
    assert result.code == 1
    assert "HTTP 403: Missing Authentication Token" in result.err
    assert "--auth iam" in result.err
    assert verdicts.seen == [("GET", "/api/status", False, "Missing Authentication Token")]


def test_credentials_the_api_does_not_know_are_refused(operator, iam_api):
    _, verdicts = iam_api
    result = run_script({**operator, "AWS_SECRET_ACCESS_KEY": "not-the-secret"},
                        "--auth", "iam", "status")
    assert result.code == 1
    assert "signature we calculated does not match" in result.err
    assert [ok for _, _, ok, _ in verdicts.seen] == [False]


def test_an_unknown_auth_mode_is_a_usage_error(operator):
    result = run_script(operator, "--auth", "kerberos", "status")
    assert result.code == 2
    assert "invalid choice: 'kerberos'" in result.err
    bad_env = run_script({**operator, "WAKEFUL_AUTH": "kerberos"}, "status")
    assert bad_env.code == 2
    assert "WAKEFUL_AUTH" in bad_env.err and "api_key" in bad_env.err and "iam" in bad_env.err

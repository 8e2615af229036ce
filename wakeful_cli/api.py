"""A small client for the control plane's HTTP API: POST /wake, GET /status, POST /sleep."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import WakefulError

API_KEY_HEADER = "x-api-key"

# ``sign(method, url, headers, body)`` -> the headers to send (SigV4 for ``--auth iam``).
Signer = Callable[[str, str, Mapping[str, str], bytes | None], dict[str, str]]

# What to check when the API says no, by how the request was authorised.
AUTH_HINTS = {
    "api_key": "check WAKEFUL_API_KEY / --api-key; an IAM-protected API needs --auth iam",
    "iam": "check the AWS credentials (--profile) and that they may invoke this API",
}


class ApiError(WakefulError):
    """The API could not be reached, or answered something that is not JSON."""

    retryable = True


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    auth: str = "api_key"

    @property
    def reason(self) -> str:
        """What the API said went wrong, in one line."""
        parts = [str(self.body.get(k)) for k in ("error", "reason", "message") if self.body.get(k)]
        return ": ".join(parts) or f"HTTP {self.status}"

    def failure(self, what: str) -> str:
        """``wake failed with HTTP 403: ... (check WAKEFUL_API_KEY / --api-key; ...)``."""
        hint = ""
        if self.status in (401, 403):
            hint = f" ({AUTH_HINTS[self.auth]})"
        retry = self.headers.get("Retry-After") or self.headers.get("retry-after")
        if retry:
            hint += f"; retry after {retry}s"
        return f"{what} failed with HTTP {self.status}: {self.reason}{hint}"


class ControlPlaneApi:
    def __init__(
        self, url: str, api_key: str | None, timeout: float = 30.0, sign: Signer | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.sign = sign
        self.auth = "iam" if sign is not None else "api_key"

    def wake(self) -> Answer:
        return self._call("POST", "/wake")

    def sleep(self) -> Answer:
        return self._call("POST", "/sleep")

    def status(self) -> Answer:
        return self._call("GET", "/status")

    def _call(self, method: str, path: str) -> Answer:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers[API_KEY_HEADER] = self.api_key
        data = None
        if method == "POST":
            data = b"{}"
            headers["Content-Type"] = "application/json"
        url = self.url + path
        if self.sign is not None:
            headers = self.sign(method, url, headers, data)
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return _answer(response.status, response.read(), dict(response.headers),
                               self.auth)
        except urllib.error.HTTPError as exc:
            # 4xx/5xx still carry the API's JSON explanation.
            return _answer(exc.code, exc.read(), dict(exc.headers or {}), self.auth)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach the control plane at {self.url}: {reason}") from exc


def _answer(status: int, raw: bytes, headers: dict[str, str], auth: str) -> Answer:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        text = raw[:200].decode("utf-8", "replace").strip()
        raise ApiError(f"the control plane answered HTTP {status} without JSON: {text}") from None
    if not isinstance(body, dict):
        body = {"value": body}
    return Answer(status, body, headers, auth)

"""A wake through a control plane's HTTP API, for a front door outside the control plane.

The Lambda never uses this: it wakes in-process (``ControlPlane.wake``). The local stack
does, because its tasks are processes of the ``chalice local`` that started them: a front
door with a launcher of its own would start tasks that control plane cannot stop.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from chalicelib.plane.reply import RETRY_UNAVAILABLE, Reply, retry_after

# What the API answered, in the shape the in-process wake answers.
ApiReply = Reply


class ApiWaker:
    """``POST {api_url}/wake`` with the API key; a 503 reply when it cannot be reached."""

    def __init__(self, api_url: str, api_key: str | None = None, timeout: float = 10.0) -> None:
        self.url = api_url.rstrip("/") + "/wake"
        self.api_key = api_key
        self.timeout = timeout

    def __call__(self) -> ApiReply:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        request = urllib.request.Request(self.url, data=b"{}", method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return ApiReply(response.status, _json(response.read()), dict(response.headers))
        except urllib.error.HTTPError as error:
            return ApiReply(error.code, _json(error.read()), dict(error.headers))
        except (OSError, ValueError) as exc:
            return ApiReply(503, {"error": "control plane unreachable", "reason": str(exc)},
                            retry_after(RETRY_UNAVAILABLE))


def _json(raw: bytes) -> Mapping[str, Any]:
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {"error": raw[:200].decode(errors="replace")}
    return body if isinstance(body, dict) else {"body": body}

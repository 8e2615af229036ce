"""Function URL events (payload format 2.0) in and out: a checked ``Request``, a ``Response``.

Everything a client sent is checked here, before anything is forwarded: a request the app
could not be sent (bad percent-encoding, a header with a line break, too many header bytes,
a body that is not the base64 it claims to be) is a ``BadRequest`` with a 4xx status.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

# RFC 9110 token: what a method or a header name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# A '%' must start a percent-encoded octet.
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters left as they are in a path or a query; anything else (a space, non-ASCII text
# an edge decoded for us) is percent-encoded, as the client would have had to send it.
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_MAX_TARGET = 16 * 1024

TEXT_TYPES = (
    "application/json",
    "application/javascript",
    "application/xml",
    "application/x-www-form-urlencoded",
    "image/svg+xml",
)


class BadRequest(Exception):
    """The request cannot be forwarded; ``status`` is the 4xx to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Request:
    """A client's request, checked, as the front door received it."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    cookies: tuple[str, ...]
    body: bytes
    source_ip: str | None = None
    request_id: str | None = None

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclass(frozen=True)
class Response:
    """An answer for the client; ``headers`` may repeat a name (``Set-Cookie``)."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


# -- in ----------------------------------------------------------------------------------


def parse_event(event: Any, max_header_bytes: int, max_body_bytes: int) -> Request:
    """The function URL event as a ``Request``; ``BadRequest`` when it cannot be forwarded."""
    if not isinstance(event, Mapping):
        raise BadRequest(400, "not a function URL event")
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, Mapping) else None
    if not isinstance(http, Mapping):
        raise BadRequest(400, "not a function URL event (no requestContext.http)")
    method = _method(http.get("method"))
    path = clean_path(_string(event.get("rawPath"), "rawPath") or "/")
    query = clean_query(_string(event.get("rawQueryString"), "rawQueryString"))
    if len(path) + len(query) > _MAX_TARGET:
        raise BadRequest(414, f"the URL is longer than {_MAX_TARGET} bytes")
    headers = _headers(event.get("headers"))
    cookies = _cookies(event.get("cookies"))
    size = sum(len(k) + len(v) + 4 for k, v in headers) + sum(len(c) + 2 for c in cookies)
    if size > max_header_bytes:
        raise BadRequest(431, f"the request headers are larger than {max_header_bytes} bytes")
    body = _body(event.get("body"), event.get("isBase64Encoded"))
    if len(body) > max_body_bytes:
        raise BadRequest(413, f"the request body is larger than {max_body_bytes} bytes")
    source_ip = http.get("sourceIp")
    request_id = context.get("requestId") if isinstance(context, Mapping) else None
    return Request(
        method=method,
        path=path,
        query=query,
        headers=headers,
        cookies=cookies,
        body=body,
        source_ip=source_ip if isinstance(source_ip, str) and source_ip else None,
        request_id=request_id if isinstance(request_id, str) else None,
    )


def clean_path(raw: str) -> str:
    """The path to send upstream: '%' escapes checked, unsafe characters encoded."""
    if not raw.startswith("/"):
        raise BadRequest(400, "the path must start with '/'")
    return _clean(raw, _PATH_SAFE, "path")


def clean_query(raw: str) -> str:
    return _clean(raw, _QUERY_SAFE, "query string") if raw else ""


def _clean(raw: str, safe: str, what: str) -> str:
    if _CONTROL.search(raw):
        raise BadRequest(400, f"the {what} contains a control character")
    if _BAD_PERCENT.search(raw):
        raise BadRequest(400, f"the {what} has a '%' that is not a percent-encoded byte")
    try:
        return quote(raw, safe=safe, encoding="utf-8", errors="strict")
    except UnicodeEncodeError:
        raise BadRequest(400, f"the {what} is not valid text") from None


def _method(value: Any) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value) or len(value) > 32:
        raise BadRequest(400, "the request method is not a valid HTTP method")
    return value.upper()


def _string(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(400, f"{field} must be a string")
    return value


def _headers(raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise BadRequest(400, "headers must be an object")
    headers = []
    for name, value in raw.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise BadRequest(400, f"invalid header name {str(name)[:40]!r}")
        if not isinstance(value, str):
            raise BadRequest(400, f"header {name} must be a string")
        check_header_value(name, value)
        headers.append((name.lower(), value))
    return tuple(headers)


def check_header_value(name: str, value: str) -> None:
    # A line break would let a client smuggle a header (or a whole request) to the app.
    if "\r" in value or "\n" in value or "\x00" in value:
        raise BadRequest(400, f"header {name} contains a line break or a NUL byte")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(400, f"header {name} is not valid text") from None


def _cookies(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise BadRequest(400, "cookies must be a list of strings")
    for cookie in raw:
        check_header_value("cookie", cookie)
    return tuple(raw)


def _body(raw: Any, is_base64: Any) -> bytes:
    if raw is None or raw == "":
        return b""
    if not isinstance(raw, str):
        raise BadRequest(400, "body must be a string")
    if is_base64:
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(400, "the body is not valid base64") from None
    try:
        return raw.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(400, "the body is not valid text") from None


# -- out ---------------------------------------------------------------------------------


def is_text(content_type: str | None, content_encoding: str | None) -> bool:
    """Whether a body can travel as a JSON string as it is (else it is base64)."""
    if content_encoding and content_encoding.strip().lower() not in ("", "identity"):
        return False
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        media.startswith("text/")
        or media in TEXT_TYPES
        or media.endswith("+json")
        or media.endswith("+xml")
    )


def to_result(response: Response) -> dict[str, Any]:
    """The function URL's answer: several ``Set-Cookie`` go to ``cookies``, one per cookie."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in response.headers:
        key = name.lower()
        if key == "set-cookie":
            cookies.append(value)
        elif key in headers:
            headers[key] = f"{headers[key]}, {value}"
        else:
            headers[key] = value
    result: dict[str, Any] = {"statusCode": response.status, "headers": headers}
    if cookies:
        result["cookies"] = cookies
    body = response.body
    text = None
    if is_text(headers.get("content-type"), headers.get("content-encoding")):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    if text is not None:
        result["body"] = text
        result["isBase64Encoded"] = False
    else:
        result["body"] = base64.b64encode(body).decode("ascii")
        result["isBase64Encoded"] = True
    return result


def result_size(result: Mapping[str, Any]) -> int:
    """The payload's size as Lambda counts it (its JSON)."""
    return len(json.dumps(result, separators=(",", ":")))

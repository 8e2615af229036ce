"""The hop to the app: which headers pass, and an HTTP transport with typed failures.

Headers that describe one connection (hop-by-hop, RFC 9110 section 7.6.1) stop here in both
directions. The app sees the public host as ``Host`` (its own address changes on every wake,
so an ``ALLOWED_HOSTS`` can only name the public one), and ``X-Forwarded-*`` say where the
request came from. Redirects are answers like any other: never followed.
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from frontdoor.messages import Request, Response

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by the front door itself (the length of the body it sends, where the request came
# from), or already dealt with by the edge (``Expect: 100-continue``).
_REPLACED = frozenset(
    {
        "host",
        "content-length",
        "cookie",
        "expect",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
    }
)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class UpstreamError(Exception):
    """The app did not give an answer."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"{endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


class Unreachable(UpstreamError):
    """No connection to the app: nothing was sent, so trying elsewhere is safe."""


class UpstreamTimeout(UpstreamError):
    """The app took the request but did not answer in time."""


class UpstreamBroken(UpstreamError):
    """The connection broke or the app's answer was not valid HTTP."""


class ResponseTooLarge(UpstreamError):
    """The app's answer is larger than the front door can carry."""


def connection_tokens(value: str | None) -> set[str]:
    """Header names a ``Connection`` header declares hop-by-hop."""
    return {token.strip().lower() for token in (value or "").split(",") if token.strip()}


def upstream_headers(request: Request) -> list[tuple[str, str]]:
    """The request's headers as the app receives them."""
    dropped = HOP_BY_HOP | _REPLACED | connection_tokens(request.header("connection"))
    headers = [(k, v) for k, v in request.headers if k not in dropped]
    host = request.header("host")
    if host:
        headers.append(("host", host))
        headers.append(("x-forwarded-host", host))
    chain = request.header("x-forwarded-for")
    if request.source_ip and (
        not chain or chain.rsplit(",", 1)[-1].strip() != request.source_ip
    ):
        chain = f"{chain}, {request.source_ip}" if chain else request.source_ip
    if chain:
        headers.append(("x-forwarded-for", chain))
    proto = (request.header("x-forwarded-proto") or "https").strip().lower()
    headers.append(("x-forwarded-proto", proto if proto in ("http", "https") else "https"))
    port = request.header("x-forwarded-port")
    if port and port.strip().isdigit():
        headers.append(("x-forwarded-port", port.strip()))
    if request.cookies:
        headers.append(("cookie", "; ".join(request.cookies)))
    if request.body or request.method in _BODY_METHODS:
        headers.append(("content-length", str(len(request.body))))
    return headers


def downstream_headers(pairs: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The app's response headers as the client receives them (several ``Set-Cookie`` kept)."""
    named = set()
    for name, value in pairs:
        if name.lower() == "connection":
            named |= connection_tokens(value)
    dropped = HOP_BY_HOP | named | {"content-length"}
    return tuple((name, value) for name, value in pairs if name.lower() not in dropped)


@dataclass(frozen=True)
class Budget:
    """How long one forward may take."""

    connect: float
    answer: float
    max_body: int


class Transport(Protocol):
    def send(self, endpoint: str, request: Request, budget: Budget) -> Response:
        """The app's answer; an ``UpstreamError`` when there is none."""
        ...


class HttpTransport:
    """One HTTP/1.1 connection per request, to a plain ``http://host:port`` endpoint."""

    def send(self, endpoint: str, request: Request, budget: Budget) -> Response:
        host, port = _address(endpoint)
        connection = http.client.HTTPConnection(host, port, timeout=budget.connect)
        try:
            try:
                connection.connect()
            except OSError as exc:
                raise Unreachable(endpoint, _reason(exc)) from exc
            assert connection.sock is not None
            connection.sock.settimeout(budget.answer)
            return self._exchange(connection, endpoint, request, budget)
        finally:
            connection.close()

    def _exchange(
        self,
        connection: http.client.HTTPConnection,
        endpoint: str,
        request: Request,
        budget: Budget,
    ) -> Response:
        try:
            connection.putrequest(
                request.method, request.target, skip_host=True, skip_accept_encoding=True
            )
            for name, value in upstream_headers(request):
                connection.putheader(name, _octets(value))
            connection.endheaders(request.body or None)
            answer = connection.getresponse()
            body = answer.read(budget.max_body + 1)
        except TimeoutError as exc:
            raise UpstreamTimeout(endpoint, f"no answer within {budget.answer:.1f} s") from exc
        except (http.client.HTTPException, OSError) as exc:
            raise UpstreamBroken(endpoint, _reason(exc)) from exc
        if len(body) > budget.max_body:
            raise ResponseTooLarge(endpoint, f"the answer is larger than {budget.max_body} bytes")
        return Response(answer.status, downstream_headers(answer.getheaders()), body)


def _address(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    if parts.scheme != "http" or not parts.hostname:
        raise Unreachable(endpoint, "the endpoint is not an http://host:port address")
    try:
        port = parts.port or 80
    except ValueError:
        raise Unreachable(endpoint, "the endpoint has an invalid port") from None
    return parts.hostname, port


def _octets(value: str) -> bytes:
    # http.client sends str header values as Latin-1; anything beyond it goes as UTF-8 bytes.
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

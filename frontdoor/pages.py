"""The front door's own answers: "waking up" (503) and its errors, as HTML or JSON.

A browser gets a small page; everything else gets JSON. None of them may be cached: a 503
that a CDN or a browser kept would hide the app after it woke.
"""

from __future__ import annotations

import html
import json
from typing import Any

from frontdoor.messages import Response

_NO_STORE = ("cache-control", "no-store")
_SAFE_TO_REPEAT = frozenset({"GET", "HEAD"})

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{refresh}<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 15vh auto; max-width: 32rem;
        padding: 0 1rem; color: #222; text-align: center; }}
p {{ color: #555; line-height: 1.5; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{message}</p>
</body>
</html>
"""


def waking(state: str, method: str, retry_after: int, html_page: bool) -> Response:
    """503 + ``Retry-After``: the backend is starting (or finishing a stop) and not ready yet."""
    headers = [("retry-after", str(retry_after)), _NO_STORE]
    if not html_page:
        body = {
            "state": state,
            "message": f"the app is waking up; try again in {retry_after} s",
            "retry_after": retry_after,
        }
        return _json(503, body, headers)
    if method in _SAFE_TO_REPEAT:
        # The page asks again by itself; only a GET is repeated without the user asking.
        message = (f"It was asleep and is starting now. This page reloads every "
                   f"{retry_after} seconds until the app answers.")
        refresh = f'<meta http-equiv="refresh" content="{retry_after}">\n'
    else:
        message = (f"It was asleep and is starting now. Your {html.escape(method)} request "
                   f"was not sent: submit it again in {retry_after} seconds.")
        refresh = ""
    page = _PAGE.format(refresh=refresh, title="Waking up…", message=message)
    return _html(503, page, headers)


def problem(
    status: int,
    error: str,
    message: str,
    html_page: bool = False,
    retry_after: int | None = None,
) -> Response:
    """An error of the front door itself (4xx for the request, 5xx for the way to the app)."""
    headers = [_NO_STORE]
    if retry_after is not None:
        headers.insert(0, ("retry-after", str(retry_after)))
    if html_page:
        page = _PAGE.format(refresh="", title=html.escape(error.capitalize()),
                            message=html.escape(message))
        return _html(status, page, headers)
    return _json(status, {"error": error, "message": message}, headers)


def _json(status: int, body: dict[str, Any], headers: list[tuple[str, str]]) -> Response:
    data = json.dumps(body).encode()
    return Response(status, (("content-type", "application/json"), *headers), data)


def _html(status: int, page: str, headers: list[tuple[str, str]]) -> Response:
    return Response(
        status, (("content-type", "text/html; charset=utf-8"), *headers), page.encode("utf-8")
    )

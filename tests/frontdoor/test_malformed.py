"""Malformed requests are a 4xx and reach nothing; no input makes the front door raise or 500.

A 500 is kept for a bug of the front door itself, and the last test shows what one looks like.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from frontdoor.messages import Request, Response
from frontdoor.upstream import Budget
from tests.frontdoor.conftest import Agent, json_of, make_door, url_event

TASK = "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/running"


def _with(**changes: Any) -> dict[str, Any]:
    event = url_event("GET", "/echo")
    for dotted, value in changes.items():
        target = event
        *parents, last = dotted.split("__")
        for key in parents:
            target = target[key]
        if value is _DELETE:
            target.pop(last, None)
        else:
            target[last] = value
    return event


_DELETE = object()

MALFORMED = {
    "bad percent-encoding in the path": (_with(rawPath="/notes/%zz"), 400),
    "a lone percent at the end": (_with(rawPath="/notes/50%"), 400),
    "bad percent-encoding in the query": (_with(rawQueryString="q=%G1"), 400),
    "a control character in the path": (_with(rawPath="/a\x01b"), 400),
    "a path without its slash": (_with(rawPath="notes"), 400),
    "a header with a line break": (_with(headers__x_evil="a\r\nx-admin: 1"), 400),
    "a header name that is not a token": (_with(**{"headers__bad name": "1"}), 400),
    "a cookie with a line break": (_with(cookies=["a=1\r\nx: y"]), 400),
    "huge headers": (_with(headers__x_big="x" * 40_000), 431),
    "many headers adding up": (
        _with(**{f"headers__x-h{i}": "y" * 1000 for i in range(40)}), 431),
    "a very long URL": (_with(rawQueryString="q=" + "a" * 20_000), 414),
    "a body that is not base64": (_with(body="not base64!!", isBase64Encoded=True), 400),
    "a body too large": (_with(body="A" * (7 * 1024 * 1024), isBase64Encoded=False), 413),
    "a method that is not a token": (_with(requestContext__http__method="GE T"), 400),
    "no method": (_with(requestContext__http__method=_DELETE), 400),
    "not a function URL event": ({"Records": []}, 400),
    "not even an object": (["GET", "/"], 400),
    "headers that are not an object": (_with(headers=["host"]), 400),
    "a header value that is not a string": (_with(headers__x_n=5), 400),
    "cookies that are not a list": (_with(cookies="a=1"), 400),
    "a path that is not a string": (_with(rawPath=5), 400),
    "a body that is not a string": (_with(body={"a": 1}), 400),
    "text that cannot be encoded": (_with(rawPath="/\ud800"), 400),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_requests_are_4xx_and_never_reach_the_app(name, door, table, app, launcher):
    Agent(table, TASK).acquire().running_at(app.url)
    before = app.seen()
    event, status = MALFORMED[name]
    result = door(copy.deepcopy(event))
    assert result["statusCode"] == status, (name, result)
    assert json_of(result)["error"] == "bad request"
    assert app.seen() == before
    assert launcher.started == []
    assert door.log.at("ERROR") == []


def test_random_mutations_of_an_event_never_raise_or_500(door, table, app):
    Agent(table, TASK).acquire().running_at(app.url)
    rng = random.Random(11)
    values: list[Any] = [None, "", 0, -1, 3.5, True, [], {}, "%", "\r\n", "\x00", "/", "é",
                         "A" * 5000, ["x", 1], {"k": None}, "%E2%82", "//", "?", "*"]
    fields = [("rawPath",), ("rawQueryString",), ("headers",), ("cookies",), ("body",),
              ("isBase64Encoded",), ("requestContext",), ("requestContext", "http"),
              ("requestContext", "http", "method"), ("requestContext", "http", "sourceIp"),
              ("headers", "host"), ("headers", "accept"), ("headers", "connection"),
              ("headers", "x-forwarded-for"), ("headers", "content-type")]
    statuses = set()
    for _ in range(300):
        event = url_event("POST", "/echo", body=b"x")
        for path in rng.sample(fields, rng.randint(1, 3)):
            target: Any = event
            for key in path[:-1]:
                target = target.get(key) if isinstance(target, dict) else None
            if isinstance(target, dict):
                target[path[-1]] = rng.choice(values)
        result = door(event)
        statuses.add(result["statusCode"])
        assert result["statusCode"] != 500, event
    assert door.log.at("ERROR") == []
    assert statuses <= {200, 400, 413, 414, 431}, statuses
    assert 200 in statuses and 400 in statuses


def test_a_bug_is_a_500_with_an_error_log_never_an_exception(plane_settings, launcher, table,
                                                             app):
    class Broken:
        def send(self, endpoint: str, request: Request, budget: Budget) -> Response:
            raise RuntimeError("a bug in the transport")

    door = make_door(plane_settings, launcher, transport=Broken())
    Agent(table, TASK).acquire().running_at(app.url)
    result = door(url_event("GET", "/echo"))
    assert result["statusCode"] == 500
    assert json_of(result) == {"error": "internal error", "message": "the front door failed"}
    [(message, extra)] = door.log.at("ERROR")
    assert message == "Front door failed on a request" and extra["exc_info"]
    assert "FrontDoorBug" in door.metrics.names()

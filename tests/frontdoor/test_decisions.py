"""The front door's pure parts, without I/O: what the lease means, the hold loop, the headers
that pass, and how an answer is carried in a function URL result."""

from __future__ import annotations

import base64

import pytest

from chalicelib.errors import ConfigError
from chalicelib.lease import FREE, HELD, RESERVED, Lease
from frontdoor import decisions
from frontdoor.decisions import (
    MAX_WAKES,
    CallWake,
    Forward,
    GiveUp,
    Hold,
    Poll,
    Progress,
    Wake,
    decide,
    keepalive_due,
    next_step,
    wants_html,
)
from frontdoor.messages import (
    BadRequest,
    Request,
    Response,
    clean_path,
    clean_query,
    is_text,
    to_result,
)
from frontdoor.settings import FrontDoorSettings
from frontdoor.upstream import downstream_headers, upstream_headers

NOW = 1_700_000_000.0
TASK = "arn:aws:ecs:us-east-1:123456789012:task/c/abc"


def lease(**fields) -> Lease:
    return Lease(name="bucket/db.sqlite3", **fields)


RUNNING = lease(state=HELD, holder=TASK, expires_at=NOW + 30, endpoint="http://10.0.1.5:8000",
                endpoint_task=TASK, ready_at=NOW - 5)


@pytest.mark.parametrize(
    ("the_lease", "expected"),
    [
        (lease(), Wake()),
        (lease(state=FREE, last_holder=TASK), Wake()),
        (lease(state=HELD, holder=TASK, expires_at=NOW - 1, endpoint="http://10.0.1.5:8000",
               endpoint_task=TASK), Wake()),  # its time ran out: the holder is gone
        (lease(state=RESERVED, holder="res-1", expires_at=NOW + 100), Hold("starting")),
        (lease(state=HELD, holder=TASK, expires_at=NOW + 30), Hold("starting")),
        # An endpoint another task left behind is not this holder's.
        (lease(state=HELD, holder=TASK, expires_at=NOW + 30, endpoint="http://10.0.1.9:8000",
               endpoint_task="arn:aws:ecs:us-east-1:123456789012:task/c/old"),
         Hold("starting")),
        (RUNNING, Forward("http://10.0.1.5:8000")),
        (lease(state=HELD, holder=TASK, expires_at=NOW + 30, extra={"stopping": TASK}),
         Hold("stopping")),
        # Stopping wins even if an endpoint is still on the item.
        (lease(state=HELD, holder=TASK, expires_at=NOW + 30, endpoint="http://10.0.1.5:8000",
               endpoint_task=TASK, extra={"stopping": TASK}), Hold("stopping")),
        # A mark left by the previous holder says nothing about this one.
        (lease(state=HELD, holder=TASK, expires_at=NOW + 30, endpoint="http://10.0.1.5:8000",
               endpoint_task=TASK, ready_at=NOW - 5, extra={"stopping": "arn:...:task/c/old"}),
         Forward("http://10.0.1.5:8000")),
        # ECS reported the endpoint, but the app does not answer on it yet.
        (lease(state=HELD, holder=TASK, expires_at=NOW + 30, endpoint="http://10.0.1.5:8000",
               endpoint_task=TASK), Hold("starting")),
        (lease(state=HELD, holder="operator@laptop:42", expires_at=NOW + 30), Hold("starting")),
    ],
)
def test_decide(the_lease, expected):
    assert decide(the_lease, NOW) == expected


def test_the_first_look_that_is_not_running_wakes_whatever_the_state():
    for decision in (Wake(), Hold("starting"), Hold("stopping")):
        assert next_step(decision, Progress(), 0.0, 20.0) == CallWake()


def test_after_the_wake_it_polls_with_backoff_until_the_hold_ends():
    progress = Progress(wakes=1)
    delays = []
    now = 0.0
    while True:
        step = next_step(Hold("starting"), progress, now, 20.0)
        if isinstance(step, GiveUp):
            break
        assert isinstance(step, Poll)
        delays.append(step.delay)
        now += step.delay
        progress = progress.polled()
    assert step == GiveUp("starting")
    assert now == pytest.approx(20.0)
    assert delays[:3] == pytest.approx([0.2, 0.3, 0.45])
    assert max(delays) == 2.0
    assert delays == sorted(delays[:-1]) + delays[-1:]  # growing, the last one cut to fit


def test_it_wakes_again_only_if_the_lease_falls_asleep_and_never_endlessly():
    assert next_step(Hold("stopping"), Progress(wakes=1), 1.0, 20.0) == Poll(0.2)
    assert next_step(Wake(), Progress(wakes=1), 1.0, 20.0) == CallWake()
    assert next_step(Wake(), Progress(wakes=MAX_WAKES), 1.0, 20.0) == Poll(0.2)
    assert next_step(Wake(), Progress(wakes=MAX_WAKES), 20.0, 20.0) == GiveUp("starting")


def test_forward_whenever_it_runs():
    target = Forward("http://10.0.1.5:8000")
    assert next_step(target, Progress(), 0.0, 20.0) == target
    assert next_step(target, Progress(wakes=3, polls=9), 99.0, 20.0) == target


def test_keepalive_due():
    assert keepalive_due(None, 5.0, 60.0)
    assert not keepalive_due(5.0, 64.9, 60.0)
    assert keepalive_due(5.0, 65.0, 60.0)


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
        ("text/html", True),
        ("*/*", False),
        (None, False),
        ("application/json", False),
        ("application/json, text/html;q=0.5", False),
        ("text/html;q=0", False),
        ("text/html;q=oops", False),
        ("application/json;q=0.5, text/html", True),
    ],
)
def test_wants_html(accept, html):
    assert wants_html(accept) is html


# -- messages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("/", "/"),
        ("/a/b%2Fc", "/a/b%2Fc"),
        ("/caf%C3%A9", "/caf%C3%A9"),
        ("/café", "/caf%C3%A9"),
        ("/a b", "/a%20b"),
        ("/a:b@c;d=e,f", "/a:b@c;d=e,f"),
        ("/quote\"<>", "/quote%22%3C%3E"),
    ],
)
def test_clean_path(raw, clean):
    assert clean_path(raw) == clean


@pytest.mark.parametrize("raw", ["/%", "/%4", "/%zz", "/a%g0", "/\x00", "/\x7f", "/a\nb", "x"])
def test_clean_path_refuses(raw):
    with pytest.raises(BadRequest) as caught:
        clean_path(raw)
    assert caught.value.status == 400


def test_clean_query_keeps_what_a_query_may_hold():
    assert clean_query("a=1&b=%2F&c=/x?y") == "a=1&b=%2F&c=/x?y"
    assert clean_query("q=a b") == "q=a%20b"
    assert clean_query("") == ""


@pytest.mark.parametrize(
    ("content_type", "encoding", "text"),
    [
        ("text/html; charset=utf-8", None, True),
        ("application/json", None, True),
        ("application/problem+json", None, True),
        ("application/json", "gzip", False),
        ("application/octet-stream", None, False),
        ("image/png", None, False),
        (None, None, False),
    ],
)
def test_is_text(content_type, encoding, text):
    assert is_text(content_type, encoding) is text


def test_to_result_carries_cookies_apart_and_binary_as_base64():
    response = Response(
        200,
        (("Content-Type", "image/png"), ("Set-Cookie", "a=1"), ("Vary", "Accept"),
         ("Set-Cookie", "b=2"), ("Vary", "Cookie")),
        b"\x89PNG\x00",
    )
    result = to_result(response)
    assert result == {
        "statusCode": 200,
        "headers": {"content-type": "image/png", "vary": "Accept, Cookie"},
        "cookies": ["a=1", "b=2"],
        "body": base64.b64encode(b"\x89PNG\x00").decode(),
        "isBase64Encoded": True,
    }
    text = to_result(Response(201, (("content-type", "text/plain"),), "é".encode()))
    assert (text["body"], text["isBase64Encoded"]) == ("é", False)
    # Text that is not UTF-8 still arrives byte for byte.
    latin = to_result(Response(200, (("content-type", "text/plain"),), b"\xe9"))
    assert latin["isBase64Encoded"] is True


# -- headers -------------------------------------------------------------------------------


def request(**fields) -> Request:
    base = {"method": "GET", "path": "/", "query": "", "headers": (), "cookies": (),
            "body": b"", "source_ip": "203.0.113.7"}
    return Request(**{**base, **fields})


def test_upstream_headers_drop_hops_and_say_where_the_request_came_from():
    headers = dict(upstream_headers(request(
        method="POST", body=b"{}",
        headers=(("host", "app.example"), ("connection", "close, x-secret"),
                 ("x-secret", "1"), ("transfer-encoding", "chunked"),
                 ("content-length", "999"), ("expect", "100-continue"),
                 ("x-forwarded-proto", "https"), ("x-forwarded-for", "198.51.100.1"),
                 ("accept", "*/*")),
        cookies=("a=1", "b=2"),
    )))
    assert headers == {
        "accept": "*/*",
        "host": "app.example",
        "x-forwarded-host": "app.example",
        "x-forwarded-for": "198.51.100.1, 203.0.113.7",
        "x-forwarded-proto": "https",
        "cookie": "a=1; b=2",
        "content-length": "2",
    }


def test_the_client_address_is_not_added_twice():
    headers = dict(upstream_headers(request(headers=(("x-forwarded-for", "203.0.113.7"),))))
    assert headers["x-forwarded-for"] == "203.0.113.7"
    assert "content-length" not in headers  # a GET without a body says nothing


def test_downstream_headers_keep_every_set_cookie_and_drop_hops():
    pairs = [("Set-Cookie", "a=1"), ("Connection", "close, X-Hop"), ("X-Hop", "1"),
             ("Transfer-Encoding", "chunked"), ("Content-Length", "10"),
             ("Set-Cookie", "b=2"), ("Location", "/x")]
    assert downstream_headers(pairs) == (
        ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Location", "/x"),
    )


# -- settings ------------------------------------------------------------------------------


def test_settings_defaults_and_errors_name_the_variable():
    assert FrontDoorSettings.from_env({}) == FrontDoorSettings()
    assert FrontDoorSettings.from_env({"WAKEFUL_FRONT_DOOR_HOLD": "0"}).hold == 0.0
    assert FrontDoorSettings.from_env({"WAKEFUL_FRONT_DOOR_TIMEOUT": "10"}).hold == 5.0
    for env, variable in [
        ({"WAKEFUL_FRONT_DOOR_HOLD": "soon"}, "WAKEFUL_FRONT_DOOR_HOLD"),
        ({"WAKEFUL_FRONT_DOOR_HOLD": "-1"}, "WAKEFUL_FRONT_DOOR_HOLD"),
        ({"WAKEFUL_FRONT_DOOR_HOLD": "30"}, "WAKEFUL_FRONT_DOOR_HOLD"),  # > the timeout
        ({"WAKEFUL_FRONT_DOOR_TIMEOUT": "inf"}, "WAKEFUL_FRONT_DOOR_TIMEOUT"),
        ({"WAKEFUL_FRONT_DOOR_KEEPALIVE": "0"}, "WAKEFUL_FRONT_DOOR_KEEPALIVE"),
    ]:
        with pytest.raises(ConfigError) as caught:
            FrontDoorSettings.from_env(env)
        assert caught.value.variable == variable, env


def test_the_backoff_constants_read_as_documented():
    assert decisions.backoff(0) == 0.2 and decisions.backoff(50) == decisions.POLL_CAP

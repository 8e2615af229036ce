"""Running backend: the request reaches the app as the client sent it, the answer comes back
as the app gave it (status, headers, several Set-Cookie, binary bodies), nothing followed."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os

from tests.frontdoor.conftest import (
    HOST,
    Agent,
    App,
    body_of,
    json_of,
    start_app,
    url_event,
)
from tests.moto_server import free_port

TASK = "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/running"


def running(table, app: App) -> Agent:
    return Agent(table, TASK).acquire().running_at(app.url)


def test_post_json_arrives_intact_with_forwarding_headers(door, table, app, launcher):
    running(table, app)
    payload = json.dumps({"note": "hello", "tags": ["a", "b"], "emoji": "☕"})
    event = url_event(
        "POST", "/echo/notes", "page=2&sort=-created",
        headers={
            "content-type": "application/json",
            "x-custom": "kept",
            # Hop-by-hop: the client's connection to the edge, not ours to the app.
            "connection": "keep-alive, x-drop-me",
            "x-drop-me": "only for the next hop",
            "keep-alive": "timeout=5",
            "te": "trailers",
            "upgrade": "h2c",
            "x-forwarded-for": "198.51.100.1",
            "x-forwarded-host": "spoofed.example",
        },
        body=payload, base64_body=False, cookies=["session=abc", "theme=dark"],
        source_ip="203.0.113.7",
    )
    result = door(event)
    assert result["statusCode"] == 200, result
    seen = json_of(result)
    assert seen["method"] == "POST"
    assert seen["target"] == "/echo/notes?page=2&sort=-created"
    assert base64.b64decode(seen["body_b64"]).decode() == payload
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(payload.encode()))
    assert headers["x-custom"] == "kept"
    assert headers["cookie"] == "session=abc; theme=dark"
    # The app's own address changes on every wake: it sees the public host.
    assert headers["host"] == HOST
    assert headers["x-forwarded-host"] == HOST
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-for"] == "198.51.100.1, 203.0.113.7"
    for hop in ("connection", "x-drop-me", "keep-alive", "te", "upgrade"):
        assert hop not in headers, hop
    assert launcher.started == []  # running: nothing to start


def test_binary_upload_and_download_are_byte_exact(door, table, app):
    running(table, app)
    upload = os.urandom(300_000) + b"\x00\xff\r\n"
    result = door(url_event("PUT", "/echo/upload", body=upload,
                            headers={"content-type": "application/octet-stream"}))
    assert result["statusCode"] == 200
    assert json_of(result)["body_sha256"] == hashlib.sha256(upload).hexdigest()

    download = door(url_event("GET", "/binary", "size=70000"))
    assert download["isBase64Encoded"] is True
    expected = bytes(range(256)) * (70000 // 256) + bytes(range(70000 % 256))
    assert body_of(download) == expected
    assert download["headers"]["content-type"] == "application/octet-stream"


def test_a_compressed_body_stays_compressed(door, table, app):
    running(table, app)
    result = door(url_event("GET", "/gzip", headers={"accept-encoding": "gzip"}))
    assert result["isBase64Encoded"] is True
    assert result["headers"]["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(body_of(result))) == {"compressed": True}


def test_app_errors_and_redirects_pass_through_unchanged(door, table, app):
    running(table, app)
    error = door(url_event("GET", "/status/500"))
    assert error["statusCode"] == 500
    assert body_of(error) == b"status 500 from the app"
    before = app.seen()
    redirect = door(url_event("GET", "/redirect"))
    assert redirect["statusCode"] == 302
    assert redirect["headers"]["location"] == "/elsewhere"
    # Not followed: the app saw the one request, not a second one for /elsewhere.
    assert app.seen() == before + 1
    assert door(url_event("GET", "/status/404"))["statusCode"] == 404


def test_several_set_cookie_headers_become_the_cookies_list(door, table, app):
    running(table, app)
    result = door(url_event("GET", "/cookies"))
    assert result["cookies"] == ["session=abc; Path=/; HttpOnly", "theme=dark; Path=/"]
    assert "set-cookie" not in result["headers"]
    assert result["body"] == "two cookies" and result["isBase64Encoded"] is False


def test_head_and_unusual_methods_are_forwarded(door, table, app):
    running(table, app)
    head = door(url_event("HEAD", "/echo"))
    assert head["statusCode"] == 200 and body_of(head) == b""
    propfind = door(url_event("PROPFIND", "/echo/dav"))
    assert json_of(propfind)["method"] == "PROPFIND"


def test_unencoded_characters_are_sent_percent_encoded(door, table, app):
    # An edge may hand over a path it decoded; the app must still get a valid request line.
    running(table, app)
    result = door(url_event("GET", "/echo/café menu", "q=a b&x=%2F"))
    assert json_of(result)["target"] == "/echo/caf%C3%A9%20menu?q=a%20b&x=%2F"


def test_app_unreachable_while_the_lease_says_running_is_a_502_logged(door, table):
    Agent(table, TASK).acquire().running_at(f"http://127.0.0.1:{free_port()}")
    result = door(url_event("GET", "/echo", headers={"accept": "application/json"}))
    assert result["statusCode"] == 502
    body = json_of(result)
    assert body["error"] == "bad gateway"
    assert "did not accept the connection" in body["message"]
    errors = door.log.at("ERROR")
    assert [m for m, _ in errors] == ["The app is unreachable while the lease says it runs"]
    assert errors[0][1]["endpoint"].startswith("http://127.0.0.1:")
    assert "FrontDoorUnreachable" in door.metrics.names()


def test_a_killed_app_is_a_502_then_the_next_task_serves(door, table, launcher, fake_time):
    app = start_app()
    agent = Agent(table, TASK).acquire().running_at(app.url)
    assert door(url_event("GET", "/echo"))["statusCode"] == 200
    app.stop()  # SIGTERM: the process is gone, the lease still says running
    assert door(url_event("GET", "/echo"))["statusCode"] == 502
    # The stop is accounted (the control plane releases a dead holder): the next request
    # wakes a new task, which is served.
    table.force_release(agent.task_arn)
    second = start_app()
    try:
        from tests.frontdoor.conftest import agent_comes_up

        launcher.on_start = agent_comes_up(table, second.url)
        result = door(url_event("GET", "/echo/after"))
        assert result["statusCode"] == 200, result
        assert json_of(result)["target"] == "/echo/after"
        assert len(launcher.started) == 1
    finally:
        second.stop()


def test_a_hanging_app_is_a_504_within_the_budget(plane_settings, launcher, table, app):
    from tests.frontdoor.conftest import make_door

    door = make_door(plane_settings, launcher, timeout=1.5, hold=0.5)
    running(table, app)
    result = door(url_event("GET", "/hang"))
    assert result["statusCode"] == 504
    assert door.log.at("ERROR")[0][0] == "The app did not answer in time"


def test_an_answer_larger_than_lambda_carries_is_a_clear_502(plane_settings, launcher, table,
                                                             app):
    from tests.frontdoor.conftest import make_door

    door = make_door(plane_settings, launcher, max_response_bytes=100_000)
    running(table, app)
    assert door(url_event("GET", "/binary", "size=60000"))["statusCode"] == 200
    # 90 kB of bytes is 120 kB of base64: more than the payload may carry.
    result = door(url_event("GET", "/binary", "size=90000"))
    assert result["statusCode"] == 502
    assert "larger than the 100000 bytes" in json_of(result)["message"]
    result = door(url_event("GET", "/binary", "size=200000"))
    assert result["statusCode"] == 502

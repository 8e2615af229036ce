"""Asleep, starting or stopping: the request wakes the backend with the control plane's own wake,
waits for it, and is served; past the hold it is told to come back, never sent to a stopping
app."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from typing import Any

import pytest

from chalicelib.errors import TaskControlError
from chalicelib.lease import FREE, RESERVED, LeaseTable
from chalicelib.settings import ControlPlaneSettings
from frontdoor.local import FrontDoorServer
from tests.conftest import create_bucket, create_lease_table
from tests.controlplane.serial_moto import SerialMotoServer
from tests.frontdoor.conftest import (
    Agent,
    RecordingLauncher,
    agent_comes_up,
    body_of,
    control_env,
    json_of,
    lease_table,
    make_door,
    start_app,
    url_event,
)
from tests.moto_server import free_port

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
OLD_TASK = "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/old"


def test_first_request_while_asleep_wakes_and_is_served_once_ready(door, table, launcher, app):
    launcher.on_start = agent_comes_up(table, app.url)
    assert table.read().state == FREE
    result = door(url_event("POST", "/echo/first", body=b'{"n": 1}',
                            headers={"content-type": "application/json"}))
    assert result["statusCode"] == 200, result
    assert json_of(result)["target"] == "/echo/first"
    assert json_of(result)["body_b64"] == "eyJuIjogMX0="
    [(reservation, task_arn)] = launcher.started
    lease = table.read()
    assert lease.holder == task_arn and lease.reservation_id == reservation
    assert "Served a request that woke the backend" in [m for m, _ in door.log.at("INFO")]


def test_past_the_hold_a_browser_gets_a_waking_page_that_retries(door, table, launcher,
                                                                 fake_time):
    result = door(url_event("GET", "/dashboard", headers={"accept": BROWSER}))
    assert result["statusCode"] == 503
    assert result["headers"]["retry-after"] == "5"
    assert result["headers"]["cache-control"] == "no-store"
    assert result["headers"]["content-type"].startswith("text/html")
    page = body_of(result).decode()
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "Waking up" in page
    # One wake, one task, however long the request waited.
    assert len(launcher.started) == 1
    assert table.read().state == RESERVED
    # It waited the whole hold, reading the lease with backoff.
    assert sum(fake_time.sleeps) == pytest.approx(20.0)
    assert fake_time.sleeps[0] < fake_time.sleeps[1] < fake_time.sleeps[2]
    assert max(fake_time.sleeps) <= 2.0
    assert "FrontDoorHoldExpired" in door.metrics.names()


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, */*"])
def test_past_the_hold_an_api_client_gets_503_json(door, accept):
    headers = {"accept": accept} if accept else {}
    result = door(url_event("GET", "/api/items", headers=headers))
    assert result["statusCode"] == 503
    assert result["headers"]["retry-after"] == "5"
    assert result["headers"]["content-type"] == "application/json"
    assert json_of(result) == {
        "state": "starting", "message": "the app is waking up; try again in 5 s",
        "retry_after": 5,
    }


def test_a_browser_form_post_is_not_repeated_by_the_waking_page(door):
    result = door(url_event("POST", "/notes", body=b"a=1", headers={"accept": BROWSER}))
    assert result["statusCode"] == 503
    page = body_of(result).decode()
    assert "http-equiv=\"refresh\"" not in page
    assert "submit it again" in page


def test_a_zero_hold_answers_at_once_after_waking(plane_settings, launcher, fake_time):
    door = make_door(plane_settings, launcher, fake_time, hold=0.0)
    result = door(url_event("GET", "/"))
    assert result["statusCode"] == 503
    assert fake_time.sleeps == []
    assert len(launcher.started) == 1


def test_a_stopping_backend_is_never_sent_the_request(door, table, launcher, app):
    agent = Agent(table, OLD_TASK).acquire().running_at(app.url)
    before = app.seen()
    agent.stopping()  # the agent is uploading to sleep; the lease is still HELD by it
    result = door(url_event("GET", "/echo"))
    assert result["statusCode"] == 503
    assert json_of(result)["state"] == "stopping"
    assert app.seen() == before
    assert launcher.started == []  # the wake during a stop starts nothing
    assert table.read().holder == OLD_TASK


def test_a_request_during_a_stop_is_served_by_the_next_task(door, table, launcher, fake_time,
                                                           app):
    old = start_app()
    try:
        agent = Agent(table, OLD_TASK).acquire().running_at(old.url)
        agent.stopping()
        before = old.seen()

        def stop_finishes(sleeps: int) -> None:
            if sleeps == 2:
                agent.release()  # the final upload is done: the lease is FREE

        fake_time.on_sleep = stop_finishes
        launcher.on_start = agent_comes_up(table, app.url)
        result = door(url_event("GET", "/echo/during-stop"))
        assert result["statusCode"] == 200, result
        assert json_of(result)["target"] == "/echo/during-stop"
        assert old.seen() == before  # the stopping app never saw it
        assert len(launcher.started) == 1
    finally:
        old.stop()


def test_run_task_refused_is_a_503_at_once_and_the_lease_is_free(plane_settings, fake_time):
    class Refusing(RecordingLauncher):
        def start(self, reservation_id: str) -> Any:
            raise TaskControlError("RunTask", "RESOURCE:MEMORY", retryable=True)

    door = make_door(plane_settings, Refusing(), fake_time)
    result = door(url_event("GET", "/", headers={"accept": "application/json"}))
    assert result["statusCode"] == 503
    assert result["headers"]["retry-after"] == "30"
    assert "RESOURCE:MEMORY" in json_of(result)["message"]
    assert fake_time.sleeps == []  # no point holding: the start was refused
    assert lease_table(plane_settings).read().state == FREE


def test_an_unreadable_lease_is_a_503_not_a_crash(plane_settings, launcher, fake_time):
    dead = LeaseTable(plane_settings.location.lease_table, plane_settings.location.lease_name,
                      endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1")
    door = make_door(plane_settings, launcher, fake_time, lease=dead)
    result = door(url_event("GET", "/"))
    assert result["statusCode"] == 503
    assert result["headers"]["retry-after"] == "30"
    assert json_of(result)["error"] == "unavailable"
    assert door.log.at("ERROR")[0][0] == "The lease could not be read"


def test_twenty_concurrent_requests_while_asleep_start_one_task_and_all_are_answered(
    resources, monkeypatch
):
    # DynamoDB applies conditional writes to one item one at a time; the serial moto server
    # does too (the threaded one may let two racing reservations both pass).
    server = SerialMotoServer().start()
    app = start_app()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        create_bucket()
        create_lease_table()
        settings = ControlPlaneSettings.from_env(control_env(server.url))
        table = lease_table(settings)
        launcher = RecordingLauncher(on_start=agent_comes_up(table, app.url, after=0.3))
        door = make_door(settings, launcher, lease=table)
        barrier = threading.Barrier(20)
        answers: list[tuple[int, str]] = []
        lock = threading.Lock()

        def request(n: int) -> None:
            barrier.wait()
            call = urllib.request.Request(f"{front.url}/echo/{n}", method="GET")
            with urllib.request.urlopen(call, timeout=60) as response:
                answer = (response.status, json.loads(response.read())["target"])
            with lock:
                answers.append(answer)

        with FrontDoorServer(door) as front:
            threads = [threading.Thread(target=request, args=(n,)) for n in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=90)
        assert len(launcher.started) == 1
        assert sorted(answers) == sorted((200, f"/echo/{n}") for n in range(20))
        assert app.seen() == 20
    finally:
        app.stop()
        server.stop()


def test_the_waking_page_is_small_and_self_contained(door):
    page = body_of(door(url_event("GET", "/", headers={"accept": BROWSER}))).decode()
    assert len(page) < 2048
    # Nothing to fetch from an app that is asleep: no scripts, styles or images elsewhere.
    assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)=", page)

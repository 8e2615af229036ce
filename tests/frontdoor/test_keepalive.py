"""Traffic keeps the backend awake with at most one ``last_wake`` write per interval per
front-door instance, not a DynamoDB write per request.

The lease table the front door writes through stamps each write with the next value of a
counter clock, so ``last_wake`` on the item tells how many keepalives were written.
"""

from __future__ import annotations

import itertools
import threading

from tests.frontdoor.conftest import Agent, FakeTime, lease_table, make_door, url_event

TASK = "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/running"
STAMPS = 5000


def counting_lease(settings):
    counter = itertools.count(STAMPS + 1)
    lock = threading.Lock()

    def clock() -> float:
        with lock:
            return float(next(counter))

    return lease_table(settings, clock=clock)


def test_one_keepalive_per_interval_however_many_requests(plane_settings, launcher, table,
                                                          app, fake_time):
    Agent(table, TASK).acquire().running_at(app.url)
    assert table.read().last_wake is None
    door = make_door(plane_settings, launcher, fake_time, lease=counting_lease(plane_settings),
                     keepalive=60.0)
    for _ in range(30):
        assert door(url_event("GET", "/echo"))["statusCode"] == 200
    assert table.read().last_wake == STAMPS + 1  # one write for thirty requests
    fake_time.now += 59.0
    assert door(url_event("GET", "/echo"))["statusCode"] == 200
    assert table.read().last_wake == STAMPS + 1
    fake_time.now += 1.0  # the interval is over: the next request refreshes it, once
    for _ in range(5):
        door(url_event("GET", "/echo"))
    assert table.read().last_wake == STAMPS + 2


def test_concurrent_requests_write_one_keepalive(plane_settings, launcher, table, app):
    Agent(table, TASK).acquire().running_at(app.url)
    door = make_door(plane_settings, launcher, FakeTime(),
                     lease=counting_lease(plane_settings))
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def request() -> None:
        barrier.wait()
        statuses.append(door(url_event("GET", "/echo"))["statusCode"])

    threads = [threading.Thread(target=request) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200] * 20
    assert table.read().last_wake == STAMPS + 1


def test_no_keepalive_is_written_while_asleep_or_right_after_a_wake(
    plane_settings, launcher, table, app, fake_time
):
    from tests.frontdoor.conftest import agent_comes_up

    lease = counting_lease(plane_settings)
    door = make_door(plane_settings, launcher, fake_time, lease=lease)
    launcher.on_start = agent_comes_up(table, app.url)
    assert door(url_event("GET", "/echo"))["statusCode"] == 200
    # The wake's own writes (its keepalive, the reservation) refreshed last_wake: the front
    # door adds none until an interval has passed.
    woke = table.read().last_wake
    assert woke is not None and woke > STAMPS
    for _ in range(3):
        assert door(url_event("GET", "/echo"))["statusCode"] == 200
    assert table.read().last_wake == woke

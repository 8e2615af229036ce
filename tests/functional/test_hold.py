"""A lease held for one manual operation (a restore, an upload), against a moto server.

The lease's clock is injected: expiry moves with the test's clock, renewals run on real time
(every third of the TTL) and are waited for, never slept for.
"""

from __future__ import annotations

import pytest

from chalicelib.errors import LeaseHeld, LeaseLost, WakefulError
from chalicelib.hold import LeaseHold
from chalicelib.lease import FREE, HELD, LeaseTable
from tests.agent_harness import wait_for
from tests.conftest import TABLE
from tests.functional.test_lease import NAME, FakeClock

TTL = 0.6  # renewed every 0.2 s of real time
OPERATOR = "operator@host:1"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def table(resources, clock: FakeClock) -> LeaseTable:
    return LeaseTable(TABLE, NAME, clock=clock)


def test_a_hold_is_renewed_while_it_lasts_and_released_at_its_end(table, clock):
    booting = LeaseTable(TABLE, NAME, clock=clock)
    with LeaseHold(table, OPERATOR, TTL) as hold:
        assert table.read().state == HELD
        clock.advance(100 * TTL)  # long past the TTL it was taken with
        wait_for(lambda: table.read().expires_at > clock(), what="a renewal")
        with pytest.raises(LeaseHeld):
            booting.acquire("task-booting", 30)
        token = hold.token

    lease = table.read()
    assert lease.state == FREE
    assert lease.token == token, "release keeps the token"
    assert lease.last_holder == OPERATOR


def test_a_hold_taken_over_refuses_its_next_write_and_reports_the_failed_release(table, clock):
    failures: list[WakefulError] = []
    other = LeaseTable(TABLE, NAME, clock=clock)
    with LeaseHold(table, OPERATOR, TTL, on_release_failure=failures.append) as hold:
        other.force_release(OPERATOR)
        taken = other.acquire("task-new", 30)
        with pytest.raises(LeaseLost):
            hold.renew()
        with pytest.raises(LeaseLost):
            hold.record_upload({"reason": "restore", "token": hold.token})

    lease = table.read()
    assert (lease.state, lease.holder, lease.token) == (HELD, "task-new", taken.token)
    assert lease.last_upload is None, "the stale holder recorded nothing"
    assert [type(failure) for failure in failures] == [LeaseLost]

"""The watchdog and bounded calls, on a fake monotonic clock (no network, no processes)."""

from __future__ import annotations

import threading

import pytest

from chalicelib.errors import LeaseLost
from chalicelib.lease import HELD, Lease
from container.deadline import Budget, Earliest, call_within
from container.heartbeat import LeaseKeeper, LeaseTrust, trusted_until
from container.inbox import Inbox
from container.watchdog import NOT_RENEWED, Watchdog

TTL = 3.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NoTable:
    """The keeper needs a table only to renew; these tests never do."""

    name = "wakeful-test-db/db.sqlite3"


def keeper(clock: Clock) -> LeaseKeeper:
    lease = Lease(name=NoTable.name, state=HELD, holder="me", token=7)
    return LeaseKeeper(NoTable(), lease, TTL, clock)  # type: ignore[arg-type]


def watch(keeper: LeaseKeeper, clock: Clock) -> tuple[Watchdog, Inbox, list]:
    halted: list[tuple[str, float]] = []
    inbox = Inbox()
    dog = Watchdog(keeper, lambda reason, grace: halted.append((reason, grace)), inbox,
                   kill_grace=0.3, clock=clock)
    dog.start()
    return dog, inbox, halted


def test_the_app_is_stopped_before_the_lease_runs_out_while_every_other_thread_is_blocked():
    clock = Clock()
    held = keeper(clock)
    blocked = threading.Event()  # the syncing thread, stuck in a call that never returns
    threading.Thread(target=blocked.wait, daemon=True).start()
    dog, inbox, halted = watch(held, clock)
    try:
        clock.now += TTL - held.margin - 0.31  # a little more trust than the kill grace
        assert inbox.wait(0.7) == []
        clock.now += 0.11  # now only 0.2 s before the lease can be taken over
        messages = inbox.wait(2.0)
    finally:
        dog.stop()
        blocked.set()
    assert [m.kind for m in messages] == ["lost"]
    assert halted == [(NOT_RENEWED, pytest.approx(0.2))]
    assert held.lost == NOT_RENEWED
    with pytest.raises(LeaseLost):
        held.renew()  # a late renewal never brings a lost lease back


def test_a_refused_renewal_stops_the_app_at_once():
    clock = Clock()
    held = keeper(clock)
    dog, inbox, halted = watch(held, clock)
    try:
        held.lose("renew refused; now HELD by 'other' token 8")
        messages = inbox.wait(2.0)
    finally:
        dog.stop()
    assert [m.detail for m in messages] == ["renew refused; now HELD by 'other' token 8"]
    assert halted == [("renew refused; now HELD by 'other' token 8", 0.0)]


def test_a_bounded_call_is_given_up_on_when_the_lease_is_lost():
    clock = Clock()
    held = keeper(clock)
    never = threading.Event()
    threading.Timer(0.2, held.lose, args=("renew refused",)).start()
    with pytest.raises(LeaseLost) as lost:
        call_within(never.wait, LeaseTrust(held), "upload")
    never.set()
    assert "renew refused (while waiting on upload)" in str(lost.value)


def test_a_bounded_call_returns_its_value_or_its_own_error():
    clock = Clock()
    budget = Budget(clock.now + 5, clock)
    assert call_within(lambda: 42, budget, "answer") == 42

    def broken() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        call_within(broken, budget, "broken")


def test_the_earliest_deadline_names_the_error():
    clock = Clock()
    held = keeper(clock)
    spent = Budget(clock.now - 1, clock)
    never = threading.Event()
    with pytest.raises(TimeoutError, match="release did not finish within the stop budget"):
        call_within(never.wait, Earliest(LeaseTrust(held), spent), "release")
    never.set()


def test_trust_counts_from_when_the_acquire_was_sent():
    sent, sent_wall = 500.0, 1_800_000_000.0
    fresh = Lease(name=NoTable.name, state=HELD, holder="me", token=1,
                  expires_at=sent_wall + 0.01 + TTL)  # written just after it was sent
    assert trusted_until(fresh, TTL, sent, sent_wall) == sent + TTL
    # Our own earlier attempt wrote it 1.5 s before this one was sent (its answer was lost).
    earlier = Lease(name=NoTable.name, state=HELD, holder="me", token=1,
                    expires_at=sent_wall - 1.5 + TTL)
    assert trusted_until(earlier, TTL, sent, sent_wall) == pytest.approx(sent + TTL - 1.5)

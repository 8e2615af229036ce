"""The DynamoDB lease against a moto server over HTTP: acquisition, fencing, release.

Time is injected (``clock=``): leases expire by moving the clock, never by sleeping.
"""

from __future__ import annotations

import boto3
import pytest

from chalicelib.errors import LeaseHeld, LeaseLost
from chalicelib.lease import FREE, HELD, RESERVED, LeaseTable
from tests.conftest import TABLE

NAME = "wakeful-test-db/db.sqlite3"
TTL = 30.0


class FakeClock:
    """Wall-clock seconds that only move when the test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def dynamodb(moto_server):
    # One client for the module: building a botocore session per test costs ~0.3 s.
    return boto3.client("dynamodb", endpoint_url=moto_server.url)


@pytest.fixture
def table(resources, dynamodb, clock: FakeClock) -> LeaseTable:
    return LeaseTable(TABLE, NAME, client=dynamodb, clock=clock)


def other_view(clock: FakeClock) -> LeaseTable:
    """A second client on the same item, as another process would have."""
    return LeaseTable(TABLE, NAME, clock=clock)


# -- acquire --------------------------------------------------------------------------------


def test_acquire_creates_the_item_held_with_token_one(table: LeaseTable, clock: FakeClock):
    lease = table.acquire("task-a", TTL, task_arn="arn:aws:ecs:task/a")

    assert lease.state == HELD
    assert lease.holder == "task-a"
    assert lease.token == 1
    assert lease.expires_at == pytest.approx(clock.now + TTL)
    assert lease.task_arn == "arn:aws:ecs:task/a"
    assert table.read() == lease


def test_acquire_from_free_after_release(table: LeaseTable):
    first = table.acquire("task-a", TTL)
    table.release("task-a", first.token)

    second = table.acquire("task-b", TTL)

    assert second.state == HELD
    assert second.holder == "task-b"
    assert second.token == first.token + 1


def test_acquire_refused_while_live_says_who_and_until_when(table: LeaseTable, clock: FakeClock):
    held = table.acquire("task-a", TTL)
    clock.advance(TTL - 1)

    with pytest.raises(LeaseHeld) as refused:
        table.acquire("task-b", TTL)

    assert refused.value.holder == "task-a"
    assert refused.value.state == HELD
    assert refused.value.expires_at == pytest.approx(held.expires_at)
    assert refused.value.retryable
    assert "task-a" in str(refused.value)
    # The refused attempt changed nothing.
    assert table.read() == held


def test_a_retried_acquire_by_the_same_holder_is_the_same_holding(table: LeaseTable):
    # Holder ids are unique per agent process: a second acquire is a client retry whose
    # first attempt won; it must not wait for itself nor take a second token.
    first = table.acquire("task-a", TTL)
    again = table.acquire("task-a", TTL)
    assert (again.holder, again.token) == ("task-a", first.token) == ("task-a", 1)
    with pytest.raises(LeaseHeld):
        table.acquire("task-b", TTL)


def test_another_process_of_the_same_holder_is_refused(table: LeaseTable):
    # The holder id names the task; the boot names the agent process. A restarted or
    # duplicated agent of the same task must wait like anyone else, not share the token.
    first = table.acquire("arn:task/a", TTL, task_arn="arn:task/a", boot="boot-1")
    again = table.acquire("arn:task/a", TTL, task_arn="arn:task/a", boot="boot-1")
    assert (again.token, again.holder_boot) == (first.token, "boot-1")
    with pytest.raises(LeaseHeld) as refused:
        table.acquire("arn:task/a", TTL, task_arn="arn:task/a", boot="boot-2")
    assert refused.value.holder == "arn:task/a"
    assert table.read() == first


def test_acquire_from_expired_takes_over_with_a_larger_token(table: LeaseTable, clock: FakeClock):
    stale = table.acquire("task-a", TTL)
    clock.advance(TTL + 0.5)

    taken = table.acquire("task-b", TTL)

    assert taken.holder == "task-b"
    assert taken.token == stale.token + 1
    assert taken.expires_at == pytest.approx(clock.now + TTL)


def test_expiry_is_exclusive_at_the_exact_instant(table: LeaseTable, clock: FakeClock):
    held = table.acquire("task-a", TTL)
    clock.now = held.expires_at
    with pytest.raises(LeaseHeld):
        table.acquire("task-b", TTL)
    clock.advance(0.01)
    assert table.acquire("task-b", TTL).holder == "task-b"


def test_acquire_reserved_with_the_matching_reservation(table: LeaseTable):
    reserved = table.reserve("res-1", timeout=120)
    assert reserved.state == RESERVED
    assert reserved.holder == "res-1"

    lease = table.acquire("task-a", TTL, reservation_id="res-1", task_arn="arn:task/a")

    assert lease.state == HELD
    assert lease.holder == "task-a"
    assert lease.reservation_id == "res-1"
    assert lease.token == reserved.token + 1


@pytest.mark.parametrize("reservation", [None, "res-other"])
def test_acquire_reserved_refused_without_the_matching_reservation(
    table: LeaseTable, reservation: str | None
):
    reserved = table.reserve("res-1", timeout=120)

    with pytest.raises(LeaseHeld) as refused:
        table.acquire("task-a", TTL, reservation_id=reservation)

    assert refused.value.state == RESERVED
    assert refused.value.holder == "res-1"
    assert table.read() == reserved


def test_an_expired_reservation_can_be_taken_by_anyone(table: LeaseTable, clock: FakeClock):
    table.reserve("res-1", timeout=60)
    clock.advance(61)
    lease = table.acquire("task-a", TTL)
    assert lease.holder == "task-a"
    assert lease.reservation_id is None


def test_reserve_refused_while_held(table: LeaseTable):
    table.acquire("task-a", TTL)
    with pytest.raises(LeaseHeld) as refused:
        table.reserve("res-1", timeout=60)
    assert refused.value.holder == "task-a"


# -- the token ------------------------------------------------------------------------------


def test_token_goes_up_by_one_per_acquisition_and_survives_release(
    table: LeaseTable, clock: FakeClock
):
    tokens = []
    for round_ in range(3):
        lease = table.acquire(f"task-{round_}", TTL)
        tokens.append(lease.token)
        released = table.release(lease.holder, lease.token)
        assert released.state == FREE
        assert released.holder is None
        assert released.token == lease.token  # release keeps the token
        assert released.last_holder == lease.holder
    # An expiry takeover counts as an acquisition too.
    lease = table.acquire("task-x", TTL)
    clock.advance(TTL + 1)
    tokens.append(lease.token)
    tokens.append(table.acquire("task-y", TTL).token)

    assert tokens == [1, 2, 3, 4, 5]
    assert table.read().token == 5


def test_the_token_survives_a_new_client(table: LeaseTable, clock: FakeClock):
    lease = table.acquire("task-a", TTL)
    table.release("task-a", lease.token)
    assert other_view(clock).acquire("task-b", TTL).token == 2


# -- holder-only writes ---------------------------------------------------------------------


def test_renew_extends_the_expiry(table: LeaseTable, clock: FakeClock):
    lease = table.acquire("task-a", TTL)
    clock.advance(10)

    renewed = table.renew("task-a", lease.token, TTL)

    assert renewed.expires_at == pytest.approx(clock.now + TTL)
    assert renewed.token == lease.token
    clock.advance(TTL - 1)  # past the original expiry, within the renewed one
    with pytest.raises(LeaseHeld):
        table.acquire("task-b", TTL)


@pytest.mark.parametrize(
    "holder, token",
    [("task-b", 1), ("task-a", 2), ("task-a", 0)],
    ids=["wrong-holder", "wrong-token", "zero-token"],
)
@pytest.mark.parametrize("operation", ["renew", "release", "record_upload"])
def test_holder_writes_refused_with_wrong_holder_or_token(
    table: LeaseTable, operation: str, holder: str, token: int
):
    lease = table.acquire("task-a", TTL)
    assert lease.token == 1
    calls = {
        "renew": lambda: table.renew(holder, token, TTL),
        "release": lambda: table.release(holder, token),
        "record_upload": lambda: table.record_upload(holder, token, {"etag": '"x"'}),
    }

    with pytest.raises(LeaseLost) as lost:
        calls[operation]()

    assert lost.value.holder == holder
    assert lost.value.token == token
    assert not lost.value.retryable
    after = table.read()
    assert after == lease  # nothing changed: still HELD by task-a, no upload recorded


def test_holder_writes_refused_after_a_takeover(table: LeaseTable, clock: FakeClock):
    stale = table.acquire("task-a", TTL)
    clock.advance(TTL + 1)
    fresh = table.acquire("task-b", TTL)

    with pytest.raises(LeaseLost):
        table.renew("task-a", stale.token, TTL)
    with pytest.raises(LeaseLost):
        table.record_upload("task-a", stale.token, {"etag": '"stale"'})
    with pytest.raises(LeaseLost):
        table.release("task-a", stale.token)

    assert table.read() == fresh


def test_a_released_holder_cannot_write_again(table: LeaseTable):
    lease = table.acquire("task-a", TTL)
    table.release("task-a", lease.token)
    with pytest.raises(LeaseLost):
        table.renew("task-a", lease.token, TTL)
    # A retried release of the same holding is done already, not refused...
    assert table.release("task-a", lease.token).state == FREE
    # ...but once someone else holds it, the old holder's release is refused.
    table.acquire("task-b", TTL)
    with pytest.raises(LeaseLost):
        table.release("task-a", lease.token)
    assert table.read().holder == "task-b"


def test_record_upload_is_kept_on_the_lease(table: LeaseTable):
    lease = table.acquire("task-a", TTL)
    upload = {"etag": '"abc"', "version_id": "v1", "sha256": "f" * 64, "size": 4096,
              "token": lease.token, "at": 1_800_000_000.25}

    table.record_upload("task-a", lease.token, upload)
    table.release("task-a", lease.token)

    assert table.read().last_upload == upload


# -- force release --------------------------------------------------------------------------


def test_force_release_frees_only_the_named_holder(table: LeaseTable):
    lease = table.acquire("task-a", TTL)

    with pytest.raises(LeaseLost):
        table.force_release("task-b")
    assert table.read() == lease

    freed = table.force_release("task-a")
    assert freed.state == FREE
    assert freed.holder is None
    assert freed.token == lease.token
    assert freed.last_holder == "task-a"
    # The dead holder's fenced writes are refused from now on.
    with pytest.raises(LeaseLost):
        table.renew("task-a", lease.token, TTL)
    assert table.acquire("task-b", TTL).token == lease.token + 1


def test_force_release_of_a_reservation(table: LeaseTable):
    table.reserve("res-1", timeout=120)
    assert table.force_release("res-1").state == FREE


def test_force_release_of_a_free_lease_is_refused(table: LeaseTable):
    lease = table.acquire("task-a", TTL)
    table.release("task-a", lease.token)
    with pytest.raises(LeaseLost):
        table.force_release("task-a")
    assert table.read().state == FREE


def test_force_release_after_a_takeover_leaves_the_new_holder(
    table: LeaseTable, clock: FakeClock
):
    table.acquire("task-a", TTL)
    clock.advance(TTL + 1)
    fresh = table.acquire("task-b", TTL)
    # ECS reports the old task STOPPED late: its force-release must not free task-b's lease.
    with pytest.raises(LeaseLost):
        table.force_release("task-a")
    assert table.read() == fresh


def test_read_of_a_missing_item_is_free_with_token_zero(table: LeaseTable):
    lease = table.read()
    assert lease.state == FREE
    assert lease.token == 0
    assert not lease.is_live(0)


def test_an_acquire_outside_a_wake_forgets_the_old_task_and_endpoint(table: LeaseTable):
    old = "arn:aws:ecs:us-east-1:1:task/c/old"
    lease = table.acquire(old, TTL, task_arn=old)
    table.set_fields({"endpoint": "http://10.0.0.9:8000"})
    table.release(lease.holder, lease.token)
    manual = table.acquire("manual@host:1", TTL)
    assert manual.endpoint is None and manual.task_arn is None

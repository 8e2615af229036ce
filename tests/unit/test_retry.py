"""The stop's retry schedule, on a fake clock: attempts take time, the budget is fixed."""

from __future__ import annotations

import pytest

from chalicelib.errors import StoreUnavailable
from container.retry import within_budget


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.attempts: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


def s3_recovering_at(time: FakeTime, recovered: float, attempt_takes: float):
    def upload() -> str:
        time.attempts.append(time.now)
        time.now += attempt_takes
        if time.now < recovered:
            raise StoreUnavailable("503 SlowDown")
        return "uploaded"

    return upload


def test_a_recovery_in_the_last_seconds_of_the_budget_is_not_missed():
    time = FakeTime()
    result = within_budget(
        s3_recovering_at(time, recovered=13.0, attempt_takes=1.0), deadline=15.0,
        clock=time.clock, sleep=time.sleep, retryable=(StoreUnavailable,),
        on_failure=lambda _exc: None,
    )
    assert result == "uploaded"
    assert time.now <= 15.0


def test_no_attempt_is_started_without_time_for_it():
    time = FakeTime()
    with pytest.raises(StoreUnavailable):
        within_budget(
            s3_recovering_at(time, recovered=99.0, attempt_takes=1.0), deadline=15.0,
            clock=time.clock, sleep=time.sleep, retryable=(StoreUnavailable,),
            on_failure=lambda _exc: None,
        )
    assert time.attempts[-1] < 15.0
    assert 15.0 - time.now < 1.5, "gave up with most of the budget unused"


def test_a_second_signal_stops_the_retries():
    time = FakeTime()
    with pytest.raises(StoreUnavailable):
        within_budget(
            s3_recovering_at(time, recovered=99.0, attempt_takes=0.1), deadline=15.0,
            clock=time.clock, sleep=time.sleep, retryable=(StoreUnavailable,),
            on_failure=lambda _exc: None, keep_trying=lambda: len(time.attempts) < 2,
        )
    assert len(time.attempts) == 2

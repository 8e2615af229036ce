"""The agent's retention pass decides on the manifest it holds: no call when nothing is due or
nothing can go; a lost lease or a newer holder propagates, never a mere warning."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.errors import LeaseLost
from chalicelib.observability import logger, metrics
from container.retention import Retention
from wakeful_replica.errors import Superseded
from wakeful_replica.manifest import OBJECT, SEGMENT, Base, Generation, Manifest
from wakeful_replica.store import ChainStore

DAY_S = 86400
NOW_S = 1_900_000_000


def _manifest(oldest_age_days: float) -> Manifest:
    """Bases at 1 (that old), at 20 (a day younger) and at 40 (a second old)."""
    now_ms = NOW_S * 1000
    oldest_ms = int(now_ms - oldest_age_days * DAY_S * 1000)
    history = (
        Base("g", 1, oldest_ms, "sha", 4096, SEGMENT),
        Base("g", 20, oldest_ms + DAY_S * 1000, "sha", 4096, OBJECT, "v0"),
        Base("g", 40, now_ms - 1000, "sha", 4096, OBJECT, "v1"),
    )
    return Manifest("g", 50, 3, "task", snapshot=history[-1], history=history,
                    lineage=(Generation("g", 1, history[0].at_ms),))


class Calls:
    """The agent's ``call``, recording what it was asked to run; ``fail`` stands for it."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.names: list[str] = []

    def __call__(self, fn: Callable[[], Any], what: str) -> Any:
        self.names.append(what)
        if self.fail is not None:
            raise self.fail
        return fn()


def _retention(call: Calls) -> Retention:
    # The client is never reached: every effect goes through ``call``.
    store = ChainStore("bucket", "db.sqlite3", client=object(), retention_days=7)
    return Retention(store, logger("test-retention"), metrics("test-retention"), call,
                     wall=lambda: float(NOW_S))


def test_nothing_outside_the_window_is_no_call():
    call = Calls()
    assert _retention(call).run(_manifest(oldest_age_days=7.5)) is None
    assert call.names == []


def test_a_pass_runs_once_after_boot_and_then_only_after_a_snapshot():
    call = Calls(fail=LeaseLost("lease", "task", 3, "test"))
    retention = _retention(call)
    with pytest.raises(LeaseLost):
        retention.run(_manifest(oldest_age_days=9))
    assert retention.run(_manifest(oldest_age_days=9)) is None  # not due again until…
    retention.after_snapshot()
    with pytest.raises(LeaseLost):
        retention.run(_manifest(oldest_age_days=9))
    assert call.names == ["apply retention", "apply retention"]


@pytest.mark.parametrize("error", [LeaseLost("lease", "task", 3, "not renewed"),
                                   Superseded("manifest", 3, 4)])
def test_a_lost_lease_or_a_newer_holder_propagates(error):
    with pytest.raises(type(error)):
        _retention(Calls(fail=error)).run(_manifest(oldest_age_days=9))

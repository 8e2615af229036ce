"""Retention keeps every restore point inside the window: the plan (pure), its effect on moto,
and the lifecycle rule set as data S3 accepts."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest

from tests.conftest import BUCKET
from tests.replica.holder import KEY, Holder, rows_of
from wakeful_replica import retention
from wakeful_replica.errors import NothingToRestore
from wakeful_replica.manifest import OBJECT, SEGMENT, Base, Generation, Manifest
from wakeful_replica.store import ChainStore

DAY = retention.DAY_MS
NOW = 1_900_000_000_000


def base(generation: str, txid: int, at_ms: int, source: str = OBJECT) -> Base:
    return Base(generation, txid, at_ms, "sha", 4096, source)


def test_the_plan_keeps_the_newest_base_before_the_window_and_everything_after():
    history = (base("g1", 1, NOW - 20 * DAY, SEGMENT), base("g1", 40, NOW - 9 * DAY),
               base("g2", 1, NOW - 8 * DAY, SEGMENT), base("g2", 30, NOW - 6 * DAY),
               base("g2", 90, NOW - DAY))
    manifest = Manifest(
        "g2", 120, 5, "task", epoch=2, snapshot=history[-1], history=history,
        lineage=(Generation("g1", 1, NOW - 20 * DAY, end=55),
                 Generation("g2", 2, NOW - 8 * DAY, previous="g1")),
    )
    chosen = retention.plan(manifest, NOW, 7 * DAY)
    # g2@1 (8 days old) is the newest base at or before the window's start: the restore
    # points of the last 7 days start from it or later. All of g1 can go, nothing of g2.
    assert chosen.keep_from == history[2]
    assert chosen.delete == (("g1", 1, 55),)
    assert retention.plan(manifest, NOW, 30 * DAY) is None


def test_a_window_inside_one_generation_deletes_below_the_kept_snapshot():
    history = (base("g", 1, NOW - 9 * DAY, SEGMENT), base("g", 50, NOW - 8 * DAY),
               base("g", 80, NOW - 2 * DAY))
    manifest = Manifest("g", 100, 1, "t", snapshot=history[-1], history=history,
                        lineage=(Generation("g", 1, NOW - 9 * DAY),), retained={"g": 1})
    chosen = retention.plan(manifest, NOW, 7 * DAY)
    assert chosen.keep_from == history[1] and chosen.delete == (("g", 1, 49),)
    assert chosen.positions == 49


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_applied_retention_never_breaks_a_restore_point_inside_the_window(resources, tmp_path):
    store = ChainStore(BUCKET, KEY)
    holder = Holder(store, "task-a", 1, tmp_path / "a")
    clock = Clock(NOW - 12 * DAY)
    holder.chain._wall_ms = clock
    times: dict[int, int] = {}
    states: dict[int, set[str]] = {}
    for day in range(12):
        clock.now = NOW - (12 - day) * DAY
        holder.insert(5)
        holder.sync()
        times[holder.chain.shipped_position] = clock.now
        states[holder.chain.shipped_position] = rows_of(holder.path)
        if day % 3 == 2:
            clock.now += 1
            holder.chain.snapshot()
    chosen = retention.plan(store.read_manifest(), NOW, 7 * DAY)
    assert chosen is not None and chosen.positions > 0
    manifest = retention.apply(store, chosen)
    assert manifest.history[0] == chosen.keep_from
    for generation, first, last in chosen.delete:
        assert store.head_segment(generation, first) is None
        assert store.head_segment(generation, last) is None
    for position, at in times.items():
        target = str(tmp_path / f"at-{position}.db")
        when = dt.datetime.fromtimestamp(at / 1000, dt.UTC)
        if at >= NOW - 7 * DAY:  # inside the window: every point still restores exactly
            store.restore(target, at=when)
            assert rows_of(target) == states[position]
        elif position < chosen.keep_from.txid:
            with pytest.raises(NothingToRestore):
                store.restore(target, at=when)
    store.restore(str(tmp_path / "now.db"))
    assert rows_of(tmp_path / "now.db") == rows_of(holder.path)
    assert store.verify(str(tmp_path)).ok
    holder.close()


def test_the_lifecycle_rules_are_data_s3_accepts(resources):
    rules = retention.lifecycle_rules(KEY, retention_days=7, backup_days=90)
    s3 = boto3.client("s3")
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration=rules)
    stored = {rule["ID"]: rule for rule in
              s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]}
    noncurrent = stored["wakeful-expire-noncurrent-versions"]["NoncurrentVersionExpiration"]
    assert noncurrent["NoncurrentDays"] == 8  # the window and a day: bases outlive it
    assert stored["wakeful-expire-backups"]["Filter"]["Prefix"] == f"{KEY}.backup."
    # No rule expires current objects under the chain's prefix by age.
    for rule in stored.values():
        assert "Days" not in rule.get("Expiration", {}) or rule["Filter"]["Prefix"].startswith(
            f"{KEY}.backup.")

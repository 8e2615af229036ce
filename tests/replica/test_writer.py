"""A holder's run against moto: segments, snapshots to K, stop, restore from the newest snapshot,
point-in-time restore, verify."""

from __future__ import annotations

import datetime as dt
import sqlite3

import boto3
import pytest

from tests.conftest import BUCKET
from tests.fault_proxy import FaultProxy
from tests.replica.holder import KEY, Holder, current_rows, rows_of
from wakeful_replica import cadence
from wakeful_replica.chain import META_GENERATION, META_TXID
from wakeful_replica.errors import NothingToRestore
from wakeful_replica.store import ChainStore


@pytest.fixture
def store(resources):
    return ChainStore(BUCKET, KEY)


def test_a_graceful_stop_leaves_every_committed_row_in_the_current_object(store, tmp_path):
    holder = Holder(store, "task-a", 1, tmp_path / "a")
    for _ in range(5):
        holder.insert(20)
        holder.sync()
    holder.insert(3)
    holder.sync()  # the final segment
    stopped = holder.chain.stop()
    everything = rows_of(holder.path)
    assert len(everything) == 103
    # The seed's promise: `aws s3 cp s3://…/db.sqlite3` gives every committed row.
    assert current_rows(tmp_path / "k.db") == everything
    head = boto3.client("s3").head_object(Bucket=BUCKET, Key=KEY)
    metadata = head["Metadata"]
    assert (metadata["wakeful-holder"], metadata["wakeful-token"]) == ("task-a", "1")
    assert metadata["wakeful-reason"] == "shutdown"
    assert metadata[META_GENERATION] == holder.chain.generation
    assert int(metadata[META_TXID]) == stopped.snapshot.txid
    manifest = store.read_manifest()
    assert manifest.stopped is not None and manifest.stopped.token == 1
    assert manifest.stopped.position == stopped.position
    assert manifest.snapshot.version_id == head["VersionId"]
    # The timestamped backup is the agent's, after it released the lease.
    assert stopped.wrote_current
    holder.close()


def test_restore_starts_from_the_newest_snapshot_with_no_list(store, tmp_path, resources):
    holder = Holder(store, "task-a", 1, tmp_path / "a")
    for _ in range(4):
        holder.insert(20)
        holder.sync()
    base = holder.chain.snapshot()
    for _ in range(3):
        holder.insert(10)
        holder.sync()
    with FaultProxy(resources.url) as proxy:
        watched = ChainStore(BUCKET, KEY, client=boto3.client("s3", endpoint_url=proxy.url))
        restored = watched.restore(str(tmp_path / "restored.db"))
        requests = proxy.requests
    assert rows_of(tmp_path / "restored.db") == holder.acked == rows_of(holder.path)
    assert restored.base == base and restored.txid == holder.chain.shipped_position
    assert not [request for request in requests if request.is_list]
    assert requests[0].method == "GET" and requests[0].path.endswith("manifest.json")
    # Nothing before the snapshot is read: not position 1, not the segments it covers.
    segment_paths = [request.path for request in requests if "/g/" in request.path]
    read = sorted(int(path.rsplit("/", 1)[1].split(".")[0], 16) for path in segment_paths)
    assert read[0] == base.txid + 1
    holder.close()


def test_the_cadence_writes_a_snapshot_when_the_chain_outgrows_the_database(store, tmp_path):
    policy = cadence.Policy(fraction=0.5, min_bytes=0)
    holder = Holder(store, "task-a", 1, tmp_path / "a", policy=policy)
    snapshots = 0
    for _ in range(12):
        holder.insert(30, size=400)
        holder.sync()
        if holder.chain.snapshot_due():
            holder.chain.snapshot()
            snapshots += 1
    assert snapshots >= 2
    assert store.read_manifest().snapshot == holder.chain.snapshot_base
    assert current_rows(tmp_path / "k.db") <= rows_of(holder.path)
    holder.close()


def test_a_full_segment_is_no_reason_for_a_snapshot_but_the_stop_still_writes_k(
    store, tmp_path
):
    # A fresh start whose first capture is a whole database (the file the app brought): it is
    # read by a restore like a snapshot of K would be, so K is not written twice.
    policy = cadence.Policy(fraction=0.5, min_bytes=0)
    holder = Holder(store, "task-a", 1, tmp_path / "a", policy=policy)
    holder.insert(200, size=2000)
    holder.full()
    assert not holder.chain.snapshot_due()
    holder.insert(1)
    holder.sync()
    assert not holder.chain.snapshot_due()
    stopped = holder.chain.stop()
    assert stopped.wrote_current
    assert current_rows(tmp_path / "k.db") == rows_of(holder.path)
    holder.close()


@pytest.mark.parametrize(
    ("policy", "since", "size", "due"),
    [
        (cadence.Policy(fraction=0.5, min_bytes=0), cadence.Since(49, 3, 1.0, True), 100, False),
        (cadence.Policy(fraction=0.5, min_bytes=0), cadence.Since(50, 3, 1.0, True), 100, True),
        (cadence.Policy(fraction=0.5, min_bytes=1000), cadence.Since(500, 3, 1.0, True), 100,
         False),
        (cadence.Policy(max_age_s=60), cadence.Since(1, 1, 61.0, True), 10**9, True),
        (cadence.Policy(fraction=0.0, min_bytes=0), cadence.Since(10**9, 9, 10**9, False), 1,
         False),
    ],
)
def test_snapshot_cadence(policy, since, size, due):
    assert cadence.snapshot_due(policy, since, size) is due


def test_manifest_cadence():
    policy = cadence.Policy(manifest_every_positions=64, manifest_every_s=60)
    assert not cadence.manifest_due(policy, 0, 1000)
    assert not cadence.manifest_due(policy, 63, 59)
    assert cadence.manifest_due(policy, 64, 0)
    assert cadence.manifest_due(policy, 1, 60)


class Clock:
    def __init__(self, start_ms: int) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now


def test_restore_to_a_txid_and_to_a_time_between_two_segments(store, tmp_path):
    holder = Holder(store, "task-a", 1, tmp_path / "a")
    clock = Clock(1_800_000_000_000)
    holder.chain._wall_ms = clock
    states: dict[int, set[str]] = {}
    times: dict[int, int] = {}
    for step in range(6):
        clock.now += 10_000
        holder.insert(5)
        holder.sync()
        states[holder.chain.shipped_position] = rows_of(holder.path)
        times[holder.chain.shipped_position] = clock.now
        if step == 2:
            clock.now += 1
            holder.chain.snapshot()
    positions = sorted(states)
    middle = positions[3]
    # Between two segments: the state of the earlier one.
    at = dt.datetime.fromtimestamp((times[middle] + 4_000) / 1000, dt.UTC)
    restored = store.restore(str(tmp_path / "at.db"), at=at)
    assert restored.txid == middle and rows_of(tmp_path / "at.db") == states[middle]
    early = positions[1]
    by_txid = store.restore(str(tmp_path / "txid.db"), txid=early)
    assert by_txid.txid == early and rows_of(tmp_path / "txid.db") == states[early]
    with pytest.raises(NothingToRestore):
        store.restore(str(tmp_path / "past.db"), txid=holder.chain.shipped_position + 5)
    before = dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)
    with pytest.raises(NothingToRestore):
        store.restore(str(tmp_path / "before.db"), at=before)
    holder.close()


def test_verify_walks_the_chain_and_names_a_damaged_segment(store, tmp_path):
    holder = Holder(store, "task-a", 1, tmp_path / "a")
    for step in range(6):
        holder.insert(10)
        holder.sync()
        if step == 2:
            holder.chain.snapshot()
    report = store.verify(str(tmp_path))
    assert report.ok, report.problems
    assert report.end == (holder.chain.generation, holder.chain.shipped_position)
    assert report.positions == holder.chain.shipped_position - 1  # all but the base
    assert report.bases == 2  # the generation's start and the snapshot in K
    s3 = boto3.client("s3")
    key = store.segment_key(holder.chain.generation, 3)
    body = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    body[-20] ^= 0xFF
    metadata = s3.head_object(Bucket=BUCKET, Key=key)["Metadata"]
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(body), Metadata=metadata)
    damaged = store.verify(str(tmp_path))
    assert not damaged.ok and key in " ".join(damaged.problems)
    holder.close()


def test_a_restored_database_is_a_working_sqlite_file(store, tmp_path):
    holder = Holder(store, "task-a", 1, tmp_path / "a")
    holder.insert(50)
    holder.sync()
    store.restore(str(tmp_path / "r.db"))
    db = sqlite3.connect(tmp_path / "r.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    holder.close()

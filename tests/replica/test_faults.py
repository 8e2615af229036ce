"""Faults at the network edge (tests/fault_proxy.py between boto3 and moto), and the local queue.

Lost answers to writes that landed, 503s for seconds while writing, torn and corrupt objects,
an outage longer than the queue holds, and the request log: no LIST while booting, writing,
snapshotting, stopping or restoring.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from chalicelib import aws
from tests.conftest import BUCKET
from tests.fault_proxy import FaultProxy, s3_put
from tests.replica.holder import KEY, Holder, rows_of
from wakeful_replica.errors import ChainBroken, QueueFull
from wakeful_replica.queue import SegmentQueue
from wakeful_replica.store import ChainStore


@pytest.fixture
def proxy(resources):
    with FaultProxy(resources.url) as running:
        yield running


@pytest.fixture
def store(proxy):
    return ChainStore(BUCKET, KEY, client=aws.client("s3", endpoint_url=proxy.url))


@pytest.fixture
def impatient(proxy):
    """The store through a client that does not retry: an outage shows at once."""
    client = boto3.client("s3", endpoint_url=proxy.url,
                          config=Config(retries={"max_attempts": 1, "mode": "standard"}))
    return ChainStore(BUCKET, KEY, client=client)


def wait_for(condition, seconds: float = 60.0, every: float = 0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(every)
    raise AssertionError("condition not met before the deadline")


def current_put(request) -> bool:
    """A PUT of K itself (not a segment, not a backup)."""
    return request.method == "PUT" and urlsplit(request.path).path.endswith(f"/{KEY}")


def segment_puts(proxy: FaultProxy) -> list[str]:
    return [r.path for r in proxy.requests if r.method == "PUT" and "/g/" in r.path]


def test_a_segment_put_that_landed_with_its_answer_lost_is_ours(store, proxy, tmp_path):
    holder = Holder(store, "task-a", 1, tmp_path / "a")
    holder.insert(10)
    holder.sync()
    proxy.clear_log()
    proxy.lose_answer(s3_put("/g/"), count=1)
    holder.insert(10)
    shipped = holder.sync()  # the client retries; the retry is refused by our own write
    assert shipped.queued == 0 and holder.chain.fenced is None
    puts = segment_puts(proxy)
    assert len(puts) == 2 and puts[0] == puts[1]
    holder.insert(1)
    holder.sync()
    store.restore(str(tmp_path / "r.db"))
    assert rows_of(tmp_path / "r.db") == holder.acked == rows_of(holder.path)
    holder.close()


def test_lost_answers_to_the_snapshot_and_the_manifest_are_ours_too(store, proxy, tmp_path):
    holder = Holder(store, "task-a", 1, tmp_path / "a")
    holder.insert(10)
    holder.sync()
    lost = [proxy.lose_answer(current_put, count=1),
            proxy.lose_answer(s3_put("manifest.json"), count=1)]
    base = holder.chain.snapshot()
    assert [fault.hits for fault in lost] == [1, 1]
    assert store.read_manifest().snapshot == base
    assert holder.chain.fenced is None
    holder.close()


def test_503s_for_seconds_queue_segments_that_ship_in_order_after(store, proxy, tmp_path):
    holder = Holder(store, "task-a", 1, tmp_path / "a")
    # 503s for as long as two syncs take (each outlasts the client's own retries).
    outage = proxy.fail(503, s3_put("/g/"))
    for count in (1, 2):
        holder.insert(10)
        during = holder.sync()
        assert during.queued == count and during.error is not None and during.error.retryable
    assert holder.acked < rows_of(holder.path)
    proxy.remove(outage)
    wait_for(lambda: holder.sync().queued == 0)
    assert holder.acked == rows_of(holder.path)
    # Shipped in order: every position once, ascending, with no gap.
    landed = sorted({p for p in segment_puts(proxy)})
    numbers = [int(p.rsplit("/", 1)[1].split(".")[0], 16) for p in landed]
    assert numbers == list(range(min(numbers), max(numbers) + 1))
    store.restore(str(tmp_path / "r.db"))
    assert rows_of(tmp_path / "r.db") == rows_of(holder.path)
    holder.close()


def test_an_outage_past_the_queue_bound_continues_with_a_full_snapshot(
    impatient, proxy, tmp_path
):
    store = impatient
    holder = Holder(store, "task-a", 1, tmp_path / "a", queue_bytes=12_000)
    holder.insert(5)
    holder.sync()
    outage = proxy.fail(503, s3_put("/g/"))
    for _ in range(8):
        holder.insert(20, size=400)
        holder.sync()
    assert holder.chain.needs_full  # captures past the bound were dropped, not queued
    assert holder.chain.queue.bytes <= 12_000
    proxy.remove(outage)
    wait_for(lambda: holder.sync().queued == 0 and not holder.chain.needs_full)
    store.restore(str(tmp_path / "r.db"))
    assert rows_of(tmp_path / "r.db") == rows_of(holder.path) == holder.acked
    assert len(holder.acked) == 165
    holder.close()


def test_the_queue_is_bounded_ordered_and_overflows_once(tmp_path):
    queue = SegmentQueue(str(tmp_path / "q"), max_bytes=100)
    queue.push(5, b"x" * 60)
    with pytest.raises(ValueError):
        queue.push(7, b"y")  # positions queue in order, with no gap
    with pytest.raises(QueueFull):
        queue.push(6, b"y" * 60)
    assert queue.overflowed
    with pytest.raises(QueueFull):
        queue.push(6, b"z")  # once overflowed, every capture is dropped until a full one
    queue.push(6, b"F" * 500, bounded=False)
    queue.end_overflow()
    assert [queue.peek().txid, len(queue)] == [5, 2]
    queue.pop(5)
    assert queue.peek().read() == b"F" * 500
    again = SegmentQueue(str(tmp_path / "q"))
    assert len(again) == 0  # a new run never ships an earlier run's positions


def test_a_torn_segment_stops_the_restore_at_the_last_good_position(store, tmp_path):
    holder = Holder(store, "task-a", 1, tmp_path / "a")
    for _ in range(4):
        holder.insert(10)
        holder.sync()
    last = holder.chain.shipped_position
    s3 = boto3.client("s3")
    key = store.segment_key(holder.chain.generation, last)
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    metadata = s3.head_object(Bucket=BUCKET, Key=key)["Metadata"]
    s3.put_object(Bucket=BUCKET, Key=key, Body=body[: len(body) // 2], Metadata=metadata)
    with pytest.raises(ChainBroken) as broken:
        store.restore(str(tmp_path / "r.db"))
    assert broken.value.reached == last - 1 and not (tmp_path / "r.db").exists()
    holder.close()


def test_a_corrupt_snapshot_in_the_current_object_stops_the_restore(store, tmp_path):
    holder = Holder(store, "task-a", 1, tmp_path / "a")
    holder.insert(10)
    holder.sync()
    base = holder.chain.snapshot()
    s3 = boto3.client("s3")
    # The version the manifest names is damaged in place (a new version with its metadata).
    damaged = s3.get_object(Bucket=BUCKET, Key=KEY, VersionId=base.version_id)["Body"].read()
    s3.delete_object(Bucket=BUCKET, Key=KEY, VersionId=base.version_id)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=damaged[:-100])
    with pytest.raises(ChainBroken) as broken:
        store.restore(str(tmp_path / "r.db"))
    assert broken.value.reached == 0 and "missing" in broken.value.reason
    assert not (tmp_path / "r.db").exists()
    holder.close()


def test_boot_steady_writing_snapshots_stop_and_restore_send_no_list(store, proxy, tmp_path):
    first = Holder(store, "task-a", 1, tmp_path / "a")
    first.insert(5)
    first.sync()
    first.chain.stop()
    first.close()
    proxy.clear_log()
    holder = Holder(store, "task-b", 2, tmp_path / "b")
    for step in range(6):
        holder.insert(10)
        holder.sync()
        if step == 3:
            holder.chain.snapshot()
    holder.chain.stop()
    store.restore(str(tmp_path / "r.db"))
    requests = proxy.requests
    assert requests and not [request.path for request in requests if request.is_list]
    assert rows_of(tmp_path / "r.db") == rows_of(holder.path)
    holder.close()

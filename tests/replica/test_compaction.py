"""Compacted segments: a restore's requests stop growing with the run (docs/replication.md §2.1,
§6).

A holder's run of many syncs restores through a few compactions (counted through the fault
proxy, against moto); a compaction rebuilds exactly what its positions do; a point-in-time
restore inside a compacted range reads the positions; a missing or corrupt compaction falls
back to them; a stale holder never compacts past what it landed.
"""

from __future__ import annotations

import datetime as dt
import io
import os

import boto3
import pytest

from chalicelib import aws
from tests.conftest import BUCKET
from tests.fault_proxy import FaultProxy
from tests.replica.holder import KEY, Holder, rows_of
from wakeful_replica import cadence, compaction, ltx, retention
from wakeful_replica.compaction import FANOUT, SPANS
from wakeful_replica.errors import Fenced
from wakeful_replica.store import ChainStore

# No periodic snapshot: the run stays on one base, the case compaction is for.
LONG_RUN = cadence.Policy(min_bytes=1 << 40)


class Clock:
    def __init__(self, start_ms: int) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def store(resources):
    return ChainStore(BUCKET, KEY)


@pytest.fixture
def proxy(resources):
    with FaultProxy(resources.url) as running:
        yield running


def watched(proxy: FaultProxy) -> ChainStore:
    return ChainStore(BUCKET, KEY, client=aws.client("s3", endpoint_url=proxy.url))


def restore_gets(proxy: FaultProxy, destination: str) -> tuple[int, list[str]]:
    proxy.clear_log()
    restored = watched(proxy).restore(destination)
    requests = [r for r in proxy.requests if r.service == "s3"]
    assert not [r for r in requests if r.is_list]
    assert all(r.method == "GET" for r in requests), [r.method for r in requests]
    assert restored.warnings == ()
    return len(requests), [r.path for r in requests]


def run(holder: Holder, syncs: int, rows: int = 3) -> None:
    for _ in range(syncs):
        holder.insert(rows)
        holder.sync()


# The bound, as a protocol property: the manifest, the base, at most FANOUT - 1 compactions per
# level, fewer than FANOUT single positions the manifest names (it moves with each landed
# compaction), then the positions past it and the probe's misses (batches 2, 3, 4: ≤ 4).
BOUND = 2 + len(SPANS) * (FANOUT - 1) + (FANOUT - 1) + (FANOUT - 1) + 4


def test_a_long_run_restores_with_a_bounded_number_of_gets(store, proxy, tmp_path):
    holder = Holder(store, "task-a", 1, tmp_path / "a", policy=LONG_RUN)
    run(holder, 70)
    gets, paths = restore_gets(proxy, str(tmp_path / "r1.db"))
    assert rows_of(tmp_path / "r1.db") == holder.acked == rows_of(holder.path)
    assert gets <= BOUND
    assert any("/c/" in path for path in paths)  # it read compactions, not 70 positions
    # Twice as long a run: the same bound, not twice the GETs.
    run(holder, 70)
    gets, _ = restore_gets(proxy, str(tmp_path / "r2.db"))
    assert rows_of(tmp_path / "r2.db") == holder.acked == rows_of(holder.path)
    assert gets <= BOUND
    # The manifest's list stays short: none inside another, all past the base.
    listed = store.read_manifest().compactions[holder.chain.generation]
    assert len(listed) <= len(SPANS) * (FANOUT - 1)
    holder.close()


def test_a_compaction_rebuilds_byte_for_byte_what_its_positions_do(store, tmp_path):
    holder = Holder(store, "task-a", 1, tmp_path / "a", policy=LONG_RUN)
    run(holder, 2 * FANOUT + 3, rows=20)
    manifest = store.read_manifest()
    generation = holder.chain.generation
    ranges = manifest.compactions[generation]
    assert ranges
    base = manifest.snapshot
    assert base is not None
    start = store.get_segment(generation, base.txid)
    assert start is not None
    last = max(b for _, b in ranges)
    one_by_one, compacted = io.BytesIO(), io.BytesIO()
    ltx.apply(start.segment, one_by_one)
    ltx.apply(start.segment, compacted)
    for position in range(base.txid + 1, last + 1):
        ltx.apply(store.get_segment(generation, position).segment, one_by_one)
    for step in compaction.cover(base.txid + 1, last, ranges):
        found = holder.chain.compactions.get(generation, *step) if step[0] != step[1] else (
            store.get_segment(generation, step[0]))
        ltx.apply(found.segment, compacted)
    assert compacted.getvalue() == one_by_one.getvalue()
    report = store.verify(str(tmp_path))
    assert report.ok, report.problems
    assert report.compactions == len(ranges)
    holder.close()


def test_a_merge_keeps_a_shrink_inside_its_range():
    """Page 3 cut by a shrink and the file grown again without it reads back as zeros."""
    size = 512
    page = {n: bytes([n]) * size for n in range(1, 6)}
    before = io.BytesIO()
    ltx.apply(ltx.decode(ltx.encode(ltx.Header(size, 4, 1, 1, 1), sorted(
        (n, page[n]) for n in range(1, 5)))), before)
    parts = [
        ltx.Header(size, 4, 2, 2, 2), ltx.Header(size, 2, 3, 3, 3), ltx.Header(size, 5, 4, 4, 4),
    ]
    pages = [[(3, page[5])], [(1, page[2])], [(5, page[5])]]
    segments = [ltx.decode(ltx.encode(header, items)) for header, items in
                zip(parts, pages, strict=True)]
    one_by_one = io.BytesIO(before.getvalue())
    for segment in segments:
        ltx.apply(segment, one_by_one)
    merged = ltx.decode(compaction.merge(2, segments))
    assert (merged.header.min_txid, merged.header.max_txid, merged.header.commit) == (2, 4, 5)
    compacted = io.BytesIO(before.getvalue())
    ltx.apply(merged, compacted)
    assert compacted.getvalue() == one_by_one.getvalue()
    assert one_by_one.getvalue()[2 * size:3 * size] == bytes(size)


def test_restore_to_a_txid_or_a_time_inside_a_compacted_range(store, tmp_path):
    holder = Holder(store, "task-a", 1, tmp_path / "a", policy=LONG_RUN)
    clock = Clock(1_800_000_000_000)
    holder.chain._wall_ms = clock
    states: dict[int, set[str]] = {}
    times: dict[int, int] = {}
    for _ in range(2 * FANOUT):
        clock.now += 10_000
        holder.insert(4)
        holder.sync()
        states[holder.chain.shipped_position] = rows_of(holder.path)
        times[holder.chain.shipped_position] = clock.now
    ranges = store.read_manifest().compactions[holder.chain.generation]
    a, b = ranges[0]
    inside = (a + b) // 2
    restored = store.restore(str(tmp_path / "t.db"), txid=inside)
    assert restored.txid == inside and rows_of(tmp_path / "t.db") == states[inside]
    at = times[inside] + 5_000  # between two syncs: the earlier one's state
    restored = store.restore(str(tmp_path / "at.db"),
                             at=dt.datetime.fromtimestamp(at / 1000, dt.UTC))
    assert restored.txid == inside and rows_of(tmp_path / "at.db") == states[inside]
    # At the end of the range the compaction itself is used, and gives the same state.
    restored = store.restore(str(tmp_path / "b.db"), txid=b)
    assert rows_of(tmp_path / "b.db") == states[b]
    holder.close()


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_compaction_falls_back_to_its_positions(
    store, proxy, tmp_path, damage
):
    holder = Holder(store, "task-a", 1, tmp_path / "a", policy=LONG_RUN)
    run(holder, FANOUT + 3, rows=10)
    generation = holder.chain.generation
    (a, b), = store.read_manifest().compactions[generation]
    key = holder.chain.compactions.key(generation, a, b)
    s3 = boto3.client("s3")
    if damage == "missing":
        s3.delete_object(Bucket=BUCKET, Key=key)
    else:
        body = s3.get_object(Bucket=BUCKET, Key=key)
        data = bytearray(body["Body"].read())
        data[len(data) // 2] ^= 0xFF
        s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(data), Metadata=body["Metadata"])
    proxy.clear_log()
    restored = watched(proxy).restore(str(tmp_path / "r.db"))
    # The state is the current one, never an older one; the fallback is said.
    assert rows_of(tmp_path / "r.db") == holder.acked == rows_of(holder.path)
    assert restored.txid == holder.chain.shipped_position
    assert len(restored.warnings) == 1 and key in restored.warnings[0]
    read = [r.path for r in proxy.requests if "/g/" in r.path]
    assert sum(f"/{position:016x}.ltx" in " ".join(read) for position in range(a, b + 1)) == (
        b - a + 1)
    report = store.verify(str(tmp_path))
    assert not report.ok and key in " ".join(report.problems)
    # Boot reads the same way, and says so.
    second = Holder(store, "task-b", 2, tmp_path / "b", policy=LONG_RUN)
    assert rows_of(second.path) == holder.acked
    assert any(key in warning for warning in second.booted.warnings)
    second.close()
    holder.close()


def test_a_stale_holder_never_compacts_past_what_it_landed(store, tmp_path):
    """A holds queued positions when B claims; B's positions, not A's, are in every
    compaction and restore."""
    policy = cadence.Policy(min_bytes=1 << 40, compaction_spans=(4, 16))
    a = Holder(store, "task-a", 1, tmp_path / "a", policy=policy)
    run(a, 5, rows=5)  # positions 2..7 (1 is the start, 2 the first full capture)
    queued = set(a.insert(5))
    capture = a.tracker.read()
    a.chain.append(capture.pages, capture.commit, capture.page_size)  # 8: queued, not shipped
    b = Holder(store, "task-b", 2, tmp_path / "b", policy=policy)
    assert b.booted.position == 8  # B's claim took the position A has queued
    run(b, 12, rows=5)  # 9..20
    with pytest.raises(Fenced):
        a.chain.ship()
    generation = b.chain.generation
    s3 = boto3.client("s3")
    keys = [item["Key"] for item in s3.list_objects_v2(
        Bucket=BUCKET, Prefix=f"{KEY}.wakeful/g/{generation}/c/").get("Contents", [])]
    ranges = sorted(tuple(int(part, 16) for part in os.path.basename(key)[:-4].split("-"))
                    for key in keys)
    # A's own landed block is compacted (by A; aligned on its first full capture at 2); the
    # block holding A's queued position and B's claim never is, by either; B compacts only
    # from its claim on.
    assert ranges == [(3, 6), (11, 14), (15, 18)]
    restored = store.restore(str(tmp_path / "r.db"))
    rows = rows_of(tmp_path / "r.db")
    assert b.acked <= rows and a.acked <= rows
    assert not queued & rows  # A's queued rows never became the state
    assert restored.txid == b.chain.shipped_position
    assert store.verify(str(tmp_path)).ok
    a.close()
    b.close()


def test_after_a_clean_stop_the_probe_reads_one_position(store, proxy, tmp_path):
    holder = Holder(store, "task-a", 1, tmp_path / "a", policy=LONG_RUN)
    run(holder, 5)
    holder.chain.stop()
    gets, paths = restore_gets(proxy, str(tmp_path / "r.db"))
    manifest = store.read_manifest()
    # The manifest, the base (K), and only the position after the recorded stop.
    assert gets == 3, paths
    assert paths[-1].endswith(f"/{manifest.stopped.position + 1:016x}.ltx") or any(
        path.endswith(f"/{manifest.stopped.position + 1:016x}.ltx") for path in paths)
    assert rows_of(tmp_path / "r.db") == rows_of(holder.path)
    holder.close()


def test_retention_deletes_the_compactions_below_the_kept_base(store, tmp_path):
    day = retention.DAY_MS
    now = 1_900_000_000_000
    holder = Holder(store, "task-a", 1, tmp_path / "a",
                    policy=cadence.Policy(min_bytes=1 << 40, compaction_spans=(2, 4)))
    clock = Clock(now - 12 * day)
    holder.chain._wall_ms = clock
    for step in range(36):
        clock.now = now - 12 * day + step * day // 3
        holder.insert(3)
        holder.sync()
        if step % 9 == 8:
            clock.now += 1
            holder.chain.snapshot()
    generation = holder.chain.generation

    def compacted() -> list[tuple[int, int]]:
        listing = boto3.client("s3").list_objects_v2(
            Bucket=BUCKET, Prefix=f"{KEY}.wakeful/g/{generation}/c/")
        return sorted(tuple(int(part, 16) for part in os.path.basename(item["Key"])[:-4]
                            .split("-")) for item in listing.get("Contents", []))

    before = compacted()
    chosen = retention.plan(store.read_manifest(), now, 7 * day, spans=(2, 4))
    assert chosen is not None
    kept = chosen.keep_from.txid
    assert [item for item in before if item[1] < kept]  # there were some below it
    retention.apply(store, chosen)
    after = compacted()
    assert after and not [item for item in after if item[1] < kept]
    assert [item for item in before if item[0] > kept] == after
    restored = store.restore(str(tmp_path / "r.db"))
    assert rows_of(tmp_path / "r.db") == holder.acked
    assert restored.txid == holder.chain.shipped_position
    holder.close()


def test_the_compactor_merges_only_whole_runs_of_its_own_positions():
    def empty(txid: int) -> ltx.Segment:
        return ltx.decode(ltx.encode(ltx.Header(512, 1, txid, txid, txid), []))

    def feed(compactor, txids, skip=()):
        done = []
        for txid in txids:
            merges = compactor.skip(txid) if txid in skip else compactor.landed(
                txid, empty(txid))
            done += [(merged.first, merged.last) for merged in merges]
        return done

    # Aligned on the base 1; this writer's first position is 4: the run 2..3 is not its own,
    # 4..5 is; the level of 4 (2..5) starts before it.
    compactor = compaction.Compactor(1, 4, spans=(2, 4))
    assert feed(compactor, range(4, 10)) == [(4, 5), (6, 7), (8, 9), (6, 9)]
    # A position too large to merge breaks every run holding it.
    compactor = compaction.Compactor(1, 2, spans=(2, 4))
    assert feed(compactor, range(2, 10), skip={4}) == [(2, 3), (6, 7), (8, 9), (6, 9)]
    # After a new base (a snapshot marker at 9) runs align on it.
    compactor.restart(9)
    assert feed(compactor, range(10, 14)) == [(10, 11), (12, 13), (10, 13)]

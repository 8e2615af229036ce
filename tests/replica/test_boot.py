"""Boot against moto: a fresh bucket, adoption of today's layout and of db-sync.sh's, an
operator's upload told apart from wakeful's own writes (stale ones included), the paused old
holder."""

from __future__ import annotations

import sqlite3
import threading
import time

import boto3
import pytest

from chalicelib import aws
from chalicelib.store import DatabaseStore, UploadIntent
from container.snapshot import take
from tests.conftest import BUCKET
from tests.fault_proxy import FaultProxy
from tests.replica.holder import KEY, Holder, current_rows, rows_of, upload_plain
from wakeful_replica.boot import ADOPTED, FRESH, OPERATOR_RESTORE, RESUMED, boot
from wakeful_replica.chain import END, Writer
from wakeful_replica.errors import Fenced, OutOfBandUpload, PositionTaken, Superseded
from wakeful_replica.store import ChainStore


@pytest.fixture
def store(resources):
    return ChainStore(BUCKET, KEY)


def is_claim(request) -> bool:
    return request.method == "PUT" and request.headers.get("x-amz-meta-wakeful-kind") == "claim"


def make_database(path, ids) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS rows (id TEXT PRIMARY KEY, body BLOB)")
    db.executemany("INSERT INTO rows VALUES (?, randomblob(100))", [(i,) for i in ids])
    db.close()


def test_a_fresh_bucket_starts_the_first_generation_empty(store, tmp_path):
    booted = boot(store, Writer("task-a", 1), str(tmp_path / "db.sqlite3"))
    assert booted.how == FRESH and booted.position == 1 and booted.epoch == 1
    assert not (tmp_path / "db.sqlite3").exists()
    holder = Holder(store, "task-b", 2, tmp_path / "b")  # the next boot resumes it
    assert holder.booted.how == RESUMED and holder.booted.position == 2
    holder.close()


def v1_upload(tmp_path, ids, reason="shutdown", etag=None) -> str:
    """What today's agent leaves: a verified snapshot PUT with its metadata, and a backup."""
    source = tmp_path / f"v1-{len(ids)}.db"
    make_database(source, ids)
    snapshot = take(str(source), str(tmp_path / f"v1-{len(ids)}.snap"))
    v1 = DatabaseStore(BUCKET, KEY)
    info = v1.upload(snapshot, etag, UploadIntent("v1-task", 7, reason))
    v1.create_backup(info)
    return info.etag


def test_a_bucket_of_todays_agent_is_adopted_with_nothing_lost(store, tmp_path):
    v1_upload(tmp_path, [f"v1-{n}" for n in range(30)])
    s3 = boto3.client("s3")
    before = s3.head_object(Bucket=BUCKET, Key=KEY)
    holder = Holder(store, "task-a", 8, tmp_path / "a")
    assert holder.booted.how == ADOPTED
    assert rows_of(holder.path) == {f"v1-{n}" for n in range(30)}
    # K, its versions and the backups are left as they were.
    after = s3.head_object(Bucket=BUCKET, Key=KEY)
    assert after["VersionId"] == before["VersionId"]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{KEY}.backup.")["KeyCount"] == 1
    holder.insert(5)
    holder.sync()
    holder.chain.stop()
    assert current_rows(tmp_path / "k.db") == rows_of(holder.path)
    # The next boot is a resume, not another adoption.
    again = boot(store, Writer("task-b", 9), str(tmp_path / "b.db"))
    assert again.how == RESUMED and rows_of(tmp_path / "b.db") == rows_of(holder.path)
    holder.close()


def test_a_db_sync_bucket_is_adopted_and_a_corrupt_current_falls_back(store, tmp_path):
    good = tmp_path / "good.db"
    make_database(good, ["plain-1", "plain-2"])
    upload_plain(good)
    boto3.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=b"SQLite format 3\x00torn")
    booted = boot(store, Writer("task-a", 1), str(tmp_path / "db.sqlite3"))
    assert booted.how == ADOPTED
    assert rows_of(tmp_path / "db.sqlite3") == {"plain-1", "plain-2"}
    # An error for an operator to look at, not a passing warning; and K is rewritten.
    assert any("falling back" in failure for failure in booted.failures)
    assert booted.changed_since_snapshot


def test_an_operators_upload_starts_a_new_generation_and_keeps_the_old_chain(store, tmp_path):
    first = Holder(store, "task-a", 1, tmp_path / "a")
    first.insert(10)
    first.sync()
    first.chain.stop()
    old_generation, old_end = first.chain.generation, first.chain.shipped_position
    old_rows = rows_of(first.path)
    first.close()
    good = tmp_path / "good.db"
    make_database(good, ["operator-1"])
    upload_plain(good)
    second = Holder(store, "task-b", 2, tmp_path / "b")
    assert second.booted.how == OPERATOR_RESTORE
    assert rows_of(second.path) == {"operator-1"}
    assert second.booted.generation != old_generation and second.booted.epoch == 2
    end = store.head_segment(old_generation, old_end + 1)
    assert end.kind == END and end.metadata["wakeful-next-generation"] == second.chain.generation
    # The old chain stays whole for point-in-time restore.
    store.restore(str(tmp_path / "old.db"), txid=old_end, generation=old_generation)
    assert rows_of(tmp_path / "old.db") == old_rows
    second.insert(3)
    second.sync()
    second.close()
    # The upload is honoured once: the next boot resumes the new generation.
    third = boot(store, Writer("task-c", 3), str(tmp_path / "c.db"))
    assert third.how == RESUMED and third.generation == second.chain.generation
    assert rows_of(tmp_path / "c.db") == rows_of(second.path)


def test_a_stale_holders_snapshot_is_not_taken_for_an_operators_upload(store, tmp_path):
    stale = Holder(store, "task-a", 1, tmp_path / "a")
    stale.insert(10)
    stale.sync()
    pending = stale.chain.write_current(stale.chain.begin_snapshot())  # its manifest CAS never ran
    stale.insert(4)
    stale.sync()
    assert pending.stored is not None
    fresh = Holder(store, "task-b", 2, tmp_path / "b")
    assert fresh.booted.how == RESUMED
    assert rows_of(fresh.path) == stale.acked
    # Its next snapshot replaces the stale one (a smaller token), kept as a version.
    fresh.insert(2)
    fresh.sync()
    fresh.chain.snapshot()
    assert current_rows(tmp_path / "k.db") == rows_of(fresh.path)
    stale.close()
    fresh.close()


def test_an_upload_that_fails_its_check_is_refused_and_the_chain_goes_on(store, tmp_path):
    first = Holder(store, "task-a", 1, tmp_path / "a")
    first.insert(10)
    first.sync()
    first.close()
    boto3.client("s3").put_object(Bucket=BUCKET, Key=KEY, Body=b"not a database at all")
    second = Holder(store, "task-b", 2, tmp_path / "b")
    assert second.booted.how == RESUMED
    assert rows_of(second.path) == first.acked
    assert any("fails its check" in warning for warning in second.booted.warnings)
    second.chain.stop()  # the refused upload is replaced by a real snapshot
    assert current_rows(tmp_path / "k.db") == rows_of(second.path)
    second.close()


def test_the_paused_old_holder_is_refused_and_the_new_holders_writes_survive(store, tmp_path):
    old = Holder(store, "task-a", 1, tmp_path / "a")
    old.insert(10)
    old.sync()
    # A pauses past its TTL; B acquires (token + 1) and claims before writing anything.
    new = Holder(store, "task-b", 2, tmp_path / "b")
    assert rows_of(new.path) == old.acked
    old.insert(5)
    with pytest.raises(Fenced) as fenced:
        old.sync()
    cause = fenced.value.cause
    assert isinstance(cause, PositionTaken) and (cause.token, cause.our_token) == (2, 1)
    with pytest.raises(Fenced):
        old.chain.snapshot()  # nothing is written after the first refusal
    new.insert(7)
    new.sync()
    new.chain.stop()
    restored = store.restore(str(tmp_path / "r.db"))
    assert rows_of(tmp_path / "r.db") == new.acked | old.acked == rows_of(new.path)
    assert restored.txid == new.chain.shipped_position
    # A holder that was paused during its own boot (token 1) is refused before its app starts.
    with pytest.raises(Superseded):
        boot(store, Writer("task-a", 1), str(tmp_path / "late.db"))
    old.close()
    new.close()


def test_an_upload_while_running_is_never_overwritten_and_honoured_at_the_next_boot(
    store, tmp_path
):
    running = Holder(store, "task-a", 1, tmp_path / "a")
    running.insert(10)
    running.sync()
    good = tmp_path / "good.db"
    make_database(good, ["operator-1"])
    version = upload_plain(good)
    with pytest.raises(OutOfBandUpload):
        running.chain.snapshot()
    running.insert(3)
    running.sync()  # segments keep shipping: the old chain stays whole
    stopped = running.chain.stop()
    assert any("outside wakeful" in warning for warning in stopped.warnings)
    assert boto3.client("s3").head_object(Bucket=BUCKET, Key=KEY)["VersionId"] == version
    store.restore(str(tmp_path / "old.db"), txid=stopped.position,
                  generation=running.chain.generation)
    assert rows_of(tmp_path / "old.db") == rows_of(running.path)
    nxt = boot(store, Writer("task-b", 2), str(tmp_path / "b.db"))
    assert nxt.how == OPERATOR_RESTORE and rows_of(tmp_path / "b.db") == {"operator-1"}
    running.close()


def test_an_old_write_landing_between_restore_and_claim_is_adopted(resources, tmp_path):
    with FaultProxy(resources.url) as proxy:
        store = ChainStore(BUCKET, KEY, client=aws.client("s3", endpoint_url=proxy.url))
        old = Holder(store, "task-a", 1, tmp_path / "a")
        old.insert(10)
        old.sync()
        held = proxy.hang(is_claim, count=1)
        booted: list[Holder] = []
        thread = threading.Thread(
            target=lambda: booted.append(Holder(store, "task-b", 2, tmp_path / "b"))
        )
        thread.start()
        deadline = time.monotonic() + 60
        while not held.hits and time.monotonic() < deadline:
            time.sleep(0.01)
        assert held.hits == 1  # B restored the chain; its claim is in flight
        old.insert(6)
        assert old.sync().queued == 0  # A's write lands at the position B is claiming
        time.sleep(0.1)  # let the proxy start holding the claim before it lets go
        proxy.heal()  # the held claim is dropped unanswered; the client sends it again
        thread.join(60)
        assert booted, "the boot did not finish"
        new = booted[0]
        assert new.booted.adopted and new.booted.position == old.chain.shipped_position + 1
        assert rows_of(new.path) == old.acked  # A's acknowledged write is kept
        old.insert(1)
        with pytest.raises(Fenced):
            old.sync()
        new.insert(2)
        new.sync()
        store.restore(str(tmp_path / "r.db"))
        assert rows_of(tmp_path / "r.db") == old.acked | new.acked
        old.close()
        new.close()


def test_a_stale_snapshot_landing_after_the_new_holders_never_replaces_it(store, tmp_path):
    stale = Holder(store, "task-a", 1, tmp_path / "a")
    stale.insert(10)
    stale.sync()
    pending = stale.chain.begin_snapshot()  # its marker lands; then it pauses past the TTL
    fresh = Holder(store, "task-b", 2, tmp_path / "b")
    fresh.insert(5)
    fresh.sync()
    fresh.chain.snapshot()
    newest = current_rows(tmp_path / "k1.db")
    with pytest.raises(Fenced) as fenced:
        stale.chain.write_current(pending)  # lands last, on a newer holder's K
    assert isinstance(fenced.value.cause, Superseded)
    assert current_rows(tmp_path / "k2.db") == newest == rows_of(fresh.path)
    stale.close()
    fresh.close()

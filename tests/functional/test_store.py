"""The S3 store against a moto server over HTTP, with real SQLite files.

Compare-and-swap uploads, the multipart path, verified downloads with fallback, backups and
retention, and the restore sources (backup, version, time).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import sqlite3
import time
from pathlib import Path
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.config import Config

from chalicelib.download import download_newest_good
from chalicelib.errors import (
    CorruptDatabase,
    FencingError,
    NoGoodVersion,
    NotFound,
    StoreUnavailable,
)
from chalicelib.files import Snapshot
from chalicelib.integrity import fetch_verified
from chalicelib.sources import find_at, find_backup, find_version
from chalicelib.store import DatabaseStore, MiB, ObjectInfo, UploadIntent
from container.snapshot import take
from tests.conftest import BUCKET
from tests.fault_proxy import fault_proxy, s3_put

KEY = "db.sqlite3"


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def s3(moto_server):
    # One client for the module: building a botocore session per test costs ~0.3 s.
    return boto3.client("s3", endpoint_url=moto_server.url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(resources, s3, clock) -> DatabaseStore:
    return DatabaseStore(BUCKET, KEY, client=s3, clock=clock, backup_retention=30)


# -- helpers --------------------------------------------------------------------------------


def make_db(path: Path, rows: int, blob: int = 0) -> Path:
    """A SQLite file with ``rows`` numbered rows (each with ``blob`` random bytes)."""
    if path.exists():
        path.unlink()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)")
    db.executemany(
        "INSERT INTO rows VALUES (?, ?)",
        [(n, os.urandom(blob) if blob else b"x" * 50) for n in range(1, rows + 1)],
    )
    db.commit()
    db.close()
    return path


def snapshot_of(tmp_path: Path, rows: int, name: str = "db", blob: int = 0) -> Snapshot:
    source = make_db(tmp_path / f"{name}.live.sqlite3", rows, blob)
    return take(str(source), str(tmp_path / f"{name}.snapshot.sqlite3"))


def row_ids(path: str | Path) -> list[int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT id FROM rows ORDER BY id")]
    finally:
        db.close()


def intent(holder: str = "task-a", token: int = 1, reason: str = "periodic") -> UploadIntent:
    return UploadIntent(holder=holder, token=token, reason=reason)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def current_bytes(s3) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()


def version_count(s3) -> int:
    listing = s3.list_object_versions(Bucket=BUCKET, Prefix=KEY)
    return len([v for v in listing.get("Versions", []) if v["Key"] == KEY])


def wait_for_next_second() -> None:
    """S3 LastModified has one-second resolution: make the next write land in a later second."""
    start = int(time.time())
    deadline = time.monotonic() + 2.0
    while int(time.time()) == start and time.monotonic() < deadline:
        time.sleep(0.02)


# -- compare-and-swap -----------------------------------------------------------------------


def test_first_upload_uses_if_none_match_and_records_metadata(store, s3, tmp_path):
    snap = snapshot_of(tmp_path, 3)

    info = store.upload(snap, None, intent("task-a", 7, "shutdown"))

    head = store.head()
    assert head is not None
    assert head.etag == info.etag
    assert head.version_id == info.version_id
    assert head.size == snap.size
    assert head.sha256 == snap.sha256 == sha256(current_bytes(s3))
    assert (head.holder, head.token, head.reason) == ("task-a", 7, "shutdown")


def test_if_none_match_refused_when_an_object_appeared(store, s3, tmp_path):
    store.upload(snapshot_of(tmp_path, 3, "first"), None, intent("task-a"))
    winner = current_bytes(s3)

    with pytest.raises(FencingError) as refused:
        store.upload(snapshot_of(tmp_path, 9, "second"), None, intent("task-b"))

    assert refused.value.expected_etag is None
    assert not refused.value.retryable
    assert current_bytes(s3) == winner
    assert version_count(s3) == 1


def test_if_match_accepts_the_etag_this_writer_saw(store, tmp_path):
    first = store.upload(snapshot_of(tmp_path, 3, "v1"), None, intent())
    second = store.upload(snapshot_of(tmp_path, 5, "v2"), first.etag, intent())
    assert store.head().etag == second.etag
    assert second.version_id != first.version_id


def test_if_match_refused_after_another_writer(store, s3, tmp_path):
    base = store.upload(snapshot_of(tmp_path, 3, "base"), None, intent("task-a", 1))
    # Writer B took over from the same base and wrote first.
    winner = store.upload(snapshot_of(tmp_path, 5, "b"), base.etag, intent("task-b", 2))

    with pytest.raises(FencingError) as refused:
        store.upload(snapshot_of(tmp_path, 4, "a"), base.etag, intent("task-a", 1))

    assert refused.value.expected_etag == base.etag
    head = store.head()
    assert head.etag == winner.etag
    assert head.holder == "task-b"
    assert version_count(s3) == 2


def test_if_match_refused_when_the_object_was_deleted(store, s3, tmp_path):
    base = store.upload(snapshot_of(tmp_path, 3), None, intent())
    s3.delete_object(Bucket=BUCKET, Key=KEY)
    with pytest.raises(FencingError):
        store.upload(snapshot_of(tmp_path, 4, "late"), base.etag, intent())
    assert store.head() is None


# -- multipart ------------------------------------------------------------------------------


@pytest.fixture
def big_store(resources, s3, clock) -> DatabaseStore:
    return DatabaseStore(
        BUCKET, KEY, client=s3, clock=clock, multipart_threshold=5 * MiB, part_size=5 * MiB
    )


@pytest.fixture
def big_snapshot(tmp_path) -> Snapshot:
    snap = snapshot_of(tmp_path, 12, "big", blob=MiB)
    assert snap.size > 12 * MiB
    return snap


def test_multipart_upload_is_a_verifiable_object(big_store, s3, big_snapshot, tmp_path):
    info = big_store.upload(big_snapshot, None, intent("task-a", 3, "shutdown"))

    assert info.etag.strip('"').endswith("-3"), "expected three 5 MiB parts"
    head = big_store.head()
    assert head.size == big_snapshot.size
    assert head.sha256 == big_snapshot.sha256
    assert (head.holder, head.token, head.reason) == ("task-a", 3, "shutdown")
    downloaded = download_newest_good(big_store, str(tmp_path / "down.sqlite3"))
    assert downloaded is not None and not downloaded.fell_back
    assert downloaded.sha256 == big_snapshot.sha256
    assert row_ids(tmp_path / "down.sqlite3") == list(range(1, 13))


def test_multipart_stale_writer_refused_before_the_transfer(
    big_store, store, s3, big_snapshot, tmp_path
):
    base = store.upload(snapshot_of(tmp_path, 3, "base"), None, intent("task-a", 1))
    winner = store.upload(snapshot_of(tmp_path, 5, "b"), base.etag, intent("task-b", 2))

    with pytest.raises(FencingError):
        big_store.upload(big_snapshot, base.etag, intent("task-a", 1))

    assert store.head().etag == winner.etag
    assert version_count(s3) == 2
    # Refused before any part was sent: no multipart upload was even started.
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_multipart_if_none_match_refused_when_an_object_exists(
    big_store, store, s3, big_snapshot, tmp_path
):
    store.upload(snapshot_of(tmp_path, 3, "base"), None, intent("task-b"))
    with pytest.raises(FencingError):
        big_store.upload(big_snapshot, None, intent("task-a"))
    assert store.head().holder == "task-b"
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_multipart_replaces_with_the_right_etag(big_store, store, big_snapshot, tmp_path):
    base = store.upload(snapshot_of(tmp_path, 3, "base"), None, intent())
    info = big_store.upload(big_snapshot, base.etag, intent(token=2))
    assert store.head().etag == info.etag
    assert store.head().sha256 == big_snapshot.sha256


# -- verified downloads ---------------------------------------------------------------------


def test_download_of_a_good_current_object(store, tmp_path):
    snap = snapshot_of(tmp_path, 4)
    info = store.upload(snap, None, intent())
    target = tmp_path / "down.sqlite3"

    result = download_newest_good(store, str(target))

    assert result is not None
    assert not result.fell_back
    assert result.used.version_id == info.version_id
    assert result.sha256 == snap.sha256
    assert row_ids(target) == [1, 2, 3, 4]


def test_download_with_no_object_is_a_fresh_start(store, tmp_path):
    target = tmp_path / "down.sqlite3"
    assert download_newest_good(store, str(target)) is None
    assert not target.exists()


def test_download_falls_back_from_a_corrupt_current(store, s3, tmp_path):
    good = store.upload(snapshot_of(tmp_path, 4), None, intent())
    # The seed's own test: `echo "test data" > test.db; aws s3 cp test.db s3://.../db.sqlite3`.
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"test data\n")
    target = tmp_path / "down.sqlite3"

    result = download_newest_good(store, str(target))

    assert result is not None
    assert result.fell_back
    assert result.used.version_id == good.version_id
    assert result.current.version_id != good.version_id
    assert [skipped.version_id for skipped, _ in result.skipped] == [result.current.version_id]
    assert "not a SQLite database" in result.skipped[0][1]
    assert row_ids(target) == [1, 2, 3, 4]


@pytest.mark.parametrize("recorded_sha", [False, True], ids=["copied-raw", "torn-upload"])
def test_download_falls_back_from_a_truncated_current(store, s3, tmp_path, recorded_sha):
    older = store.upload(snapshot_of(tmp_path, 2, "older"), None, intent())
    good = store.upload(snapshot_of(tmp_path, 5, "good"), older.etag, intent())
    full = snapshot_of(tmp_path, 300, "full")
    data = Path(full.path).read_bytes()
    metadata = {"wakeful-sha256": full.sha256} if recorded_sha else {}
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=data[: len(data) // 2], Metadata=metadata)
    target = tmp_path / "down.sqlite3"

    result = download_newest_good(store, str(target))

    assert result is not None and result.fell_back
    assert result.used.version_id == good.version_id  # the newest good one, not the oldest
    reason = result.skipped[0][1]
    assert ("sha256 mismatch" in reason) if recorded_sha else ("malformed" in reason)
    assert row_ids(target) == [1, 2, 3, 4, 5]


def test_download_refuses_a_checksum_mismatch_even_if_sqlite_is_happy(store, s3, tmp_path):
    good = store.upload(snapshot_of(tmp_path, 2, "good"), None, intent())
    other = snapshot_of(tmp_path, 7, "other")
    s3.put_object(
        Bucket=BUCKET, Key=KEY, Body=Path(other.path).read_bytes(),
        Metadata={"wakeful-sha256": "0" * 64},
    )
    result = download_newest_good(store, str(tmp_path / "down.sqlite3"))
    assert result.used.version_id == good.version_id
    assert "sha256 mismatch" in result.skipped[0][1]


def test_no_good_version(store, s3, tmp_path):
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"test data\n")
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"SQLite format 3\x00" + b"\x00" * 100)
    target = tmp_path / "down.sqlite3"

    with pytest.raises(NoGoodVersion) as none_good:
        download_newest_good(store, str(target))

    assert store.url in str(none_good.value)
    assert not target.exists()


def test_fetch_of_a_specific_version(store, tmp_path):
    v1 = store.upload(snapshot_of(tmp_path, 1, "v1"), None, intent())
    store.upload(snapshot_of(tmp_path, 6, "v2"), v1.etag, intent())
    target = tmp_path / "v1.sqlite3"
    fetch_verified(store, find_version(store, v1.version_id), str(target), full=True)
    assert row_ids(target) == [1]


# -- backups and retention ------------------------------------------------------------------


def test_backups_are_timestamped_copies_pruned_to_retention(resources, s3, clock, tmp_path):
    store = DatabaseStore(BUCKET, KEY, client=s3, clock=clock, backup_retention=2)
    snap = snapshot_of(tmp_path, 3)
    info = store.upload(snap, None, intent(reason="shutdown"))
    names = []
    for _ in range(3):
        names.append(store.create_backup(info).name)
        clock.now += 61

    assert names == ["20270115_080000", "20270115_080101", "20270115_080202"]
    assert [b.name for b in store.backups()] == names[::-1]
    assert all(b.key == f"{KEY}.backup.{b.name}" for b in store.backups())

    pruned = store.prune_backups()

    assert pruned == [names[0]]
    assert [b.name for b in store.backups()] == [names[2], names[1]]
    assert store.prune_backups() == []
    # A backup is the same database, with its checksum carried over.
    kept = find_backup(store, names[2])
    assert kept.sha256 == snap.sha256
    target = tmp_path / "backup.sqlite3"
    fetch_verified(store, kept, str(target))
    assert row_ids(target) == [1, 2, 3]


def test_a_backup_of_an_older_version_holds_that_version(store, tmp_path):
    v1 = store.upload(snapshot_of(tmp_path, 2, "v1"), None, intent())
    store.upload(snapshot_of(tmp_path, 8, "v2"), v1.etag, intent())

    backup = store.create_backup(v1)

    target = tmp_path / "b.sqlite3"
    fetch_verified(store, find_backup(store, backup.name), str(target))
    assert row_ids(target) == [1, 2]


def test_find_backup_by_name_or_key_and_not_found(store, tmp_path):
    info = store.upload(snapshot_of(tmp_path, 2), None, intent())
    backup = store.create_backup(info)
    assert find_backup(store, backup.name).key == backup.key
    assert find_backup(store, backup.key).key == backup.key
    with pytest.raises(NotFound):
        find_backup(store, "19990101_000000")


def test_backups_of_another_key_are_not_listed(resources, s3, tmp_path, clock):
    mine = DatabaseStore(BUCKET, KEY, client=s3, clock=clock)
    theirs = DatabaseStore(BUCKET, "other.sqlite3", client=s3, clock=clock)
    snap = snapshot_of(tmp_path, 1)
    theirs.create_backup(theirs.upload(snap, None, intent()))
    assert mine.backups() == []
    assert mine.versions() == []


# -- versions and time ----------------------------------------------------------------------


def test_versions_newest_first_and_find_at(store, tmp_path):
    v1 = store.upload(snapshot_of(tmp_path, 1, "v1"), None, intent())
    wait_for_next_second()
    v2 = store.upload(snapshot_of(tmp_path, 2, "v2"), v1.etag, intent())
    listed = store.versions()
    assert [v.version_id for v in listed] == [v2.version_id, v1.version_id]
    assert listed[0].is_latest and not listed[1].is_latest
    t1, t2 = listed[1].last_modified, listed[0].last_modified
    assert t1 < t2

    def found(moment: dt.datetime) -> ObjectInfo:
        return find_at(store, moment)

    assert found(t1).version_id == v1.version_id
    assert found(t2 - dt.timedelta(milliseconds=1)).version_id == v1.version_id
    assert found(t2).version_id == v2.version_id
    assert found(t2 + dt.timedelta(days=365)).version_id == v2.version_id
    assert found(t1).sha256 is not None  # the full head, metadata included
    with pytest.raises(NotFound):
        found(t1 - dt.timedelta(seconds=1))


def test_find_version_not_found(store, tmp_path):
    store.upload(snapshot_of(tmp_path, 1), None, intent())
    with pytest.raises(NotFound):
        find_version(store, "no-such-version")


def test_head_of_a_missing_object_is_none(store):
    assert store.head() is None
    assert store.versions() == []
    assert store.backups() == []


def test_a_backup_of_a_multipart_object_keeps_its_checksum(big_store, big_snapshot, tmp_path):
    info = big_store.upload(big_snapshot, None, intent(reason="shutdown"))

    backup = big_store.create_backup(info)

    copied = find_backup(big_store, backup.name)
    assert copied.size == big_snapshot.size
    assert copied.sha256 == big_snapshot.sha256
    assert copied.reason == "shutdown"
    target = tmp_path / "backup.sqlite3"
    fetch_verified(big_store, copied, str(target))
    assert row_ids(target) == list(range(1, 13))


def test_a_deleted_current_object_is_a_fresh_start(store, s3, tmp_path):
    # Documented behaviour ("no object: fresh start"), even with older versions kept.
    store.upload(snapshot_of(tmp_path, 3), None, intent())
    s3.delete_object(Bucket=BUCKET, Key=KEY)
    assert download_newest_good(store, str(tmp_path / "down.sqlite3")) is None
    assert len(store.versions()) == 1


def test_a_retried_upload_whose_first_attempt_won_is_not_a_lost_fence(store, tmp_path):
    # The client resends the same condition after a lost answer; S3 refuses it because the
    # first attempt already replaced the object. That object is ours: the upload is done.
    base = store.upload(snapshot_of(tmp_path, 3), None, intent(token=4))
    snap = snapshot_of(tmp_path, 5, "next")
    won = store.upload(snap, base.etag, intent(token=4))
    retried = store.upload(snap, base.etag, intent(token=4))
    assert retried.etag == won.etag and retried.version_id == won.version_id
    # Another holder's object is still a lost fence.
    with pytest.raises(FencingError):
        store.upload(snap, base.etag, intent(holder="task-b", token=5))
    with pytest.raises(FencingError):
        store.upload(snap, base.etag, intent(token=5))  # our holder id, another holding


def _through(proxy) -> DatabaseStore:
    """A store whose S3 client goes through the fault proxy (three attempts a call)."""
    client = boto3.client(
        "s3", endpoint_url=proxy.url,
        config=Config(retries={"total_max_attempts": 3, "mode": "standard"}, read_timeout=5),
    )
    return DatabaseStore(BUCKET, KEY, client=client, clock=FakeClock(), sleep=lambda _s: None)


def test_our_own_upload_whose_every_answer_was_lost_is_ours_whatever_the_next_snapshot(
    resources, tmp_path
):
    with fault_proxy(resources.url) as proxy:
        store = _through(proxy)
        base = store.upload(snapshot_of(tmp_path, 3), None, intent(token=4))
        # The PUT lands; its answer and those of both retries (refused: it landed) are lost.
        proxy.lose_answer(s3_put(KEY), count=3)
        with pytest.raises(StoreUnavailable):
            store.upload(snapshot_of(tmp_path, 5, "landed"), base.etag, intent(token=4))
        # The next sync swaps a newer snapshot against the ETag this holder last *saw*.
        newer = snapshot_of(tmp_path, 8, "newer")
        info = store.upload(newer, base.etag, intent(token=4))
        head = store.head()
    assert (head.etag, head.sha256) == (info.etag, newer.sha256)
    # Nothing was overwritten that was not ours: base, ours (landed), newer.
    assert [v.size > 0 for v in store.versions()] == [True, True, True]


def test_a_conditional_request_conflict_is_retried_not_a_lost_fence(resources, tmp_path):
    with fault_proxy(resources.url) as proxy:
        store = _through(proxy)
        base = store.upload(snapshot_of(tmp_path, 3), None, intent())
        # S3's 409: another conditional write to the key was in flight; the same one may pass.
        proxy.fail(409, s3_put(KEY), count=1, code="ConditionalRequestConflict")
        snap = snapshot_of(tmp_path, 5, "next")
        info = store.upload(snap, base.etag, intent())
    assert store.head().etag == info.etag
    assert store.head().sha256 == snap.sha256


# -- checksums in transit -------------------------------------------------------------------


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _sent_checksums(proxy) -> list[str | None]:
    """``x-amz-checksum-sha256`` of each PUT, in part-number order (parts go concurrently)."""
    puts = [r for r in proxy.requests if r.method == "PUT"]
    puts.sort(key=lambda r: int(parse_qs(r.query).get("partNumber", ["0"])[0]))
    return [{k.lower(): v for k, v in r.headers.items()}.get("x-amz-checksum-sha256")
            for r in puts]


def test_a_put_carries_the_checksum_of_the_checked_snapshot(resources, tmp_path):
    snap = snapshot_of(tmp_path, 5)
    with fault_proxy(resources.url) as proxy:
        _through(proxy).upload(snap, None, intent())
        sent = _sent_checksums(proxy)
    expected = base64.b64encode(bytes.fromhex(snap.sha256)).decode()
    assert sent == [expected]
    kept = boto3.client("s3").head_object(Bucket=BUCKET, Key=KEY, ChecksumMode="ENABLED")
    assert kept["ChecksumSHA256"] == expected


def test_every_part_carries_its_own_checksum(resources, tmp_path, big_snapshot):
    with fault_proxy(resources.url) as proxy:
        store = _through(proxy)
        store.multipart_threshold = store.part_size = 5 * MiB
        store.upload(big_snapshot, None, intent())
        sent = _sent_checksums(proxy)
        created = [r for r in proxy.requests if r.method == "POST" and "uploads" in r.query]
    data = Path(big_snapshot.path).read_bytes()
    parts = [data[at:at + 5 * MiB] for at in range(0, len(data), 5 * MiB)]
    assert sent == [_b64_sha256(part) for part in parts]
    headers = {k.lower(): v for k, v in created[0].headers.items()}
    assert headers.get("x-amz-checksum-algorithm") == "SHA256"


def test_a_body_s3_finds_corrupted_in_transit_is_refused_and_replaces_nothing(
    resources, tmp_path
):
    with fault_proxy(resources.url) as proxy:
        store = _through(proxy)
        base = store.upload(snapshot_of(tmp_path, 3), None, intent())
        # What S3 answers when the bytes it received do not hash to x-amz-checksum-sha256.
        proxy.fail(400, s3_put(KEY), count=1, code="BadDigest")
        with pytest.raises(CorruptDatabase) as refused:
            store.upload(snapshot_of(tmp_path, 5, "next"), base.etag, intent())
    assert "checksum" in refused.value.reason
    assert store.head().etag == base.etag

"""Snapshots and verification on real SQLite files (local disk only, no network)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from chalicelib.errors import CorruptDatabase
from chalicelib.files import remove_file, sha256_file
from chalicelib.integrity import check, verify
from container.changes import ChangeWatcher
from container.placement import sidecars
from container.snapshot import take, take_quiescent


def open_db(path: Path, mode: str = "wal") -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA journal_mode={mode}")
    if mode == "wal":
        db.execute("PRAGMA wal_autocheckpoint=0")  # keep commits in the WAL
    db.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body TEXT)")
    return db


def insert(db: sqlite3.Connection, ids: range | list[int]) -> None:
    """One transaction (autocommit per row would fsync per row), or inside the caller's."""
    own = not db.in_transaction
    if own:
        db.execute("BEGIN")
    db.executemany("INSERT INTO rows VALUES (?, ?)", [(n, "x" * 200) for n in ids])
    if own:
        db.execute("COMMIT")


def row_ids(path: str | Path) -> list[int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT id FROM rows ORDER BY id")]
    finally:
        db.close()


def journal_mode(path: str | Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    finally:
        db.close()


# -- take -----------------------------------------------------------------------------------


def test_snapshot_includes_uncheckpointed_wal_commits(tmp_path: Path):
    live = tmp_path / "live.sqlite3"
    db = open_db(live)
    insert(db, range(1, 201))
    assert os.path.getsize(f"{live}-wal") > 0, "the commits are still in the WAL"

    snap = take(str(live), str(tmp_path / "snap.sqlite3"))

    assert row_ids(snap.path) == list(range(1, 201))
    assert snap.size == os.path.getsize(snap.path)
    assert snap.sha256 == hashlib.sha256(Path(snap.path).read_bytes()).hexdigest()
    db.close()


def test_snapshot_is_one_self_contained_file(tmp_path: Path):
    live = tmp_path / "live.sqlite3"
    db = open_db(live)
    insert(db, range(1, 10))
    snap = take(str(live), str(tmp_path / "snap.sqlite3"))
    db.close()

    # Not in WAL mode: `aws s3 cp` of the object must give a complete, working database.
    assert journal_mode(snap.path) == "delete"
    for sidecar in sidecars(snap.path):
        assert not os.path.exists(sidecar)
    assert not os.path.exists(snap.path + ".partial")


def test_snapshot_never_sees_an_open_transaction(tmp_path: Path):
    live = tmp_path / "live.sqlite3"
    db = open_db(live)
    insert(db, [1, 2])
    db.execute("BEGIN IMMEDIATE")
    insert(db, [3, 4])  # not committed yet

    snap = take(str(live), str(tmp_path / "snap.sqlite3"))
    db.execute("COMMIT")
    db.close()

    assert row_ids(snap.path) == [1, 2]


def test_snapshot_does_not_block_the_writer(tmp_path: Path):
    live = tmp_path / "live.sqlite3"
    db = open_db(live)
    insert(db, range(1, 2000))
    # A reader holding a snapshot of the WAL database must not stop commits.
    reader = sqlite3.connect(live)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM rows").fetchone()
    insert(db, [5000])
    reader.rollback()
    reader.close()
    snap = take(str(live), str(tmp_path / "snap.sqlite3"))
    assert row_ids(snap.path)[-1] == 5000
    db.close()


def test_snapshot_of_a_rollback_journal_database(tmp_path: Path):
    live = tmp_path / "live.sqlite3"
    db = open_db(live, mode="delete")
    insert(db, [1, 2, 3])
    db.close()
    snap = take(str(live), str(tmp_path / "snap.sqlite3"))
    assert row_ids(snap.path) == [1, 2, 3]


def test_snapshot_replaces_an_old_snapshot(tmp_path: Path):
    live = tmp_path / "live.sqlite3"
    db = open_db(live)
    insert(db, [1])
    target = tmp_path / "snap.sqlite3"
    target.write_bytes(b"stale snapshot")
    snap = take(str(live), str(target))
    db.close()
    assert row_ids(snap.path) == [1]


def test_snapshot_leaves_the_source_untouched(tmp_path: Path):
    live = tmp_path / "live.sqlite3"
    db = open_db(live, mode="delete")
    insert(db, [1, 2])
    db.close()
    before = live.read_bytes()
    take(str(live), str(tmp_path / "snap.sqlite3"))
    assert live.read_bytes() == before


def test_snapshot_of_a_non_database_is_refused(tmp_path: Path):
    bogus = tmp_path / "bogus.sqlite3"
    bogus.write_bytes(b"test data\n" * 50)
    target = tmp_path / "snap.sqlite3"

    with pytest.raises(CorruptDatabase):
        take(str(bogus), str(target))

    assert not target.exists()
    assert not Path(f"{target}.partial").exists()


# -- check and verify -----------------------------------------------------------------------


@pytest.fixture
def good_db(tmp_path: Path) -> Path:
    path = tmp_path / "good.sqlite3"
    db = open_db(path, mode="delete")
    insert(db, range(1, 400))
    db.close()
    return path


def test_check_accepts_a_good_database_and_only_a_good_one(good_db: Path, tmp_path: Path):
    before = good_db.read_bytes()
    for full in (False, True):
        check(str(good_db), full=full)  # raises CorruptDatabase when it finds a problem
    assert good_db.read_bytes() == before, "a check must not change what it checks"
    # The same calls on the same file with one table page damaged refuse it: the acceptance
    # above is the check's verdict, not a check that accepts anything.
    damaged = tmp_path / "damaged.sqlite3"
    data = bytearray(before)
    data[3 * 4096 : 4 * 4096] = b"\xa5" * 4096
    damaged.write_bytes(bytes(data))
    with pytest.raises(CorruptDatabase):
        check(str(damaged), full=True)
    assert verify(str(good_db), hashlib.sha256(before).hexdigest(), full=True) == (
        hashlib.sha256(before).hexdigest()
    )


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"test data\n", "bad header"),
        (b"", "bad header"),
        (b"SQLite format 3\x00" + b"\xff" * 200, "failed"),
    ],
    ids=["text", "empty", "header-only"],
)
def test_check_refuses_what_is_not_a_database(tmp_path: Path, content: bytes, problem: str):
    path = tmp_path / "bad.sqlite3"
    path.write_bytes(content)
    with pytest.raises(CorruptDatabase) as error:
        check(str(path))
    assert problem in error.value.reason
    assert error.value.where == str(path)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_check_refuses_a_truncated_database(tmp_path: Path, good_db: Path, fraction: float):
    data = good_db.read_bytes()
    truncated = tmp_path / "truncated.sqlite3"
    truncated.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CorruptDatabase):
        check(str(truncated))


def test_check_finds_a_damaged_page(tmp_path: Path, good_db: Path):
    data = bytearray(good_db.read_bytes())
    page = 4096
    data[3 * page : 4 * page] = b"\xa5" * page  # a table page overwritten with garbage
    damaged = tmp_path / "damaged.sqlite3"
    damaged.write_bytes(bytes(data))
    with pytest.raises(CorruptDatabase):
        check(str(damaged), full=True)


def test_check_of_a_missing_file(tmp_path: Path):
    with pytest.raises(CorruptDatabase) as error:
        check(str(tmp_path / "nope.sqlite3"))
    assert "cannot read" in error.value.reason


def test_check_creates_nothing_beside_the_file(tmp_path: Path):
    path = tmp_path / "wal.sqlite3"
    db = open_db(path)
    insert(db, [1])
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    for sidecar in sidecars(str(path)):
        remove_file(sidecar)
    before = sorted(os.listdir(tmp_path))
    check(str(path), full=True)
    assert sorted(os.listdir(tmp_path)) == before


def test_verify_returns_the_checksum(good_db: Path):
    digest = hashlib.sha256(good_db.read_bytes()).hexdigest()
    assert verify(str(good_db), None) == digest
    assert verify(str(good_db), digest) == digest
    assert sha256_file(str(good_db)) == digest


def test_verify_refuses_a_checksum_mismatch(good_db: Path):
    with pytest.raises(CorruptDatabase) as error:
        verify(str(good_db), "0" * 64)
    assert "sha256 mismatch" in error.value.reason


# -- change watching ------------------------------------------------------------------------


def test_change_watcher_sees_commits_from_other_connections(tmp_path: Path):
    path = tmp_path / "live.sqlite3"
    db = open_db(path)
    watcher = ChangeWatcher(str(path))
    try:
        assert watcher.changed(), "nothing marked yet"
        watcher.mark()
        assert not watcher.changed()
        db.execute("SELECT count(*) FROM rows").fetchone()  # reads are not changes
        assert not watcher.changed()
        insert(db, [1])
        assert watcher.changed()
        assert watcher.changed(), "changed() does not consume the change"
        watcher.mark()
        assert not watcher.changed()
    finally:
        watcher.close()
        db.close()


def test_change_watcher_of_a_missing_file(tmp_path: Path):
    watcher = ChangeWatcher(str(tmp_path / "later.sqlite3"))
    assert watcher.changed()
    watcher.mark()
    assert watcher.changed(), "no file yet: always worth a look"
    watcher.close()
    assert not (tmp_path / "later.sqlite3").exists(), "watching must not create the database"


# -- helpers --------------------------------------------------------------------------------


def test_sidecars_and_remove_file(tmp_path: Path):
    path = str(tmp_path / "db.sqlite3")
    assert sidecars(path) == (f"{path}-wal", f"{path}-shm", f"{path}-journal")
    Path(path).write_bytes(b"x")
    remove_file(path)
    remove_file(path)  # already gone: fine
    assert not os.path.exists(path)


def test_a_replaced_database_file_counts_as_a_change(tmp_path):
    path = tmp_path / "db.sqlite3"
    _make(path, 1)
    watcher = ChangeWatcher(str(path))
    watcher.mark()
    assert not watcher.changed()
    replacement = tmp_path / "import.sqlite3"
    _make(replacement, 3)
    os.replace(replacement, path)  # an app importing or resetting its database
    assert watcher.changed()
    watcher.mark()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO t VALUES (99)")
    db.commit()
    db.close()
    assert watcher.changed(), "commits to the new file are seen too"
    watcher.close()


def test_a_vanished_database_is_an_error_never_an_empty_upload(tmp_path):
    with pytest.raises(CorruptDatabase):
        take(str(tmp_path / "gone.sqlite3"), str(tmp_path / "snap"))
    with pytest.raises(CorruptDatabase):
        take_quiescent(str(tmp_path / "gone.sqlite3"), str(tmp_path / "snap"))
    assert not (tmp_path / "gone.sqlite3").exists()


def _make(path, rows: int) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(rows)])
    db.commit()
    db.close()

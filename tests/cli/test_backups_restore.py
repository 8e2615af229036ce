"""``wakeful backups`` and ``wakeful restore`` against the bucket and the lease."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path

import pytest

from chalicelib.integrity import fetch_verified
from chalicelib.lease import FREE, LeaseTable
from chalicelib.store import DatabaseStore, ObjectInfo, UploadIntent
from container.snapshot import take
from tests.cli.conftest import lines, run, run_script
from tests.conftest import BUCKET, TABLE

LEASE = f"{BUCKET}/db.sqlite3"


class Writer:
    """An agent's uploads, reduced to what restore needs: versions with known rows."""

    def __init__(self, workdir: Path) -> None:
        self.table = LeaseTable(TABLE, LEASE)
        self.store = DatabaseStore(BUCKET, "db.sqlite3")
        self.db = workdir / "db.sqlite3"
        self.etag: str | None = None

    def upload(self, rows: int) -> ObjectInfo:
        with sqlite3.connect(self.db) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS notes (body TEXT)")
            conn.execute("DELETE FROM notes")
            conn.executemany("INSERT INTO notes VALUES (?)", [(f"n{i}",) for i in range(rows)])
        conn.close()
        lease = self.table.acquire("writer", ttl=60)
        snapshot = take(str(self.db), str(self.db) + ".snapshot")
        intent = UploadIntent("writer", lease.token, "periodic")
        info = self.store.upload(snapshot, self.etag, intent)
        self.etag = info.etag
        self.table.release("writer", lease.token)
        return info


def current_rows(store: DatabaseStore, workdir: Path) -> int:
    path = workdir / "check.sqlite3"
    fetch_verified(store, store.head(), str(path))
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute("SELECT count(*) FROM notes").fetchone()
    conn.close()
    return int(count)


@pytest.fixture
def writer(store_env, tmp_path) -> Writer:
    return Writer(tmp_path)


def test_backups_lists_backups_and_versions(store_env, writer):
    first = writer.upload(1)
    second = writer.upload(2)
    writer.store.create_backup(first, when=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
                               .timestamp())
    result = run(store_env, "backups", "--versions")
    assert result.code == 0, result.err
    assert "Backups of s3://wakeful-test-db/db.sqlite3 (1, newest first)" in result.out
    assert any(line.startswith("20260102_030405  ") for line in lines(result.out))
    [current] = [line for line in lines(result.out) if line.endswith("current")]
    assert current.startswith(second.version_id)
    assert any(line.startswith(first.version_id) for line in lines(result.out))
    data = json.loads(run(store_env, "backups", "--versions", "--json").out)
    assert [b["name"] for b in data["backups"]] == ["20260102_030405"]
    assert [v["version_id"] for v in data["versions"]] == [second.version_id, first.version_id]


def test_restore_a_version_with_a_progress_report(store_env, writer, tmp_path):
    first = writer.upload(1)
    writer.upload(5)
    result = run(store_env, "restore", "--version", first.version_id)
    assert result.code == 0, result.err
    assert result.out.startswith(f"restored version {first.version_id} as ")
    # Not a terminal: the progress bar is a line per transfer with its size and time.
    progress = lines(result.err)
    assert progress[0] == f"download version {first.version_id}: 8.0 KiB..."
    assert progress[1].startswith(f"download version {first.version_id}: 8.0 KiB of 8.0 KiB in")
    assert progress[2] == "upload to s3://wakeful-test-db/db.sqlite3: 8.0 KiB..."
    assert progress[3].startswith("upload to s3://wakeful-test-db/db.sqlite3: 8.0 KiB of 8.0 KiB")
    assert current_rows(writer.store, tmp_path) == 1
    head = writer.store.head()
    assert head.reason == "restore" and head.holder.startswith("operator@")
    lease = writer.table.read()
    assert lease.state == FREE and lease.token == 3
    assert lease.last_upload["reason"] == "restore"
    assert lease.last_holder.startswith("operator@")


def test_restore_a_backup(store_env, writer, tmp_path):
    first = writer.upload(2)
    writer.store.create_backup(first, when=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
                               .timestamp())
    writer.upload(7)
    result = run(store_env, "restore", "--backup", "20260102_030405", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["restored"] == "backup 20260102_030405"
    assert current_rows(writer.store, tmp_path) == 2


def test_restore_as_of_a_time(store_env, writer, tmp_path):
    first = writer.store.head(version_id=writer.upload(3).version_id)
    # S3 times have one-second resolution: the next upload lands in a later second.
    second = int(time.time())
    while int(time.time()) == second:
        time.sleep(0.02)
    writer.upload(9)
    result = run(store_env, "restore", "--at", first.last_modified.isoformat())
    assert result.code == 0, result.err
    assert current_rows(writer.store, tmp_path) == 3


def test_restore_is_refused_while_a_task_holds_the_lease(store_env, writer):
    first = writer.upload(1)
    latest = writer.upload(2)
    task = "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/live"
    writer.table.acquire(task, ttl=60, task_arn=task)
    result = run(store_env, "restore", "--version", first.version_id)
    assert result.code == 3
    assert result.err.count("\n") == 1
    assert result.err.startswith(f"wakeful: restore refused: the lease is HELD by {task}")
    assert writer.store.head().version_id == latest.version_id
    assert writer.table.read().holder == task


def test_restore_of_something_that_does_not_exist_fails(store_env, writer):
    writer.upload(1)
    missing = run(store_env, "restore", "--backup", "19990101_000000")
    assert missing.code == 1
    assert missing.err == (
        "wakeful: error: no backup named '19990101_000000' (looked for "
        "s3://wakeful-test-db/db.sqlite3.backup.19990101_000000)\n"
    )
    bad_time = run(store_env, "restore", "--at", "yesterday-ish")
    assert bad_time.code == 2 and "cannot read 'yesterday-ish' as a time" in bad_time.err
    nothing = run(store_env, "restore")
    assert nothing.code == 2 and nothing.err.count("\n") == 1
    assert "one of the arguments --backup --version --at --txid is required" in nothing.err


# -- the installed script: what every stored object carries, and a restore that only says ---


def test_backups_versions_show_the_reason_holder_and_token_of_each_object(store_env, writer):
    first = writer.upload(1)
    second = writer.upload(2)
    writer.store.create_backup(first, when=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
                               .timestamp())
    result = run_script(store_env, "backups", "--versions")
    assert result.code == 0, result.err
    rows = {line.split()[0]: line.split() for line in lines(result.out)}
    # Each version's row names why it was written, by whom, under which token.
    assert rows[second.version_id][-4:] == ["periodic", "writer", "2", "current"]
    assert rows[first.version_id][-4:] == ["periodic", "writer", "1", "-"]
    # A backup is a copy of a version, with that version's metadata.
    assert rows["20260102_030405"][-3:] == ["periodic", "writer", "1"]
    data = json.loads(run_script(store_env, "backups", "--versions", "--json").out)
    [newest, oldest] = data["versions"]
    assert (newest["reason"], newest["holder"], newest["token"]) == ("periodic", "writer", 2)
    assert (oldest["reason"], oldest["holder"], oldest["token"]) == ("periodic", "writer", 1)
    assert newest["sha256"] == second.sha256
    [backup] = data["backups"]
    assert (backup["reason"], backup["holder"], backup["token"]) == ("periodic", "writer", 1)


def test_restore_dry_run_says_what_it_would_do_and_changes_nothing(store_env, writer, tmp_path):
    first = writer.upload(4)
    latest = writer.upload(9)
    lease_before = writer.table.read()
    result = run_script(store_env, "restore", "--version", first.version_id, "--dry-run")
    assert result.code == 0, result.err
    out = result.out
    assert f"would restore version {first.version_id}" in out
    assert "s3://wakeful-test-db/db.sqlite3" in out
    assert "8.0 KiB" in out and "4 rows" in out and "integrity_check ok" in out
    assert "would take the lease" in out and "FREE" in out
    assert "nothing was changed" in out
    # Nothing moved: the current object, the versions, the lease.
    assert writer.store.head().version_id == latest.version_id
    assert len(writer.store.versions()) == 2
    assert writer.table.read() == lease_before
    data = json.loads(run_script(store_env, "restore", "--at", "2099-01-01T00:00:00Z",
                                 "--dry-run", "--json").out)
    assert data["dry_run"] is True
    assert data["source"]["version_id"] == latest.version_id
    assert data["check"] == {"ok": True, "rows": {"notes": 9}, "size": latest.size,
                             "sha256": latest.sha256}
    assert data["lease"] == {"state": "FREE", "holder": None, "would_take": True}


def test_restore_dry_run_while_a_task_holds_the_lease_says_it_would_be_refused(
    store_env, writer
):
    first = writer.upload(1)
    task = "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/live"
    writer.table.acquire(task, ttl=60, task_arn=task)
    result = run_script(store_env, "restore", "--version", first.version_id, "--dry-run")
    assert result.code == 3
    assert f"the lease is HELD by {task}" in result.err
    assert "wakeful sleep" in result.err

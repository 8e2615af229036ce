"""WAL capture against a real app process: every outcome is the right one, never a wrong page set.

The app (``sqlite_app.py``) runs in its own process with the stdlib's SQLite and is driven by
commands, so each test sets up one exact interleaving. After each capture the replica (the
snapshot with every captured segment applied) must be byte-identical to the database as the
app sees it (a copy of its file and WAL, checkpointed apart).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wakeful_replica import sqlite, wal
from wakeful_replica.errors import NotADatabase, SqliteTooOld

APP = Path(__file__).with_name("sqlite_app.py")


class App:
    def __init__(self, path: Path, mode: str = "wal") -> None:
        self.path = path
        self.process = subprocess.Popen(
            [sys.executable, str(APP), str(path), mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        self.do("count")

    def do(self, command: str) -> str:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline().strip()
        assert reply.startswith("ok"), f"{command!r}: {reply!r}"
        return reply[2:].strip()

    def close(self) -> None:
        if self.process.poll() is None:
            self.do("quit")
            self.process.wait(timeout=30)


@pytest.fixture
def app(tmp_path):
    started = App(tmp_path / "app.db")
    yield started
    started.close()


@pytest.fixture
def reader(app):
    opened = wal.WalReader(str(app.path))
    yield opened
    opened.close()


class Replica:
    """What a restore would rebuild: the snapshot, then every captured segment, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, state: wal.FullState) -> None:
        with open(self.path, "wb") as out:
            for pgno, data in state.pages():
                out.seek((pgno - 1) * state.page_size)
                out.write(data)
            out.truncate(state.commit * state.page_size)

    def apply(self, frames: wal.Frames) -> None:
        with open(self.path, "r+b") as out:
            for pgno, data in frames.pages.items():
                out.seek((pgno - 1) * frames.page_size)
                out.write(data)
            out.truncate(frames.commit * frames.page_size)


def logical_image(path: Path, scratch: Path) -> bytes:
    """The database as the app sees it: its file and WAL copied aside and checkpointed there."""
    scratch.mkdir(exist_ok=True)
    copy = scratch / "image.db"
    for suffix in ("", "-wal"):
        target = Path(str(copy) + suffix)
        target.unlink(missing_ok=True)
        if Path(str(path) + suffix).exists():
            shutil.copyfile(str(path) + suffix, target)
    Path(str(copy) + "-shm").unlink(missing_ok=True)
    db = sqlite3.connect(copy)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return copy.read_bytes()


def assert_identical(replica: Replica, app: App, tmp_path: Path) -> None:
    image = logical_image(app.path, tmp_path / "scratch")
    assert replica.path.read_bytes() == image
    check = sqlite3.connect(replica.path)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert check.execute("SELECT count(*) FROM rows").fetchone()[0] == int(app.do("count"))
    check.close()


def start(reader: wal.WalReader, tmp_path: Path) -> Replica:
    replica = Replica(tmp_path / "replica.db")
    replica.load(reader.snapshot())
    return replica


def test_versions_are_reported_and_an_old_sqlite_is_refused():
    found = sqlite.versions()
    assert found.agent_fixed and found.agent == sqlite.require_fixed()
    assert found.stdlib == sqlite3.sqlite_version
    assert set(found.describe()) >= {"agent_sqlite", "stdlib_sqlite"}
    with pytest.raises(SqliteTooOld) as refused:
        sqlite.require_fixed("3.51.2")
    assert refused.value.found == "3.51.2"
    assert sqlite.require_fixed("3.51.3") == "3.51.3"


def test_committed_frames_rebuild_the_database(app, reader, tmp_path):
    app.do("autocheckpoint 0")
    app.do("insert 5")
    replica = start(reader, tmp_path)
    assert_identical(replica, app, tmp_path)
    for _ in range(3):
        app.do("insert 20")
        app.do("bulk 50")
        captured = reader.read()
        assert isinstance(captured, wal.Frames), captured
        assert captured.transactions == 21
        replica.apply(captured)
        assert_identical(replica, app, tmp_path)
    assert isinstance(reader.read(), wal.NoChange)


def test_a_shrinking_database_is_followed(app, reader, tmp_path):
    app.do("bulk 400")
    replica = start(reader, tmp_path)
    app.do("delete")
    app.do("vacuum")
    captured = reader.read()
    assert isinstance(captured, wal.Frames)
    assert captured.commit < captured.start.commit
    replica.apply(captured)
    assert_identical(replica, app, tmp_path)


def test_our_checkpoint_lets_the_wal_restart_and_the_restart_is_followed(app, reader, tmp_path):
    app.do("autocheckpoint 0")
    replica = start(reader, tmp_path)
    app.do("insert 30")
    captured = reader.read()
    replica.apply(captured)
    result = reader.checkpoint(captured.end, force=True)
    assert result is not None and result.restart_allowed
    app.do("insert 10")  # the app's next write restarts the WAL from its start
    captured = reader.read()
    assert isinstance(captured, wal.Frames) and captured.restarted
    assert captured.start.salts != captured.end.salts
    replica.apply(captured)
    assert_identical(replica, app, tmp_path)


def test_checkpoint_waits_until_everything_read_is_shipped(app, reader, tmp_path):
    start(reader, tmp_path)
    app.do("insert 3")
    first = reader.read()
    app.do("insert 3")
    reader.read()
    assert reader.checkpoint(first.end, force=True) is None  # the second read is not shipped


def test_the_apps_own_checkpoints_never_lose_frames(app, reader, tmp_path):
    """Autocheckpoint on (every 10 pages) and the app's TRUNCATE/RESTART checkpoints."""
    app.do("autocheckpoint 10")
    replica = start(reader, tmp_path)
    for mode in ("PASSIVE", "TRUNCATE", "RESTART", "FULL"):
        app.do("insert 40")
        busy, _, _ = app.do(f"checkpoint {mode}").split()
        # Our pin keeps RESTART and TRUNCATE from resetting the WAL under us: they give up.
        assert busy == ("1" if mode in ("RESTART", "TRUNCATE") else busy)
        app.do("insert 5")
        captured = reader.read()
        assert isinstance(captured, wal.Frames), (mode, captured)
        replica.apply(captured)
        assert_identical(replica, app, tmp_path)
        reader.checkpoint(captured.end, force=True)


def test_capture_keeps_up_with_a_busy_app_that_checkpoints_on_its_own(app, reader, tmp_path):
    app.do("autocheckpoint 20")
    replica = start(reader, tmp_path)
    app.do("run 3 2")
    restarts = frames = 0
    deadline = time.monotonic() + 120
    while (frames < 40 or restarts < 3) and time.monotonic() < deadline:
        time.sleep(0.02)
        captured = reader.read()
        assert not isinstance(captured, wal.Reset), captured
        if isinstance(captured, wal.Frames):
            frames += 1
            restarts += captured.restarted
            replica.apply(captured)
            reader.checkpoint(captured.end, force=True)
    app.do("stop")
    captured = reader.read()
    if isinstance(captured, wal.Frames):
        replica.apply(captured)
    assert frames >= 40
    assert restarts >= 3  # the WAL did restart along the way, and was followed
    assert_identical(replica, app, tmp_path)


def test_the_app_replacing_its_file_is_a_reset_then_a_snapshot(app, reader, tmp_path):
    replica = start(reader, tmp_path)
    app.do("insert 5")
    other = tmp_path / "import.db"
    db = sqlite3.connect(other)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)")
    db.executemany("INSERT INTO rows (body) VALUES (?)", [(b"imported",)] * 77)
    db.commit()
    db.close()
    app.do(f"replace {other}")
    app.do("insert 1")
    captured = reader.read()
    assert isinstance(captured, wal.Reset) and "replaced" in captured.reason
    replica.load(reader.snapshot())
    assert_identical(replica, app, tmp_path)
    assert app.do("count") == "78"
    app.do("insert 2")
    replica.apply(reader.read())
    assert_identical(replica, app, tmp_path)


def tamper_salt(path: Path, delta: int) -> None:
    """What a process that ignores SQLite's locks (or a buggy SQLite) does: a new WAL header."""
    data = bytearray(Path(str(path) + "-wal").read_bytes())
    header = wal.parse_header(bytes(data))
    assert header is not None
    new_salt1 = (header.salt1 + delta) & 0xFFFFFFFF
    data[16:20] = new_salt1.to_bytes(4, "big")
    big = header.big_endian
    s0, s1 = wal.checksum(bytes(data[:24]), 0, 0, big)
    data[24:28] = s0.to_bytes(4, "big")
    data[28:32] = s1.to_bytes(4, "big")
    Path(str(path) + "-wal").write_bytes(bytes(data))


def test_a_wal_reset_the_reader_did_not_see_is_a_reset(app, reader, tmp_path):
    app.do("autocheckpoint 0")
    start(reader, tmp_path)
    app.do("insert 5")
    assert isinstance(reader.read(), wal.Frames)
    tamper_salt(app.path, 7)
    captured = reader.read()
    assert isinstance(captured, wal.Reset) and "restarted without us" in captured.reason


def test_a_one_step_salt_change_over_uncaptured_commits_is_a_reset(app, reader, tmp_path):
    """Even salt-1 + 1 is refused when commits after our position are still in the old WAL."""
    app.do("autocheckpoint 0")
    start(reader, tmp_path)
    app.do("insert 5")
    assert isinstance(reader.read(), wal.Frames)
    app.do("insert 5")  # committed, not yet captured
    wal_bytes = bytearray(Path(str(app.path) + "-wal").read_bytes())
    header = wal.parse_header(bytes(wal_bytes))
    assert header is not None
    # A new WAL header (salt-1 + 1) over an old WAL that still holds those commits.
    new = bytearray(wal_bytes[:32])
    new[16:20] = ((header.salt1 + 1) & 0xFFFFFFFF).to_bytes(4, "big")
    s0, s1 = wal.checksum(bytes(new[:24]), 0, 0, header.big_endian)
    new[24:28], new[28:32] = s0.to_bytes(4, "big"), s1.to_bytes(4, "big")
    Path(str(app.path) + "-wal").write_bytes(bytes(new) + bytes(wal_bytes[32:]))
    captured = reader.read()
    assert isinstance(captured, wal.Reset) and "not captured" in captured.reason


def test_a_shrunk_or_overwritten_wal_is_a_reset(app, reader, tmp_path):
    app.do("autocheckpoint 0")
    start(reader, tmp_path)
    app.do("insert 20")
    assert isinstance(reader.read(), wal.Frames)
    wal_path = Path(str(app.path) + "-wal")
    data = wal_path.read_bytes()
    with open(wal_path, "r+b") as handle:
        handle.truncate(len(data) // 2)
    captured = reader.read()
    assert isinstance(captured, wal.Reset) and "shrank" in captured.reason
    with open(wal_path, "r+b") as handle:
        handle.write(data)
    # The last captured frame, rewritten with other bytes: its checksum no longer matches.
    position = reader.position
    assert position is not None
    frame = wal.WAL_HEADER_SIZE + (position.frames - 1) * (24 + position.page_size)
    with open(wal_path, "r+b") as handle:
        handle.seek(frame + 16)
        handle.write(b"\x00" * 8)
    captured = reader.read()
    assert isinstance(captured, wal.Reset) and "overwritten" in captured.reason


def test_a_removed_wal_is_a_reset(app, reader, tmp_path):
    start(reader, tmp_path)
    app.do("insert 2")
    assert isinstance(reader.read(), wal.Frames)
    Path(str(app.path) + "-wal").unlink()
    captured = reader.read()
    assert isinstance(captured, wal.Reset) and "removed" in captured.reason


def test_a_rollback_journal_database_is_not_a_wal_database(tmp_path):
    db = sqlite3.connect(tmp_path / "plain.db")
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(NotADatabase, match="WAL"):
        wal.WalReader(str(tmp_path / "plain.db")).snapshot()
    with pytest.raises(NotADatabase, match="missing"):
        wal.WalReader(str(tmp_path / "none.db")).snapshot()
    assert not (tmp_path / "none.db").exists()

"""Changed pages of a rollback-journal database written by a real app process."""

from __future__ import annotations

import sqlite3

import pytest

from tests.replica.test_wal import App
from wakeful_replica import pages


@pytest.fixture
def app(tmp_path):
    started = App(tmp_path / "app.db", mode="delete")
    yield started
    started.close()


@pytest.fixture
def tracker(app):
    opened = pages.PageTracker(str(app.path))
    yield opened
    opened.close()


def load(path, page_size, commit, all_pages):
    with open(path, "wb") as out:
        for pgno, data in all_pages:
            out.seek((pgno - 1) * page_size)
            out.write(data)
        out.truncate(commit * page_size)


def apply(path, changes: pages.Changes):
    with open(path, "r+b") as out:
        for pgno, data in changes.pages.items():
            out.seek((pgno - 1) * changes.page_size)
            out.write(data)
        out.truncate(changes.commit * changes.page_size)


def test_only_changed_pages_ship_and_rebuild_the_file(app, tracker, tmp_path):
    app.do("bulk 300")
    replica = tmp_path / "replica.db"
    page_size, commit, everything = tracker.snapshot()
    load(replica, page_size, commit, everything)
    assert replica.read_bytes() == app.path.read_bytes()
    assert isinstance(tracker.read(), pages.NoChange)
    app.do("insert 3")
    changes = tracker.read()
    assert isinstance(changes, pages.Changes)
    assert 0 < len(changes.pages) < commit  # a few pages, not the database
    apply(replica, changes)
    assert replica.read_bytes() == app.path.read_bytes()
    app.do("delete")
    app.do("vacuum")
    changes = tracker.read()
    assert isinstance(changes, pages.Changes) and changes.commit < commit
    apply(replica, changes)
    assert replica.read_bytes() == app.path.read_bytes()
    assert sqlite3.connect(replica).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_replaced_file_is_compared_like_any_other(app, tracker, tmp_path):
    app.do("bulk 50")
    replica = tmp_path / "replica.db"
    load(replica, *tracker.snapshot())
    other = tmp_path / "import.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)")
    db.executemany("INSERT INTO rows (body) VALUES (?)", [(b"x" * 500,)] * 20)
    db.commit()
    db.close()
    app.do(f"replace {other}")
    changes = tracker.read()
    assert isinstance(changes, pages.Changes)
    apply(replica, changes)
    assert replica.read_bytes() == app.path.read_bytes()


def test_switching_to_wal_is_a_reset(app, tracker, tmp_path):
    tracker.snapshot()
    db = sqlite3.connect(app.path)
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    captured = tracker.read()
    assert isinstance(captured, pages.Reset) and "WAL" in captured.reason

"""``wakeful history``: wakes, stops and uploads, newest first, from the ledger and S3."""

from __future__ import annotations

import json
import time

from tests.cli.conftest import lines, run_script, woken
from tests.controlplane.conftest import build_plane, event


def next_second() -> None:
    """S3 times have one-second resolution: what follows lands in a later second."""
    start = int(time.time())
    deadline = time.monotonic() + 5
    while int(time.time()) == start and time.monotonic() < deadline:
        time.sleep(0.02)


def test_history_tells_wakes_stops_and_uploads_newest_first(cli_env, settings, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    # Task A wakes, syncs, stops after its final upload: a verified stop.
    first, agent = woken(settings, tmp_path / "a")
    agent.write(2)
    agent.upload("periodic")
    agent.upload("shutdown")
    agent.release()
    assert build_plane(settings).handle_event(
        event("task-stopped-user-initiated.json", first)) == "verified"
    next_second()
    # Task B wakes, syncs once, and is killed: an unsynced stop.
    second, agent = woken(settings, tmp_path / "b")
    agent.etag = agent.store.head().etag  # what its boot downloaded
    agent.write(1)
    agent.upload("periodic")
    assert build_plane(settings).handle_event(
        event("task-stopped-exit-137.json", second)) == "unsynced"

    result = run_script(cli_env, "--json", "history")
    assert result.code == 0, result.err
    events = json.loads(result.out)
    seen = [(e["event"], e["who"], e["token"]) for e in events]
    a, b = first["taskArn"], second["taskArn"]
    # Everything of B's (newer) comes before anything of A's.
    assert seen[:3] == [("stop UNSYNCED", b, 2), ("upload", b, 2), ("wake", b, 2)]
    assert sorted(seen[3:]) == sorted([("stop verified", a, 1), ("upload", a, 1),
                                       ("upload", a, 1), ("wake", a, 1)])
    assert [e["detail"].split(",")[0] for e in events if e["event"] == "upload"] == [
        "periodic", "shutdown", "periodic"]
    assert all(e["version_id"] for e in events if e["event"] == "upload")
    assert [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)
    assert "may be lost" in events[0]["detail"]

    table = run_script(cli_env, "history", "--limit", "2")
    assert table.code == 0, table.err
    shown = lines(table.out)
    assert shown[0].startswith("History of s3://wakeful-test-db/db.sqlite3")
    assert shown[1].split()[:2] == ["TIME", "EVENT"]
    rows = shown[3:]
    assert len(rows) == 2
    assert "stop UNSYNCED" in rows[0] and "task " + b.rsplit("/", 1)[-1] in rows[0]
    assert "upload" in rows[1] and "periodic" in rows[1]


def test_history_of_a_database_that_never_ran(store_env):
    result = run_script(store_env, "history")
    assert result.code == 0, result.err
    assert lines(result.out) == [
        "History of s3://wakeful-test-db/db.sqlite3, lease 'wakeful-test-db/db.sqlite3' "
        "(0 newest first)"
    ]
    assert json.loads(run_script(store_env, "history", "--json").out) == []

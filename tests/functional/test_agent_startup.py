"""``startup`` mode: the user's own entrypoint keeps the app, as the seed's ``entrypoint.sh`` did.

The entrypoint runs in a session of its own, like a container's init, so the agent's idea of
"the entrypoint's process group" never reaches pytest.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.lease import LeaseTable
from container import state
from tests.agent_harness import WRITER, alive, committed_ids, wait_for
from tests.conftest import ROOT, TABLE

LEASE = "wakeful-test-db/db.sqlite3"

# The seed's entrypoint.sh, with wakeful-agent in place of db-sync.sh. APP_LAUNCH is how the
# app is started: plainly (it stays in the script's process group), or under setsid.
ENTRYPOINT = """\
{python} -m container startup || exit $?
{launch} {python} {writer} "$DB_LOCAL_PATH" "$WRITES" 0.02 &
APP_PID=$!
echo $APP_PID > "$APP_PID_FILE"
trap '{python} -m container shutdown; exit 0' TERM
wait $APP_PID
"""


class Entrypoint:
    def __init__(self, env: dict[str, str], tmp: Path, launch: str = "") -> None:
        self.local = env["DB_LOCAL_PATH"]
        self.writes = tmp / "writes.log"
        self.app_pid_file = tmp / "app.pid"
        script = tmp / "entrypoint.sh"
        script.write_text(ENTRYPOINT.format(python=sys.executable, writer=WRITER, launch=launch))
        self.output = open(tmp / "entrypoint.out", "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            ["sh", str(script)],
            env={**env, "WRITES": str(self.writes), "APP_PID_FILE": str(self.app_pid_file)},
            cwd=str(ROOT), stdout=self.output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def app_pid(self) -> int:
        return wait_for(lambda: self.app_pid_file.exists() and int(self.app_pid_file.read_text()),
                        what="the app to start")

    def agent_pid(self) -> int:
        def running() -> int | None:
            data = state.read(self.local)
            return data.get("pid") if data.get("state") == "running" else None

        return wait_for(running, timeout=30, what="the background agent to run")

    def agent_exit_code(self, pid: int) -> int:
        wait_for(lambda: not state.pid_alive(pid), timeout=30, what="the agent to exit")
        return int(state.read(self.local).get("exit_code"))

    def log(self) -> str:
        return (self.output.name and Path(self.output.name).read_text(errors="replace")) or ""

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.output.close()


@pytest.fixture
def entrypoints() -> Iterator[list[Entrypoint]]:
    started: list[Entrypoint] = []
    yield started
    for entry in started:
        entry.close()


def _take_the_lease_away() -> None:
    """Another agent takes over: the background agent's next renewal is refused."""
    table = LeaseTable(TABLE, LEASE)
    table.force_release(str(table.read().holder))
    table.acquire("another-agent", 60)


def _rows(path: str) -> list[int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [row[0] for row in db.execute("SELECT id FROM rows ORDER BY id")]
    finally:
        db.close()


def test_a_lost_lease_stops_the_app_the_entrypoint_started(agent_env, tmp_path, entrypoints):
    entry = Entrypoint(agent_env, tmp_path)
    entrypoints.append(entry)
    agent = entry.agent_pid()
    app = entry.app_pid()
    wait_for(lambda: len(committed_ids(entry.writes)) >= 20, what="rows")

    _take_the_lease_away()

    assert entry.agent_exit_code(agent) == 5, entry.log()
    wait_for(lambda: not alive(app), timeout=10, what="the app to be stopped")
    assert entry.process.wait(timeout=20) is not None
    kept = [p for p in Path(entry.local).parent.glob("db.sqlite3.conflict.*")
            if not p.name.endswith(("-wal", "-shm", "-journal"))]
    assert len(kept) == 1, entry.log()
    # Every row the app acknowledged is in the copy kept aside, and nothing came after it.
    acknowledged = committed_ids(entry.writes)
    assert set(acknowledged) <= set(_rows(str(kept[0])))


def test_the_database_is_never_moved_from_under_an_app_that_outlives_its_stop(
    agent_env, tmp_path, entrypoints
):
    """An app outside the entrypoint's process group cannot be stopped: copy, never move."""
    entry = Entrypoint(agent_env, tmp_path, launch="setsid")
    entrypoints.append(entry)
    agent = entry.agent_pid()
    app = entry.app_pid()
    try:
        wait_for(lambda: len(committed_ids(entry.writes)) >= 20, what="rows")
        _take_the_lease_away()
        assert entry.agent_exit_code(agent) == 5, entry.log()
        assert alive(app), "the app was in a session of its own"
        # Its database, WAL and shared memory are where it opened them, and it still commits.
        for path in (entry.local, entry.local + "-wal", entry.local + "-shm"):
            assert os.path.exists(path), f"{path} was moved from under the app"
        before = len(committed_ids(entry.writes))
        wait_for(lambda: len(committed_ids(entry.writes)) > before + 5, what="more commits")
    finally:
        os.kill(app, signal.SIGKILL)
    kept = [p for p in Path(entry.local).parent.glob("db.sqlite3.conflict.*")
            if not p.name.endswith(("-wal", "-shm", "-journal"))]
    assert len(kept) == 1, entry.log()
    copied = _rows(str(kept[0]))
    assert copied and copied == list(range(1, len(copied) + 1))
    assert set(committed_ids(entry.writes)) <= set(_rows(entry.local))


def test_a_backend_kept_by_its_own_entrypoint_counts_as_running(agent_env, tmp_path, entrypoints):
    """``startup`` has no app of its own to probe: without a port it is ready once running,
    so wakes and the front door send clients to it (before, it stayed "starting")."""
    entry = Entrypoint(agent_env, tmp_path)
    entrypoints.append(entry)
    entry.agent_pid()
    wait_for(lambda: LeaseTable(TABLE, LEASE).read().ready_at, what="the ready mark")

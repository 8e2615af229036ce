"""The agent's manual verbs, run as real processes (``python -m container ...``) against moto.

What an operator sees: exit codes, messages, what ends up in S3 and on the lease, and what is
left on the local disk. State is seeded in-process through the store and the lease table.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.errors import LeaseHeld
from chalicelib.integrity import fetch_verified
from chalicelib.lease import FREE, HELD, LeaseTable
from chalicelib.observability import logger, metrics
from chalicelib.settings import AgentSettings
from chalicelib.sources import find_backup
from chalicelib.store import DatabaseStore, ObjectInfo, UploadIntent
from container import commands
from container.identity import Identity
from container.snapshot import take
from tests import fault_proxy
from tests.agent_harness import committed_ids
from tests.conftest import BUCKET, ROOT, TABLE

KEY = "db.sqlite3"
LEASE = f"{BUCKET}/{KEY}"
WRITER = str(ROOT / "tests" / "apps" / "writer.py")
EXIT_CONFIG = 2
EXIT_REFUSED = 3


# -- helpers --------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for_next_second() -> None:
    """S3 times and backup names have one-second resolution: start the next write in a new one."""
    start = int(time.time())
    wait_for(lambda: int(time.time()) != start, 2.0, "the next second")


def make_db(path: Path, ids: list[int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, pid INTEGER, body TEXT)")
    db.executemany("INSERT OR REPLACE INTO rows (id, body) VALUES (?, 'x')", [(n,) for n in ids])
    db.commit()
    db.close()
    return path


def row_ids(path: str | Path) -> list[int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT id FROM rows ORDER BY id")]
    finally:
        db.close()


@dataclass
class World:
    """The test's bucket, lease and local paths, and clients to look at them."""

    env: dict[str, str]
    tmp: Path
    store: DatabaseStore
    table: LeaseTable
    s3: Any

    @property
    def local(self) -> Path:
        return Path(self.env["DB_LOCAL_PATH"])

    def cli(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "container", *args],
            env=env or self.env, cwd=str(ROOT), capture_output=True, text=True,
            timeout=timeout,
        )

    def cli_many(self, *commands: list[str],
                 timeout: float = 60) -> list[subprocess.CompletedProcess[str]]:
        """Independent commands run side by side (each is a separate process anyway)."""
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "container", *args], env=self.env, cwd=str(ROOT),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for args in commands
        ]
        results = []
        for args, process in zip(commands, processes, strict=True):
            out, err = process.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(args, process.returncode, out, err))
        return results

    def seed(self, ids: list[int], holder: str = "seed", reason: str = "periodic",
             name: str | None = None) -> ObjectInfo:
        """Upload a database holding ``ids`` as the new current object."""
        name = name or f"seed-{len(ids)}-{time.monotonic_ns()}"
        source = make_db(self.tmp / "seeds" / f"{name}.sqlite3", ids)
        snap = take(str(source), str(self.tmp / "seeds" / f"{name}.snap"))
        current = self.store.head()
        return self.store.upload(
            snap, current.etag if current else None, UploadIntent(holder, 1, reason)
        )

    def put_raw(self, body: bytes) -> str:
        """Write the current object the way the seed's ``aws s3 cp`` would (no metadata)."""
        return self.s3.put_object(Bucket=BUCKET, Key=KEY, Body=body)["VersionId"]

    def current_ids(self, info: ObjectInfo | None = None) -> list[int]:
        info = info or self.store.head()
        assert info is not None, "no current object"
        target = self.tmp / f"fetched-{time.monotonic_ns()}.sqlite3"
        fetch_verified(self.store, info, str(target))
        return row_ids(target)

    def backup_ids(self) -> dict[str, list[int]]:
        return {
            b.name: self.current_ids(find_backup(self.store, b.name))
            for b in self.store.backups()
        }

    def state(self) -> dict[str, Any]:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return json.loads(Path(f"{self.local}.wakeful.json").read_text())
        return {}


@pytest.fixture(scope="module")
def clients(moto_server):
    # One set of clients for the module: building a botocore session per test costs ~0.3 s.
    return (
        boto3.client("s3", endpoint_url=moto_server.url),
        boto3.client("dynamodb", endpoint_url=moto_server.url),
    )


@pytest.fixture
def world(agent_env, tmp_path, clients) -> World:
    s3, dynamodb = clients
    return World(
        env=dict(agent_env),
        tmp=tmp_path,
        store=DatabaseStore(BUCKET, KEY, client=s3),
        table=LeaseTable(TABLE, LEASE, client=dynamodb),
        s3=s3,
    )


class RunningAgent:
    """``python -m container run -- writer.py`` in the background."""

    def __init__(self, world: World, interval: float = 0.02) -> None:
        self.world = world
        self.log = world.tmp / "writer.log"
        self.output = world.tmp / "agent.out"
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "container", "run", "--",
                 sys.executable, WRITER, str(world.local), str(self.log), str(interval)],
                env=world.env, cwd=str(ROOT), stdout=out, stderr=subprocess.STDOUT,
            )

    @property
    def holder(self) -> str:
        return f"{socket.gethostname()}:{self.process.pid}"

    def committed(self) -> list[int]:
        return committed_ids(self.log)

    def wait_running(self, rows: int = 5) -> None:
        def running() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"agent exited early:\n{self.output.read_text()}")
            state = self.world.state()
            return state.get("pid") == self.process.pid and state.get("state") == "running"

        wait_for(running, 30, "the agent to run its app")
        wait_for(lambda: len(self.committed()) >= rows, 20, f"{rows} committed rows")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def running_agent(world: World) -> Iterator[RunningAgent]:
    agent = RunningAgent(world)
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.kill()


@pytest.fixture
def background_agents(world: World) -> Iterator[list[int]]:
    """Pids of agents started by ``startup``; killed if a test leaves one behind."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        # Only if that pid is still our agent (not a process that reused the number).
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"container" in cmdline and b"serve" in cmdline:
                os.kill(pid, signal.SIGKILL)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


# -- backups --------------------------------------------------------------------------------


def test_backups_lists_backups_and_versions(world: World):
    v1 = world.seed([1], reason="shutdown")
    v2 = world.seed([1, 2], reason="shutdown")
    older = DatabaseStore(BUCKET, KEY, client=world.s3, clock=lambda: 1_800_000_000.0)
    newer = DatabaseStore(BUCKET, KEY, client=world.s3, clock=lambda: 1_800_000_100.0)
    older.create_backup(v1)
    newer.create_backup(v2)

    with_versions, as_json = world.cli_many(
        ["backups", "--versions"], ["backups", "--versions", "--json"]
    )

    assert with_versions.returncode == 0, output(with_versions)
    lines = with_versions.stdout.splitlines()
    assert lines[0] == f"Backups of s3://{BUCKET}/{KEY} (2, newest first)"
    assert lines[1].split()[0] == "NAME" and set(lines[2]) == {"-", " "}  # the table's header
    assert lines[3].split()[0] == "20270115_080140"  # newest first
    assert lines[4].split()[0] == "20270115_080000"
    version_lines = [line for line in with_versions.stdout.splitlines()
                     if v1.version_id in line or v2.version_id in line]
    assert len(version_lines) == 2
    assert v2.version_id in version_lines[0] and version_lines[0].endswith("  current")
    assert "current" not in version_lines[1]

    assert as_json.returncode == 0, output(as_json)
    listing = json.loads(as_json.stdout)
    assert [b["name"] for b in listing["backups"]] == ["20270115_080140", "20270115_080000"]
    assert [v["version_id"] for v in listing["versions"]] == [v2.version_id, v1.version_id]
    assert [v["is_latest"] for v in listing["versions"]] == [True, False]


def test_backups_of_an_empty_bucket(world: World):
    result = world.cli("backups", "--versions")
    assert result.returncode == 0, output(result)
    assert f"Backups of s3://{BUCKET}/{KEY} (0, newest first)" in result.stdout
    assert f"Versions of s3://{BUCKET}/{KEY} (0, newest first)" in result.stdout


# -- restore --------------------------------------------------------------------------------


@pytest.fixture
def history(world: World) -> dict[str, Any]:
    """v1 (rows 1-3, also kept as a backup), then v2 (rows 1-6) a second later."""
    v1 = world.seed([1, 2, 3], reason="shutdown")
    backup = world.store.create_backup(v1)
    wait_for_next_second()
    v2 = world.seed([1, 2, 3, 4, 5, 6], reason="shutdown")
    v1_time = next(v.last_modified for v in world.store.versions()
                   if v.version_id == v1.version_id)
    return {"v1": v1, "v2": v2, "backup": backup.name, "at": v1_time.isoformat()}


RESTORE_SOURCES = {
    "backup": lambda h: ["--backup", h["backup"]],
    "version": lambda h: ["--version", h["v1"].version_id],
    "at": lambda h: ["--at", h["at"]],
}


@pytest.mark.parametrize("source", sorted(RESTORE_SOURCES))
def test_restore_makes_the_chosen_content_current(world: World, history, source):
    token_before = world.table.read().token

    result = world.cli("restore", *RESTORE_SOURCES[source](history))

    assert result.returncode == 0, output(result)
    assert "Restored" in result.stdout
    current = world.store.head()
    assert current.version_id not in (history["v1"].version_id, history["v2"].version_id)
    assert current.reason == "restore"
    assert current.holder.startswith("manual@")
    assert world.current_ids() == [1, 2, 3]
    # v2 is still there to go back to.
    assert history["v2"].version_id in {v.version_id for v in world.store.versions()}
    lease = world.table.read()
    assert lease.state == FREE
    assert lease.token == token_before + 1
    assert current.token == lease.token


def test_restore_replaces_a_corrupt_current_object(world: World):
    good = world.seed([1, 2, 3])
    world.put_raw(b"test data\n")  # the seed's own test upload

    result = world.cli("restore", "--version", good.version_id)

    assert result.returncode == 0, output(result)
    assert world.store.head().reason == "restore"
    assert world.current_ids() == [1, 2, 3]


def test_restore_is_refused_while_another_holder_has_the_lease(world: World, history):
    held = world.table.acquire("task-live", 60)
    sources = sorted(RESTORE_SOURCES)

    results = world.cli_many(
        *[["restore", *RESTORE_SOURCES[source](history)] for source in sources]
    )

    for source, result in zip(sources, results, strict=True):
        assert result.returncode == EXIT_REFUSED, (source, output(result))
        assert "Refused" in output(result)
        assert "task-live" in output(result)
    assert world.store.head().etag == history["v2"].etag
    assert world.table.read() == held


def test_restore_keeps_the_lease_for_as_long_as_it_runs(world: World, history, moto_server):
    """A restore slower than its lease TTL still holds the lease: an agent booting meanwhile
    is refused instead of starting on the database the restore is about to replace."""
    ttl = 1.0
    downloads = fault_proxy.service("s3", method="GET")
    with fault_proxy.fault_proxy(moto_server.url) as proxy:
        # The download of the database itself (not the look for a chain beside it).
        proxy.delay(6 * ttl, lambda r: downloads(r) and not r.is_list and KEY in r.path
                    and ".wakeful/" not in r.path, count=1)
        env = {**world.env, "WAKEFUL_LEASE_TTL": f"{ttl:g}", "AWS_ENDPOINT_URL_S3": proxy.url}
        restore = subprocess.Popen(
            [sys.executable, "-m", "container", "restore", "--version", history["v1"].version_id],
            env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            held = wait_for(lambda: _held_by_manual(world.table), 30, "the restore's lease")
            # Past any TTL the restore could have asked for (the agent's own, or 4x it) while
            # its download is still held up by the proxy.
            wait_for(lambda: time.time() > held.acquired_at + 4.5 * ttl, 10 * ttl, "4.5 TTLs")
            assert restore.poll() is None, "the download is still held up"
            with pytest.raises(LeaseHeld):
                world.table.acquire("task-booting", 60)
            out, _ = restore.communicate(timeout=60)
        finally:
            if restore.poll() is None:
                restore.kill()
                restore.wait()

    assert restore.returncode == 0, out
    assert world.current_ids() == [1, 2, 3]
    assert world.store.head().holder.startswith("manual@")
    assert world.table.read().state == FREE


def _held_by_manual(table: LeaseTable) -> Any:
    lease = table.read()
    return lease if lease.state == HELD and str(lease.holder).startswith("manual@") else None


# -- verify ---------------------------------------------------------------------------------


def test_verify_checks_stored_databases_without_touching_the_local_file(world: World):
    good = world.seed([1, 2])
    backup = world.store.create_backup(good)
    make_db(world.local, [42])
    local_bytes = world.local.read_bytes()
    folder_before = sorted(os.listdir(world.local.parent))

    current_ok, version_ok, backup_ok = world.cli_many(
        ["verify"], ["verify", "--version", good.version_id], ["verify", "--backup", backup.name]
    )
    world.put_raw(b"test data\n")
    current_bad, version_still_ok = world.cli_many(
        ["verify"], ["verify", "--version", good.version_id, "--quick"]
    )

    assert current_ok.returncode == 0, output(current_ok)
    assert "good database" in current_ok.stdout
    assert version_ok.returncode == 0, output(version_ok)
    assert backup_ok.returncode == 0, output(backup_ok)
    assert f"backup {backup.name}" in backup_ok.stdout
    assert current_bad.returncode == 1, output(current_bad)
    assert "corrupt" in current_bad.stdout
    assert version_still_ok.returncode == 0, output(version_still_ok)
    assert world.local.read_bytes() == local_bytes
    assert sorted(os.listdir(world.local.parent)) == folder_before


# -- download -------------------------------------------------------------------------------


def test_download_writes_a_verified_file_and_keeps_a_backup(world: World):
    info = world.seed([1, 2, 3, 4])
    make_db(world.local, [99])

    result = world.cli("download")

    assert result.returncode == 0, output(result)
    assert f"Database downloaded successfully from s3://{BUCKET}/{KEY}" in result.stdout
    assert row_ids(world.local) == [1, 2, 3, 4]
    assert row_ids(f"{world.local}.backup") == [99]
    assert world.state()["etag"] == info.etag
    assert not Path(f"{world.local}.download").exists()


def test_download_of_a_corrupt_current_leaves_the_local_file(world: World):
    world.seed([1, 2])
    world.put_raw(b"test data\n")
    make_db(world.local, [7])

    result = world.cli("download")

    assert result.returncode == 1, output(result)
    assert "not a SQLite database" in result.stderr
    assert row_ids(world.local) == [7]
    assert not Path(f"{world.local}.download").exists()


def test_download_beside_a_live_agent_does_not_overwrite_its_file(
    world: World, running_agent: RunningAgent
):
    refused = world.cli("download")
    requested = running_agent.committed()
    copy = world.tmp / "copy" / "db.sqlite3"
    copied = world.cli("download", "--output", str(copy))

    assert refused.returncode == EXIT_REFUSED, output(refused)
    assert "--output" in refused.stdout
    assert copied.returncode == 0, output(copied)
    # The copy is what the agent uploaded when asked: everything committed before the request.
    assert set(requested) <= set(row_ids(copy))
    assert running_agent.process.poll() is None
    assert running_agent.stop() == 0


# -- upload ---------------------------------------------------------------------------------


def test_upload_beside_a_live_run_asks_the_agent(world: World, running_agent: RunningAgent):
    requested = running_agent.committed()
    holder = world.table.read().holder

    result, status = world.cli_many(["upload"], ["status", "--json"])

    assert status.returncode == 0, output(status)
    report = json.loads(status.stdout)
    assert report["lease"]["state"] == HELD
    assert report["lease"]["holder"] == running_agent.holder
    assert report["local"]["agent_pid"] == running_agent.process.pid
    assert result.returncode == 0, output(result)
    assert f"pid {running_agent.process.pid}" in result.stdout
    assert f"Database uploaded successfully to s3://{BUCKET}/{KEY}" in result.stdout
    current = world.store.head()
    assert current.reason == "manual"
    assert current.holder == holder == running_agent.holder
    assert set(requested) <= set(world.current_ids(current))
    assert running_agent.process.poll() is None, "the agent keeps running"
    assert running_agent.stop() == 0
    assert world.store.head().reason == "shutdown"


def test_upload_without_an_agent_after_a_download(world: World):
    world.seed([1, 2])
    assert world.cli("download").returncode == 0
    make_db(world.local, [3])

    first = world.cli("upload")
    make_db(world.local, [4])
    second = world.cli("upload")  # swaps against what the first upload left

    assert first.returncode == 0, output(first)
    assert second.returncode == 0, output(second)
    current = world.store.head()
    assert current.reason == "manual"
    assert current.holder.startswith("manual@")
    assert world.current_ids() == [1, 2, 3, 4]
    assert world.table.read().state == FREE


def test_upload_refuses_when_s3_changed_then_force_replaces(world: World):
    world.seed([1, 2])
    assert world.cli("download").returncode == 0
    theirs = world.seed([1, 2, 5, 6, 7], holder="task-other")
    make_db(world.local, [3])

    refused = world.cli("upload")

    assert refused.returncode == EXIT_REFUSED, output(refused)
    assert "--force" in refused.stdout
    assert world.store.head().etag == theirs.etag
    assert world.table.read().state == FREE

    forced = world.cli("upload", "--force")

    assert forced.returncode == 0, output(forced)
    current = world.store.head()
    assert current.reason == "manual"
    assert world.current_ids() == [1, 2, 3]
    assert world.table.read().state == FREE
    # What it replaced is still there: as a version, and (see below) meant as a backup.
    assert theirs.version_id in {v.version_id for v in world.store.versions()}
    assert world.store.backups(), "a forced upload leaves a backup"


def test_upload_force_keeps_a_backup_of_what_it_replaced(world: World):
    # In-process with the store's clock frozen: the whole forced upload within one second,
    # which is the usual case for a small database (a subprocess run only sometimes is).
    world.seed([1, 2])
    ctx = commands.Context(
        settings=AgentSettings.from_env(world.env),
        table=world.table,
        store=DatabaseStore(BUCKET, KEY, client=world.s3, clock=lambda: 1_800_000_000.0),
        identity=Identity("operator:1", None),
        log=logger("test-commands"),
        metrics=metrics("test-commands"),
        out=lambda _line: None,
    )
    assert commands.download(ctx) == 0
    world.seed([1, 2, 5, 6, 7], holder="task-other")
    make_db(world.local, [3])

    assert commands.upload(ctx, force=True) == 0

    assert world.current_ids() == [1, 2, 3]
    assert [1, 2, 5, 6, 7] in world.backup_ids().values()


def test_a_stale_state_file_never_signals_an_unrelated_process(world: World):
    make_db(world.local, [1, 2])
    # An agent SIGKILLed mid-run leaves its state file saying "running"; its pid was reused.
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        Path(f"{world.local}.wakeful.json").write_text(
            json.dumps({"pid": bystander.pid, "state": "running", "etag": None})
        )

        result = world.cli("upload")

        assert bystander.poll() is None, "a process that is not an agent was signalled"
        assert result.returncode == 0, output(result)
        assert world.current_ids() == [1, 2]
    finally:
        bystander.kill()
        bystander.wait()


def test_upload_refused_while_another_holder_has_the_lease(world: World):
    world.seed([1, 2])
    assert world.cli("download").returncode == 0
    make_db(world.local, [3])
    before = world.store.head()
    held = world.table.acquire("task-live", 60)

    result = world.cli("upload")

    assert result.returncode == EXIT_REFUSED, output(result)
    assert "task-live" in result.stdout
    assert world.store.head().etag == before.etag
    assert world.table.read() == held


# -- startup / shutdown ---------------------------------------------------------------------


def startup(world: World, pids: list[int]) -> None:
    # Not captured through pipes: the background agent keeps its output (it logs there).
    with open(world.tmp / "startup.out", "ab") as out:
        # A session of its own, like a container's entrypoint: the background agent stops
        # the group that ran ``startup`` if it loses the lease, and that must not be pytest's.
        code = subprocess.run(
            [sys.executable, "-m", "container", "startup"], env=world.env, cwd=str(ROOT),
            stdout=out, stderr=subprocess.STDOUT, timeout=60, start_new_session=True,
        ).returncode
    assert code == 0, (world.tmp / "startup.out").read_text()
    pid = world.state().get("pid")
    assert isinstance(pid, int)
    pids.append(pid)


def test_startup_app_writes_shutdown(world: World, background_agents: list[int]):
    world.seed([1, 2])

    startup(world, background_agents)
    assert world.table.read().state == HELD
    assert row_ids(world.local) == [1, 2]  # downloaded before startup returned
    make_db(world.local, [3, 4])  # the app's writes
    stopped = world.cli("shutdown")

    assert stopped.returncode == 0, output(stopped)
    current = world.store.head()
    assert current.reason == "shutdown"
    assert world.current_ids() == [1, 2, 3, 4]
    lease = world.table.read()
    assert lease.state == FREE
    assert lease.last_upload["etag"] == current.etag
    assert world.state()["state"] == "exited"
    assert len(world.store.backups()) == 1

    again = world.cli("shutdown")
    assert again.returncode == 0, output(again)
    assert "No agent running" in again.stdout


def test_backup_retention_keeps_the_newest(world: World):
    env = {**world.env, "WAKEFUL_BACKUP_RETENTION": "2"}
    app = "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); " \
          "db.execute('CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, pid, body)'); " \
          "db.execute('INSERT INTO rows (body) VALUES (1)'); db.commit()"
    last = 0
    for _ in range(3):
        # Backup names have one-second resolution: each shutdown upload in a second of its own.
        wait_for(lambda last=last: int(time.time()) > last, 2.0, "a new second")
        run = world.cli("run", "--", sys.executable, "-c", app, str(world.local), env=env)
        assert run.returncode == 0, output(run)
        last = int(time.time())

    kept = world.backup_ids()
    assert len(kept) == 2
    assert sorted(kept.values()) == [[1, 2], [1, 2, 3]]
    assert world.store.head().reason == "shutdown"


# -- status ---------------------------------------------------------------------------------


def test_status_json_shows_the_lease_and_the_database(world: World):
    empty = world.cli("status")
    info = world.seed([1, 2], holder="task-old", reason="shutdown")
    world.table.acquire("task-live", 60)

    held = world.cli("status", "--json")
    lease = world.table.read()

    assert empty.returncode == 0, output(empty)
    assert "FREE" in empty.stdout
    assert "none yet" in empty.stdout
    assert held.returncode == 0, output(held)
    report = json.loads(held.stdout)
    assert report["lease"]["name"] == LEASE
    assert report["lease"]["state"] == HELD
    assert report["lease"]["holder"] == "task-live"
    assert report["lease"]["token"] == lease.token
    assert report["database"]["etag"] == info.etag
    assert report["database"]["sha256"] == info.sha256
    assert report["database"]["reason"] == "shutdown"
    assert report["database"]["holder"] == "task-old"
    assert report["backups"] == 0
    assert report["local"]["path"] == str(world.local)
    assert report["local"]["agent_pid"] is None


# -- bad configuration ----------------------------------------------------------------------

BAD_CONFIG = [
    ("DB_S3_BUCKET", None, ["status"]),
    ("WAKEFUL_SYNC_INTERVAL", "abc", ["run", "--", "touch", "MARKER"]),
]


def test_bad_configuration_exits_2_with_one_line_naming_the_variable(world: World):
    marker = world.tmp / "MARKER"
    processes = []
    for variable, value, command in BAD_CONFIG:
        env = {k: v for k, v in world.env.items() if k != variable}
        if value is not None:
            env[variable] = value
        argv = [str(marker) if part == "MARKER" else part for part in command]
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "container", *argv], env=env, cwd=str(ROOT),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    no_command = world.cli("run")

    for (variable, _, command), process in zip(BAD_CONFIG, processes, strict=True):
        out, err = process.communicate(timeout=60)
        assert process.returncode == EXIT_CONFIG, (variable, command, out + err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert variable in lines[0]
    assert not marker.exists(), "the app must not start with a bad configuration"
    assert world.table.read().token == 0, "nothing touched the lease"
    assert no_command.returncode == EXIT_CONFIG
    assert "run -- CMD" in no_command.stderr


# -- the installed wakeful-agent, as an operator meets it -----------------------------------

SCRIPTS = Path(sys.executable).parent


def installed(name: str) -> str:
    path = SCRIPTS / name
    assert path.exists(), f"{path} is not installed: run `make setup`"
    return str(path)


def agent_script(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    """The console script ``wakeful-agent ARGS`` from the virtual environment."""
    return subprocess.run([installed("wakeful-agent"), *args], env=world.env, cwd=str(world.tmp),
                          capture_output=True, text=True, timeout=60)


def options_without_help(help_text: str) -> list[str]:
    """Option lines of argparse's help that have no explanation after (or below) them."""
    lines = help_text.splitlines()
    missing = []
    for index, line in enumerate(lines):
        if not line.startswith("  -"):
            continue
        spec, gap, rest = line.strip().partition("  ")
        following = lines[index + 1] if index + 1 < len(lines) else ""
        explained = bool(gap and rest.strip()) or following.startswith(" " * 6)
        if not explained:
            missing.append(spec)
    return missing


AGENT_VERBS = ("run", "startup", "shutdown", "download", "upload", "backups", "restore",
               "verify", "status")


def test_agent_help_lists_its_verbs_and_explains_every_option(world: World):
    top = agent_script(world, "--help")
    assert top.returncode == 0, output(top)
    assert "SUPPRESS" not in top.stdout and "serve" not in top.stdout
    for verb in AGENT_VERBS:
        assert f"    {verb} " in top.stdout, verb
    for verb in AGENT_VERBS:
        shown = agent_script(world, verb, "--help")
        assert shown.returncode == 0, output(shown)
        assert options_without_help(shown.stdout) == [], verb
    version = agent_script(world, "--version")
    assert version.returncode == 0 and version.stdout.startswith("wakeful-agent ")
    abbreviated = agent_script(world, "backups", "--version")
    assert abbreviated.returncode == 2 and "unrecognized arguments: --version" in abbreviated.stderr


def test_restore_refusal_names_a_readable_time_and_what_to_run(world: World, history):
    world.table.acquire("arn:aws:ecs:us-east-1:123456789012:task/c/live", 600)

    result = agent_script(world, "restore", "--version", history["v1"].version_id)

    assert result.returncode == EXIT_REFUSED, output(result)
    said = output(result)
    assert re.search(r"until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in \d+m\d\ds\)", said), said
    assert not re.search(r"\d{10}\.\d{3}", said), "a raw epoch"
    assert "wakeful sleep" in said
    assert "inside its container" not in said
    assert world.store.head().etag == history["v2"].etag


def test_download_output_writes_only_the_file(world: World):
    world.seed([1, 2, 3])
    target = world.tmp / "copy" / "db.sqlite3"

    result = agent_script(world, "download", "--output", str(target))

    assert result.returncode == 0, output(result)
    assert row_ids(target) == [1, 2, 3]
    assert sorted(p.name for p in target.parent.iterdir()) == ["db.sqlite3"]
    assert not world.local.exists() and not Path(f"{world.local}.wakeful.json").exists()


def without_relative_times(text: str) -> str:
    return re.sub(r" \((?:in )?[0-9.dhms]+(?: ago)?\)", "", text)


def test_agent_backups_print_the_same_as_wakeful_backups(world: World):
    first = world.seed([1], reason="shutdown", holder="task-a")
    world.store.create_backup(first)
    world.seed([1, 2], reason="periodic", holder="task-b")
    operator = {**world.env, "XDG_CONFIG_HOME": str(world.tmp / "no-config")}

    for flags in (["--versions"], ["--versions", "--json"], []):
        agent = agent_script(world, "backups", *flags)
        cli = subprocess.run([installed("wakeful"), "backups", *flags], env=operator,
                             cwd=str(world.tmp), capture_output=True, text=True, timeout=60)
        assert agent.returncode == cli.returncode == 0, output(agent) + output(cli)
        assert without_relative_times(agent.stdout) == without_relative_times(cli.stdout)
        if flags == ["--versions"]:
            # The facts each object carries are in the shared table.
            assert "task-a" in agent.stdout and "task-b" in agent.stdout
            assert "shutdown" in agent.stdout and "periodic" in agent.stdout


def test_download_output_beside_a_live_agent_writes_only_the_copy(
    world: World, running_agent: RunningAgent
):
    target = world.tmp / "copy" / "db.sqlite3"

    result = agent_script(world, "download", "--output", str(target))

    assert result.returncode == 0, output(result)
    assert sorted(p.name for p in target.parent.iterdir()) == ["db.sqlite3"]
    assert running_agent.stop() == 0


def test_download_output_naming_the_local_file_by_another_spelling_is_refused_beside_an_agent(
    world: World, running_agent: RunningAgent
):
    # The same file as DB_LOCAL_PATH, written relative to the working folder.
    relative = os.path.relpath(world.local, world.tmp)

    result = agent_script(world, "download", "--output", relative)

    assert result.returncode == EXIT_REFUSED, output(result)
    assert running_agent.stop() == 0


def test_agent_restore_dry_run_checks_the_source_and_changes_nothing(world: World, history):
    lease_before = world.table.read()

    result = agent_script(world, "restore", "--backup", history["backup"], "--dry-run")

    assert result.returncode == 0, output(result)
    assert f"would restore backup {history['backup']}" in result.stdout
    assert "3 rows (rows 3)" in result.stdout and "integrity_check ok" in result.stdout
    assert "nothing was changed" in result.stdout
    assert world.store.head().etag == history["v2"].etag
    assert world.table.read() == lease_before
    world.table.acquire("task-live", 60)
    refused = agent_script(world, "restore", "--backup", history["backup"], "--dry-run")
    assert refused.returncode == EXIT_REFUSED, output(refused)
    assert "would be refused" in refused.stdout and "wakeful sleep" in refused.stdout

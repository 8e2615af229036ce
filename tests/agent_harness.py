"""Helpers to run the real agent as a process and look at what it left in S3 and DynamoDB."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import boto3

ROOT = Path(__file__).resolve().parent.parent
WRITER = str(ROOT / "tests" / "apps" / "writer.py")
IDLE = str(ROOT / "tests" / "apps" / "idle.py")


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class AgentProcess:
    """``python -m container run -- CMD`` with its output captured to a file."""

    # Every agent started, so a failed test's teardown can kill what is still running.
    started: ClassVar[list[AgentProcess]] = []

    def __init__(self, env: dict[str, str], argv: list[str], log_dir: Path, name: str = "agent"):
        AgentProcess.started.append(self)
        self.env = env
        self.local_path = env["DB_LOCAL_PATH"]
        self.output_path = log_dir / f"{name}.out"
        self._output = open(self.output_path, "wb")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "container", "run", "--", *argv],
            env=env,
            cwd=str(ROOT),
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def state(self) -> dict[str, Any]:
        try:
            with open(self.local_path + ".wakeful.json", encoding="utf-8") as handle:
                return json.load(handle)
        except (FileNotFoundError, ValueError):
            return {}

    def wait_running(self, timeout: float = 30.0) -> None:
        def running() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"agent exited with {self.process.returncode}:\n{self.output()}"
                )
            current = self.state()
            return current.get("pid") == self.pid and current.get("state") == "running"

        wait_for(running, timeout, "the agent to run its app")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._output.close()

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def messages(self) -> list[str]:
        found = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line).get("message", ""))
                except ValueError:
                    continue
        return found

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait()

    @classmethod
    def kill_leftovers(cls) -> None:
        """Kill the agents (and so, by PDEATHSIG, their apps) a test left running."""
        while cls.started:
            agent = cls.started.pop()
            if agent.process.poll() is None:
                os.kill(agent.pid, signal.SIGCONT)  # a test may have paused it
                agent.kill()
            elif not agent._output.closed:
                agent._output.close()


def writer(env: dict[str, str], log: Path, interval: float = 0.02, mode: str = "wal") -> list[str]:
    return [sys.executable, WRITER, env["DB_LOCAL_PATH"], str(log), str(interval), mode]


def committed_ids(log: Path) -> list[int]:
    return [row for row, _ in commits(log)]


def commits(log: Path) -> list[tuple[int, float]]:
    """``(id, wall time its COMMIT returned)`` for every row the writer app acknowledged."""
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts and parts[0].isdigit():
            # A line is one write(), so a kill does not cut one short; if it did, no time.
            found.append((int(parts[0]), float(parts[1]) if len(parts) == 2 else float("nan")))
    return found


def lease_item(table: str = "wakeful-test-leases", name: str = "wakeful-test-db/db.sqlite3"):
    from chalicelib.lease import LeaseTable

    return LeaseTable(table, name).read()


def current_object(bucket: str = "wakeful-test-db", key: str = "db.sqlite3") -> dict[str, Any]:
    return boto3.client("s3").head_object(Bucket=bucket, Key=key)


def s3_rows(
    bucket: str = "wakeful-test-db", key: str = "db.sqlite3", version_id: str | None = None
) -> list[tuple]:
    """Download the object and return its ``rows`` table, after a full integrity check."""
    s3 = boto3.client("s3")
    extra = {"VersionId": version_id} if version_id else {}
    body = s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "copy.sqlite3")
        with open(path, "wb") as handle:
            handle.write(body)
        db = sqlite3.connect(path)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            return db.execute("SELECT id, pid FROM rows ORDER BY id").fetchall()
        finally:
            db.close()


def chain_rows(
    folder: Path, bucket: str = "wakeful-test-db", key: str = "db.sqlite3"
) -> list[int]:
    """The chain restored by the library into ``folder``, as an operator's ``restore`` would
    (no agent): its ``rows`` ids, after a full integrity check."""
    from wakeful_replica.store import ChainStore

    folder.mkdir(parents=True, exist_ok=True)
    destination = folder / "restored.sqlite3"
    ChainStore(bucket, key).restore(str(destination))
    db = sqlite3.connect(destination)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [row for (row,) in db.execute("SELECT id FROM rows ORDER BY id")]
    finally:
        db.close()


def seed_database(path: Path, rows: int, pid: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, pid INTEGER, body TEXT)")
    db.executemany(
        "INSERT INTO rows VALUES (?, ?, ?)", [(n, pid, "seed") for n in range(1, rows + 1)]
    )
    db.commit()
    db.close()
    return path


def put_object(data: bytes, bucket: str = "wakeful-test-db", key: str = "db.sqlite3") -> str:
    """A blind write, like ``aws s3 cp``: returns the new version id."""
    return boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=data)["VersionId"]


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def child_pid(parent: int) -> int | None:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[-1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == parent:
            return int(entry)
    return None


def env_for(base: dict[str, str], tmp_path: Path, name: str, **extra: str) -> dict[str, str]:
    """``base`` with a local database of its own (another container's disk) and ``extra``."""
    env = dict(base)
    env["DB_LOCAL_PATH"] = str(tmp_path / name / "db.sqlite3")
    env.update(extra)
    return env

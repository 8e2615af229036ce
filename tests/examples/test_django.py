"""The Django example (examples/django) under the real agent: migrate, write, sleep, wake.

What a Django user adopting wakeful does, end to end against moto: the agent downloads (here:
nothing yet), runs `start.sh` (migrations, then gunicorn), the app writes through HTTP, a SIGTERM
(an ECS stop) uploads it, and a new task on an empty disk gets every row back.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest

from tests.agent_harness import AgentProcess, wait_for
from tests.conftest import BUCKET
from wakeful_local.moto import free_port

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "examples" / "django" / "start.sh"

pytestmark = pytest.mark.slow


def _request(url: str, body: dict | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _ready(url: str) -> bool:
    try:
        return _request(url)[0] == 200
    except OSError:
        return False


def _django_env(agent_env: dict[str, str], disk: Path) -> tuple[dict[str, str], str]:
    port = free_port()
    env = {
        **agent_env,
        "DB_LOCAL_PATH": str(disk / "db.sqlite3"),
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    return env, f"http://127.0.0.1:{port}"


def _run_until_ready(env: dict[str, str], url: str, log_dir: Path, name: str) -> AgentProcess:
    agent = AgentProcess(env, ["sh", str(START)], log_dir, name=name)
    agent.wait_running(timeout=60)
    wait_for(lambda: _ready(f"{url}/health/") or agent.process.poll() is not None, 60,
             "Django to answer")
    assert agent.process.poll() is None, agent.output()
    return agent


def test_django_rows_survive_sleep_and_wake(agent_env, tmp_path):
    env, url = _django_env(agent_env, tmp_path / "task1")
    first = _run_until_ready(env, url, tmp_path, "first")
    status, health = _request(f"{url}/health/")
    assert health["journal_mode"] == "wal"
    major, minor, patch = (int(part) for part in health["sqlite"].split("."))
    assert (major, minor, patch) >= (3, 51, 3), "the example must run a SQLite with the fix"
    for name in ("ada", "grace", "linus"):
        created, entry = _request(f"{url}/entries/", {"name": name, "message": f"hi from {name}"})
        assert created == 201, entry
    first.signal(signal.SIGTERM)
    assert first.wait(60) == 0, first.output()

    # The current object alone (what `aws s3 cp` gives an operator) holds the rows.
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key="db.sqlite3")["Body"].read()
    copy = tmp_path / "from-s3.sqlite3"
    copy.write_bytes(body)
    db = sqlite3.connect(copy)
    try:
        names = [row[0] for row in db.execute("SELECT name FROM guestbook_entry ORDER BY id")]
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()
    assert names == ["ada", "grace", "linus"]

    # A new task on an empty disk: the migration is a no-op and every row is served.
    env, url = _django_env(agent_env, tmp_path / "task2")
    second = _run_until_ready(env, url, tmp_path, "second")
    status, entries = _request(f"{url}/entries/")
    assert status == 200
    assert [entry["name"] for entry in entries] == ["ada", "grace", "linus"]
    second.signal(signal.SIGTERM)
    assert second.wait(60) == 0, second.output()


def test_django_bad_request_is_a_400_not_a_crash(agent_env, tmp_path):
    env, url = _django_env(agent_env, tmp_path / "task")
    agent = _run_until_ready(env, url, tmp_path, "agent")
    try:
        status, _ = _request(f"{url}/entries/", {"name": "no message"})
        assert status == 400
        assert _request(f"{url}/health/")[0] == 200
    finally:
        agent.signal(signal.SIGTERM)
        assert agent.wait(60) == 0, agent.output()

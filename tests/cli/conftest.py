"""Fixtures for the operator CLI: its environment, runners, and a control plane API to call.

The API is the real Chalice app served over HTTP by Chalice's local server, in a thread, with
the control plane's environment pointing at the test moto server and its pinned ECS cluster.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUCKET, ROOT, TABLE
from tests.controlplane import conftest as controlplane
from tests.controlplane.agent_double import AgentDouble
from tests.controlplane.conftest import build_plane, ecs_tasks
from tests.moto_server import MotoServer, free_port

API_KEY = "operator-key"

# The control plane's fixtures: a clean moto with a pinned ECS cluster, and its settings.
control_env = controlplane.control_env
settings = controlplane.settings


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


# The installed console scripts, beside the interpreter running the tests (``make setup``).
SCRIPTS = Path(sys.executable).parent

# An empty folder to run the CLI in and to stand for the user's config home, so that a
# developer's own wakeful.toml or ~/.config/wakeful/config.toml never leaks into a test.
NO_CONFIG = Path(tempfile.mkdtemp(prefix="wakeful-cli-noconfig-"))


def operator_env(server: MotoServer) -> dict[str, str]:
    """What an operator's shell would hold: AWS settings, the database and its lease table."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAKEFUL_", "DB_"))}
    env.update({
        "XDG_CONFIG_HOME": str(NO_CONFIG),
        "AWS_ENDPOINT_URL": server.url,
        "DB_S3_BUCKET": BUCKET,
        "DB_S3_KEY": "db.sqlite3",
        "WAKEFUL_LEASE_TABLE": TABLE,
    })
    return env


@pytest.fixture
def store_env(resources: MotoServer) -> dict[str, str]:
    """The operator's environment for commands that need only the bucket and the lease."""
    return operator_env(resources)


@pytest.fixture
def cli_env(control_env: dict[str, str], resources: MotoServer) -> dict[str, str]:
    """The operator's environment with the ECS cluster (and a control plane's resources)."""
    return {**operator_env(resources), "WAKEFUL_CLUSTER": control_env["WAKEFUL_CLUSTER"]}


def run(env: dict[str, str], *argv: str) -> Result:
    """``wakeful ARGV`` in this process, with its output captured."""
    from wakeful_cli.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, env=env, cwd=str(NO_CONFIG))
    return Result(code, out.getvalue(), err.getvalue())


def script(name: str = "wakeful") -> str:
    path = SCRIPTS / name
    assert path.exists(), f"{path} is not installed: run `make setup`"
    return str(path)


def run_script(env: dict[str, str], *argv: str, timeout: float = 60,
               cwd: Path | None = None) -> Result:
    """The installed console script ``wakeful ARGV``, run as a user runs it."""
    completed = subprocess.run(
        [script(), *argv], env=env, capture_output=True, text=True, timeout=timeout,
        cwd=str(cwd or NO_CONFIG),
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def start_script(env: dict[str, str], *argv: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    """``wakeful ARGV`` started in the background; the caller waits for it."""
    return subprocess.Popen(
        [script(), *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=str(cwd or NO_CONFIG),
    )


def finish(process: subprocess.Popen[str], timeout: float = 60) -> Result:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"wakeful did not finish in {timeout}s:\n{out}\n{err}") from None
    return Result(process.returncode, out, err)


def run_process(env: dict[str, str], *argv: str, timeout: float = 60) -> Result:
    """``python -m wakeful_cli ARGV`` as a separate process."""
    completed = subprocess.run(
        [sys.executable, "-m", "wakeful_cli", *argv],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=timeout, cwd=str(ROOT),
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


class ApiServer:
    """The Chalice app behind ``chalice.local.LocalDevServer`` on a free loopback port."""

    def __init__(self, env: dict[str, str]) -> None:
        from chalice.config import Config
        from chalice.local import LocalDevServer

        import app as app_module

        self.app_module = app_module
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = Config.create(chalice_stage="test", app_name="wakeful",
                               environment_variables=env)
        self.server = LocalDevServer(app_module.app, config, "127.0.0.1", self.port)
        self.thread = threading.Thread(target=self.server.server.serve_forever, daemon=True)

    def start(self) -> ApiServer:
        self.app_module.reset()
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server.server_close()
        self.thread.join(timeout=10)
        self.app_module.reset()


def serve_api(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
              key: str = API_KEY) -> ApiServer:
    # The app reads its settings from the process environment, as a Lambda does. It accepts
    # the operator's key, the one the CLI sends.
    env = {**env, "WAKEFUL_API_KEY_SHA256": hashlib.sha256(key.encode()).hexdigest()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return ApiServer(env).start()


@pytest.fixture
def api(control_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiServer]:
    server = serve_api(monkeypatch, control_env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api_env(cli_env: dict[str, str], api: ApiServer) -> dict[str, str]:
    return {**cli_env, "WAKEFUL_API_URL": api.url, "WAKEFUL_API_KEY": API_KEY}


def woken(plane_settings: Any, workdir: Path) -> tuple[dict[str, Any], AgentDouble]:
    """A wake through the control plane (a task pinned RUNNING in moto) whose agent holds the
    lease, as after a real boot."""
    reply = build_plane(plane_settings).wake()
    [task] = [t for t in ecs_tasks() if t["taskArn"] == reply.body["task_arn"]]
    agent = AgentDouble(plane_settings, task["taskArn"], workdir)
    agent.acquire(reply.body["reservation_id"])
    return task, agent


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def field(table: str, name: str) -> str:
    """The value column of the row named ``name`` in a two-column table."""
    for line in table.splitlines():
        if line.startswith(name + " "):
            return line[len(name):].strip()
    raise AssertionError(f"no row {name!r} in:\n{table}")

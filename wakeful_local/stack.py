"""The whole system on one machine: moto for AWS, ``chalice local`` for the control plane, and
local processes for the Fargate tasks (see ``launcher``)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3

from wakeful_local import resources
from wakeful_local.moto import MotoServer, free_port

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "local"
REGION = "us-east-1"

_CHALICE = "import sys; from chalice.cli import main; sys.exit(main())"


class StackError(RuntimeError):
    """A step of bringing the stack up or down did not hold."""


class StackCancelled(StackError):
    """A stop signal arrived while the stack was starting."""


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class LocalStack:
    def __init__(
        self,
        workdir: Path | None = None,
        provisioner: str = "auto",
        timings: resources.Timings | None = None,
        say: Callable[[str], None] = print,
        app_command: str | None = None,
        cancelled: threading.Event | None = None,
        front_door_hold: float = 20.0,
    ) -> None:
        self.app_command = app_command
        # Set by a stop signal during start-up; checked between steps, never raised into one.
        self.cancelled = cancelled or threading.Event()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="wakeful-local-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.provisioner = provisioner
        self.timings = timings or resources.Timings()
        self.say = say
        self.moto: MotoServer | None = None
        self.names: resources.Names | None = None
        self.api_url = ""
        self._chalice: subprocess.Popen[bytes] | None = None
        self._front_door: subprocess.Popen[bytes] | None = None
        self.front_door_url = ""
        self.front_door_hold = front_door_hold

    # -- up and down -----------------------------------------------------------------------

    def start(self) -> LocalStack:
        if not self.timings.app_port:
            self.timings = replace(self.timings, app_port=free_port())
        self._check_cancelled()
        # Serial, as DynamoDB is for one item: racing wakes must not both reserve the lease.
        self.moto = MotoServer(serial=True).start()
        self.say(f"moto server on {self.moto.url}")
        env = self.aws_env()
        self.names = resources.provision(
            self.provisioner, self.moto.url, env, self.workdir, self.timings, self.say
        )
        self._check_cancelled()
        self._start_control_plane()
        self._check_cancelled()
        self._start_front_door()
        return self

    def _check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise StackCancelled("a stop signal arrived during start-up")

    def aws_env(self) -> dict[str, str]:
        assert self.moto is not None
        return {
            "AWS_ENDPOINT_URL": self.moto.url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def client(self, service: str) -> Any:
        env = self.aws_env()
        return boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        ).client(service, endpoint_url=env["AWS_ENDPOINT_URL"])

    def _start_control_plane(self) -> None:
        assert self.names is not None
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WAKEFUL_"))},
            **self.aws_env(),
            **self.names.control_plane_env(),
            "WAKEFUL_TASK_LAUNCHER": "local",
            "WAKEFUL_AUTH": "api_key",
            "WAKEFUL_API_KEY_SHA256": hashlib.sha256(API_KEY.encode()).hexdigest(),
            "WAKEFUL_LOCAL_WORKDIR": str(self.workdir / "tasks"),
            "WAKEFUL_LOCAL_STOP_TIMEOUT": "20",
            "PYTHONPATH": str(ROOT),
        }
        if self.app_command:
            env["WAKEFUL_LOCAL_APP"] = self.app_command
        log = open(self.workdir / "control-plane.log", "ab")  # noqa: SIM115 - child owns it
        self._chalice = subprocess.Popen(
            [sys.executable, "-c", _CHALICE, "--project-dir", str(ROOT), "local",
             "--host", "127.0.0.1", "--port", str(port), "--stage", "local",
             "--no-autoreload"],
            cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.api_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self._check_cancelled()
            if self._chalice.poll() is not None:
                raise StackError(
                    f"chalice local exited with {self._chalice.returncode}; "
                    f"see {self.workdir / 'control-plane.log'}"
                )
            with contextlib.suppress(OSError):
                if self.api("GET", "/status").status == 200:
                    self.say(f"control plane (chalice local) on {self.api_url}")
                    return
            time.sleep(0.2)
        raise StackError("chalice local did not answer within 60 s")

    def _start_front_door(self) -> None:
        """The app's public URL, served on loopback by the same handler the Lambda runs.

        It wakes through the control plane's API: the local tasks are processes of the one
        launcher inside ``chalice local``, and a second launcher must not start any."""
        assert self.names is not None
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WAKEFUL_"))},
            **self.aws_env(),
            **self.names.control_plane_env(),
            "WAKEFUL_API_KEY": API_KEY,
            "WAKEFUL_FRONT_DOOR_HOLD": str(self.front_door_hold),
            "WAKEFUL_IDLE_TIMEOUT": str(self.timings.idle_timeout),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        log = open(self.workdir / "front-door.log", "ab")  # noqa: SIM115 - child owns it
        self._front_door = subprocess.Popen(
            [sys.executable, "-m", "frontdoor", "--port", str(port), "--wake-url", self.api_url],
            cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.front_door_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self._check_cancelled()
            if self._front_door.poll() is not None:
                raise StackError(
                    f"the front door exited with {self._front_door.returncode}; "
                    f"see {self.workdir / 'front-door.log'}"
                )
            if "WAKEFUL_FRONT_DOOR_URL" in _read(self.workdir / "front-door.log"):
                self.say(f"front door on {self.front_door_url}")
                return
            time.sleep(0.1)
        raise StackError("the front door did not listen within 60 s")

    def stop(self) -> None:
        """Put the backend to sleep (it uploads), then stop everything this stack started."""
        with contextlib.suppress(Exception):
            if self._chalice and self._chalice.poll() is None:
                self.api("POST", "/sleep")
                self.wait_for(
                    lambda: self.agent_pid() is None, 30, "the backend to stop", cancellable=False
                )
        for pid in self.agent_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._front_door and self._front_door.poll() is None:
            self._front_door.terminate()
            try:
                self._front_door.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._front_door.kill()
        if self._chalice and self._chalice.poll() is None:
            os.killpg(self._chalice.pid, signal.SIGTERM)
            try:
                self._chalice.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._chalice.pid, signal.SIGKILL)
        if self.moto:
            self.moto.stop()

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def last_task_problem(self) -> str | None:
        """What went wrong with the newest task's stop, if anything: a non-zero exit, a
        conflict copy, or an agent still alive."""
        states = sorted(
            (self.workdir / "tasks").glob("*/app/db.sqlite3.wakeful.json"),
            key=lambda path: path.stat().st_mtime,
        )
        if not states:
            return None
        with contextlib.suppress(ValueError, OSError):
            data = json.loads(states[-1].read_text())
            conflicts = sorted(states[-1].parent.glob("db.sqlite3.conflict.*"))
            if conflicts:
                return f"the backend lost its lease and kept its database aside at {conflicts[0]}"
            if data.get("state") != "exited":
                return f"the backend (pid {data.get('pid')}) did not finish its stop"
            if data.get("exit_code") not in (0, None):
                return f"the backend exited with {data['exit_code']}"
        return None

    # -- talking to it ---------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None) -> Answer:
        return http(method, self.api_url + path, body, {"x-api-key": API_KEY})

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float, what: str, cancellable: bool = True
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cancellable:
                self._check_cancelled()
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")

    def event_outcome(self, task_arn: str, status: str) -> str | None:
        """What the control plane's handler answered to ``status`` of ``task_arn``."""
        from wakeful_local.launcher import OUTCOME_MARK

        log = self.workdir / "control-plane.log"
        found = None
        with contextlib.suppress(OSError):
            for line in log.read_text(errors="replace").splitlines():
                parts = line.split()
                if line.startswith(OUTCOME_MARK) and parts[2:4] == [task_arn, status]:
                    found = parts[4] if len(parts) > 4 else None
        return found

    def agent_pids(self) -> list[int]:
        """Agents of local tasks that are still alive (read from their state files)."""
        pids = []
        for state_file in (self.workdir / "tasks").glob("*/app/db.sqlite3.wakeful.json"):
            with contextlib.suppress(ValueError, OSError):
                data = json.loads(state_file.read_text())
                pid = data.get("pid")
                if isinstance(pid, int) and data.get("state") != "exited" and _alive(pid):
                    pids.append(pid)
        return pids

    def agent_pid(self, task_arn: str | None = None) -> int | None:
        if task_arn:
            state_file = self.workdir / "tasks" / task_arn.rsplit("/", 1)[-1] / "app" / (
                "db.sqlite3.wakeful.json"
            )
            with contextlib.suppress(ValueError, OSError):
                pid = json.loads(state_file.read_text()).get("pid")
                return pid if isinstance(pid, int) and _alive(pid) else None
            return None
        pids = self.agent_pids()
        return pids[0] if pids else None


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, _json(response.read()), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Answer(error.code, _json(error.read()), dict(error.headers))


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode(errors="replace")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False

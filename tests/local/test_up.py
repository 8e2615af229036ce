"""``make up``: the stack stays up for exploring and shuts down cleanly on Ctrl-C.

Signals go to the whole process group, as a terminal sends Ctrl-C to its foreground job.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _post(url: str, body: dict | None = None, key: str | None = "local") -> tuple[int, object]:
    headers = {"Content-Type": "application/json", **({"x-api-key": key} if key else {})}
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _get(url: str) -> tuple[int, object]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, json.load(response)


def _exports(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip().startswith(("export", "AWS_",
                                                                            "WAKEFUL_"))]
    return " ".join(line.replace("export", "").replace("\\", "") for line in lines)


class Up:
    """``python -m wakeful_local up`` in a process group of its own, like a terminal's job."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("AWS_", "WAKEFUL_", "DB_"))}
        self.out = tmp_path / "up.out"
        with open(self.out, "wb") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wakeful_local", "up", *args],
                cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for_line(self, needle: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, f"no {needle!r} in:\n{self.text()}"
            time.sleep(0.2)
        return self.text()

    def value(self, name: str) -> str:
        return re.search(rf"{name}=(\S+)", self.text()).group(1)

    def wake(self, timeout: float = 90) -> str:
        api = self.value("WAKEFUL_API_URL")
        deadline = time.monotonic() + timeout
        while True:
            status, body = _post(f"{api}/wake")
            if status == 200:
                return body["endpoint"]
            assert status == 202, body
            assert time.monotonic() < deadline, "the backend did not start"
            time.sleep(0.2)

    def ctrl_c(self, signum: int = signal.SIGINT) -> None:
        os.killpg(self.process.pid, signum)

    def close(self) -> None:
        """After a failed test: ask ``up`` to stop (it stops moto and the control plane, which
        run in sessions of their own), and kill it only if it does not."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def up_process(tmp_path):
    started: list[Up] = []

    def start(*args: str) -> Up:
        started.append(Up(tmp_path, *args))
        return started[-1]

    yield start
    for up in started:
        up.close()


def test_up_serves_until_ctrl_c_then_puts_the_backend_to_sleep(up_process):
    up = up_process()
    up.wait_for_line("The stack is up")
    workdir = Path(re.search(r"Work folder \(logs, each task's disk\): (\S+)", up.text())[1])
    # The user's path: a plain request to the app's one URL while asleep is served.
    door = up.value("WAKEFUL_FRONT_DOOR_URL")
    assert _get(f"{door}/notes") == (200, [])
    assert _post(f"{door}/notes", {"text": "kept across Ctrl-C"}, key=None)[0] == 201
    # The operator CLI, pointed at the stack with the variables it printed.
    cli_env = {**up.env, **dict(re.findall(r"(\w+)=(\S+)", _exports(up.text())))}
    status = subprocess.run(
        [sys.executable, "-m", "wakeful_cli", "status", "--direct", "--json"],
        cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["lease"]["state"] == "HELD"
    # Or with nothing but the profile it wrote into its work folder.
    profile = re.search(r"export WAKEFUL_CONFIG=(\S+)", up.text())[1]
    assert Path(profile).parent == workdir
    by_profile = subprocess.run(
        [str(Path(sys.executable).parent / "wakeful"), "--json", "lease", "show"],
        cwd=workdir, env={**up.env, "WAKEFUL_CONFIG": profile}, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert by_profile.returncode == 0, by_profile.stderr
    assert json.loads(by_profile.stdout)["state"] == "HELD"
    logs = sorted(workdir.glob("tasks/*/container.log"))
    up.ctrl_c()
    assert up.process.wait(timeout=90) == 0, up.text()
    text = up.text()
    assert "stopping: the backend uploads and sleeps" in text
    assert text.rstrip().endswith("stopped: the backend uploaded its database and slept")
    # A clean stop leaves no work folder behind.
    assert not workdir.exists()
    assert logs, "the task's log was there while it ran"


def test_ctrl_c_reaches_every_process_yet_the_backend_uploads(up_process, tmp_path):
    workdir = tmp_path / "stack"
    up = up_process(f"--workdir={workdir}")
    up.wait_for_line("The stack is up")
    endpoint = up.wake()
    assert _post(f"{endpoint}/notes", {"text": "must reach S3"}, key=None)[0] == 201
    up.ctrl_c()
    assert up.process.wait(timeout=90) == 0, up.text()
    (log,) = workdir.glob("tasks/*/container.log")
    assert "Database uploaded successfully" in log.read_text(), log.read_text()
    assert not list(workdir.glob("tasks/*/app/db.sqlite3.conflict.*"))


def test_a_stop_signal_during_start_up_stops_moto_and_everything_else(up_process):
    up = up_process()
    up.wait_for_line("moto server on")
    port = int(re.search(r"moto server on http://127\.0\.0\.1:(\d+)", up.text())[1])
    up.ctrl_c(signal.SIGTERM)
    assert up.process.wait(timeout=60) == 130, up.text()
    assert "stopping what was started" in up.text()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_up_runs_the_users_own_app(up_process):
    up = up_process("--app=sh examples/django/start.sh")
    up.wait_for_line("The stack is up")
    endpoint = up.wake()
    created = _post(f"{endpoint}/entries/", {"name": "ada", "message": "hello"}, key=None)
    assert created[0] == 201, created
    api = up.value("WAKEFUL_API_URL")
    assert _post(f"{api}/sleep")[0] in (200, 202)
    deadline = time.monotonic() + 60
    while _get_state(api) != "asleep":
        assert time.monotonic() < deadline, "the backend did not go to sleep"
        time.sleep(0.2)
    endpoint = up.wake()
    assert _get(f"{endpoint}/entries/")[0] == 200
    _, entries = _get(f"{endpoint}/entries/")
    assert [entry["name"] for entry in entries] == ["ada"]
    up.ctrl_c()
    assert up.process.wait(timeout=90) == 0, up.text()


def _get_state(api: str) -> str:
    request = urllib.request.Request(f"{api}/status", headers={"x-api-key": "local"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response).get("state", "")


def test_twenty_concurrent_requests_while_asleep_start_one_task_and_all_are_served(
    up_process, tmp_path
):
    from concurrent.futures import ThreadPoolExecutor

    workdir = tmp_path / "stack"
    up = up_process(f"--workdir={workdir}")
    up.wait_for_line("The stack is up")
    door = up.value("WAKEFUL_FRONT_DOOR_URL")
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: _get(f"{door}/notes"), range(20)))
    assert answers == [(200, [])] * 20
    tasks = list(workdir.glob("tasks/*/container.log"))
    assert len(tasks) == 1, tasks
    up.ctrl_c()
    assert up.process.wait(timeout=90) == 0, up.text()

"""``make up``: the stack stays up for exploring and shuts down cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _post(url: str) -> tuple[int, dict]:
    headers = {"x-api-key": "local", "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=b"{}", method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _exports(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip().startswith(("export", "AWS_",
                                                                            "WAKEFUL_"))]
    return " ".join(line.replace("export", "").replace("\\", "") for line in lines)


def test_up_serves_until_ctrl_c_then_puts_the_backend_to_sleep(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WAKEFUL_", "DB_"))}
    out = tmp_path / "up.out"
    with open(out, "wb") as handle:
        stack = subprocess.Popen(
            [sys.executable, "-m", "wakeful_local", "up", "--resources=python"],
            cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while "The stack is up" not in out.read_text() and time.monotonic() < deadline:
            assert stack.poll() is None, out.read_text()
            time.sleep(0.2)
        api = re.search(r"WAKEFUL_API_URL=(\S+)", out.read_text()).group(1)
        assert _post(f"{api}/wake")[0] == 202
        deadline = time.monotonic() + 60
        while _post(f"{api}/wake")[0] != 200:
            assert time.monotonic() < deadline, "the backend did not start"
            time.sleep(0.2)
        # The operator CLI, pointed at the stack with the variables it printed.
        cli_env = {**env, **dict(re.findall(r"(\w+)=(\S+)", _exports(out.read_text())))}
        status = subprocess.run(
            [sys.executable, "-m", "wakeful_cli", "status", "--direct", "--json"],
            cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=60, check=False,
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["lease"]["state"] == "HELD"
        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=90) == 0, out.read_text()
    finally:
        if stack.poll() is None:
            stack.kill()
    text = out.read_text()
    assert "stopping: the backend uploads and sleeps" in text
    assert text.rstrip().endswith("stopped")

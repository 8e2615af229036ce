"""The README's first command, as a user runs it: its exit code and its timeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_demo(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WAKEFUL_", "DB_"))}
    workdir = tmp_path / "stack"
    result = subprocess.run(
        [sys.executable, "-m", "wakeful_local", "demo", "--resources=python",
         f"--workdir={workdir}", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    timeline = json.loads((workdir / "timeline.json").read_text())
    return result, timeline


def test_the_demo_tells_the_whole_story_and_exits_0(tmp_path):
    result, timeline = run_demo(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [step["step"] for step in timeline["steps"] if step["step"] != "setup"]
    assert steps == [
        "stack up",
        "first request while asleep: 200",
        "3 notes written",
        "waiting for the idle timeout",
        "idle: the agent uploaded and exited; stop verified",
        "second request while asleep: 200",
        "the notes are there",
        "periodic sync done",
        "agent SIGKILLed",
        "unsynced stop flagged",
        "third request while asleep: 200",
        "the last periodic sync is restored",
        "asleep",
        "done",
    ]
    details = {step["step"]: step["detail"] for step in timeline["steps"]}
    assert "data-loss window" in details["unsynced stop flagged"]
    assert "137" in details["unsynced stop flagged"]
    assert "written after the last sync" in details["the last periodic sync is restored"]
    times = [step["at"] for step in timeline["steps"]]
    assert times == sorted(times)
    assert "every step held" in result.stdout


def test_a_step_that_does_not_hold_fails_the_demo_naming_it(tmp_path):
    # An app that keeps its data where the agent does not look: nothing survives a sleep.
    app = "sh -c 'DB_LOCAL_PATH=$DB_LOCAL_PATH.elsewhere exec python examples/notes/app.py'"
    result, timeline = run_demo(tmp_path, f"--app={app}")
    assert result.returncode == 1
    failed = [s for s in timeline["steps"] if s["step"] == "FAILED"]
    assert failed and failed[0]["detail"].startswith("restore after sleep")

"""Which task launchers exist: ``ecs`` is built in, any other is registered from outside.

The local stack's stand-in for Fargate is an entry point (pyproject.toml); the kernel never
names it. A launcher the installation cannot load (the Lambda zip carries no ``wakeful_local``)
is a configuration error, answered as every other one, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chalicelib import launchers
from chalicelib.errors import ConfigError
from chalicelib.settings import ControlPlaneSettings
from tests.conftest import ROOT
from tests.controlplane.conftest import EVENTS

PLACEHOLDERS = {
    "DB_S3_BUCKET": "launcher-test", "WAKEFUL_LEASE_TABLE": "launcher-test",
    "WAKEFUL_CLUSTER": "launcher-test", "WAKEFUL_TASK_DEFINITION": "launcher-test",
    "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
    "WAKEFUL_API_KEY_SHA256": hashlib.sha256(b"key").hexdigest(),
}

# The Lambda's three handlers, invoked as Lambda invokes them, with ``blocked`` packages
# missing as they are from the Lambda zip.
_HANDLERS = r"""
import json, sys

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in sys.argv[1].split(","):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Missing())
from chalice.local import LambdaContext
from chalice.test import Client
import app

event = json.loads(open(sys.argv[2]).read())
schedule = {**event, "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}
answers = {
    "event": app.app.handler_map["on_task_state_change"](
        event, LambdaContext("on_task_state_change", 256)),
    "reconcile": app.app.handler_map["reconcile"](schedule, LambdaContext("reconcile", 256)),
}
with Client(app.app) as client:
    wake = client.http.post("/wake", headers={"x-api-key": "key"})
    answers["wake"] = [wake.status_code, json.loads(wake.body)]
print(json.dumps(answers))
"""


def run_handlers(env: dict[str, str], blocked: str, cwd: Path) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("AWS_", "WAKEFUL_", "DB_", "POWERTOOLS_"))}
    result = subprocess.run(
        [sys.executable, "-c", _HANDLERS, blocked, str(EVENTS / "task-running.json")],
        cwd=cwd, env={**clean, **env, "PYTHONPATH": str(ROOT), "WAKEFUL_LOG_LEVEL": "WARNING"},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_launcher_the_lambda_does_not_carry_is_a_config_error_not_a_crash(tmp_path):
    # WAKEFUL_TASK_LAUNCHER=local in a Lambda: its zip has no wakeful_local.
    answers = run_handlers({**PLACEHOLDERS, "WAKEFUL_TASK_LAUNCHER": "local"},
                           "wakeful_local", tmp_path)
    # Raising would only make Lambda retry an event that cannot succeed.
    assert answers["event"] == {"outcome": "config_error"}
    assert answers["reconcile"] == {"actions": ["config_error"]}
    status, body = answers["wake"]
    assert status == 500
    assert body["error"] == "configuration" and body["variable"] == "WAKEFUL_TASK_LAUNCHER"
    assert "local" in body["message"]


def test_the_local_stand_in_is_found_through_its_entry_point_only_when_asked_for():
    from wakeful_local.launcher import LocalTaskLauncher

    assert launchers.names() == ("ecs", "local")
    assert launchers.load("local") is LocalTaskLauncher
    # Settings and tasks give one answer to which launchers exist.
    with pytest.raises(ConfigError) as refused:
        ControlPlaneSettings.from_env({**PLACEHOLDERS, "WAKEFUL_TASK_LAUNCHER": "k8s"})
    assert str(refused.value) == "WAKEFUL_TASK_LAUNCHER: must be ecs or local, got 'k8s'"
    with pytest.raises(ConfigError, match="must be ecs or local, got 'k8s'"):
        launchers.load("k8s")


_BUILD = r"""
import sys
from chalicelib.settings import ControlPlaneSettings
from chalicelib.tasks import launcher_for
from chalicelib.errors import ConfigError
try:
    launcher = launcher_for(ControlPlaneSettings.from_env())
except ConfigError as exc:
    print(exc.variable, "|", exc)
else:
    print(type(launcher).__name__, "|", "wakeful_local" in sys.modules)
"""


def build_launcher(env: dict[str, str], path: Path | None = None) -> str:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("AWS_", "WAKEFUL_", "DB_", "POWERTOOLS_"))}
    search = os.pathsep.join(str(p) for p in (ROOT, path) if p)
    result = subprocess.run(
        [sys.executable, "-c", _BUILD], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**clean, **PLACEHOLDERS, **env, "PYTHONPATH": search},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_the_built_in_launcher_loads_no_stand_in():
    assert build_launcher({}) == "EcsTaskLauncher | False"


def test_an_installed_launcher_that_cannot_be_loaded_names_the_variable(tmp_path):
    # A package declares a launcher whose module is not there (uninstalled, half-copied).
    info = tmp_path / "broken_launcher-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-launcher\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        f"[{launchers.GROUP}]\nbroken = wakeful_nowhere.launcher:Launcher\n"
    )
    answer = build_launcher({"WAKEFUL_TASK_LAUNCHER": "broken"}, tmp_path)
    variable, _, message = answer.partition(" | ")
    assert variable == "WAKEFUL_TASK_LAUNCHER"
    assert "'broken' (wakeful_nowhere.launcher:Launcher) cannot be loaded" in message
    assert "wakeful_nowhere" in message
    unknown = build_launcher({"WAKEFUL_TASK_LAUNCHER": "k8s"}, tmp_path)
    assert unknown.endswith("must be one of ecs, broken or local, got 'k8s'")

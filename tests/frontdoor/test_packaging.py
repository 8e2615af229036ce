"""The front door's zip carries exactly what it imports, and the handler runs from it alone.

The handler is run from the unpacked zip by an interpreter without site-packages: only the
standard library and the packages the Lambda runtime provides (boto3 and its dependencies)
are there besides the zip, as in AWS. From there it forwards to a real app, wakes through the
real ECS API on moto, and refuses a malformed request.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import ModuleType

import boto3

from tests.conftest import ROOT
from tests.controlplane.conftest import CLUSTER, create_cluster, pin_tasks
from tests.frontdoor.conftest import Agent, control_env, lease_table

SCRIPT = ROOT / "scripts" / "package_front_door.py"
TASK = "arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/running"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("package_front_door", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = load_script()


def test_the_zip_holds_the_handler_its_kernel_and_powertools_and_nothing_else(tmp_path):
    out = tmp_path / "front_door.zip"
    names = script.build(out)
    assert names == sorted(zipfile.ZipFile(out).namelist())
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"frontdoor", "chalicelib", "aws_lambda_powertools", "typing_extensions.py"}
    assert "frontdoor/handler.py" in names and "chalicelib/control.py" in names
    # Only what the Lambda imports: not the loopback server, its CLI or the API waker.
    for absent in ("frontdoor/local.py", "frontdoor/__main__.py", "frontdoor/waker.py",
                   "chalicelib/auth.py"):
        assert absent not in names
    assert all(name.endswith(".py") for name in names)
    # Powertools only in the parts it loads, not its whole distribution.
    assert not any(name.startswith("aws_lambda_powertools/utilities/parser") for name in names)
    # Reproducible: the same code gives the same bytes (and the same source_code_hash).
    again = tmp_path / "again.zip"
    script.build(again)
    assert again.read_bytes() == out.read_bytes()


def test_a_forbidden_import_stops_the_build():
    modules = {"frontdoor.handler": str(ROOT / "frontdoor" / "handler.py"),
               "chalicelib.lease": str(ROOT / "chalicelib" / "lease.py"),
               "container.agent": str(ROOT / "container" / "agent.py")}
    try:
        script.select(modules, [str(ROOT)])
    except script.PackagingError as exc:
        assert "container.agent" in str(exc)
    else:
        raise AssertionError("a module of the agent was packaged")


_RUN = r"""
import json, sys
sys.path[:0] = sys.argv[1:3]
from frontdoor import handler

class Context:
    def get_remaining_time_in_millis(self):
        return 30000

def event(method, path, **extra):
    return {"version": "2.0", "rawPath": path, "rawQueryString": "",
            "headers": {"host": "abc.lambda-url.us-east-1.on.aws", "accept": "*/*"},
            "requestContext": {"http": {"method": method, "path": path,
                                        "sourceIp": "203.0.113.9"}},
            "isBase64Encoded": False, **extra}

results = {}
mode = sys.argv[3]
if mode == "running":
    results["forward"] = handler.handler(event("POST", "/echo/zip", body="from the zip"),
                                         Context())
    results["malformed"] = handler.handler(event("GET", "/%zz"), Context())
else:
    results["asleep"] = handler.handler(event("GET", "/"), Context())
outside = sorted({m.split(".")[0] for m, mod in sys.modules.items()
                  if "site-packages" in (getattr(mod, "__file__", None) or "")})
results["outside"] = outside
print(json.dumps(results))
"""


def runtime_only(tmp_path: Path) -> Path:
    """A folder with just what the Lambda runtime has beside the standard library."""
    site = Path(sysconfig.get_paths()["purelib"])
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    for name in script.RUNTIME_PROVIDED:
        for candidate in (site / name, site / f"{name}.py"):
            if candidate.exists():
                (runtime / candidate.name).symlink_to(candidate)
    return runtime


def run_from_zip(tmp_path: Path, env: dict[str, str], mode: str) -> dict:
    out = tmp_path / "front_door.zip"
    script.build(out)
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(out).extractall(unpacked)
    runtime = runtime_only(tmp_path)
    result = subprocess.run(
        [sys.executable, "-S", "-c", _RUN, str(unpacked), str(runtime), mode],
        env={**env, "PYTHONPATH": "", "WAKEFUL_LOG_LEVEL": "WARNING"},
        cwd=str(tmp_path), capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_handler_forwards_from_the_zip_with_only_the_runtime(resources, tmp_path, app):
    env = control_env(resources.url)
    settings_table = lease_table(_settings(env))
    Agent(settings_table, TASK).acquire().running_at(app.url)
    results = run_from_zip(tmp_path, env, "running")
    forward = results["forward"]
    assert forward["statusCode"] == 200, forward
    assert json.loads(forward["body"])["target"] == "/echo/zip"
    assert results["malformed"]["statusCode"] == 400
    # Nothing came from site-packages: the zip and the runtime's own packages were enough.
    assert results["outside"] == []


def test_the_handler_wakes_through_ecs_from_the_zip(resources, tmp_path):
    pin_tasks(resources)
    network = create_cluster()
    env = {**control_env(resources.url), "WAKEFUL_CLUSTER": CLUSTER,
           "WAKEFUL_SUBNETS": network["subnet"],
           "WAKEFUL_SECURITY_GROUPS": network["security_group"],
           "WAKEFUL_FRONT_DOOR_HOLD": "0"}
    results = run_from_zip(tmp_path, env, "asleep")
    asleep = results["asleep"]
    assert asleep["statusCode"] == 503, asleep
    assert asleep["headers"]["retry-after"] == "5"
    ecs = boto3.client("ecs")
    [arn] = ecs.list_tasks(cluster=CLUSTER)["taskArns"]
    [task] = ecs.describe_tasks(cluster=CLUSTER, tasks=[arn])["tasks"]
    lease = lease_table(_settings(env)).read()
    assert task["startedBy"] == lease.holder == lease.reservation_id
    assert results["outside"] == []


def _settings(env):
    from chalicelib.settings import ControlPlaneSettings

    return ControlPlaneSettings.from_env(env)

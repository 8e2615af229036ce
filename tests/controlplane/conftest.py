"""Fixtures for the control plane: an ECS cluster in moto, settings, the service, the app client.

Tasks are pinned in their state (moto otherwise moves a task one step towards STOPPED on each
DescribeTasks), so a test decides when a task stops, as ECS would.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.control import ControlPlane
from chalicelib.lease import LeaseTable
from chalicelib.ledger import TaskLedger
from chalicelib.settings import ControlPlaneSettings
from chalicelib.store import DatabaseStore
from chalicelib.tasks import EcsTaskLauncher
from tests.conftest import BUCKET, TABLE
from tests.moto_server import MotoServer

CLUSTER = "wakeful-test"
FAMILY = "wakeful-test-app"
CONTAINER = "app"
EVENTS = Path(__file__).parent / "events"


def pin_tasks(server: MotoServer) -> None:
    """Keep moto's tasks where they are until StopTask (a real task does not stop on reads)."""
    body = json.dumps(
        {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}}
    ).encode()
    request = urllib.request.Request(
        f"{server.url}/moto-api/state-manager/set-transition", data=body, method="POST"
    )
    urllib.request.urlopen(request, timeout=10).close()


def create_cluster() -> dict[str, str]:
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # As in a usual Fargate VPC (moto also needs it to describe the task's ENI).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName="wakeful-task", Description="wakeful task", VpcId=vpc
    )["GroupId"]
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.register_task_definition(
        family=FAMILY,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {"name": CONTAINER, "image": "example/app:latest", "memory": 512, "essential": True}
        ],
    )
    return {"subnet": subnet, "security_group": group}


@pytest.fixture
def control_env(resources: MotoServer) -> dict[str, str]:
    """The control plane's environment against a clean moto with a cluster in it."""
    pin_tasks(resources)
    network = create_cluster()
    return {
        "AWS_ENDPOINT_URL": resources.url,
        "DB_S3_BUCKET": BUCKET,
        "DB_S3_KEY": "db.sqlite3",
        "WAKEFUL_LEASE_TABLE": TABLE,
        "WAKEFUL_CLUSTER": CLUSTER,
        "WAKEFUL_TASK_DEFINITION": FAMILY,
        "WAKEFUL_CONTAINER_NAME": CONTAINER,
        "WAKEFUL_SUBNETS": network["subnet"],
        "WAKEFUL_SECURITY_GROUPS": network["security_group"],
        "WAKEFUL_APP_PORT": "8000",
        "WAKEFUL_START_TIMEOUT": "120",
        "WAKEFUL_TASK_TAGS": "app=wakeful,stage=test",
        "WAKEFUL_AUTH": "api_key",
        "WAKEFUL_API_KEY_SHA256": hashlib.sha256(b"test-key").hexdigest(),
    }


@pytest.fixture
def settings(control_env: dict[str, str]) -> ControlPlaneSettings:
    import os

    return ControlPlaneSettings.from_env({**os.environ, **control_env})


class RecordingMetrics:
    """A metric sink that remembers what was emitted."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, float, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def emit(self, name: str, value: float = 1, unit: str = "Count", **properties: Any) -> None:
        with self._lock:
            self.emitted.append((name, value, properties))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.emitted]

    def value(self, name: str) -> float:
        return next(value for metric, value, _ in self.emitted if metric == name)


class RecordingLog:
    """A logger that remembers (level, message, extra) for each line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _record(self, level: str, message: str, extra: dict[str, Any] | None = None) -> None:
        self.lines.append((level, message, dict(extra or {})))

    def debug(self, message: str, extra: dict[str, Any] | None = None) -> None:
        self._record("DEBUG", message, extra)

    def info(self, message: str, extra: dict[str, Any] | None = None) -> None:
        self._record("INFO", message, extra)

    def warning(self, message: str, extra: dict[str, Any] | None = None) -> None:
        self._record("WARNING", message, extra)

    def error(self, message: str, extra: dict[str, Any] | None = None) -> None:
        self._record("ERROR", message, extra)

    def at(self, level: str) -> list[tuple[str, dict[str, Any]]]:
        return [(message, extra) for lvl, message, extra in self.lines if lvl == level]


class Clock:
    """Wall time that a test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def build_plane(
    settings: ControlPlaneSettings, clock: Any = None, launcher: Any = None
) -> ControlPlane:
    import time

    location = settings.location
    clock = clock or time.time
    return ControlPlane(
        settings=settings,
        lease=LeaseTable(location.lease_table, location.lease_name, clock=clock),
        store=DatabaseStore(location.bucket, location.key, clock=clock),
        launcher=launcher or EcsTaskLauncher(settings),
        ledger=TaskLedger(location.lease_table, location.lease_name, clock=clock),
        log=RecordingLog(),
        metrics=RecordingMetrics(),
        clock=clock,
    )


@pytest.fixture
def plane(settings: ControlPlaneSettings) -> ControlPlane:
    return build_plane(settings)


def lease_table(settings: ControlPlaneSettings) -> LeaseTable:
    return LeaseTable(settings.location.lease_table, settings.location.lease_name)


def ecs_tasks(desired: str | None = None) -> list[dict[str, Any]]:
    """The tasks moto's ECS holds for the test cluster (what an operator would list)."""
    ecs = boto3.client("ecs")
    kwargs: dict[str, Any] = {"cluster": CLUSTER}
    if desired:
        kwargs["desiredStatus"] = desired
    arns = ecs.list_tasks(**kwargs)["taskArns"]
    if not arns:
        return []
    return ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]


def event(name: str, task: dict[str, Any] | None = None, **detail: Any) -> dict[str, Any]:
    """A documented ECS event, re-pointed at a task of the test cluster."""
    raw = json.loads((EVENTS / name).read_text())
    result = copy.deepcopy(raw)
    body = result["detail"]
    if task is not None:
        body["taskArn"] = task["taskArn"]
        body["clusterArn"] = task["clusterArn"]
        body["taskDefinitionArn"] = task["taskDefinitionArn"]
        body["group"] = f"family:{FAMILY}"
        body["startedBy"] = task.get("startedBy") or body.get("startedBy")
        for container in body["containers"]:
            container["taskArn"] = task["taskArn"]
        result["resources"] = [task["taskArn"]]
    body.update(detail)
    return result


@contextlib.contextmanager
def chalice_client_for(env: dict[str, str], project: Path) -> Iterator[Any]:
    """chalice.test.Client on a stage whose environment is ``env``."""
    from chalice.test import Client

    import app as app_module

    (project / ".chalice").mkdir(parents=True, exist_ok=True)
    config = {
        "version": "2.0",
        "app_name": "wakeful",
        "stages": {"test": {"environment_variables": env}},
    }
    (project / ".chalice" / "config.json").write_text(json.dumps(config))
    app_module.reset()
    try:
        with Client(app_module.app, stage_name="test", project_dir=str(project)) as client:
            yield client
    finally:
        app_module.reset()


@pytest.fixture
def chalice_client(control_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    with chalice_client_for(control_env, tmp_path / "project") as client:
        yield client


KEY = {"x-api-key": "test-key"}

"""Fixtures for the front door: a real app process on loopback, the lease on moto, a control
plane whose task launcher is a double that records RunTask (and can play the task's agent).

The wake is the control plane's own ``ControlPlane.wake`` on the moto lease table, called
in-process as the Lambda calls it; only "start a Fargate task" is replaced, by a launcher that
records each start and, when asked, acquires the lease and records the app's endpoint as the
task's agent and the RUNNING event would.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib.control import ControlPlane
from chalicelib.events import TaskState
from chalicelib.lease import Lease, LeaseTable
from chalicelib.ledger import TaskLedger
from chalicelib.settings import ControlPlaneSettings
from chalicelib.store import DatabaseStore
from frontdoor.door import FrontDoor
from frontdoor.settings import FrontDoorSettings
from frontdoor.upstream import HttpTransport, Transport
from tests.conftest import BUCKET, ROOT, TABLE
from tests.controlplane.conftest import RecordingLog, RecordingMetrics
from tests.moto_server import MotoServer

CLUSTER_ARN = "arn:aws:ecs:us-east-1:123456789012:cluster/wakeful-test"
FAMILY = "wakeful-test-app"
ECHO = ROOT / "tests" / "apps" / "echo.py"
HOST = "abc123.lambda-url.us-east-1.on.aws"


# -- the app ---------------------------------------------------------------------------------


@dataclass
class App:
    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def seen(self) -> int:
        """How many requests reached the app."""
        with urllib.request.urlopen(f"{self.url}/__seen", timeout=10) as response:
            return int(json.loads(response.read())["seen"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_app(port: int = 0) -> App:
    process = subprocess.Popen(
        [sys.executable, str(ECHO), str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # the app prints its port once it listens
    if not line.startswith("listening on "):
        process.kill()
        raise AssertionError(f"the test app did not start: {line!r}")
    return App(process, int(line.split()[-1]))


@pytest.fixture
def app() -> Iterator[App]:
    running = start_app()
    try:
        yield running
    finally:
        running.stop()


# -- time --------------------------------------------------------------------------------------


class FakeTime:
    """A monotonic clock that only ``sleep`` moves; ``on_sleep`` runs a hook at each sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[int], None] | None = None
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds
            count = len(self.sleeps)
        if self.on_sleep:
            self.on_sleep(count)


# -- the task launcher double and the agent it plays -----------------------------------------


@dataclass
class RecordingLauncher:
    """Records RunTask; ``on_start(reservation, task_arn)`` plays what the task then does."""

    on_start: Callable[[str, str], None] | None = None
    started: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, reservation_id: str) -> TaskState:
        arn = f"arn:aws:ecs:us-east-1:123456789012:task/wakeful-test/{uuid.uuid4().hex}"
        with self._lock:
            self.started.append((reservation_id, arn))
        if self.on_start:
            self.on_start(reservation_id, arn)
        return _task(arn, reservation_id, "PROVISIONING")

    def stop(self, task_arn: str, reason: str) -> None:
        pass

    def describe(self, task_arns: Sequence[str]) -> dict[str, TaskState]:
        # ECS knows nothing the lease does not: the endpoint comes from the agent double.
        return {}

    def running(self) -> list[TaskState]:
        return []


def _task(arn: str, started_by: str, status: str) -> TaskState:
    return TaskState(
        task_arn=arn, cluster_arn=CLUSTER_ARN,
        task_definition_arn=f"arn:aws:ecs:us-east-1:123456789012:task-definition/{FAMILY}:1",
        last_status=status, desired_status="RUNNING", version=1, started_by=started_by,
    )


class Agent:
    """What a task's agent (and its RUNNING event) write to the lease."""

    def __init__(self, table: LeaseTable, task_arn: str) -> None:
        self.table = table
        self.task_arn = task_arn
        self.lease: Lease | None = None

    def acquire(self, reservation_id: str | None = None) -> Agent:
        self.lease = self.table.acquire(
            self.task_arn, ttl=60, reservation_id=reservation_id, task_arn=self.task_arn
        )
        return self

    def running_at(self, endpoint: str) -> Agent:
        """ECS reported RUNNING with this endpoint, and the app answers (the agent's probe)."""
        self.table.record_task(self.task_arn, None, endpoint)
        assert self.lease is not None
        self.table.mark_ready(self.task_arn, self.lease.token)
        return self

    def stopping(self) -> Agent:
        """The agent began its stop: wakes and the front door must not send clients here."""
        self.table.clear_endpoint(self.task_arn)
        return self

    def release(self) -> None:
        assert self.lease is not None
        self.table.release(self.task_arn, self.lease.token)


def agent_comes_up(
    table: LeaseTable, endpoint: str, after: float | None = None
) -> Callable[[str, str], None]:
    """An ``on_start`` whose task acquires its reservation and runs the app at ``endpoint``.

    ``after`` seconds after RunTask (on a timer, for tests on the real clock); without it the
    task is up by the time RunTask answers, so a test on a fake clock needs no timing.
    """

    def on_start(reservation_id: str, task_arn: str) -> None:
        def up() -> None:
            Agent(table, task_arn).acquire(reservation_id).running_at(endpoint)

        if after is None:
            up()
        else:
            threading.Timer(after, up).start()

    return on_start


# -- the control plane and the front door ----------------------------------------------------


def control_env(moto_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_url,
        "DB_S3_BUCKET": BUCKET,
        "DB_S3_KEY": "db.sqlite3",
        "WAKEFUL_LEASE_TABLE": TABLE,
        "WAKEFUL_CLUSTER": CLUSTER_ARN,
        "WAKEFUL_TASK_DEFINITION": FAMILY,
        "WAKEFUL_SUBNETS": "subnet-0123",
        "WAKEFUL_SECURITY_GROUPS": "sg-0123",
        "WAKEFUL_APP_PORT": "8000",
        "WAKEFUL_START_TIMEOUT": "120",
    }


@pytest.fixture
def plane_settings(resources: MotoServer) -> ControlPlaneSettings:
    return ControlPlaneSettings.from_env(control_env(resources.url))


def lease_table(
    settings: ControlPlaneSettings, clock: Callable[[], float] = time.time
) -> LeaseTable:
    location = settings.location
    return LeaseTable(location.lease_table, location.lease_name, clock=clock)


@pytest.fixture
def table(plane_settings: ControlPlaneSettings) -> LeaseTable:
    return lease_table(plane_settings)


@pytest.fixture
def launcher() -> RecordingLauncher:
    return RecordingLauncher()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


class Log(RecordingLog):
    def exception(self, message: str, extra: dict[str, Any] | None = None) -> None:
        self._record("ERROR", message, {**(extra or {}), "exc_info": True})


def build_plane(settings: ControlPlaneSettings, launcher: Any, lease: LeaseTable) -> ControlPlane:
    location = settings.location
    return ControlPlane(
        settings=settings,
        lease=lease,
        store=DatabaseStore(location.bucket, location.key),
        launcher=launcher,
        ledger=TaskLedger(location.lease_table, location.lease_name),
        log=RecordingLog(),
        metrics=RecordingMetrics(),
    )


@dataclass
class Door:
    """A front door and everything a test looks at."""

    door: FrontDoor
    plane: ControlPlane
    log: Log
    metrics: RecordingMetrics

    def __call__(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        return self.door.handle(event, context)


def make_door(
    settings: ControlPlaneSettings,
    launcher: Any,
    fake_time: FakeTime | None = None,
    transport: Transport | None = None,
    lease: LeaseTable | None = None,
    **fd: Any,
) -> Door:
    lease = lease or lease_table(settings)
    plane = build_plane(settings, launcher, lease)
    log, metrics = Log(), RecordingMetrics()
    timing: dict[str, Any] = (
        {"monotonic": fake_time.monotonic, "sleep": fake_time.sleep} if fake_time else {}
    )
    door = FrontDoor(
        settings=FrontDoorSettings(**{"hold": 20.0, "timeout": 28.0, **fd}),
        lease=lease,
        wake=plane.wake,
        transport=transport or HttpTransport(),
        log=log,
        metrics=metrics,
        **timing,
    )
    return Door(door, plane, log, metrics)


@pytest.fixture
def door(plane_settings: ControlPlaneSettings, launcher: RecordingLauncher,
         fake_time: FakeTime) -> Door:
    return make_door(plane_settings, launcher, fake_time)


# -- events --------------------------------------------------------------------------------


def url_event(
    method: str = "GET",
    path: str = "/",
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes | str | None = None,
    cookies: list[str] | None = None,
    base64_body: bool = True,
    source_ip: str = "203.0.113.7",
) -> dict[str, Any]:
    """A function URL event (payload format 2.0), as Lambda delivers it."""
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {
            "host": HOST,
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            "x-forwarded-for": source_ip,
            "user-agent": "test",
            **(headers or {}),
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc123",
            "domainName": HOST,
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": source_ip, "userAgent": "test"},
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if body is not None:
        raw = body.encode() if isinstance(body, str) else body
        if base64_body:
            event["body"] = base64.b64encode(raw).decode()
            event["isBase64Encoded"] = True
        else:
            event["body"] = raw.decode()
    return event


def body_of(result: dict[str, Any]) -> bytes:
    raw = result.get("body") or ""
    return base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()


def json_of(result: dict[str, Any]) -> Any:
    return json.loads(body_of(result))


"""A local stand-in for Fargate: ECS keeps the task records, a local process runs the container.

``RunTask`` and ``StopTask`` still go to the ECS API (moto's, in the local stack), so the control
plane, the reconciler and the operator CLI see the same tasks they would in AWS. What ECS would
do on a host is done here: the task's container (``wakeful-agent run -- <app>``) starts as a
local process with the environment of the registered task definition, ``StopTask`` becomes
SIGTERM (SIGKILL after the stop timeout), and each start and exit becomes an "ECS Task State
Change" event, shaped as ECS sends it, delivered to the very handler the Lambda runs.

Selected with ``WAKEFUL_TASK_LAUNCHER=local``: pyproject.toml registers ``LocalTaskLauncher`` as the
``local`` entry point of ``wakeful.task_launchers``, which ``chalicelib.launchers`` loads when
asked for it. Nothing in the production path imports it, and the Lambda zip does not carry it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from chalicelib.events import TaskState
from chalicelib.settings import ControlPlaneSettings
from chalicelib.tasks import RESERVATION_ENV, EcsTaskLauncher

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_APP = f"{shlex.quote(sys.executable)} examples/notes/app.py"
LOCAL_IP = "127.0.0.1"

OUTCOME_MARK = "wakeful-local: event"

Deliver = Callable[[dict[str, Any]], Any]


def deliver_to_handler(event: dict[str, Any]) -> Any:
    """Invoke the Lambda's own EventBridge handler, as EventBridge would."""
    import app as control_plane

    return control_plane.on_task_state_change(event, None)


@dataclass
class LocalTask:
    arn: str
    process: subprocess.Popen[bytes]
    workdir: Path
    version: int = 1
    listening: bool = False
    stop_reason: str | None = None
    started_at: float = field(default_factory=time.time)


class MetadataServer:
    """Answers ``$ECS_CONTAINER_METADATA_URI_V4/task`` for each local task."""

    def __init__(self) -> None:
        self.arns: dict[str, str] = {}
        arns = self.arns

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                task_id = self.path.strip("/").split("/")[1] if self.path.count("/") >= 2 else ""
                arn = arns.get(task_id)
                body = json.dumps({"TaskARN": arn} if arn else {}).encode()
                self.send_response(200 if arn else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((LOCAL_IP, 0), Handler)
        self.url = f"http://{LOCAL_IP}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def uri_for(self, task_id: str, arn: str) -> str:
        self.arns[task_id] = arn
        return f"{self.url}/v4/{task_id}"


class LocalTaskLauncher(EcsTaskLauncher):
    def __init__(
        self,
        settings: ControlPlaneSettings,
        client: Any | None = None,
        deliver: Deliver = deliver_to_handler,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(settings, client)
        self._deliver = deliver
        self._env = dict(os.environ if env is None else env)
        self.workdir = Path(
            self._env.get("WAKEFUL_LOCAL_WORKDIR") or tempfile.mkdtemp(prefix="wakeful-tasks-")
        )
        self.command = shlex.split(self._env.get("WAKEFUL_LOCAL_APP") or DEFAULT_APP)
        self.stop_timeout = float(self._env.get("WAKEFUL_LOCAL_STOP_TIMEOUT", "120"))
        self.tasks: dict[str, LocalTask] = {}
        self._metadata = MetadataServer()
        self._lock = threading.Lock()

    # -- the TaskLauncher contract ---------------------------------------------------------

    def start(self, reservation_id: str) -> TaskState:
        task = super().start(reservation_id)
        env = self._container_env(task, reservation_id)
        folder = self.workdir / task.task_id
        folder.mkdir(parents=True, exist_ok=True)
        log = open(folder / "container.log", "ab")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            [sys.executable, "-m", "container", "run", "--", *self.command],
            env=env, cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        local = LocalTask(task.task_arn, process, folder)
        with self._lock:
            self.tasks[task.task_arn] = local
        threading.Thread(
            target=self._watch, args=(local,), name=f"task-{task.task_id}", daemon=True
        ).start()
        return task

    def describe(self, task_arns: Sequence[str]) -> dict[str, TaskState]:
        return {arn: self._as_seen_here(task) for arn, task in super().describe(task_arns).items()}

    def running(self) -> list[TaskState]:
        return [self._as_seen_here(task) for task in super().running()]

    def _as_seen_here(self, task: TaskState) -> TaskState:
        """ECS's record, with what only this host knows: the address, and whether it is up.

        ECS reports RUNNING once the container has started; here that is when the app
        listens. The address is loopback, never the made-up one in moto's record.
        """
        local = self.tasks.get(task.task_arn)
        if local is None:
            return task
        status = task.last_status
        if status == "RUNNING" and not local.listening:
            status = "PENDING"
        return replace(task, private_ip=LOCAL_IP, last_status=status)

    def stop(self, task_arn: str, reason: str) -> None:
        super().stop(task_arn, reason)
        local = self.tasks.get(task_arn)
        if local is None or local.process.poll() is not None:
            return
        local.stop_reason = reason
        # ECS: SIGTERM to the container, SIGKILL once the stop timeout has passed.
        with contextlib.suppress(ProcessLookupError):
            local.process.send_signal(signal.SIGTERM)
        timer = threading.Timer(self.stop_timeout, self._kill, args=(local,))
        timer.daemon = True
        timer.start()

    # -- the container ---------------------------------------------------------------------

    def _container_env(self, task: TaskState, reservation_id: str) -> dict[str, str]:
        """The task definition's environment, as ECS gives it, plus what a laptop needs."""
        definition = self._ecs.describe_task_definition(taskDefinition=task.task_definition_arn)
        containers = definition["taskDefinition"]["containerDefinitions"]
        container = next(
            (c for c in containers if c["name"] == self.settings.container_name), containers[0]
        )
        env = {k: v for k, v in self._env.items() if not k.startswith(("WAKEFUL_", "DB_"))}
        env.update({item["name"]: item["value"] for item in container.get("environment", [])})
        folder = self.workdir / task.task_id
        env.update(
            {
                RESERVATION_ENV: reservation_id,
                "ECS_CONTAINER_METADATA_URI_V4": self._metadata.uri_for(
                    task.task_id, task.task_arn
                ),
                # Every task starts on an empty disk, as a new Fargate task does.
                "DB_LOCAL_PATH": str(folder / "app" / "db.sqlite3"),
                "PORT": str(self.settings.app_port),
                "NOTES_HOST": LOCAL_IP,
                "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1",
                # As in an image whose Python environment is on PATH: an app command such as
                # `sh start.sh` finds the same python, gunicorn and manage.py's Django.
                "PATH": os.pathsep.join(
                    [str(Path(sys.executable).parent), env.get("PATH", os.defpath)]
                ),
            }
        )
        return env

    def _watch(self, local: LocalTask) -> None:
        if self._wait_listening(local):
            local.listening = True
            self._emit(local, "RUNNING")
        code = local.process.wait()
        with contextlib.suppress(Exception):
            # The task's record in ECS stops too (a no-op if StopTask already did it).
            self._ecs.stop_task(
                cluster=self.settings.cluster, task=local.arn,
                reason=local.stop_reason or "Essential container in task exited",
            )
        self._emit(local, "STOPPED", exit_code=128 - code if code < 0 else code)

    def _wait_listening(self, local: LocalTask) -> bool:
        while local.process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(
                (LOCAL_IP, self.settings.app_port), timeout=0.5
            ):
                return True
            time.sleep(0.1)
        return False

    def _kill(self, local: LocalTask) -> None:
        if local.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                local.process.kill()

    # -- events ----------------------------------------------------------------------------

    def _emit(self, local: LocalTask, status: str, exit_code: int | None = None) -> None:
        local.version += 1
        event = self.event(local, status, exit_code)
        try:
            answer = self._deliver(event)
        except Exception as exc:  # EventBridge would retry; locally, say so and go on
            print(f"wakeful-local: event delivery failed: {exc}", file=sys.stderr, flush=True)
            return
        outcome = answer.get("outcome") if isinstance(answer, dict) else answer
        # One line per event, for the stack (and its operator) to follow.
        print(f"{OUTCOME_MARK} {local.arn} {status} {outcome}", flush=True)

    def event(self, local: LocalTask, status: str, exit_code: int | None = None) -> dict[str, Any]:
        """An "ECS Task State Change" event for ``local``, in the shape ECS sends."""
        described = self._ecs.describe_tasks(cluster=self.settings.cluster, tasks=[local.arn])
        raw = _jsonable(described["tasks"][0]) if described.get("tasks") else {}
        now = _iso(time.time())
        detail = {
            **raw,
            "lastStatus": status,
            "desiredStatus": "STOPPED" if status == "STOPPED" else "RUNNING",
            "version": local.version,
            "startedAt": _iso(local.started_at),
            "updatedAt": now,
            "attachments": [_eni()],
        }
        for container in detail.get("containers") or []:
            container["lastStatus"] = status
            if exit_code is not None:
                container["exitCode"] = exit_code
        if status == "STOPPED":
            detail["stoppedAt"] = now
            detail["stoppingAt"] = now
            detail["executionStoppedAt"] = now
            if local.stop_reason:
                detail["stopCode"] = "UserInitiated"
                detail["stoppedReason"] = local.stop_reason
            else:
                detail["stopCode"] = "EssentialContainerExited"
                detail["stoppedReason"] = "Essential container in task exited"
        arn_parts = local.arn.split(":")
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "account": arn_parts[4] if len(arn_parts) > 4 else "123456789012",
            "time": now,
            "region": arn_parts[3] if len(arn_parts) > 3 else "us-east-1",
            "resources": [local.arn],
            "detail": detail,
        }


def _eni() -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "eni",
        "status": "ATTACHED",
        "details": [{"name": "privateIPv4Address", "value": LOCAL_IP}],
    }


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat().replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return _iso(value.timestamp())
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


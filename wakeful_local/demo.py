"""The story a new user sees first, told as a timeline; exit 0 only when every step held.

a plain request to the app's URL while asleep is served (it woke the backend) → notes written →
idle timeout → the agent uploads and exits → stop verified → the next request wakes it again →
the notes are there → the agent is SIGKILLed → unsynced stop flagged with its data-loss window
→ the next request restores the last periodic sync, and says what was lost.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from wakeful_local.resources import Timings
from wakeful_local.signals import StopSignals
from wakeful_local.stack import LocalStack, StackCancelled, StackError, http
from wakeful_replica.store import ChainStore

DEMO_TIMINGS = Timings(sync_interval=1.0, lease_ttl=6.0, idle_timeout=4.0)


class StepFailed(Exception):
    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step


class Timeline:
    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.started = time.monotonic()
        self.out = out
        self.steps: list[dict[str, Any]] = []

    def say(self, step: str, detail: str = "") -> None:
        at = time.monotonic() - self.started
        self.steps.append({"at": round(at, 2), "step": step, "detail": detail})
        self.out(f"[{at:7.2f}s] {step}" + (f" — {detail}" if detail else ""))


class Demo:
    def __init__(self, stack: LocalStack, timeline: Timeline) -> None:
        self.stack = stack
        self.t = timeline

    def run(self) -> None:
        door = self.stack.front_door_url
        self.t.say(
            "stack up",
            f"front door {door}, API {self.stack.api_url}, work folder {self.stack.workdir}",
        )
        task = self.request_while_asleep("first request while asleep")
        for text in ("buy milk", "water the plants", "call the plumber"):
            self.post_note(door, text)
        self.t.say("3 notes written", f"POST {door}/notes")

        idle = f"{DEMO_TIMINGS.idle_timeout:g} s without a request"
        self.t.say("waiting for the idle timeout", idle)
        status = self.stack.wait_for(
            lambda: self._stopped(task), 60, "the idle agent to upload and exit"
        )
        upload = status.get("last_upload") or {}
        if upload.get("reason") != "shutdown" or status.get("last_unsynced_stop"):
            raise StepFailed("idle stop", f"not a verified stop: {json.dumps(status)}")
        self.stack.wait_for(
            lambda: self.stack.event_outcome(task, "STOPPED") == "verified", 30,
            "the STOPPED event to be verified",
        )
        self.t.say(
            "idle: the agent uploaded and exited; stop verified",
            f"shutdown upload of {upload.get('size')} bytes, lease {status['lease']['state']}",
        )

        task = self.request_while_asleep("second request while asleep")
        texts = self.notes(door)
        if texts != ["buy milk", "water the plants", "call the plumber"]:
            raise StepFailed("restore after sleep", f"the notes are not there: {texts}")
        self.t.say("the notes are there", f"{len(texts)} notes restored from S3")

        self.post_note(door, "synced before the crash")
        self.stack.wait_for(
            lambda: "synced before the crash" in self._notes_in_s3(), 30,
            "a periodic sync of the new note",
        )
        self.t.say("periodic sync done", "the note is in S3")
        self.post_note(door, "written after the last sync")
        pid = self.stack.agent_pid(task)
        if pid is None:
            raise StepFailed("kill", "no live agent to kill")
        os.kill(pid, signal.SIGKILL)
        self.t.say("agent SIGKILLed", f"pid {pid}: no shutdown upload can run")

        unsynced = self.stack.wait_for(
            lambda: (self.status().get("last_unsynced_stop") or {}), 60, "the unsynced stop"
        )
        if unsynced.get("task_arn") != task:
            raise StepFailed("unsynced stop", f"flagged the wrong task: {unsynced}")
        if self.stack.event_outcome(task, "STOPPED") != "unsynced":
            raise StepFailed("unsynced stop", "the STOPPED event was not judged unsynced")
        window = unsynced.get("window_seconds")
        self.t.say(
            "unsynced stop flagged",
            f"exit {unsynced.get('exit_codes')}, data-loss window {window:.1f} s"
            if isinstance(window, int | float) else f"{unsynced}",
        )

        self.request_while_asleep("third request while asleep")
        texts = self.notes(door)
        if "synced before the crash" not in texts:
            raise StepFailed("restore after the crash", f"lost a synced note: {texts}")
        lost = [t for t in ("written after the last sync",) if t not in texts]
        self.t.say(
            "the last periodic sync is restored",
            f"{len(texts)} notes; lost inside the window: {lost or 'nothing'}",
        )
        answer = self.stack.api("POST", "/sleep")
        if answer.status not in (200, 202):
            raise StepFailed("sleep", f"{answer.status} {answer.body}")
        self.stack.wait_for(lambda: self.stack.agent_pid() is None, 60, "the backend to sleep")
        self.t.say("asleep", "POST /sleep → the agent uploaded on SIGTERM")

    # -- steps -----------------------------------------------------------------------------

    def request_while_asleep(self, step: str) -> str:
        """A plain GET of the app's public URL while the backend sleeps: it wakes the backend
        and is answered by the app once it is ready. Returns the task that serves it."""
        state = self.stack.wait_for(
            lambda: self.status().get("state") in ("asleep", "stopping") and self.status(),
            60, f"{step}: the backend to be asleep",
        )["state"]
        started = time.monotonic()
        answer = http("GET", f"{self.stack.front_door_url}/notes")
        if answer.status != 200:
            raise StepFailed(step, f"expected 200 from the app, got {answer.status} {answer.body}")
        self.t.say(
            f"{step}: 200",
            f"GET $WAKEFUL_FRONT_DOOR_URL/notes ({state}) served in "
            f"{time.monotonic() - started:.1f} s; the request woke the backend",
        )
        return self._serving_task()

    def _serving_task(self) -> str:
        status = self.status()
        task = (status.get("task") or {}).get("arn") or status["lease"].get("holder")
        if not task:
            raise StepFailed("task", f"no task serves the app: {status}")
        return str(task)

    def post_note(self, endpoint: str, text: str) -> None:
        answer = http("POST", f"{endpoint}/notes", {"text": text})
        if answer.status != 201:
            raise StepFailed("write", f"{answer.status} {answer.body}")

    def notes(self, endpoint: str) -> list[str]:
        return [note["text"] for note in http("GET", f"{endpoint}/notes").body]

    def status(self) -> dict[str, Any]:
        return self.stack.api("GET", "/status").body

    def _stopped(self, task: str) -> dict[str, Any] | None:
        status = self.status()
        if status["lease"]["state"] == "FREE" and self.stack.agent_pid(task) is None:
            return status
        return None

    def _notes_in_s3(self) -> list[str]:
        """The notes a restore of what is in S3 now gives (the chain's end; or the current
        object, for the whole-file layout): what survives a crash at this moment."""
        names = self.stack.names
        assert names is not None
        chain = ChainStore(names.bucket, names.key, client=self.stack.client("s3"))
        with tempfile.TemporaryDirectory() as scratch:
            path = os.path.join(scratch, "restored.sqlite3")
            if chain.read_manifest() is not None:
                chain.restore(path)
            else:
                try:
                    body = self.stack.client("s3").get_object(Bucket=names.bucket,
                                                              Key=names.key)
                except ClientError:
                    return []
                with open(path, "wb") as out:
                    out.write(body["Body"].read())
            if not os.path.exists(path):
                return []
            db = sqlite3.connect(path)
            try:
                return [text for (text,) in db.execute("SELECT text FROM notes ORDER BY id")]
            except sqlite3.Error:
                return []
            finally:
                db.close()


def _options(args: list[str]) -> dict[str, str]:
    """``--resources=python|terraform|auto``, ``--workdir=PATH``, ``--app=COMMAND``."""
    options = {}
    for arg in args:
        name, sep, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not sep or name not in ("resources", "workdir", "app"):
            raise SystemExit(f"demo: unknown option {arg!r}")
        options[name] = value
    return options


def main(argv: list[str] | None = None) -> int:
    options = _options(argv if argv is not None else sys.argv[1:])
    timeline = Timeline()
    signals = StopSignals()
    stack = LocalStack(
        workdir=Path(options["workdir"]) if options.get("workdir") else None,
        provisioner=options.get("resources", "python"),
        timings=DEMO_TIMINGS,
        say=lambda line: timeline.say("setup", line),
        app_command=options.get("app"),
        cancelled=signals.cancelled,
    )
    code = 0
    with signals:
        try:
            stack.start()
            Demo(stack, timeline).run()
            timeline.say("done", "every step held")
        except StepFailed as exc:
            timeline.say("FAILED", str(exc))
            code = 1
        except StackCancelled as exc:
            timeline.say("FAILED", str(exc))
            code = 130
        except (StackError, OSError) as exc:
            timeline.say("FAILED", f"stack: {exc}")
            code = 1
        finally:
            with signals.ignored():
                stack.stop()
    if code == 0 and not options.get("workdir"):
        stack.remove()
        return code
    record = Path(stack.workdir) / "timeline.json"
    record.write_text(json.dumps({"exit": code, "steps": timeline.steps}, indent=2))
    print(f"timeline written to {record}; logs in {stack.workdir}")
    return code

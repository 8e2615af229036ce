"""The agent's round trip on a local moto server, told as a timeline.

start moto → create bucket + lease table → agent runs the notes app → notes written over HTTP →
SIGTERM: uploaded and released → a new agent restores them → SIGKILL mid-run → the next agent
restores the last periodic sync. Exits non-zero naming the first step that did not hold.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import BUCKET, TABLE, create_bucket, create_lease_table  # noqa: E402
from tests.moto_server import MotoServer, free_port  # noqa: E402

NOTES = str(ROOT / "examples" / "notes" / "app.py")
STARTED = time.monotonic()


class StepFailed(Exception):
    pass


def say(step: str, detail: str = "") -> None:
    print(f"[{time.monotonic() - STARTED:7.2f}s] {step}{': ' + detail if detail else ''}",
          flush=True)


def http(method: str, url: str, body: dict | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            http("GET", url)
            return
        except OSError:
            time.sleep(0.1)
    raise StepFailed(f"{url} did not answer within {timeout:.0f}s")


def start_agent(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    agent_env = {**env, "PORT": str(port), "NOTES_HOST": "127.0.0.1"}
    handle = open(log, "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        [sys.executable, "-m", "container", "run", "--", sys.executable, NOTES],
        env=agent_env, cwd=str(ROOT), stdout=handle, stderr=subprocess.STDOUT,
    )


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="wakeful-demo-"))
    server = MotoServer().start()
    say("moto server", server.url)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": server.url,
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "DB_S3_BUCKET": BUCKET,
        "DB_LOCAL_PATH": str(workdir / "app" / "db.sqlite3"),
        "WAKEFUL_LEASE_TABLE": TABLE,
        "WAKEFUL_SYNC_INTERVAL": "1",
        "WAKEFUL_LEASE_TTL": "5",
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                           "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
    log = workdir / "agent.log"
    try:
        create_bucket()
        create_lease_table()
        say("resources", f"s3://{BUCKET} (versioned), DynamoDB table {TABLE}")

        port = free_port()
        agent = start_agent(env, port, log)
        wait_http(f"http://127.0.0.1:{port}/health")
        say("agent 1 running the notes app", f"http://127.0.0.1:{port}")
        for text in ("buy milk", "water plants", "call mum"):
            http("POST", f"http://127.0.0.1:{port}/notes", {"text": text})
        say("wrote 3 notes")
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(timeout=60)
        if code != 0:
            raise StepFailed(f"agent 1 exited {code} on SIGTERM (log: {log})")
        say("SIGTERM → uploaded and released", f"exit {code}")

        port = free_port()
        agent = start_agent(env, port, log)
        wait_http(f"http://127.0.0.1:{port}/health")
        notes = http("GET", f"http://127.0.0.1:{port}/notes")
        if [n["text"] for n in notes] != ["buy milk", "water plants", "call mum"]:
            raise StepFailed(f"agent 2 did not restore the notes: {notes}")
        say("agent 2 restored the notes", f"{len(notes)} notes")
        http("POST", f"http://127.0.0.1:{port}/notes", {"text": "synced before the crash"})
        time.sleep(2.5)  # at least one periodic sync (interval 1 s)
        http("POST", f"http://127.0.0.1:{port}/notes", {"text": "written just before it"})
        agent.kill()
        agent.wait()
        say("agent 2 SIGKILLed", "its app dies with it")

        port = free_port()
        agent = start_agent({**env, "WAKEFUL_ACQUIRE_TIMEOUT": "15"}, port, log)
        wait_http(f"http://127.0.0.1:{port}/health", timeout=40)
        texts = [n["text"] for n in http("GET", f"http://127.0.0.1:{port}/notes")]
        if "synced before the crash" not in texts:
            raise StepFailed(f"agent 3 lost a note that was periodically synced: {texts}")
        lost = "written just before it" not in texts
        say("agent 3 restored the last periodic sync",
            f"{len(texts)} notes; the newest note was "
            + ("lost (written inside the sync interval)" if lost else "kept"))
        agent.send_signal(signal.SIGTERM)
        if agent.wait(timeout=60) != 0:
            raise StepFailed("agent 3 did not stop cleanly")
        say("done", f"every step held; agent log at {log}")
        return 0
    except StepFailed as exc:
        say("FAILED", str(exc))
        return 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())

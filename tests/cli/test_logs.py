"""``wakeful logs``: the agent's and the control plane's CloudWatch log groups, merged by time,
read from moto's CloudWatch Logs."""

from __future__ import annotations

import json
import signal
import threading
import time

import boto3
import pytest

from tests.cli.conftest import finish, run_script, start_script

AGENT = "/ecs/wakeful-test"
API = "/aws/lambda/wakeful-test-api_handler"
EVENTS = "/aws/lambda/wakeful-test-on_task_state_change"


def put(group: str, at: float, message: str | dict) -> None:
    body = message if isinstance(message, str) else json.dumps(message)
    boto3.client("logs").put_log_events(
        logGroupName=group, logStreamName="stream",
        logEvents=[{"timestamp": int(at * 1000), "message": body}],
    )


@pytest.fixture
def groups(store_env) -> dict[str, str]:
    logs = boto3.client("logs")
    for group in (AGENT, API, EVENTS):
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="stream")
    return {**store_env, "WAKEFUL_AGENT_LOG_GROUP": AGENT,
            "WAKEFUL_CONTROL_PLANE_LOG_GROUPS": f"{API},{EVENTS}"}


def test_logs_merge_the_groups_by_time(groups):
    now = time.time()
    put(AGENT, now - 2 * 3600, "an old line")
    put(AGENT, now - 30, {"level": "INFO", "message": "Database downloaded", "service":
                          "wakeful-agent", "timestamp": "x", "etag": "abc"})
    put(API, now - 20, {"level": "INFO", "message": "Backend task started",
                        "task_arn": "arn:aws:ecs:us-east-1:1:task/c/t1"})
    put(EVENTS, now - 10, "START RequestId: 42")
    put(AGENT, now - 5, "[INFO] Database uploaded successfully")

    result = run_script(groups, "logs", "--since", "10m")
    assert result.code == 0, result.err
    shown = result.out.splitlines()
    assert [line.split("  ")[1] for line in shown] == [
        "agent", "control-plane/wakeful-test-api_handler",
        "control-plane/wakeful-test-on_task_state_change", "agent",
    ]
    assert shown[0].endswith("INFO  Database downloaded  etag=abc")
    assert shown[1].endswith(
        "INFO  Backend task started  task_arn=arn:aws:ecs:us-east-1:1:task/c/t1")
    assert shown[3].endswith("[INFO] Database uploaded successfully")
    assert "an old line" not in result.out

    older = run_script(groups, "logs", "--since", "3h", "--source", "agent")
    assert older.code == 0, older.err
    assert [line.rsplit("  ", 1)[-1] for line in older.out.splitlines()] == [
        "an old line", "etag=abc", "[INFO] Database uploaded successfully"]
    plane = run_script(groups, "--json", "logs", "--source", "control-plane")
    assert plane.code == 0, plane.err
    records = [json.loads(line) for line in plane.out.splitlines()]
    assert [r["group"] for r in records] == [API, EVENTS]
    assert records[1]["message"] == "START RequestId: 42"


def test_logs_follow_prints_new_lines_until_interrupted(groups):
    put(AGENT, time.time() - 1, "before the follow")
    process = start_script(groups, "logs", "--follow", "--interval", "0.2")
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(process.stdout.readline, "")),
                              daemon=True)
    reader.start()

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 30
        while not any(text in line for line in seen):
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, f"no {text!r} in {seen}"
            time.sleep(0.05)

    wait_for("before the follow")
    put(API, time.time(), {"level": "INFO", "message": "Stop requested"})
    wait_for("Stop requested")
    process.send_signal(signal.SIGINT)
    result = finish(process)
    reader.join(timeout=10)
    assert result.code == 0, result.err
    assert sum("before the follow" in line for line in seen) == 1  # printed once


def test_logs_need_a_log_group(store_env, groups):
    unset = run_script(store_env, "logs")
    assert unset.code == 2 and unset.err.count("\n") == 1
    assert "WAKEFUL_AGENT_LOG_GROUP" in unset.err
    missing = run_script(groups, "logs", "--agent-log-group", "/ecs/no-such-group",
                         "--source", "agent")
    assert missing.code == 2 and "'/ecs/no-such-group' does not exist" in missing.err
    bad_age = run_script(groups, "logs", "--since", "soon")
    assert bad_age.code == 2 and "not an age" in bad_age.err

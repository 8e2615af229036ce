"""Every log line of an invocation names its request id, and a cold start is counted once.

The handlers run as Lambda runs them, in a fresh interpreter (a cold container): an HTTP wake
through chalice.test.Client, then a task event with a Lambda context object. What they print
(Powertools' JSON log lines and EMF metrics) is read back line by line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.conftest import ROOT
from tests.controlplane.conftest import EVENTS

_INVOKE = r"""
import copy, json, sys
from chalice.local import LambdaContext
from chalice.test import Client
import app

with Client(app.app) as client:
    wake = client.http.post("/wake", headers={"x-api-key": "test-key"})
assert wake.status_code == 202, wake.body

event = json.loads(open(sys.argv[1]).read())
event["detail"]["version"] = "not a number"  # malformed: logged and dropped
context = LambdaContext("on_task_state_change", 256)
context.aws_request_id = "request-of-the-event"
assert app.app.handler_map["on_task_state_change"](event, context) == {"outcome": "malformed"}
"""


def printed(env: dict[str, str], tmp_path: Any) -> list[dict[str, Any]]:
    # The session's AWS credentials and endpoint stay; the control plane's own come from env.
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("WAKEFUL_", "DB_", "POWERTOOLS_"))}
    result = subprocess.run(
        [sys.executable, "-c", _INVOKE, str(EVENTS / "task-running.json")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**clean, **env, "PYTHONPATH": str(ROOT), "AWS_REGION": "us-east-1",
             "WAKEFUL_LOG_LEVEL": "INFO", "POWERTOOLS_METRICS_NAMESPACE": "wakeful-test"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = []
    for line in result.stdout.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def test_log_lines_carry_the_request_id_and_the_first_invocation_counts_a_cold_start(
    control_env, tmp_path
):
    lines = printed(control_env, tmp_path)
    logs = [line for line in lines if "level" in line and "message" in line]
    started = [line for line in logs if line["message"] == "Backend task started"]
    dropped = [line for line in logs if line["message"] == "Dropped a malformed task event"]
    assert len(started) == 1 and len(dropped) == 1, logs
    for line in logs:
        assert line.get("function_request_id"), line
    assert dropped[0]["function_request_id"] == "request-of-the-event"
    assert dropped[0]["function_name"] == "on_task_state_change"
    assert started[0]["function_request_id"] != "request-of-the-event"
    assert (started[0]["cold_start"], dropped[0]["cold_start"]) == (True, False)

    cold = [line for line in lines if any(
        metric["Name"] == "ColdStart"
        for directive in line.get("_aws", {}).get("CloudWatchMetrics", [])
        for metric in directive["Metrics"]
    )]
    assert len(cold) == 1, cold  # the container's first invocation only
    assert cold[0]["service"] == "control-plane"
    assert cold[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "wakeful-test"
    # The outcomes' own metrics are still there, each flushed as it happened.
    names = {metric["Name"] for line in lines
             for directive in line.get("_aws", {}).get("CloudWatchMetrics", [])
             for metric in directive["Metrics"]}
    assert {"TaskStarted", "MalformedEvent"} <= names
